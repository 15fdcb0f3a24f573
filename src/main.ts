import { Code, ConnectError } from "@connectrpc/connect";
import type { FastifyInstance } from "fastify";
import { setMaxListeners } from "node:events";
import type { Server as HttpServer } from "node:http";
import { hostname } from "node:os";
import type { AddressInfo, Socket } from "node:net";
import type { ProxyConfig } from "./config/config.js";
import { checkClusterHealth } from "./health/cluster-health.js";
import { checkProxyHealth } from "./health/proxy-health.js";
import { KeepAliveCoalescer } from "./keepalive/keepalive-coalescer.js";
import { createMetrics, observeEndpoints, observeLeasing, recordRpc, type RpcObserver } from "./metrics.js";
import { createApp, startMetricsListener } from "./server/connect/fastify-app.js";
import { Admission, defaultHosts } from "./server/edge/admission.js";
import { dashboardPaths } from "./server/dashboard/dashboard.js";
import type { ClosableSession } from "./server/edge/listener.js";
import type { HttpEndpointDeps } from "./server/operator/http-endpoints.js";
import { EtcdVersion, fetchFromEtcd } from "./upstream/etcd-http.js";
import { memberEndpoints, syncEndpointsEvery } from "./upstream/endpoint-sync.js";
import { discoverEndpoints } from "./upstream/srv-discovery.js";
import { createNativeLane } from "./server/native/native-lane.js";
import { KV } from "./gen/etcd/api/etcdserverpb/rpc_pb.js";
import { etcdServices } from "./services/index.js";
import { withPayloadLogging } from "./services/payload-log.js";
import { rpcTable } from "./services/rpc-table.js";
import { watchJoinCheck, watchUpstream } from "./services/watch.js";
import { WatchHub } from "./watch/watch-hub.js";
import { KvCache } from "./cache/kv-cache.js";
import { KeyPrefix } from "./namespace/prefix.js";
import { NamespacedUpstream } from "./namespace/namespaced-upstream.js";
import { LeasingKv } from "./leasing/leasing-kv.js";
import { ProxyDirectory } from "./registry/proxy-directory.js";
import { Registration } from "./registry/registration.js";
import { ANONYMOUS, PasswordIdentity } from "./upstream/proxy-identity.js";
import { EtcdUpstream, type Upstream } from "./upstream/upstream.js";

/** Tunables that are not flags; each says why it has its value. */
export const DEFAULTS = {
  /** etcd's /health allows its linearizable probe read one second. */
  healthTimeoutMs: 1000,
  /** Calls without a deadline keep looking for a live endpoint this long (clientv3's dial timeout). */
  retryWindowMs: 5000,
  /** Back-off of a failed endpoint: short enough to notice a restart quickly. */
  backoffMinMs: 100,
  backoffMaxMs: 2000,
  /** gRPC's default receive limit, as etcd's Go proxy applies to clients. */
  clientReadMaxBytes: 4 * 1024 * 1024,
  /** etcd's /proxy/health gives the self-check's watch this long to be created. */
  proxyHealthWatchTimeoutMs: 3000,
  /** How long /metrics waits for one etcd member before asking the next. */
  etcdHttpTimeoutMs: 2000,
  /**
   * Recent events kept per shared watch, so late watchers asking for an
   * older revision are served from memory: small, since every watched range
   * keeps its own.
   */
  watchHistory: { maxEntries: 256, maxBytes: 256 * 1024 },
  /** etcd splits a fragmenting watcher's responses from its request limit plus gRPC overhead. */
  watchFragmentOverheadBytes: 512 * 1024,
  /**
   * A client stream that fell behind gets each watcher's unread events
   * batched into responses of up to this size: far below any client's
   * receive limit, large enough that catching up costs few messages.
   */
  watchBatchBytes: 64 * 1024,
  /** How often an unanswered watch progress request is repeated (etcd ignores it while a watcher catches up). */
  watchProgressRetryMs: 250,
  /** How long the range cache waits before asking etcd again for the watch it was refused. */
  cacheWatchRetryMs: 10_000,
  /** How long in-flight unary calls get to finish on shutdown before connections are closed. */
  shutdownGraceMs: 5000,
  /** How often, while shutting down, HTTP/1.1 connections that went idle are closed. */
  shutdownIdleSweepMs: 50,
  /** How often --discovery-srv's records are read again. */
  srvRefreshMs: 10_000,
} as const;

export interface RunningProxy {
  app: FastifyInstance;
  upstream: Upstream;
  /** The address actually listened on, host:port. */
  address: string;
  close(): Promise<void>;
}

/** Composition root: builds upstream, services and server from the config, then listens. */
export async function startProxy(config: ProxyConfig): Promise<RunningProxy> {
  let boundAddress = `${config.listen.host}:${config.listen.port}`;
  let log: FastifyInstance["log"] | undefined;

  // --discovery-srv: the endpoints come from DNS, when it names any (else --endpoints).
  const discovered = config.discovery ? await discoverEndpoints(config.discovery, config.upstreamTls) : undefined;
  const etcd = new EtcdUpstream({
    endpoints: discovered?.endpoints.length ? discovered.endpoints : config.endpoints,
    maxSendBytes: config.maxSendBytes,
    maxRecvBytes: config.maxRecvBytes,
    keepaliveTimeMs: config.dialKeepaliveTimeMs,
    keepaliveTimeoutMs: config.dialKeepaliveTimeoutMs,
    keepaliveWithoutStream: config.permitWithoutStream,
    tls: config.upstreamTls,
    retryWindowMs: DEFAULTS.retryWindowMs,
    backoffMinMs: DEFAULTS.backoffMinMs,
    backoffMaxMs: DEFAULTS.backoffMaxMs,
    serializableOrdering: config.serializableOrdering,
    onEndpointDown: (url, err) => log?.warn({ endpoint: url, err: err.rawMessage }, "etcd endpoint failed; switching"),
    onEndpointUp: (url) => log?.info({ endpoint: url }, "etcd endpoint is back"),
  });
  // Everything above the upstream sees the namespace's keys only.
  const upstream: Upstream = config.namespace
    ? new NamespacedUpstream(etcd, new KeyPrefix(Buffer.from(config.namespace)))
    : etcd;

  // The proxy's own etcd user, for its own calls; client calls carry the client's.
  const identity = config.identity
    ? new PasswordIdentity(upstream, config.identity.name, config.identity.password)
    : ANONYMOUS;
  // The etcd in use, for the few answers etcd 3.4 and 3.5 word differently, and its watch's progress order.
  const etcdVersion = new EtcdVersion(() =>
    fetchFromEtcd(upstream.endpoints(), "/version", config.upstreamTls, DEFAULTS.etcdHttpTimeoutMs),
  );
  etcdVersion.knownLine(); // asks etcd now, so the first clients already get their etcd's answers
  const metrics = createMetrics();
  const keepAlives = new KeepAliveCoalescer(upstream, metrics.lease);
  const watches = new WatchHub(
    watchUpstream(upstream),
    watchJoinCheck(upstream),
    {
      bufferBytes: config.watchBufferBytes,
      batchBytes: DEFAULTS.watchBatchBytes,
      fragmentBytes: config.maxSendBytes + DEFAULTS.watchFragmentOverheadBytes,
      history: { ...DEFAULTS.watchHistory, replayBatchBytes: DEFAULTS.watchBatchBytes },
      reconnectMinMs: DEFAULTS.backoffMinMs,
      reconnectMaxMs: DEFAULTS.backoffMaxMs,
      progressRetryMs: DEFAULTS.watchProgressRetryMs,
      progressOrdered: () => etcdVersion.ordersProgress(),
      onReconnect: (err) => log?.warn({ err: String(err) }, "upstream watch stream lost; resuming on another endpoint"),
    },
    metrics.watch,
  );
  // Retry loops repeat their problems: each is a warning once, then debug lines.
  const warned = new Set<string>();
  const problem = (message: string, err?: unknown) => {
    const detail = err === undefined ? {} : { err: String(err) };
    if (warned.has(message)) log?.debug(detail, message);
    else log?.warn(detail, message);
    warned.add(message);
  };
  const cache =
    config.cache.maxBytes > 0
      ? new KvCache(
          {
            ...config.cache,
            identity,
            watchRetryMs: DEFAULTS.cacheWatchRetryMs,
            revisionFloor: config.serializableOrdering ? () => etcd.revisionFloor() : undefined,
            onWatchProblem: (reason) => problem(reason),
          },
          metrics.cache,
          (requests, ctx) => watches.serve(requests, ctx),
        )
      : undefined;
  const advertise = () => config.advertiseClientUrl ?? boundAddress;
  const { prefix: resolverPrefix, ttlSeconds } = config.resolver;
  const registration = resolverPrefix
    ? new Registration(upstream, keepAlives, {
        prefix: resolverPrefix,
        ttlSeconds,
        advertise,
        name: hostname(),
        identity,
        onProblem: problem,
      })
    : undefined;
  // etcd's proxy tracks the others only when it also has an address to give.
  const directory =
    resolverPrefix && advertise() !== ""
      ? new ProxyDirectory(upstream, watches, resolverPrefix, identity, problem)
      : undefined;
  // --experimental-leasing-prefix: records live inside the namespace, as with etcd's proxy.
  const leasing = config.leasingPrefix
    ? new LeasingKv(
        upstream,
        keepAlives,
        {
          prefix: Buffer.from(config.leasingPrefix),
          identity,
          onProblem: problem,
        },
        metrics.leasing,
      )
    : undefined;
  const services = etcdServices(upstream, {
    namespace: config.namespace,
    cache,
    leasing,
    keepAlives,
    watches,
    metrics,
    cluster: {
      get advertiseClientUrl() {
        return config.advertiseClientUrl ?? boundAddress;
      },
      scheme: config.tls ? "https" : "http",
      registered: directory ? () => directory.list() : undefined,
    },
  });

  // What every surface serves: the services, their payloads logged when asked.
  const served = config.payloadLogging
    ? withPayloadLogging(services, (fields, message) => log?.info(fields, message))
    : services;
  const rpcs = rpcTable(served);
  const observe = observeCalls(metrics, config.logLevel === "debug" ? () => log : () => undefined, upstream);
  const lane = config.nativeLane
    ? createNativeLane({
        rpcs,
        etcdLine: () => etcdVersion.knownLine(),
        readMaxBytes: DEFAULTS.clientReadMaxBytes,
        onInternalError: (err, path) => log?.error({ err, path }, "native lane handler failed"),
        observe,
      })
    : undefined;
  const sessions = new Set<ClosableSession>();
  const shuttingDown = new AbortController();
  // Every open Connect call listens to it; hundreds at once are normal.
  setMaxListeners(0, shuttingDown.signal);
  observeEndpoints(metrics, () => upstream.endpoints());
  if (leasing) observeLeasing(metrics, () => leasing.owned);
  const httpDeps: HttpEndpointDeps = {
    clusterHealth: () => checkClusterHealth(upstream, DEFAULTS.healthTimeoutMs, identity),
    proxyHealth: () =>
      checkProxyHealth(
        `${config.tls ? "https" : "http"}://${boundAddress}`,
        identity,
        DEFAULTS.healthTimeoutMs,
        DEFAULTS.proxyHealthWatchTimeoutMs,
      ),
    metrics: metrics.registry,
    etcdMetrics: () => fetchFromEtcd(upstream.endpoints(), "/metrics", config.upstreamTls, DEFAULTS.etcdHttpTimeoutMs),
    grpcServices: new Set(services.map((s) => s.service.typeName)),
    pprof: config.pprof,
  };
  const publicPaths = dashboardPaths();
  const admission = new Admission({
    hosts:
      config.hostWhitelist ??
      defaultHosts({
        listenHost: config.listen.host,
        advertiseClientUrl: config.advertiseClientUrl,
        machineName: hostname(),
        certificate: config.tls?.cert,
      }),
    allowedOrigins: config.corsAllowedOrigins,
    isPublicPath: (path) => publicPaths.has(path),
  });
  const app = await createApp(served, httpDeps, {
    admission,
    corsAllowedOrigins: config.corsAllowedOrigins,
    keepalive: config.serverKeepalive,
    tls: config.tls,
    maxConcurrentStreams: config.maxConcurrentStreams,
    readMaxBytes: DEFAULTS.clientReadMaxBytes,
    etcdVersion,
    rpcs,
    logger: { level: config.logLevel },
    onSessionError: (err) => log?.debug({ err: err.message }, "HTTP/2 session error"),
    nativeLane: lane,
    sessions,
    shutdownSignal: shuttingDown.signal,
    observe,
  });
  log = app.log;
  // Every socket the listener accepts, so a shutdown can close what is left (both server kinds).
  const sockets = new Set<Socket>();
  app.server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  const metricsApp = config.metricsAddr
    ? await startMetricsListener(config.metricsAddr, config.tls, httpDeps, admission)
    : undefined;

  await app.listen({ host: config.listen.host, port: config.listen.port });
  const addr = app.server.address() as AddressInfo;
  boundAddress = `${addr.family === "IPv6" ? `[${addr.address}]` : addr.address}:${addr.port}`;
  app.log.info(
    { listen: boundAddress, endpoints: config.endpoints, tls: config.tls !== undefined },
    "started gRPC proxy",
  );
  registration?.start();
  directory?.start();
  if (config.serializableOrdering) {
    // As etcd's proxy does: a linearizable read sets the floor at the cluster's revision now.
    void identity
      .context(DEFAULTS.healthTimeoutMs)
      .then((ctx) => upstream.unary(KV.method.range, { key: Buffer.from("_"), keysOnly: true }, ctx))
      .catch((err: unknown) =>
        problem("could not read the cluster's revision for --experimental-serializable-ordering", err),
      );
  }
  const stopSyncs: Array<() => void> = [];
  if (discovered) log?.info({ endpoints: discovered.endpoints }, "discovered cluster from SRV");
  if (discovered?.rejected.length)
    log?.warn({ rejected: discovered.rejected }, "discovered SRV endpoints that failed validation are not used");
  if (config.endpointsAutoSyncMs > 0) {
    stopSyncs.push(
      syncEndpointsEvery(etcd, config.endpointsAutoSyncMs, memberEndpoints(etcd, identity), {
        changed: (change) => log?.info(change, "synced the etcd endpoints from the cluster's members"),
        failed: (err) => problem("could not sync the etcd endpoints from the cluster's members; retrying", err),
      }),
    );
  } else if (config.discovery) {
    // Unlike etcd's proxy, which reads the records once, follow them.
    const discovery = config.discovery;
    stopSyncs.push(
      syncEndpointsEvery(
        etcd,
        DEFAULTS.srvRefreshMs,
        async () => (await discoverEndpoints(discovery, config.upstreamTls)).endpoints,
        {
          changed: (change) => log?.info(change, "the SRV records changed; endpoints updated"),
          failed: (err) => problem("could not read the SRV records again; keeping the endpoints", err),
        },
      ),
    );
  }
  return {
    app,
    upstream,
    address: boundAddress,
    close: () => shutdown(),
  };

  /**
   * Graceful shutdown, bounded in time: streams end at once with
   * UNAVAILABLE so clients reconnect elsewhere; HTTP/2 sessions get a GOAWAY
   * so in-flight unary calls finish and new ones go elsewhere; the listener
   * stops accepting. Whatever is still open after the grace period is closed.
   */
  async function shutdown(): Promise<void> {
    // The record goes first, so clients stop being sent here.
    for (const stop of stopSyncs) stop();
    directory?.stop();
    await registration?.stop();
    lane?.shutdown(SHUTTING_DOWN);
    shuttingDown.abort(SHUTTING_DOWN);
    await leasing?.close(); // before the keep-alives: its revoke frees the keys it owns for other writers
    keepAlives.close();
    watches.close();
    cache?.close();
    for (const session of sessions) session.close();
    const force = setTimeout(() => {
      log?.warn({ sessions: sessions.size }, "closing connections still open after the grace period");
      for (const session of sessions) session.destroy();
      for (const socket of sockets) socket.destroy();
    }, DEFAULTS.shutdownGraceMs);
    // An HTTP/1.1 connection whose stream just ended goes idle after the listener closed its idle
    // ones; closing them as they go idle lets the process exit now, not after the grace period.
    const server = app.server as Partial<Pick<HttpServer, "closeIdleConnections">>;
    const idleSweep = setInterval(() => server.closeIdleConnections?.(), DEFAULTS.shutdownIdleSweepMs);
    try {
      await Promise.all([app.close(), metricsApp?.close()]);
    } finally {
      clearTimeout(force);
      clearInterval(idleSweep);
      upstream.close();
    }
  }
}

/**
 * Every call feeds the gRPC server metrics; at debug level each also gets one
 * log line: method, status code, duration and the upstream endpoint in use.
 * Only those: metadata (tokens) and payloads never reach the logs.
 */
function observeCalls(
  metrics: ReturnType<typeof createMetrics>,
  debugLog: () => FastifyInstance["log"] | undefined,
  upstream: Upstream,
): RpcObserver {
  return (method) => {
    const record = recordRpc(metrics.grpc, method);
    const log = debugLog();
    if (!log) return record;
    const started = performance.now();
    let ended = false;
    return {
      received: () => record.received(),
      sent: (count) => record.sent(count),
      end(code) {
        if (ended) return; // a call may be ended by its answer and again by its stream closing
        ended = true;
        record.end(code);
        log.debug(
          {
            method: `/${method.parent.typeName}/${method.name}`,
            code: code === 0 ? "OK" : Code[code],
            ms: Math.round((performance.now() - started) * 10) / 10,
            upstream: upstream.endpoints().find((e) => e.current)?.url,
          },
          "rpc",
        );
      },
    };
  };
}

const SHUTTING_DOWN = new ConnectError("etcd-connect-proxy is shutting down", Code.Unavailable);

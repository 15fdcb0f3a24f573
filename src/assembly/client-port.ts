import { Code, ConnectError } from "@connectrpc/connect";
import type { FastifyInstance } from "fastify";
import { setMaxListeners } from "node:events";
import type { Server as HttpServer } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { hostname } from "node:os";
import type { ProxyConfig } from "../config/config.js";
import { checkClusterHealth } from "../health/cluster-health.js";
import { checkProxyHealth } from "../health/proxy-health.js";
import type { Log } from "../log.js";
import { observeEndpoints, recordRpc, type Metrics, type RpcObserver } from "../metrics.js";
import { createApp, startMetricsListener } from "../server/connect/fastify-app.js";
import { dashboardPaths } from "../server/dashboard/dashboard.js";
import { Admission, defaultHosts } from "../server/edge/admission.js";
import type { ClosableSession } from "../server/edge/listener.js";
import { createNativeLane } from "../server/native/native-lane.js";
import type { HttpEndpointDeps } from "../server/operator/http-endpoints.js";
import type { ServiceBinding } from "../services/handlers.js";
import type { Rpc } from "../services/rpc-table.js";
import type { EtcdVersion } from "../upstream/etcd-http.js";
import type { ProxyIdentity } from "../upstream/proxy-identity.js";
import type { Upstream } from "../upstream/upstream.js";
import { DEFAULTS } from "./defaults.js";
import type { Feature } from "./lifecycle.js";

/** What the client port serves: every etcd service, on the lanes, with the HTTP paths beside them. */
export interface Served {
  services: ServiceBinding[];
  rpcs: ReadonlyMap<string, Rpc>;
  upstream: Upstream;
  identity: ProxyIdentity;
  version: EtcdVersion;
  metrics: Metrics;
  /** etcd's own HTTP paths (its /metrics), from the endpoint in use. */
  etcdHttp: (path: string) => Promise<string>;
}

export interface ClientPort extends Feature {
  /** host:port listened on; before start, the one asked for. */
  address(): string;
  /** The HTTP paths and the admission rules, which --metrics-addr serves too. */
  httpEndpoints: HttpEndpointDeps;
  admission: Admission;
}

const SHUTTING_DOWN = new ConnectError("etcd-connect-proxy is shutting down", Code.Unavailable);

/**
 * The client port: the edge, the native lane and the Connect lane with the
 * gateway, the dashboard and the operator's paths. Its stop is the graceful
 * shutdown, bounded in time: streams end at once with UNAVAILABLE so
 * clients reconnect elsewhere; HTTP/2 sessions get a GOAWAY so in-flight
 * unary calls finish and new ones go elsewhere; the listener stops
 * accepting. Whatever is still open after the grace period is closed.
 */
export async function clientPort(config: ProxyConfig["clientPort"], served: Served, log: Log): Promise<ClientPort> {
  const { upstream, metrics } = served;
  let boundAddress = `${config.listen.host}:${config.listen.port}`;
  const scheme = config.tls ? "https" : "http";
  const observe = observeCalls(metrics, log.level === "debug" ? log : undefined, upstream);
  const lane = config.nativeLane
    ? createNativeLane({
        rpcs: served.rpcs,
        etcdLine: () => served.version.knownLine(),
        readMaxBytes: DEFAULTS.clientReadMaxBytes,
        onInternalError: (err, path) => log.error({ err, path }, "native lane handler failed"),
        observe,
      })
    : undefined;
  const sessions = new Set<ClosableSession>();
  const shuttingDown = new AbortController();
  // Every open Connect call listens to it; hundreds at once are normal.
  setMaxListeners(0, shuttingDown.signal);
  observeEndpoints(metrics, () => upstream.endpoints());
  const httpEndpoints = operatorPaths(config, served, () => `${scheme}://${boundAddress}`);
  const admission = admissionFor(config);
  const app = await createApp(served.services, httpEndpoints, {
    admission,
    corsAllowedOrigins: config.corsAllowedOrigins,
    keepalive: config.keepalive,
    tls: config.tls,
    maxConcurrentStreams: config.maxConcurrentStreams,
    readMaxBytes: DEFAULTS.clientReadMaxBytes,
    etcdVersion: served.version,
    rpcs: served.rpcs,
    log,
    onSessionError: (err) => log.debug({ err: err.message }, "HTTP/2 session error"),
    nativeLane: lane,
    sessions,
    shutdownSignal: shuttingDown.signal,
    observe,
  });
  // Every socket the listener accepts, so a shutdown can close what is left (both server kinds).
  const sockets = new Set<Socket>();
  app.server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });

  return {
    address: () => boundAddress,
    httpEndpoints,
    admission,
    async start() {
      await app.listen({ host: config.listen.host, port: config.listen.port });
      const addr = app.server.address() as AddressInfo;
      boundAddress = `${addr.family === "IPv6" ? `[${addr.address}]` : addr.address}:${addr.port}`;
      log.info(
        { listen: boundAddress, endpoints: upstream.endpoints().map((e) => e.url), tls: config.tls !== undefined },
        "started gRPC proxy",
      );
    },
    async stop() {
      lane?.shutdown(SHUTTING_DOWN);
      shuttingDown.abort(SHUTTING_DOWN);
      for (const session of sessions) session.close();
      const force = setTimeout(() => {
        log.warn({ sessions: sessions.size }, "closing connections still open after the grace period");
        for (const session of sessions) session.destroy();
        for (const socket of sockets) socket.destroy();
      }, DEFAULTS.shutdownGraceMs);
      // An HTTP/1.1 connection whose stream just ended goes idle after the listener closed its idle
      // ones; closing them as they go idle lets the process exit now, not after the grace period.
      const server = app.server as Partial<Pick<HttpServer, "closeIdleConnections">>;
      const idleSweep = setInterval(() => server.closeIdleConnections?.(), DEFAULTS.shutdownIdleSweepMs);
      try {
        await app.close();
      } finally {
        clearTimeout(force);
        clearInterval(idleSweep);
      }
    },
  };
}

/** The operator's HTTP paths: health, metrics, etcd's metrics, pprof. */
function operatorPaths(config: ProxyConfig["clientPort"], served: Served, ownUrl: () => string): HttpEndpointDeps {
  const { upstream, identity, metrics } = served;
  return {
    clusterHealth: () => checkClusterHealth(upstream, DEFAULTS.healthTimeoutMs, identity),
    proxyHealth: () =>
      checkProxyHealth(ownUrl(), identity, DEFAULTS.healthTimeoutMs, DEFAULTS.proxyHealthWatchTimeoutMs),
    metrics: metrics.registry,
    etcdMetrics: () => served.etcdHttp("/metrics"),
    grpcServices: new Set(served.services.map((s) => s.service.typeName)),
    pprof: config.pprof,
  };
}

/** Which hosts and origins may call: the browser edge's rules (see Admission). */
function admissionFor(config: ProxyConfig["clientPort"]): Admission {
  const publicPaths = dashboardPaths();
  return new Admission({
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
}

/**
 * Every call feeds the gRPC server metrics; at debug level each also gets one
 * log line: method, status code, duration and the upstream endpoint in use.
 * Only those: metadata (tokens) and payloads never reach the logs.
 */
function observeCalls(metrics: Metrics, debugLog: Log | undefined, upstream: Upstream): RpcObserver {
  return (method) => {
    const record = recordRpc(metrics.grpc, method);
    if (!debugLog) return record;
    const started = performance.now();
    let ended = false;
    return {
      received: () => record.received(),
      sent: (count) => record.sent(count),
      end(code) {
        if (ended) return; // a call may be ended by its answer and again by its stream closing
        ended = true;
        record.end(code);
        debugLog.debug(
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

/** --metrics-addr: the same HTTP paths on a listener of their own, and no gRPC. */
export function metricsPort(
  config: Pick<ProxyConfig["clientPort"], "metricsAddr" | "tls">,
  port: Pick<ClientPort, "httpEndpoints" | "admission">,
): Feature {
  let app: FastifyInstance | undefined;
  return {
    async start() {
      if (!config.metricsAddr) return;
      app = await startMetricsListener(config.metricsAddr, config.tls, port.httpEndpoints, port.admission);
    },
    stop: () => app?.close(),
  };
}

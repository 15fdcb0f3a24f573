import type { ProxyConfig } from "../config/config.js";
import type { Log } from "../log.js";
import { NamespacedUpstream } from "../namespace/namespaced-upstream.js";
import { OrderedUpstream } from "../ordering/ordered-upstream.js";
import { CoalescedUpstream } from "../coalescing/coalesced-upstream.js";
import type { Metrics } from "../metrics.js";
import { KeyPrefix } from "../namespace/prefix.js";
import { EtcdVersion, fetchFromEtcd } from "../upstream/etcd-http.js";
import { ANONYMOUS, PasswordIdentity, type ProxyIdentity } from "../upstream/proxy-identity.js";
import { discoverEndpoints } from "../upstream/srv-discovery.js";
import { EtcdUpstream } from "../upstream/etcd-upstream.js";
import type { Upstream } from "../upstream/upstream.js";
import { DEFAULTS } from "./defaults.js";
import type { Feature } from "./lifecycle.js";
import type { Problem } from "./problems.js";
import { KV } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";

export interface EtcdConnection extends Feature {
  /** The endpoints themselves (failover, endpoint sync). */
  etcd: EtcdUpstream;
  /** --experimental-serializable-ordering's decorator, when the flag is given. */
  ordered: OrderedUpstream | undefined;
  /** What everything above sees: ordered when asked, identical Ranges coalesced, and the namespace's keys only. */
  upstream: Upstream;
  /** The proxy's own etcd user, for its own calls; client calls carry the client's. */
  identity: ProxyIdentity;
  /** The etcd in use, for the few answers etcd 3.4 and 3.5 word differently, and its watch's progress order. */
  version: EtcdVersion;
  /** etcd's own HTTP paths (/version, /metrics), from the endpoint in use, with the TLS toward etcd. */
  etcdHttp: (path: string) => Promise<string>;
}

/** The way to etcd: endpoints (from DNS with --discovery-srv), failover, the namespace, the proxy's identity. */
export async function connectToEtcd(
  config: ProxyConfig["etcd"],
  namespace: string,
  metrics: Metrics,
  log: Log,
  problem: Problem,
): Promise<EtcdConnection> {
  const discovered = config.discovery ? await discoverEndpoints(config.discovery, config.tls) : undefined;
  if (discovered) log.info({ endpoints: discovered.endpoints }, "discovered cluster from SRV");
  if (discovered?.rejected.length)
    log.warn({ rejected: discovered.rejected }, "discovered SRV endpoints that failed validation are not used");
  const etcd = new EtcdUpstream({
    endpoints: discovered?.endpoints.length ? discovered.endpoints : config.endpoints,
    maxSendBytes: config.maxSendBytes,
    maxRecvBytes: config.maxRecvBytes,
    keepaliveTimeMs: config.keepalive.timeMs,
    keepaliveTimeoutMs: config.keepalive.timeoutMs,
    keepaliveWithoutStream: config.keepalive.withoutStream,
    tls: config.tls,
    retryWindowMs: DEFAULTS.retryWindowMs,
    backoffMinMs: DEFAULTS.backoffMinMs,
    backoffMaxMs: DEFAULTS.backoffMaxMs,
    onEndpointDown: (url, err) => log.warn({ endpoint: url, err: err.rawMessage }, "etcd endpoint failed; switching"),
    onEndpointUp: (url) => log.info({ endpoint: url }, "etcd endpoint is back"),
  });
  // The decorators, innermost first: ordering sees etcd's keys, the namespace the client's; a
  // coalesced Range is ordered once for all who share it.
  const ordered = config.serializableOrdering ? new OrderedUpstream(etcd) : undefined;
  const toEtcd: Upstream = config.coalesceRanges
    ? new CoalescedUpstream(ordered ?? etcd, (riders) => metrics.coalescedRanges.inc(riders))
    : (ordered ?? etcd);
  const upstream: Upstream = namespace ? new NamespacedUpstream(toEtcd, new KeyPrefix(Buffer.from(namespace))) : toEtcd;
  const identity = config.identity
    ? new PasswordIdentity(upstream, config.identity.name, config.identity.password)
    : ANONYMOUS;
  const etcdHttp = (path: string) => fetchFromEtcd(upstream.endpoints(), path, config.tls, DEFAULTS.etcdHttpTimeoutMs);
  const version = new EtcdVersion(() => etcdHttp("/version"));
  version.knownLine(); // asks etcd now, so the first clients already get their etcd's answers
  return {
    etcd,
    ordered,
    upstream,
    identity,
    version,
    etcdHttp,
    start() {
      // As etcd's proxy does with --experimental-serializable-ordering: a linearizable read sets the floor now.
      if (!ordered) return;
      void identity
        .context(DEFAULTS.healthTimeoutMs)
        .then((ctx) => upstream.unary(KV.method.range, { key: Buffer.from("_"), keysOnly: true }, ctx))
        .catch((err: unknown) =>
          problem("could not read the cluster's revision for --experimental-serializable-ordering", err),
        );
    },
    stop: () => upstream.close(),
  };
}

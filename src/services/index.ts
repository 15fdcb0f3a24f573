import { Auth, Cluster, KV, Lease, Maintenance, Watch } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { Election } from "../gen/etcd/api/v3electionpb/v3election_pb.js";
import { Lock } from "../gen/etcd/api/v3lockpb/v3lock_pb.js";
import type { Upstream } from "../upstream/upstream.js";
import { clusterService, type ClusterOptions } from "./cluster.js";
import { forwardAll } from "./forward.js";
import { leaseService } from "./lease.js";
import { maintenanceService } from "./maintenance.js";
import type { KeepAliveCoalescer } from "../keepalive/keepalive-coalescer.js";
import type { Metrics } from "../metrics.js";
import { bind, type ServiceBinding } from "./handlers.js";
import type { WatchHub } from "../watch/watch-hub.js";
import { watchService } from "./watch.js";
import { kvService } from "./kv.js";
import { authService } from "./auth.js";
import { LeaseService, ProxyService, WatchService } from "../gen/etcdproxy/v1/proxy_pb.js";
import { browserLeaseService, browserWatchService, proxyStatusService } from "./proxy-services.js";
import type { KvCache } from "../cache/kv-cache.js";
import type { LeasingKv } from "../leasing/leasing-kv.js";

export interface ServiceOptions {
  /** --namespace, for the status page. */
  namespace: string;
  /** The range cache; undefined when turned off. */
  cache: KvCache | undefined;
  /** --experimental-leasing-prefix's protocol; undefined without the flag. */
  leasing?: LeasingKv;
  cluster: ClusterOptions;
  keepAlives: KeepAliveCoalescer;
  watches: WatchHub;
  metrics: Metrics;
}

/** Every etcd service the proxy serves, in the order etcd lists them, then the proxy's own. */
export function etcdServices(upstream: Upstream, options: ServiceOptions): ServiceBinding[] {
  return [
    bind(KV, kvService(upstream, options.cache, options.leasing)),
    bind(Watch, watchService(options.watches)),
    bind(Lease, leaseService(upstream, options.keepAlives, options.metrics.lease, options.cache)),
    bind(Cluster, clusterService(upstream, options.cluster)),
    bind(Maintenance, maintenanceService(upstream)),
    bind(Auth, authService(upstream, options.cache)),
    bind(Election, forwardAll(Election, upstream)),
    bind(Lock, forwardAll(Lock, upstream)),
    // Ours: for browsers and the dashboard.
    bind(WatchService, browserWatchService(options.watches)),
    bind(LeaseService, browserLeaseService(options.keepAlives)),
    bind(
      ProxyService,
      proxyStatusService({
        upstream,
        watches: options.watches,
        cache: options.cache,
        metrics: options.metrics,
        namespace: options.namespace,
      }),
    ),
  ];
}

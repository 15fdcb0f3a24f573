import { Auth, Cluster, KV, Lease, Maintenance, Watch } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { Election } from "../gen/etcd/api/v3electionpb/v3election_pb.js";
import { Lock } from "../gen/etcd/api/v3lockpb/v3lock_pb.js";
import type { Upstream } from "../upstream/upstream.js";
import { clusterService, type ClusterOptions } from "./cluster.js";
import { forwardAll } from "./forward.js";
import { maintenanceService } from "./maintenance.js";
import { bind, type ServiceBinding } from "./handlers.js";

export interface ServiceOptions {
  cluster: ClusterOptions;
}

/** Every etcd service the proxy serves, in the order etcd lists them. */
export function etcdServices(upstream: Upstream, options: ServiceOptions): ServiceBinding[] {
  return [
    bind(KV, forwardAll(KV, upstream)),
    bind(Watch, forwardAll(Watch, upstream)),
    bind(Lease, forwardAll(Lease, upstream)),
    bind(Cluster, clusterService(upstream, options.cluster)),
    bind(Maintenance, maintenanceService(upstream)),
    bind(Auth, forwardAll(Auth, upstream)),
    bind(Election, forwardAll(Election, upstream)),
    bind(Lock, forwardAll(Lock, upstream)),
  ];
}

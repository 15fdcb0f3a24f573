import { Maintenance } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import type { Upstream } from "../upstream/upstream.js";
import { forwardAll } from "./forward.js";
import type { ServiceHandlers } from "./handlers.js";

/**
 * Maintenance RPCs go to the current endpoint, except MoveLeader: etcd only
 * accepts it on the leader, so it is routed there. etcd's Go proxy sends it
 * wherever its balancer points, where it usually fails with "not leader".
 */
export function maintenanceService(upstream: Upstream): ServiceHandlers<typeof Maintenance> {
  return {
    ...forwardAll(Maintenance, upstream),
    moveLeader: (request, ctx) => upstream.unaryOnLeader(Maintenance.method.moveLeader, request, ctx),
  };
}

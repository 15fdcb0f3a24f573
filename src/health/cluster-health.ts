import { ConnectError } from "@connectrpc/connect";
import { internalContext } from "../call-context.js";
import { KV, Maintenance } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { isAuthRejection } from "../upstream/errors.js";
import type { ProxyIdentity } from "../upstream/proxy-identity.js";
import type { Upstream } from "../upstream/upstream.js";

export interface HealthReport {
  health: boolean;
  reason: string;
}

/**
 * The cluster's health as this proxy sees it, with etcd's semantics: a
 * linearizable read of key "a" must succeed, which needs a leader and quorum.
 *
 * The read carries the proxy's own identity (--user) when it has one. etcd's
 * Go proxy reports an auth-enabled cluster as unhealthy because its
 * anonymous read is refused. A refusal proves etcd answered, so here it is
 * followed by a Status call (which needs no credentials) to check for a leader.
 */
export async function checkClusterHealth(
  upstream: Upstream,
  timeoutMs: number,
  identity: ProxyIdentity,
): Promise<HealthReport> {
  try {
    await upstream.unary(KV.method.range, { key: new TextEncoder().encode("a") }, await identity.context(timeoutMs));
    return { health: true, reason: "" };
  } catch (e) {
    identity.refused(e);
    const err = ConnectError.from(e);
    if (!isAuthRejection(err)) return { health: false, reason: `GET ERROR:${err.rawMessage}` };
  }
  try {
    const status = await upstream.unary(Maintenance.method.status, {}, internalContext(timeoutMs));
    if (status.leader === 0n) return { health: false, reason: "STATUS ERROR:no leader" };
    return { health: true, reason: "" };
  } catch (e) {
    return { health: false, reason: `STATUS ERROR:${ConnectError.from(e).rawMessage}` };
  }
}

import { ConnectError } from "@connectrpc/connect";
import { KV } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
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
 * anonymous read is refused. But etcd (3.4 and 3.5) completes a
 * linearizable read's ReadIndex, which needs the leader and a quorum,
 * before it checks the caller's rights: a refusal proves the cluster
 * healthy. (Status can no longer tell without credentials: etcd 3.5.28 and
 * later refuse it to anonymous callers.)
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
    if (isAuthRejection(err)) return { health: true, reason: "" };
    return { health: false, reason: `GET ERROR:${err.rawMessage}` };
  }
}

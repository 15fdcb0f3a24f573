import { Code, ConnectError } from "@connectrpc/connect";
import { KV, Watch } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import type { Upstream } from "../upstream/upstream.js";
import type { JoinCheck } from "../watch/watch-session.js";
import type { WatchHub } from "../watch/watch-hub.js";
import type { WatchUpstream } from "../watch/watch-channel.js";
import type { ServiceHandlers } from "./handlers.js";

/** Watch streams are served by the coalescing hub (watch/). */
export function watchService(hub: WatchHub): ServiceHandlers<typeof Watch> {
  return { watch: (requests, ctx) => hub.serve(requests, ctx) };
}

/** The upstream Watch RPC, as the hub's channels open it. */
export function watchUpstream(upstream: Upstream): WatchUpstream {
  return (requests, ctx) => upstream.bidiStream(Watch.method.watch, requests, ctx);
}

/**
 * etcd's own rules for a watcher that joins a shared watch, asked of etcd
 * with one serializable count-only Range in the caller's name:
 * - a caller with a token must be allowed to read the range (so the Range
 *   covers it; etcd checks rights before it reads);
 * - a start revision in the past must not be compacted (so the Range reads
 *   at that revision, and etcd answers "compacted" exactly when a watch
 *   from it would be cancelled). A future revision is fine for a watch.
 * Anonymous callers only need the revision asked, on the range's first key.
 */
export function watchJoinCheck(upstream: Upstream): JoinCheck {
  return async (key, rangeEnd, startRevision, ctx) => {
    const withRights = ctx.forwardHeaders["token"] !== undefined;
    try {
      await upstream.unary(
        KV.method.range,
        {
          key,
          rangeEnd: withRights ? rangeEnd : new Uint8Array(0),
          revision: startRevision,
          serializable: true,
          countOnly: true,
          limit: 1n,
        },
        ctx,
      );
      return { kind: "join" };
    } catch (err) {
      const e = ConnectError.from(err);
      if (e.code === Code.OutOfRange) {
        // etcd's own watch answers a compacted start exactly (compact_revision included).
        return e.rawMessage.includes("compacted") ? { kind: "own" } : { kind: "join" };
      }
      // Anonymous: etcd decides on a watch of the caller's own.
      if (!withRights) return { kind: "own" };
      // etcd words a refused watch as a Go gRPC status: "rpc error: code = PermissionDenied desc = ...".
      return { kind: "refused", reason: `rpc error: code = ${Code[e.code]} desc = ${e.rawMessage}` };
    }
  };
}

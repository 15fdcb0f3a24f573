import { Code, ConnectError } from "@connectrpc/connect";
import { KV, Watch } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import type { Upstream } from "../upstream/upstream.js";
import type { PermissionCheck } from "../watch/watch-session.js";
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
 * etcd's own watch permission rule, asked of etcd: may the caller read the
 * range? A serializable count-only Range answers it without touching data.
 */
export function watchPermission(upstream: Upstream): PermissionCheck {
  return async (key, rangeEnd, ctx) => {
    try {
      await upstream.unary(KV.method.range, { key, rangeEnd, serializable: true, countOnly: true, limit: 1n }, ctx);
      return undefined;
    } catch (err) {
      // etcd words a refused watch as a Go gRPC status: "rpc error: code = PermissionDenied desc = ...".
      const e = ConnectError.from(err);
      return `rpc error: code = ${Code[e.code]} desc = ${e.rawMessage}`;
    }
  };
}

import type { DescMethodUnary } from "@bufbuild/protobuf";
import { Auth } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import type { KvCache } from "../cache/kv-cache.js";
import { readsOnly } from "../grpc/method-effects.js";
import type { Upstream } from "../upstream/upstream.js";
import { forwardAll, forwardBytes } from "./forward.js";
import type { ServiceHandlers } from "./handlers.js";
import { cacheWrite } from "./kv.js";

/**
 * Auth: forwarded to etcd. Any change to users, roles, permissions or the
 * auth switch empties the range cache before the caller hears back, so no
 * one is served what etcd would now refuse them.
 */
export function authService(upstream: Upstream, cache: KvCache | undefined): ServiceHandlers<typeof Auth> {
  const handlers: Record<string, unknown> = { ...forwardAll(Auth, upstream) };
  if (cache) {
    for (const method of Auth.methods) {
      // Every Auth RPC but the reads and Authenticate may change who may read what.
      if (method.methodKind === "unary" && !readsOnly(method) && method !== Auth.method.authenticate) {
        handlers[method.localName] = cacheWrite(
          method as DescMethodUnary,
          forwardBytes(method as DescMethodUnary, upstream),
          cache,
        );
      }
    }
  }
  return handlers as ServiceHandlers<typeof Auth>;
}

import { fromBinary, toBinary, type DescMethodUnary, type MessageShape } from "@bufbuild/protobuf";
import { deleteTouches, putTouches, txnTouches, type KvCache } from "../cache/kv-cache.js";
import type { KeyInterval } from "../cache/key-range.js";
import { KV } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { decodeRequest } from "../grpc/decode.js";
import { frame } from "../grpc/wire.js";
import { isSafeToRepeat } from "../upstream/retry-policy.js";
import type { Upstream } from "../upstream/upstream.js";
import { forwardAll } from "./forward.js";
import { unaryOverBytes, withBytePath, type ServiceHandlers, type UnaryHandler } from "./handlers.js";

/**
 * KV: forwarded to etcd, through the range cache when it is on. Every
 * handler works on bytes in the native lane, so a cache hit decodes nothing
 * but the request.
 */
export function kvService(upstream: Upstream, cache: KvCache | undefined): ServiceHandlers<typeof KV> {
  const forward = forwardAll(KV, upstream);
  if (!cache) return forward;
  const range = KV.method.range;
  return {
    ...forward,
    // The typed path (Connect lane) encodes the request only on a miss.
    range: withBytePath(
      async (request, ctx) => {
        const fetch = () => upstream.unaryBytes(range, frame(toBinary(range.input, request)), ctx, () => true);
        return fromBinary(range.output, await cache.range(request, ctx, fetch));
      },
      (payload, requestFrame, ctx) =>
        cache.rangeBytes(payload, ctx, () => upstream.unaryBytes(range, requestFrame, ctx, () => true)),
    ),
    put: cacheWrite(KV.method.put, upstream, cache, putTouches),
    deleteRange: cacheWrite(KV.method.deleteRange, upstream, cache, deleteTouches),
    txn: cacheWrite(KV.method.txn, upstream, cache, txnTouches),
  };
}

/**
 * A forwarded write that empties the cache of what it touches (or, without
 * `touches`, of everything: auth changes, lease revocations) before the
 * caller hears back.
 */
export function cacheWrite<M extends DescMethodUnary>(
  method: M,
  upstream: Upstream,
  cache: KvCache,
  touches?: (request: MessageShape<M["input"]>) => KeyInterval[],
): UnaryHandler<M> {
  return unaryOverBytes(method, (payload, requestFrame, ctx) => {
    const request = touches ? decodeRequest(method, payload) : undefined;
    return cache.write(touches ? touches(request!) : "everything", () =>
      upstream.unaryBytes(method, requestFrame, ctx, () => isSafeToRepeat(method, request)),
    );
  });
}

import { fromBinary, toBinary, type DescMethodUnary, type MessageShape } from "@bufbuild/protobuf";
import type { CallContext } from "../call-context.js";
import { deleteTouches, putTouches, txnTouches, type KvCache } from "../cache/kv-cache.js";
import type { KeyInterval } from "../cache/key-range.js";
import { KV } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { decodeRequest } from "../grpc/decode.js";
import { frame } from "../grpc/wire.js";
import { isSafeToRepeat } from "../upstream/retry-policy.js";
import type { Upstream } from "../upstream/upstream.js";
import { forwardAll } from "./forward.js";
import { withBytePath, type ServiceHandlers } from "./handlers.js";

/**
 * KV: forwarded to etcd, through the range cache when it is on. Each
 * handler also has a byte-level path for the native lane, so a cache hit
 * never decodes more than the request.
 */
export function kvService(upstream: Upstream, cache: KvCache | undefined): ServiceHandlers<typeof KV> {
  const forward = forwardAll(KV, upstream);
  if (!cache) return forward;
  const range = KV.method.range;
  const fetch = (requestFrame: Buffer, ctx: CallContext) => () =>
    upstream.unaryBytes(range, requestFrame, ctx, () => true);
  return {
    ...forward,
    range: withBytePath(
      async (request, ctx) =>
        fromBinary(range.output, await cache.range(request, ctx, fetch(frame(toBinary(range.input, request)), ctx))),
      (payload, requestFrame, ctx) => cache.range(decodeRequest(range, payload), ctx, fetch(requestFrame, ctx)),
    ),
    put: invalidating(KV.method.put, putTouches),
    deleteRange: invalidating(KV.method.deleteRange, deleteTouches),
    txn: invalidating(KV.method.txn, txnTouches),
  };

  /** A write whose touched keys leave the cache before the writer hears back. */
  function invalidating<M extends DescMethodUnary>(
    method: M,
    touches: (request: MessageShape<M["input"]>) => KeyInterval[],
  ) {
    const send = (request: MessageShape<M["input"]>, requestFrame: Buffer, ctx: CallContext) =>
      cache!.write(touches(request), () =>
        upstream.unaryBytes(method, requestFrame, ctx, () => isSafeToRepeat(method, request)),
      );
    return withBytePath(
      async (request: MessageShape<M["input"]>, ctx: CallContext) =>
        fromBinary(method.output, await send(request, frame(toBinary(method.input, request)), ctx)),
      (payload, requestFrame, ctx) => send(decodeRequest(method, payload), requestFrame, ctx),
    ) as never;
  }
}

/**
 * A forwarded method after which nothing cached can be trusted (auth
 * changes, lease revocations): the whole cache empties before the caller
 * hears back.
 */
export function flushingCache<M extends DescMethodUnary>(method: M, upstream: Upstream, cache: KvCache) {
  const send = (requestFrame: Buffer, ctx: CallContext) =>
    cache.write("everything", () =>
      upstream.unaryBytes(method, requestFrame, ctx, () => isSafeToRepeat(method, undefined)),
    );
  return withBytePath(
    async (request: MessageShape<M["input"]>, ctx: CallContext) =>
      fromBinary(method.output, await send(frame(toBinary(method.input, request)), ctx)) as MessageShape<M["output"]>,
    (_payload, requestFrame, ctx) => send(requestFrame, ctx),
  );
}

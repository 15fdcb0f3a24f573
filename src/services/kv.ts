import { fromBinary, toBinary, type DescMethodUnary, type MessageShape } from "@bufbuild/protobuf";
import { deleteTouches, putFrameTouches, txnTouches, type KvCache } from "../cache/kv-cache.js";
import type { KeyInterval } from "../util/key-range.js";
import { KV } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { decodeRequest } from "../grpc/decode.js";
import { frame } from "../grpc/wire.js";
import { requestMessage, type RequestFrame } from "../grpc/request-frame.js";
import type { CallContext } from "../call-context.js";
import type { LeasingKv } from "../leasing/leasing-kv.js";
import type { Upstream } from "../upstream/upstream.js";
import { wholeAnswer } from "../upstream/answer.js";
import { forwardAll, forwardBytes } from "./forward.js";
import {
  unaryOverBytes,
  withBytePath,
  type AsyncBytePath,
  type ServiceHandlers,
  type UnaryHandler,
} from "./handlers.js";

/**
 * KV: forwarded to etcd, through the range cache when it is on, and through
 * the leasing protocol when --experimental-leasing-prefix is set (as etcd's
 * proxy layers them: the cache in front, leasing behind it). Every handler
 * works on bytes in the native lane, so a cache hit decodes nothing but the
 * request.
 */
export function kvService(
  upstream: Upstream,
  cache: KvCache | undefined,
  leasing?: LeasingKv,
): ServiceHandlers<typeof KV> {
  const forward = forwardAll(KV, upstream);
  if (!cache && !leasing) return forward;
  const range = KV.method.range;
  // How each KV call reaches etcd behind the cache.
  const toEtcd = leasing ? leasingPaths(leasing) : forwardPaths(upstream);
  if (!cache) return { ...forward, ...toEtcdHandlers(toEtcd) };
  return {
    ...forward,
    // The typed path (Connect lane) encodes the request only on a miss.
    range: withBytePath(
      async (request, ctx) => {
        const fetch = () => toEtcd.range(frame(toBinary(range.input, request)), ctx);
        return fromBinary(range.output, await wholeAnswer(await cache.range(request, ctx, fetch)));
      },
      (requestFrame: RequestFrame, ctx: CallContext) =>
        cache.rangeBytes(requestMessage(requestFrame), ctx, () => toEtcd.range(requestFrame, ctx)),
    ),
    put: cacheWrite(KV.method.put, toEtcd.put, cache, putFrameTouches),
    deleteRange: cacheWrite(
      KV.method.deleteRange,
      toEtcd.deleteRange,
      cache,
      decoded(KV.method.deleteRange, deleteTouches),
    ),
    txn: cacheWrite(KV.method.txn, toEtcd.txn, cache, decoded(KV.method.txn, txnTouches)),
  };
}

/** How the KV calls that the cache stands in front of reach etcd, on bytes. */
interface KvPaths {
  range: AsyncBytePath;
  put: AsyncBytePath;
  deleteRange: AsyncBytePath;
  txn: AsyncBytePath;
}

function forwardPaths(upstream: Upstream): KvPaths {
  return {
    range: forwardBytes(KV.method.range, upstream),
    put: forwardBytes(KV.method.put, upstream),
    deleteRange: forwardBytes(KV.method.deleteRange, upstream),
    txn: forwardBytes(KV.method.txn, upstream),
  };
}

/** The leasing protocol's calls, on bytes: decoded for it, its answers encoded. */
function leasingPaths(leasing: LeasingKv): KvPaths {
  const path =
    <M extends DescMethodUnary>(
      method: M,
      call: (request: MessageShape<M["input"]>, ctx: CallContext) => Promise<MessageShape<M["output"]>>,
    ): AsyncBytePath =>
    async (requestFrame, ctx) =>
      toBinary(method.output, await call(decodeRequest(method, requestMessage(requestFrame)), ctx));
  return {
    range: path(KV.method.range, (r, ctx) => leasing.range(r, ctx)),
    put: path(KV.method.put, (r, ctx) => leasing.put(r, ctx)),
    deleteRange: path(KV.method.deleteRange, (r, ctx) => leasing.deleteRange(r, ctx)),
    txn: path(KV.method.txn, (r, ctx) => leasing.txn(r, ctx)),
  };
}

function toEtcdHandlers(paths: KvPaths): Partial<ServiceHandlers<typeof KV>> {
  return {
    range: unaryOverBytes(KV.method.range, paths.range),
    put: unaryOverBytes(KV.method.put, paths.put),
    deleteRange: unaryOverBytes(KV.method.deleteRange, paths.deleteRange),
    txn: unaryOverBytes(KV.method.txn, paths.txn),
  };
}

/**
 * A forwarded write that empties the cache of what it touches (or, without
 * `touches`, of everything: auth changes, lease revocations) before the
 * caller hears back.
 */
export function cacheWrite<M extends DescMethodUnary>(
  method: M,
  send: AsyncBytePath,
  cache: KvCache,
  touches?: (requestFrame: RequestFrame) => KeyInterval[],
): UnaryHandler<M> {
  return unaryOverBytes(method, (requestFrame, ctx) =>
    cache.write(touches ? touches(requestFrame) : "everything", () => send(requestFrame, ctx)),
  );
}

/** `touches` of the decoded request. */
function decoded<M extends DescMethodUnary>(
  method: M,
  touches: (request: MessageShape<M["input"]>) => KeyInterval[],
): (requestFrame: RequestFrame) => KeyInterval[] {
  return (requestFrame) => touches(decodeRequest(method, requestMessage(requestFrame)));
}

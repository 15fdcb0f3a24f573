import type { CallContext } from "../call-context.js";
import { Lease } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import type { KeepAliveCoalescer, KeepAliveWaiter } from "../keepalive/keepalive-coalescer.js";
import { leaseIdOfRequest } from "../keepalive/keepalive-wire.js";
import type { Metrics } from "../metrics.js";
import type { Upstream } from "../upstream/upstream.js";
import { forwardAll, forwardBytes } from "./forward.js";
import { cacheWrite } from "./kv.js";
import type { KvCache } from "../cache/kv-cache.js";
import { bidiOverBytes, type BidiCall, type FrameSink, type ServiceHandlers } from "./handlers.js";

/**
 * Lease RPCs go to etcd; LeaseKeepAlive streams are coalesced onto one
 * upstream stream (see keepalive/keepalive-coalescer.ts).
 */
export function leaseService(
  upstream: Upstream,
  coalescer: KeepAliveCoalescer,
  metrics: Metrics["lease"],
  cache: KvCache | undefined,
): ServiceHandlers<typeof Lease> {
  return {
    ...forwardAll(Lease, upstream),
    // Revoking a lease deletes its keys: a reader must not see them after.
    ...(cache
      ? { leaseRevoke: cacheWrite(Lease.method.leaseRevoke, forwardBytes(Lease.method.leaseRevoke, upstream), cache) }
      : {}),
    leaseKeepAlive: bidiOverBytes(Lease.method.leaseKeepAlive, (out, ctx) =>
      keepAliveCall(out, ctx, coalescer, metrics),
    ),
  };
}

/**
 * One client's keep-alive stream, on bytes. Each request is answered as soon
 * as its renewal completes, in whatever order renewals complete (clients
 * match answers by ID). After the client half-closes, pending answers are
 * still delivered, then the stream ends, as with etcd. An error from etcd
 * ends the stream with that error.
 */
function keepAliveCall(
  out: FrameSink,
  ctx: CallContext,
  coalescer: KeepAliveCoalescer,
  metrics: Metrics["lease"],
): BidiCall {
  let pending = 0;
  let halfClosed = false;
  let over = false;
  const settle = () => {
    if (halfClosed && pending === 0) out.end();
  };
  // One waiter serves every renewal of this stream: answers all go the same way.
  const waiter: KeepAliveWaiter = {
    answer(frame) {
      pending--;
      if (over) return;
      metrics.answers.inc();
      out.send(frame);
      settle();
    },
    fail(error) {
      pending--;
      out.end(error);
    },
  };
  metrics.clientStreams.inc();
  return {
    message(payload) {
      const id = leaseIdOfRequest(payload);
      pending++;
      coalescer.renew(id, ctx.forwardHeaders, waiter);
    },
    halfClose() {
      halfClosed = true;
      settle();
    },
    close() {
      if (over) return;
      over = true;
      metrics.clientStreams.dec();
    },
  };
}

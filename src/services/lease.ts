import type { MessageShape } from "@bufbuild/protobuf";
import type { CallContext } from "../call-context.js";
import { Lease, type LeaseKeepAliveRequestSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import type { KeepAliveCoalescer, KeepAliveResponse } from "../lease/keepalive-coalescer.js";
import type { Metrics } from "../metrics.js";
import type { Upstream } from "../upstream/upstream.js";
import { AsyncQueue } from "../util/async-queue.js";
import { forwardAll } from "./forward.js";
import { cacheWrite } from "./kv.js";
import type { KvCache } from "../cache/kv-cache.js";
import type { ServiceHandlers } from "./handlers.js";

type KeepAliveRequest = MessageShape<typeof LeaseKeepAliveRequestSchema>;

/**
 * Lease RPCs go to etcd; LeaseKeepAlive streams are coalesced onto one
 * upstream stream (see lease/keepalive-coalescer.ts).
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
    ...(cache ? { leaseRevoke: cacheWrite(Lease.method.leaseRevoke, upstream, cache) } : {}),
    leaseKeepAlive: (requests, ctx) => keepAliveStream(requests, ctx, coalescer, metrics),
  };
}

/**
 * One client's keep-alive stream. Each request is answered as soon as its
 * renewal completes, in whatever order renewals complete (clients match
 * answers by ID). After the client half-closes, pending answers are still
 * delivered, then the stream ends, as with etcd. An error from etcd ends the
 * stream with that error.
 */
async function* keepAliveStream(
  requests: AsyncIterable<KeepAliveRequest>,
  ctx: CallContext,
  coalescer: KeepAliveCoalescer,
  metrics: Metrics["lease"],
): AsyncIterable<KeepAliveResponse> {
  const answers = new AsyncQueue<KeepAliveResponse>();
  const requireLeader = ctx.forwardHeaders["hasleader"] === "true";
  let pending = 0;
  let halfClosed = false;
  const settle = () => {
    if (halfClosed && pending === 0) answers.end();
  };
  void (async () => {
    try {
      for await (const request of requests) {
        pending++;
        coalescer
          .renew(request.ID, requireLeader)
          .then(
            (answer) => {
              metrics.answers.inc();
              answers.push(answer);
            },
            (err) => answers.fail(err),
          )
          .finally(() => {
            pending--;
            settle();
          });
      }
    } catch (err) {
      answers.fail(err);
    }
    halfClosed = true;
    settle();
  })();

  metrics.clientStreams.inc();
  try {
    yield* answers;
  } finally {
    metrics.clientStreams.dec();
  }
}

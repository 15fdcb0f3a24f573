import { create } from "@bufbuild/protobuf";
import type { CallContext } from "../call-context.js";
import { WatchRequestSchema, type WatchRequest, type WatchResponse } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { AsyncQueue } from "../util/async-queue.js";
import { childSignal } from "../util/child-signal.js";

/** Opens a Watch stream, as a client of the proxy's own watch hub would. */
export type WatchOpener = (requests: AsyncIterable<WatchRequest>, ctx: CallContext) => AsyncIterable<WatchResponse>;

export interface InternalWatch {
  key: Uint8Array;
  rangeEnd: Uint8Array;
  /** 0 for "now". */
  startRevision?: bigint;
  /** The proxy's own identity (its token), when it has one. */
  metadata: Record<string, string>;
  /** Ends the watch; it also ends when the caller stops iterating. */
  signal: AbortSignal;
}

/**
 * One of the proxy's own watches (cache invalidation, the registration
 * directory), as a stream of etcd's responses. It rides the watch hub like
 * any client, so it shares upstream watches and fails over with them.
 */
export async function* internalWatch(open: WatchOpener, watch: InternalWatch): AsyncIterable<WatchResponse> {
  const requests = new AsyncQueue<WatchRequest>();
  requests.push(
    create(WatchRequestSchema, {
      requestUnion: {
        case: "createRequest",
        value: { key: watch.key, rangeEnd: watch.rangeEnd, startRevision: watch.startRevision ?? 0n },
      },
    }),
  );
  const scope = childSignal(watch.signal);
  try {
    yield* open(requests, { forwardHeaders: watch.metadata, deadline: undefined, signal: scope.signal });
  } finally {
    requests.end();
    scope.release();
  }
}

/**
 * Range requests answered from the consistent cache's replicas, as a
 * decorator on the way to etcd. A Range at the latest revision wholly
 * inside a replicated prefix is answered from memory once two things hold:
 * etcd answered a check sent after the read arrived (a count-only Range of
 * the caller's own range, with the caller's own token and consistency: so
 * it also proves the caller may read it), and the replica has applied the
 * check's revision. Anything else, or anything that does not hold in time,
 * goes to etcd as before.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { callerIdentity, type CallContext } from "../call-context.js";
import {
  KV,
  RangeRequestSchema,
  RangeResponseSchema,
  type RangeRequest,
  type ResponseHeader,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { frame } from "../grpc/wire.js";
import { requestMessage, type RequestFrame } from "../grpc/request-frame.js";
import { UpstreamDecorator, type Upstream } from "../upstream/upstream.js";
import { wholeAnswer, type Answer } from "../upstream/answer.js";
import { bytesToString, contains, keyInterval } from "../util/key-range.js";
import { FreshnessBarrier } from "./freshness-barrier.js";
import type { PrefixReplica } from "./prefix-replica.js";

/** What the decorator reports, for metrics. */
export interface ReplicaReads {
  answered(): void;
  fellBack(reason: string): void;
  /** A check went to etcd (one per batch of reads). */
  sentCheck(): void;
  /** A read's check answered: how far behind etcd the replica was then. */
  checked(replica: PrefixReplica, header: ResponseHeader): void;
}

const NO_END = new Uint8Array(0);

export class ReplicaUpstream extends UpstreamDecorator {
  private readonly barrier = new FreshnessBarrier();

  constructor(
    inner: Upstream,
    private readonly replicas: readonly PrefixReplica[],
    /** How long a read waits for the check, and then for the replica, before it goes to etcd. */
    private readonly waitMs: number,
    private readonly reads: ReplicaReads,
  ) {
    super(inner);
  }

  protected override async rangeBytes(
    requestFrame: RequestFrame,
    ctx: CallContext,
    safe: () => boolean,
  ): Promise<Answer> {
    return (await this.fromReplica(requestFrame, ctx)) ?? super.rangeBytes(requestFrame, ctx, safe);
  }

  private async fromReplica(requestFrame: RequestFrame, ctx: CallContext): Promise<Buffer | undefined> {
    let request: RangeRequest;
    const asked = requestMessage(requestFrame);
    try {
      request = fromBinary(RangeRequestSchema, asked);
    } catch {
      return undefined; // etcd words the refusal
    }
    if (request.revision !== 0n) return undefined;
    const wanted = keyInterval(request.key, request.rangeEnd);
    const replica = this.replicas.find((r) => contains(r.interval, wanted));
    if (!replica) return undefined;
    if (!replica.live) return this.fellBack("not loaded");
    let header: ResponseHeader;
    try {
      // A caller with a token must also be shown to be allowed this range: its check counts that range, as
      // the caller. Without a token there is nothing to prove but that etcd serves anonymous reads at all,
      // which any one key shows: the check is the prefix's own key, shared by every such read of the prefix.
      const identity = callerIdentity(ctx.forwardHeaders);
      const anonymous = ctx.forwardHeaders["token"] === undefined;
      const [key, rangeEnd] = anonymous ? [replica.prefix, NO_END] : [request.key, request.rangeEnd];
      const batch = `${identity.key}\n${request.serializable ? "s" : "l"}\n${bytesToString(key)}\n${bytesToString(rangeEnd)}`;
      header = await this.barrier.current(batch, () => this.check(key, rangeEnd, request.serializable, ctx));
    } catch {
      return this.fellBack("check failed"); // etcd answers the read itself, refusal included
    }
    this.reads.checked(replica, header);
    if (!(await replica.reach(header.revision, this.waitMs))) return this.fellBack("not current in time");
    const answer = replica.answer(request, header, bytesToString(asked));
    if (answer === undefined) return this.fellBack("not loaded");
    if (answer.kind === "unanswerable") return this.fellBack(answer.reason);
    this.reads.answered();
    return answer.bytes;
  }

  /** The check: etcd's revision now, from a count of `key` to `rangeEnd`, as the caller. */
  private async check(
    key: Uint8Array,
    rangeEnd: Uint8Array,
    serializable: boolean,
    ctx: CallContext,
  ): Promise<ResponseHeader> {
    const question = toBinary(
      RangeRequestSchema,
      create(RangeRequestSchema, { key, rangeEnd, countOnly: true, serializable }),
    );
    const checkCtx: CallContext = {
      forwardHeaders: ctx.forwardHeaders,
      deadline: Date.now() + this.waitMs,
      signal: AbortSignal.timeout(this.waitMs),
    };
    this.reads.sentCheck();
    const answer = await wholeAnswer(
      await this.inner.unaryBytes(KV.method.range, frame(question), checkCtx, () => true),
    );
    const header = fromBinary(RangeResponseSchema, answer).header;
    if (!header) throw new Error("etcd's answer had no header");
    return header;
  }

  private fellBack(reason: string): undefined {
    this.reads.fellBack(reason);
    return undefined;
  }
}

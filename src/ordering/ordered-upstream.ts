import { Code, ConnectError } from "@connectrpc/connect";
import type { CallContext } from "../call-context.js";
import { KV } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { int64Field } from "../grpc/scan.js";
import { requestMessage, type RequestFrame } from "../grpc/request-frame.js";
import type { EtcdUpstream } from "../upstream/etcd-upstream.js";
import { answerRevision, ArrivingAnswer, type Answer } from "../upstream/answer.js";
import { UpstreamDecorator } from "../upstream/upstream.js";

/** etcd's ordering client's words when no member has caught up with what was already seen. */
const NO_GREATER_REVISION =
  "etcdclient: no cluster members have a revision higher than the previously received revision";

/** RangeRequest.serializable. */
const SERIALIZABLE_FIELD = 7;

/**
 * --experimental-serializable-ordering, as a decorator on the way to etcd
 * (beside the namespace's): a serializable Range is never answered from a
 * store older than any Range answer the proxy has seen, as etcd's ordering
 * client keeps it. Every answer raises the floor to its store revision; a
 * serializable answer from below the floor (a member that lags, met after a
 * switch) is not used, and the next endpoint is asked. When every endpoint
 * lags or is down, the call fails with etcd's ordering error rather than
 * going back in revision. Everything else passes through.
 */
export class OrderedUpstream extends UpstreamDecorator {
  /** The highest store revision a Range answer has shown. */
  private floor = 0n;

  constructor(protected override readonly inner: EtcdUpstream) {
    super(inner);
  }

  /** The highest store revision a Range answer has shown (the range cache serves no hit below it). */
  revisionFloor(): bigint {
    return this.floor;
  }

  protected override async rangeBytes(requestFrame: RequestFrame, ctx: CallContext): Promise<Answer> {
    const serializable = int64Field(requestMessage(requestFrame), SERIALIZABLE_FIELD) !== 0n;
    const floor = this.floor;
    const lagging = new Set<string>();
    for (;;) {
      const { endpoint, answer } = await this.inner.unaryAvoiding(KV.method.range, requestFrame, ctx, lagging);
      const revision = answerRevision(answer);
      if (!serializable || revision >= floor) {
        if (revision > this.floor) this.floor = revision;
        return answer;
      }
      if (answer instanceof ArrivingAnswer) answer.discard();
      lagging.add(endpoint);
      if (this.inner.endpoints().every((e) => lagging.has(e.url) || !e.up)) {
        throw new ConnectError(NO_GREATER_REVISION, Code.Unknown);
      }
    }
  }
}

import {
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethodBiDiStreaming,
  type DescMethodServerStreaming,
  type DescMethodUnary,
  type MessageInitShape,
  type MessageShape,
  create,
} from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import type { CallContext } from "../call-context.js";
import { KV, Maintenance } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { frame } from "../grpc/wire.js";
import type { RequestFrame } from "../grpc/request-frame.js";
import { isSafeToRepeat } from "./retry-policy.js";
import { mapAsync } from "../util/map-async.js";
import { wholeAnswer, type Answer } from "./answer.js";

/**
 * The proxy's door to etcd for gRPC: services and features call it with typed
 * messages or, on plain forwards, with the bytes a client sent; which
 * endpoint answers, and how failures are hidden, is its business alone.
 * Implementations move bytes (ByteCalls); the typed calls are made from
 * those once, in UpstreamBase. (etcd's plain HTTP paths, /metrics and
 * /version, are etcd-http.ts's and member-quota.ts's.)
 */
export interface Upstream extends ByteCalls {
  unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    request: MessageInitShape<I>,
    ctx: CallContext,
  ): Promise<MessageShape<O>>;
  serverStream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodServerStreaming<I, O>,
    request: MessageInitShape<I>,
    ctx: CallContext,
  ): AsyncIterable<MessageShape<O>>;
  bidiStream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodBiDiStreaming<I, O>,
    requests: AsyncIterable<MessageInitShape<I>>,
    ctx: CallContext,
  ): AsyncIterable<MessageShape<O>>;
  /**
   * A unary call that only etcd's leader can serve (MoveLeader). It goes to
   * the endpoint whose member leads; if none can be found, to the current one,
   * whose answer then says why.
   */
  unaryOnLeader<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    request: MessageInitShape<I>,
    ctx: CallContext,
  ): Promise<MessageShape<O>>;
  /**
   * A unary call to one named endpoint of --endpoints (the dashboard's
   * defragment per member), never moved elsewhere; an unknown URL is refused
   * with NotFound, so a client can reach only the members the proxy was given.
   */
  unaryOnEndpoint<I extends DescMessage, O extends DescMessage>(
    url: string,
    method: DescMethodUnary<I, O>,
    request: MessageInitShape<I>,
    ctx: CallContext,
  ): Promise<MessageShape<O>>;
}

/**
 * Calls on bytes: a request frame is a framed request message as a client
 * sends it; answers are etcd's response messages (without their frame
 * prefix), a large one still arriving (see Answer). `safeToRepeat` is asked only if an attempt fails after it may
 * have reached etcd.
 */
export interface ByteCalls {
  unaryBytes(
    method: DescMethodUnary,
    requestFrame: RequestFrame,
    ctx: CallContext,
    safeToRepeat: () => boolean,
  ): Promise<Answer>;
  serverStreamBytes(
    method: DescMethodServerStreaming,
    requestFrame: Buffer,
    ctx: CallContext,
    safeToRepeat: () => boolean,
  ): AsyncIterable<Buffer>;
  bidiStreamBytes(
    method: DescMethodBiDiStreaming,
    requestFrames: AsyncIterable<Uint8Array>,
    ctx: CallContext,
  ): AsyncIterable<Buffer>;
  /** See Upstream.unaryOnLeader. */
  unaryOnLeaderBytes(method: DescMethodUnary, requestFrame: RequestFrame, ctx: CallContext): Promise<Answer>;
  /** See Upstream.unaryOnEndpoint. */
  unaryOnEndpointBytes(
    url: string,
    method: DescMethodUnary,
    requestFrame: RequestFrame,
    ctx: CallContext,
  ): Promise<Answer>;
  /** Endpoint URLs with their health, for status pages and logs. */
  endpoints(): Array<{ url: string; up: boolean; current: boolean }>;
  /** etcd's Status from every endpoint at once, each with its own outcome (dashboards, MoveLeader). */
  statusOfEach(ctx: CallContext): Promise<EndpointStatus[]>;
  close(): void;
}

/** The typed calls, made once from an implementation's byte calls. */
export abstract class UpstreamBase implements Upstream {
  abstract unaryBytes(
    method: DescMethodUnary,
    requestFrame: RequestFrame,
    ctx: CallContext,
    safeToRepeat: () => boolean,
  ): Promise<Answer>;
  abstract serverStreamBytes(
    method: DescMethodServerStreaming,
    requestFrame: Buffer,
    ctx: CallContext,
    safeToRepeat: () => boolean,
  ): AsyncIterable<Buffer>;
  abstract bidiStreamBytes(
    method: DescMethodBiDiStreaming,
    requestFrames: AsyncIterable<Uint8Array>,
    ctx: CallContext,
  ): AsyncIterable<Buffer>;
  abstract unaryOnLeaderBytes(method: DescMethodUnary, requestFrame: RequestFrame, ctx: CallContext): Promise<Answer>;
  abstract unaryOnEndpointBytes(
    url: string,
    method: DescMethodUnary,
    requestFrame: RequestFrame,
    ctx: CallContext,
  ): Promise<Answer>;
  abstract endpoints(): Array<{ url: string; up: boolean; current: boolean }>;
  abstract statusOfEach(ctx: CallContext): Promise<EndpointStatus[]>;
  abstract close(): void;

  async unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    request: MessageInitShape<I>,
    ctx: CallContext,
  ): Promise<MessageShape<O>> {
    const { requestFrame, safe } = framed(method, request);
    return fromBinary(method.output, await wholeAnswer(await this.unaryBytes(method, requestFrame, ctx, () => safe)));
  }

  async *serverStream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodServerStreaming<I, O>,
    request: MessageInitShape<I>,
    ctx: CallContext,
  ): AsyncIterable<MessageShape<O>> {
    const { requestFrame, safe } = framed(method, request);
    const answers = this.serverStreamBytes(method, requestFrame, ctx, () => safe);
    for await (const answer of answers) yield fromBinary(method.output, answer);
  }

  bidiStream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodBiDiStreaming<I, O>,
    requests: AsyncIterable<MessageInitShape<I>>,
    ctx: CallContext,
  ): AsyncIterable<MessageShape<O>> {
    const frames = mapAsync(requests, (request) => frame(toBinary(method.input, create(method.input, request))));
    return mapAsync(this.bidiStreamBytes(method, frames, ctx), (answer) => fromBinary(method.output, answer));
  }

  async unaryOnLeader<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    request: MessageInitShape<I>,
    ctx: CallContext,
  ): Promise<MessageShape<O>> {
    const { requestFrame } = framed(method, request);
    return fromBinary(method.output, await wholeAnswer(await this.unaryOnLeaderBytes(method, requestFrame, ctx)));
  }

  async unaryOnEndpoint<I extends DescMessage, O extends DescMessage>(
    url: string,
    method: DescMethodUnary<I, O>,
    request: MessageInitShape<I>,
    ctx: CallContext,
  ): Promise<MessageShape<O>> {
    const { requestFrame } = framed(method, request);
    return fromBinary(
      method.output,
      await wholeAnswer(await this.unaryOnEndpointBytes(url, method, requestFrame, ctx)),
    );
  }
}

/**
 * A decorator on the way to etcd: everything passes to `inner` unless a
 * subclass changes it (the namespace, serializable ordering), so each
 * decorator holds only what it does.
 */
export abstract class UpstreamDecorator extends UpstreamBase {
  constructor(protected readonly inner: Upstream) {
    super();
  }

  unaryBytes(
    method: DescMethodUnary,
    requestFrame: RequestFrame,
    ctx: CallContext,
    safe: () => boolean,
  ): Promise<Answer> {
    if (method === KV.method.range) return this.rangeBytes(requestFrame, ctx, safe);
    return this.inner.unaryBytes(method, requestFrame, ctx, safe);
  }

  /** A Range, the call most decorators change (ordering, coalescing, the consistent cache). */
  protected rangeBytes(requestFrame: RequestFrame, ctx: CallContext, safe: () => boolean): Promise<Answer> {
    return this.inner.unaryBytes(KV.method.range, requestFrame, ctx, safe);
  }

  serverStreamBytes(
    method: DescMethodServerStreaming,
    requestFrame: Buffer,
    ctx: CallContext,
    safe: () => boolean,
  ): AsyncIterable<Buffer> {
    return this.inner.serverStreamBytes(method, requestFrame, ctx, safe);
  }

  bidiStreamBytes(
    method: DescMethodBiDiStreaming,
    requestFrames: AsyncIterable<Uint8Array>,
    ctx: CallContext,
  ): AsyncIterable<Buffer> {
    return this.inner.bidiStreamBytes(method, requestFrames, ctx);
  }

  unaryOnLeaderBytes(method: DescMethodUnary, requestFrame: RequestFrame, ctx: CallContext): Promise<Answer> {
    return this.inner.unaryOnLeaderBytes(method, requestFrame, ctx);
  }

  unaryOnEndpointBytes(
    url: string,
    method: DescMethodUnary,
    requestFrame: RequestFrame,
    ctx: CallContext,
  ): Promise<Answer> {
    return this.inner.unaryOnEndpointBytes(url, method, requestFrame, ctx);
  }

  endpoints(): Array<{ url: string; up: boolean; current: boolean }> {
    return this.inner.endpoints();
  }

  statusOfEach(ctx: CallContext): Promise<EndpointStatus[]> {
    return this.inner.statusOfEach(ctx);
  }

  close(): void {
    this.inner.close();
  }
}

/** A typed request as the frame to send, and whether sending it again is safe. */
function framed<I extends DescMessage>(
  method: DescMethodUnary<I> | DescMethodServerStreaming<I>,
  request: MessageInitShape<I>,
): { requestFrame: Buffer; safe: boolean } {
  const message = create(method.input, request);
  return { requestFrame: frame(toBinary(method.input, message)), safe: isSafeToRepeat(method, message) };
}

export interface EndpointStatus {
  url: string;
  status?: MessageShape<typeof Maintenance.method.status.output>;
  error?: ConnectError;
  /** The member's --quota-backend-bytes, when its Status (3.6) or its /metrics tells it. */
  quotaBytes?: number;
}

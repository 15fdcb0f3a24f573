import { ConnectError } from "@connectrpc/connect";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import type {
  DescMethod,
  DescMethodBiDiStreaming,
  DescMethodServerStreaming,
  DescMethodUnary,
  DescService,
  MessageInitShape,
  MessageShape,
} from "@bufbuild/protobuf";
import type { CallContext } from "../call-context.js";
import { frame, messageOf } from "../grpc/wire.js";
import type { RequestFrame } from "../grpc/request-frame.js";
import { AsyncQueue } from "../util/async-queue.js";
import { wholeAnswer, type Answer } from "../upstream/answer.js";

/**
 * The proxy's own handler signatures: typed messages in and out, plus a
 * transport-free CallContext. server/ adapts them to Connect; a native gRPC
 * lane can call them directly.
 */
export type UnaryHandler<I extends DescMethodUnary> =
  I extends DescMethodUnary<infer In, infer Out>
    ? (request: MessageShape<In>, ctx: CallContext) => Promise<MessageInitShape<Out>>
    : never;

export type ServerStreamHandler<I extends DescMethodServerStreaming> =
  I extends DescMethodServerStreaming<infer In, infer Out>
    ? (request: MessageShape<In>, ctx: CallContext) => AsyncIterable<MessageInitShape<Out>>
    : never;

export type BidiStreamHandler<I extends DescMethodBiDiStreaming> =
  I extends DescMethodBiDiStreaming<infer In, infer Out>
    ? (requests: AsyncIterable<MessageShape<In>>, ctx: CallContext) => AsyncIterable<MessageInitShape<Out>>
    : never;

export type HandlerFor<M extends DescMethod> = M extends DescMethodUnary
  ? UnaryHandler<M>
  : M extends DescMethodServerStreaming
    ? ServerStreamHandler<M>
    : M extends DescMethodBiDiStreaming
      ? BidiStreamHandler<M>
      : never; // etcd has no client-streaming RPCs

/** One handler per method; adding an RPC to the proto is a compile error until handled. */
export type ServiceHandlers<S extends DescService> = {
  [K in keyof S["method"]]: HandlerFor<S["method"][K]>;
};

/** A service and its handlers, as the server registers them. */
export interface ServiceBinding<S extends DescService = DescService> {
  readonly service: S;
  readonly handlers: ServiceHandlers<S>;
}

export function bind<S extends DescService>(service: S, handlers: ServiceHandlers<S>): ServiceBinding {
  return { service, handlers } as unknown as ServiceBinding;
}

/**
 * A unary method's implementation on wire bytes, for the native gRPC lane:
 * `frame` is the request with its gRPC prefix (a large one still in the
 * pieces it arrived in, see RequestFrame); the result is the response message. It must answer exactly as the typed
 * handler it is attached to. An answer known at once (a cache hit) may come
 * back synchronously, which spares the call its promise hops.
 */
export type BytePath = (frame: RequestFrame, ctx: CallContext) => Answer | Promise<Answer>;

/** A byte path that always answers later (a call to etcd). */
export type AsyncBytePath = (frame: RequestFrame, ctx: CallContext) => Promise<Answer>;

/**
 * A bidi method on wire bytes, for the native gRPC lane: called once per
 * call with where its answers go, it returns what the call does with each
 * request message and with the client's half-close. No async iteration and
 * no protobuf on the way: for streams whose answers are bytes the proxy
 * already holds (lease keep-alives answer with etcd's own answers). It
 * must behave exactly as the typed handler it is attached to.
 */
export type BidiBytePath = (out: FrameSink, ctx: CallContext) => BidiCall;

/**
 * A server-streaming method on wire bytes, for the native gRPC lane: given
 * the request (`frame`, with its gRPC prefix), it yields the
 * answer messages as etcd sent them. Nothing is decoded or encoded again
 * (a 100 MB snapshot passes as its 32 KB messages); the lane frames each
 * as it writes it, and waits for the client before pulling the next.
 */
export type ServerStreamBytePath = (frame: Buffer, ctx: CallContext) => AsyncIterable<Uint8Array>;

/** Where a byte-level stream's answers go. */
export interface FrameSink {
  /** One answer, as a complete gRPC frame. */
  send(frame: Uint8Array): void;
  /** Ends the call: OK without `error`, else with it. Later sends are ignored. */
  end(error?: unknown): void;
}

export interface BidiCall {
  /** One request message; throwing ends the call with that error. */
  message(payload: Uint8Array): void;
  /** The client sent its last request. */
  halfClose(): void;
  /** The call is over, however it ended (the client may have left). */
  close(): void;
}

/** A typed handler that also works on bytes: the native lane calls `bytes`, everyone else the handler. */
export type WithBytePath<H, P extends AnyBytePath> = H & { readonly bytes: P };

type AnyBytePath = BytePath | BidiBytePath | ServerStreamBytePath;

/** Attaches a byte-level implementation to a typed handler; the RPC table reads it back as `bytes`. */
export function withBytePath<H extends object, P extends AnyBytePath>(handler: H, path: P): WithBytePath<H, P> {
  return Object.assign(handler, { bytes: path });
}

/** The byte path a handler carries, if any (a handler wrapped by another, e.g. for payload logging, carries none). */
export function bytePathOf(handler: unknown): AnyBytePath | undefined {
  return typeof handler === "function" && "bytes" in handler ? (handler.bytes as AnyBytePath) : undefined;
}

/**
 * A server-streaming handler implemented on bytes: the native lane calls
 * `path` directly; the typed handler (Connect lane) encodes the request and
 * decodes each answer.
 */
export function serverStreamOverBytes<M extends DescMethodServerStreaming>(
  method: M,
  path: ServerStreamBytePath,
): ServerStreamHandler<M> {
  async function* typed(request: MessageShape<M["input"]>, ctx: CallContext) {
    for await (const answer of path(frame(toBinary(method.input, request)), ctx))
      yield fromBinary(method.output, answer);
  }
  return withBytePath(typed, path) as unknown as ServerStreamHandler<M>;
}

/**
 * A unary handler implemented on bytes: the native lane calls `path`
 * directly; the typed handler (Connect lane, internal callers) encodes the
 * request, calls it, and decodes the answer.
 */
export function unaryOverBytes<M extends DescMethodUnary>(method: M, path: BytePath): UnaryHandler<M> {
  const typed = async (request: MessageShape<M["input"]>, ctx: CallContext) => {
    return fromBinary(method.output, await wholeAnswer(await path(frame(toBinary(method.input, request)), ctx)));
  };
  return withBytePath(typed, path) as unknown as UnaryHandler<M>;
}

/**
 * A bidi handler implemented on bytes: the native lane calls `path`
 * directly; the typed handler (Connect lane) encodes each request, and
 * decodes each answer into the response stream it returns.
 */
export function bidiOverBytes<M extends DescMethodBiDiStreaming>(method: M, path: BidiBytePath): BidiStreamHandler<M> {
  async function* typed(requests: AsyncIterable<MessageShape<M["input"]>>, ctx: CallContext) {
    const answers = new AsyncQueue<MessageShape<M["output"]>>();
    const call = path(
      {
        send: (bytes) => answers.push(fromBinary(method.output, messageOf(bytes)) as MessageShape<M["output"]>),
        end: (error) => (error === undefined ? answers.end() : answers.fail(error)),
      },
      ctx,
    );
    // A call aborted while waiting on its client (the proxy shutting down) ends with the abort's reason.
    const aborted = () => answers.fail(ConnectError.from(ctx.signal.reason));
    if (ctx.signal.aborted) aborted();
    else ctx.signal.addEventListener("abort", aborted, { once: true });
    void (async () => {
      try {
        for await (const request of requests) call.message(toBinary(method.input, request));
        call.halfClose();
      } catch (err) {
        answers.fail(err);
      }
    })();
    try {
      yield* answers;
    } finally {
      ctx.signal.removeEventListener("abort", aborted);
      call.close();
    }
  }
  return withBytePath(typed, path) as unknown as BidiStreamHandler<M>;
}

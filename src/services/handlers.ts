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
import { frame } from "../grpc/wire.js";

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
 * `payload` is the request message, `frame` the same with its gRPC prefix;
 * the result is the response message. It must answer exactly as the typed
 * handler it is attached to. An answer known at once (a cache hit) may come
 * back synchronously, which spares the call its promise hops.
 */
export type BytePath = (payload: Uint8Array, frame: Buffer, ctx: CallContext) => Uint8Array | Promise<Uint8Array>;

const bytePaths = new WeakMap<object, BytePath>();

/** Attaches a byte-level implementation to a typed unary handler. */
export function withBytePath<H extends object>(handler: H, path: BytePath): H {
  bytePaths.set(handler, path);
  return handler;
}

export function bytePathOf(handler: unknown): BytePath | undefined {
  return typeof handler === "function" ? bytePaths.get(handler) : undefined;
}

/**
 * A unary handler implemented on bytes: the native lane calls `path`
 * directly; the typed handler (Connect lane, internal callers) encodes the
 * request, calls it, and decodes the answer.
 */
export function unaryOverBytes<M extends DescMethodUnary>(method: M, path: BytePath): UnaryHandler<M> {
  const typed = async (request: MessageShape<M["input"]>, ctx: CallContext) => {
    const payload = toBinary(method.input, request);
    return fromBinary(method.output, await path(payload, frame(payload), ctx));
  };
  return withBytePath(typed, path) as unknown as UnaryHandler<M>;
}

import {
  create,
  toBinary,
  type DescMethodBiDiStreaming,
  type DescMethodServerStreaming,
  type DescMethodUnary,
} from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as http2 from "node:http2";
import { forwardedMetadata, type CallContext } from "../call-context.js";
import { encodeGrpcMessage, frame, FrameDecoder, FrameError, parseGrpcTimeout, singleFrame } from "../grpc/wire.js";
import { preEncodedFrame } from "../grpc/pre-encoded.js";
import { decodeRequest } from "../grpc/decode.js";
import type { RpcObserver, RpcRecord } from "../metrics.js";
import { AsyncQueue } from "../util/async-queue.js";
import { bytePathOf, type BytePath, type ServiceBinding } from "../services/handlers.js";

/**
 * The native gRPC fast lane: calls with `content-type: application/grpc` over
 * HTTP/2 (etcdctl, grpc-go, grpc-js) are served straight from the HTTP/2
 * stream, without node's compatibility layer, Fastify and Connect's per-call
 * machinery.
 *
 * - A unary handler with a byte-level path (plain forwards, the range cache,
 *   cache-invalidating writes) is called with the request's bytes and
 *   answers with the response's: a forward relays them to etcd untouched.
 * - Any other unary method (MemberList, MoveLeader, ...) is decoded, handled
 *   by the same handler the Connect lane uses, and encoded.
 * - A streaming method (Watch, LeaseKeepAlive, Snapshot, Observe) is decoded
 *   message by message into the same handler, whose responses are encoded
 *   and written with back-pressure.
 * - gRPC-JSON and compressed requests return false, and the caller hands the
 *   stream to the Connect lane.
 */
export interface NativeLane {
  /** Serves the stream and returns true, or returns false for the Connect lane to serve it. */
  handle(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean;
  /** Ends every open streaming call with `reason` (graceful shutdown). */
  shutdown(reason: ConnectError): void;
}

type Route =
  | {
      kind: "unary";
      method: DescMethodUnary;
      handler: (request: unknown, ctx: CallContext) => Promise<unknown>;
      /** The handler's own byte-level implementation (forwards, the cache), when it has one. */
      bytes: BytePath | undefined;
    }
  | {
      kind: "stream";
      method: DescMethodServerStreaming | DescMethodBiDiStreaming;
      handler: (input: unknown, ctx: CallContext) => AsyncIterable<unknown>;
    };

export interface NativeLaneOptions {
  services: ServiceBinding[];
  /** Largest request message accepted from a client. */
  readMaxBytes: number;
  /** Unexpected failures (bugs), for the log. */
  onInternalError?: (err: unknown, path: string) => void;
  /** Hears about every call (metrics, debug logs). */
  observe?: RpcObserver;
}

const { HTTP2_HEADER_PATH, HTTP2_HEADER_CONTENT_TYPE, NGHTTP2_NO_ERROR } = http2.constants;

export function createNativeLane(options: NativeLaneOptions): NativeLane {
  const routes = new Map<string, Route>();
  for (const { service, handlers } of options.services) {
    for (const method of service.methods) {
      const handler = (handlers as Record<string, unknown>)[method.localName] as never;
      const path = `/${service.typeName}/${method.name}`;
      if (method.methodKind === "unary") {
        const unary = method as DescMethodUnary;
        routes.set(path, {
          kind: "unary",
          method: unary,
          handler,
          bytes: bytePathOf(handler),
        });
      } else if (method.methodKind !== "client_streaming") {
        routes.set(path, {
          kind: "stream",
          method: method as DescMethodServerStreaming | DescMethodBiDiStreaming,
          handler,
        });
      }
    }
  }

  /** Open streaming calls and how to stop each; unary calls are left to finish. */
  const openStreams = new Map<http2.ServerHttp2Stream, (reason: ConnectError) => void>();
  return {
    handle(stream, headers) {
      const route = routes.get(headers[HTTP2_HEADER_PATH] as string);
      if (!route) return false;
      const type = headers[HTTP2_HEADER_CONTENT_TYPE];
      if (type !== "application/grpc" && type !== "application/grpc+proto") return false;
      const encoding = headers["grpc-encoding"];
      if (encoding !== undefined && encoding !== "identity") return false;
      if (options.observe) {
        const record = options.observe(route.method);
        records.set(stream, record);
        stream.once("close", () => record.end(Code.Canceled)); // no-op if it already ended
      }
      if (route.kind === "unary") {
        serveUnary(stream, headers, route, options);
      } else {
        openStreams.set(stream, serveStream(stream, headers, route, options));
        stream.once("close", () => openStreams.delete(stream));
      }
      return true;
    },
    shutdown(reason) {
      for (const stop of openStreams.values()) stop(reason);
    },
  };
}

function serveUnary(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  route: Extract<Route, { kind: "unary" }>,
  options: NativeLaneOptions,
): void {
  const { ctx } = callContext(stream, headers);
  const chunks: Buffer[] = [];
  let size = 0;
  let failed = false;
  const fail = (err: FrameError) => {
    failed = true;
    respondError(stream, new ConnectError(err.message, err.grpcCode));
  };

  stream.on("data", (chunk: Buffer) => {
    if (failed) return;
    size += chunk.length;
    // Stop buffering as soon as the body cannot be one acceptable message.
    if (size > options.readMaxBytes + 5) {
      return fail(
        new FrameError(`grpc: received message larger than max (${size - 5} vs. ${options.readMaxBytes})`, 8),
      );
    }
    chunks.push(chunk);
  });
  stream.on("end", () => {
    if (failed) return;
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    let payload: Buffer;
    try {
      payload = singleFrame(body, options.readMaxBytes);
    } catch (err) {
      return fail(err as FrameError);
    }
    records.get(stream)?.received();
    handle(body, payload, route, ctx, options).then(
      (response) => respond(stream, response),
      (err) => {
        if (!(err instanceof ConnectError)) options.onInternalError?.(err, headers[HTTP2_HEADER_PATH] as string);
        respondError(stream, err);
      },
    );
  });
  stream.on("error", () => {});
}

/** Produces the response message bytes for one framed request (`body`, whose message is `payload`). */
async function handle(
  body: Buffer,
  payload: Buffer,
  route: Extract<Route, { kind: "unary" }>,
  ctx: CallContext,
  options: NativeLaneOptions,
): Promise<Uint8Array> {
  const { method, handler } = route;
  if (route.bytes) return route.bytes(payload, body, ctx);
  const response = await handler(decodeRequest(method, payload), ctx);
  return toBinary(method.output, create(method.output, response as never));
}

/** Why a call's signal aborts; made once, as abort() without a reason builds a DOMException. */
const CLIENT_GONE = new ConnectError("context canceled", Code.Canceled);
const DEADLINE = new ConnectError("context deadline exceeded", Code.DeadlineExceeded);

/**
 * The call's metadata, deadline and cancellation, from the HTTP/2 stream.
 * The signal aborts only if the client leaves or time runs out before the
 * call finished: a finished call costs no abort.
 */
function callContext(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
): { ctx: CallContext; finished: () => boolean; abort: (reason: ConnectError) => void } {
  const forwardHeaders = forwardedMetadata((key) => headers[key] as string | undefined);
  // The signal is made only if someone asks for it: a call answered from
  // the cache never does.
  let controller: AbortController | undefined;
  let abortedWith: ConnectError | undefined;
  const abort = (reason: ConnectError) => {
    abortedWith ??= reason;
    controller?.abort(reason);
  };
  const timeoutMs = parseGrpcTimeout(headers["grpc-timeout"] as string | undefined);
  const finished = () => finishedStreams.has(stream);
  let timer: NodeJS.Timeout | undefined;
  if (timeoutMs !== undefined) {
    timer = setTimeout(() => {
      respondError(stream, DEADLINE);
      abort(DEADLINE);
    }, timeoutMs);
  }
  stream.once("close", () => {
    clearTimeout(timer);
    if (!finished()) abort(CLIENT_GONE);
  });
  return {
    ctx: {
      forwardHeaders,
      deadline: timeoutMs === undefined ? undefined : Date.now() + timeoutMs,
      get signal() {
        if (!controller) {
          controller = new AbortController();
          if (abortedWith) controller.abort(abortedWith);
        }
        return controller.signal;
      },
    },
    finished,
    abort,
  };
}

/** Streams whose call has given its final answer (status sent). */
const finishedStreams = new WeakSet<http2.ServerHttp2Stream>();

/** Each call's metrics record, ended with the status its final answer carries. */
const records = new WeakMap<http2.ServerHttp2Stream, RpcRecord>();

function finish(stream: http2.ServerHttp2Stream, code: number): void {
  finishedStreams.add(stream);
  records.get(stream)?.end(code);
}

const OK_HEADERS = { ":status": 200, "content-type": "application/grpc" };
const OK_TRAILERS = { "grpc-status": "0" };

function respond(stream: http2.ServerHttp2Stream, message: Uint8Array): void {
  if (stream.headersSent || stream.destroyed) return;
  records.get(stream)?.sent();
  finish(stream, 0);
  stream.respond(OK_HEADERS, { waitForTrailers: true });
  stream.once("wantTrailers", () => stream.sendTrailers(OK_TRAILERS));
  stream.end(frame(message));
}

/** A Trailers-Only error answer; later writes to a finished stream are ignored. */
function respondError(stream: http2.ServerHttp2Stream, err: unknown): void {
  if (stream.destroyed || finishedStreams.has(stream)) return;
  finish(stream, ConnectError.from(err).code);
  if (stream.headersSent) {
    // A stream already answering: the status goes in its trailers.
    stream.once("wantTrailers", () => stream.sendTrailers(statusTrailers(err)));
    stream.end();
    return;
  }
  stream.respond({ ":status": 200, "content-type": "application/grpc", ...statusTrailers(err) }, { endStream: true });
  // A client still sending (an oversized message) has its answer: stop it
  // with NO_ERROR, as gRPC servers do, so the status is what it reports.
  if (!stream.readableEnded && !stream.closed) stream.close(NGHTTP2_NO_ERROR);
}

function statusTrailers(err: unknown): http2.OutgoingHttpHeaders {
  const ce = ConnectError.from(err);
  return { "grpc-status": String(ce.code), "grpc-message": encodeGrpcMessage(ce.rawMessage) };
}

/**
 * A streaming call: request frames become an async iterable of messages
 * (bidi) or the one message (server streaming); the handler's responses are
 * written as they come, waiting for the client to drain when it is slow.
 * A client half-close only ends the request iterable, as with etcd.
 */
function serveStream(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  route: Extract<Route, { kind: "stream" }>,
  options: NativeLaneOptions,
): (reason: ConnectError) => void {
  const { ctx, finished, abort } = callContext(stream, headers);
  const { method, handler } = route;
  const requests = new AsyncQueue<unknown>();
  const decoder = new FrameDecoder(options.readMaxBytes);
  stream.on("data", (chunk: Buffer) => {
    try {
      for (const m of decoder.push(chunk)) {
        records.get(stream)?.received();
        requests.push(decodeRequest(method, m));
      }
    } catch (err) {
      const e = err instanceof FrameError ? new ConnectError(err.message, err.grpcCode) : ConnectError.from(err);
      requests.fail(e);
      respondError(stream, e);
    }
  });
  stream.on("end", () => requests.end());
  stream.on("error", () => {});

  void (async () => {
    let input: unknown = requests;
    if (method.methodKind === "server_streaming") {
      const all: unknown[] = [];
      for await (const m of requests) all.push(m);
      if (all.length !== 1) throw new ConnectError("grpc: expected exactly one request message", Code.Internal);
      input = all[0];
    }
    // Responses that are ready together (a watch event fanned out to many
    // watchers of one stream) leave in one write: cork until the ready
    // ones are written, uncork on the next tick. The sent-messages counter
    // is bumped once per batch too.
    let corked = false;
    let batch = 0;
    const uncork = () => {
      corked = false;
      stream.uncork();
      records.get(stream)?.sent(batch);
      batch = 0;
    };
    for await (const response of handler(input, ctx)) {
      if (finished() || stream.destroyed) return;
      if (!stream.headersSent) stream.respond(OK_HEADERS, { waitForTrailers: true });
      if (!corked) {
        corked = true;
        stream.cork();
        process.nextTick(uncork);
      }
      const bytes =
        preEncodedFrame(response) ?? frame(toBinary(method.output, create(method.output, response as never)));
      batch++;
      if (!stream.write(bytes)) await drained(stream);
    }
    if (finished() || stream.destroyed) return;
    finish(stream, 0);
    if (!stream.headersSent) {
      stream.respond({ ...OK_HEADERS, ...OK_TRAILERS }, { endStream: true });
      return;
    }
    stream.once("wantTrailers", () => stream.sendTrailers(OK_TRAILERS));
    stream.end();
  })().catch((err) => {
    if (!(err instanceof ConnectError)) options.onInternalError?.(err, headers[HTTP2_HEADER_PATH] as string);
    respondError(stream, err);
  });

  // Stops the call from outside: the client gets `reason`, the handler (and
  // its upstream call) is cancelled.
  return (reason) => {
    respondError(stream, reason);
    abort(reason);
  };
}

/** Resolves when the stream can take more data, or is gone. */
function drained(stream: http2.ServerHttp2Stream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("close", done);
      resolve();
    };
    stream.on("drain", done);
    stream.on("close", done);
  });
}

import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { startCall, type CallContext } from "../../call-context.js";
import {
  frame,
  FrameDecoder,
  FrameError,
  messagePrefix,
  GRPC_OK,
  readGrpcTimeout,
  PREFIX_BYTES,
  unaryFrameLength,
  statusFields,
} from "../../grpc/wire.js";
import { preEncodedFrame } from "../../grpc/pre-encoded.js";
import { decodeRequest } from "../../grpc/decode.js";
import { bodyHead, gatherFrame, requestMessage, type RequestFrame } from "../../grpc/request-frame.js";
import type { RpcObserver, RpcRecord } from "../../metrics.js";
import { AsyncQueue } from "../../util/async-queue.js";
import type { BidiBytePath } from "../../services/handlers.js";
import type { Rpc } from "../../services/rpc-table.js";
import { ErrorCode } from "../../http2/frames.js";
import { encodeHeaders } from "../../http2/hpack.js";
import type { EtcdLine } from "../../upstream/etcd-http.js";
import type { H2Stream } from "../../http2/server.js";
import { ArrivingAnswer, type Answer } from "../../upstream/answer.js";

/**
 * The native gRPC fast lane: calls with `content-type: application/grpc` over
 * HTTP/2 (etcdctl, grpc-go, grpc-js) are served straight from the proxy's own
 * HTTP/2 streams (src/http2), without node's HTTP/2 server, Fastify and
 * Connect's per-call machinery.
 *
 * - A unary handler with a byte-level path (plain forwards, the range cache,
 *   cache-invalidating writes) is called with the request's bytes and
 *   answers with the response's: a forward relays them to etcd untouched.
 * - Any other unary method (MemberList, MoveLeader, ...) is decoded, handled
 *   by the same handler the Connect lane uses, and encoded.
 * - A streaming method (Watch, LeaseKeepAlive, Snapshot, Observe) is decoded
 *   message by message into the same handler, whose responses are encoded
 *   and written with back-pressure.
 * - Anything else (gRPC-JSON, compressed requests, gRPC-Web, Connect, the
 *   gateway, the dashboard) returns false, and the caller hands the stream to
 *   Fastify and Connect.
 */
export interface NativeLane {
  /** Serves the stream and returns true, or returns false for the Connect lane to serve it. */
  handle(stream: H2Stream): boolean;
  /** Ends every open streaming call with `reason` (graceful shutdown). */
  shutdown(reason: ConnectError): void;
}

export interface NativeLaneOptions {
  /** What it serves, by gRPC path. */
  rpcs: ReadonlyMap<string, Rpc>;
  /** Largest request message accepted from a client. */
  readMaxBytes: number;
  /** The release line of the etcd in use, for answers etcd 3.4 and 3.5 give differently. */
  etcdLine?: () => EtcdLine;
  /** Unexpected failures (bugs), for the log. */
  onInternalError?: (err: unknown, path: string) => void;
  /** Hears about every call (metrics, debug logs). */
  observe?: RpcObserver;
}

export function createNativeLane(options: NativeLaneOptions): NativeLane {
  const routes = options.rpcs;

  /** Open streaming calls and how to stop each; unary calls are left to finish. */
  const openStreams = new Map<H2Stream, (reason: ConnectError) => void>();
  return {
    handle(stream) {
      const headers = stream.headers;
      const route = routes.get(headers[":path"]!);
      if (!route) return false;
      const type = headers["content-type"];
      if (type !== "application/grpc" && type !== "application/grpc+proto") return false;
      const encoding = headers["grpc-encoding"];
      if (encoding !== undefined && encoding !== "identity") return false;
      const record = options.observe?.(route.method);
      const timeoutMs = readGrpcTimeout(headers["grpc-timeout"]);
      stream.call = { record, finished: false, timeoutMs } satisfies CallState;
      if (record) stream.onClose(() => record.end(Code.Canceled)); // no-op if it already ended
      if (timeoutMs instanceof ConnectError) {
        const error = timeoutMs;
        // grpc-go refuses the call before it starts: etcd 3.5's with HTTP
        // 400 and Internal, etcd 3.4's with a PROTOCOL_ERROR reset.
        if (options.etcdLine?.() === "3.4") {
          finish(stream, error.code);
          stream.reset(ErrorCode.PROTOCOL_ERROR);
        } else respondError(stream, error, "400");
        return true;
      }
      if (route.kind === "unary") {
        serveUnary(stream, route, options);
      } else {
        const stop =
          route.bytes?.kind === "bidi"
            ? serveBidiBytes(stream, route.bytes.path, options)
            : serveStream(stream, route, options);
        openStreams.set(stream, stop);
        stream.onClose(() => openStreams.delete(stream));
      }
      return true;
    },
    shutdown(reason) {
      for (const stop of openStreams.values()) stop(reason);
    },
  };
}

function serveUnary(stream: H2Stream, route: Extract<Rpc, { kind: "unary" }>, options: NativeLaneOptions): void {
  const { ctx } = callContext(stream);
  // The request is held whole until the answer: the connection's window
  // gets its bytes back when the call closes, so a client's calls in
  // flight hold at most that window.
  stream.flow = "close";
  let chunks: Buffer[] = [];
  let size = 0;
  let failed = false;
  const fail = (err: FrameError) => {
    failed = true;
    respondError(stream, new ConnectError(err.message, err.grpcCode));
  };

  stream.onBody = (chunk) => {
    if (failed) return;
    size += chunk.length;
    // Stop buffering as soon as the body cannot be one acceptable message.
    if (size > options.readMaxBytes + PREFIX_BYTES) {
      return fail(
        new FrameError(
          `grpc: received message larger than max (${size - PREFIX_BYTES} vs. ${options.readMaxBytes})`,
          Code.ResourceExhausted,
        ),
      );
    }
    chunks.push(chunk);
  };
  stream.onEnd = () => {
    if (failed) return;
    let frameLength: number;
    try {
      frameLength = unaryFrameLength(bodyHead(chunks, PREFIX_BYTES), size, options.readMaxBytes);
    } catch (err) {
      return fail(err as FrameError);
    }
    // A large body stays in the pieces it came in, and goes on to etcd so;
    // a joined one lets go of them now, not when the call ends.
    const body = gatherFrame(chunks, frameLength);
    chunks = [];
    callOf(stream).record?.received();
    let answer: Answer | Promise<Answer>;
    try {
      answer = handle(body, route, ctx);
    } catch (err) {
      return endWithError(stream, err, options);
    }
    if (!(answer instanceof Promise)) respond(stream, answer, options);
    else
      answer.then(
        (response) => respond(stream, response, options),
        (err) => endWithError(stream, err, options),
      );
  };
}

/**
 * Produces the response message bytes for one framed request: at once when
 * a byte path knows it (a cache hit), else as a promise.
 */
function handle(
  requestFrame: RequestFrame,
  route: Extract<Rpc, { kind: "unary" }>,
  ctx: CallContext,
): Answer | Promise<Answer> {
  const { method, handler } = route;
  if (route.bytes) return route.bytes(requestFrame, ctx);
  return handler(decodeRequest(method, requestMessage(requestFrame)), ctx).then((response) =>
    toBinary(method.output, create(method.output, response as never)),
  );
}

/** Request bytes a streaming call's handler may leave untaken before the client's window stops crediting. */
const REQUEST_QUEUE_HIGH_WATER = 64 * 1024;

/** Why a call's signal aborts; made once, as abort() without a reason builds a DOMException. */
const CLIENT_GONE = new ConnectError("context canceled", Code.Canceled);
const DEADLINE = new ConnectError("context deadline exceeded", Code.DeadlineExceeded);

/**
 * The call's metadata, deadline and cancellation, from the HTTP/2 stream.
 * The signal aborts only if the client leaves or time runs out before the
 * call finished: a finished call costs no abort.
 */
function callContext(stream: H2Stream): {
  ctx: CallContext;
  abort: (reason: ConnectError) => void;
} {
  const headers = stream.headers;
  // The signal is made only if someone asks for it: a call answered from
  // the cache never does.
  let controller: AbortController | undefined;
  let abortedWith: ConnectError | undefined;
  const abort = (reason: ConnectError) => {
    abortedWith ??= reason;
    controller?.abort(reason);
  };
  const timeoutMs = callOf(stream).timeoutMs as number | undefined; // read, and refused if bad, by handle()
  let timer: NodeJS.Timeout | undefined;
  if (timeoutMs !== undefined) {
    timer = setTimeout(() => {
      respondError(stream, DEADLINE);
      abort(DEADLINE);
    }, timeoutMs);
  }
  stream.onClose(() => {
    clearTimeout(timer);
    if (!callOf(stream).finished) abort(CLIENT_GONE);
  });
  const signal = () => {
    if (!controller) {
      controller = new AbortController();
      if (abortedWith) controller.abort(abortedWith);
    }
    return controller.signal;
  };
  return { ctx: startCall((key) => headers[key], timeoutMs, signal, stream.answerGate), abort };
}

/** What the lane keeps of each call, on its stream (one object, where weak maps made GC work per call). */
interface CallState {
  /** Its metrics record, ended with the status its final answer carries. */
  record: RpcRecord | undefined;
  /** It has given its final answer (status sent). */
  finished: boolean;
  /** Its grpc-timeout, read once when the call starts. */
  timeoutMs: number | undefined | ConnectError;
}

function callOf(stream: H2Stream): CallState {
  return stream.call as CallState;
}

function finish(stream: H2Stream, code: number): void {
  const call = callOf(stream);
  call.finished = true;
  call.record?.end(code);
}

/** The constant parts of every answer, HPACK-encoded once. */
const OK_HEADERS: ReadonlyArray<readonly [string, string]> = [
  [":status", "200"],
  ["content-type", "application/grpc"],
];
const OK_HEADER_BLOCK = encodeHeaders(OK_HEADERS);
const OK_TRAILER_BLOCK = encodeHeaders([["grpc-status", "0"]]);
const OK_TRAILERS_ONLY_BLOCK = encodeHeaders([...OK_HEADERS, ["grpc-status", "0"]]);

function respond(stream: H2Stream, message: Answer, options: NativeLaneOptions): void {
  if (message instanceof ArrivingAnswer) return relay(stream, message, options);
  if (stream.headersSent || stream.closed) return;
  callOf(stream).record?.sent();
  finish(stream, GRPC_OK);
  stream.respondWhole(OK_HEADER_BLOCK, [messagePrefix(message.length), message], OK_TRAILER_BLOCK);
}

/**
 * A large answer passed on as it arrives: the headers and the message's
 * prefix at once, then its bytes as etcd sends them (views of the
 * upstream's reads, lent until each read is done: see ReadLoan), then
 * etcd's status. The upstream paces it to what the client reads.
 */
function relay(stream: H2Stream, answer: ArrivingAnswer, options: NativeLaneOptions): void {
  if (stream.headersSent || stream.closed) return answer.discard();
  stream.respond(OK_HEADER_BLOCK);
  stream.write(messagePrefix(answer.length));
  answer.relay({
    piece: (bytes, loan) => void stream.write(bytes, loan),
    end(error) {
      if (error) {
        // The message cannot be completed: what of it is still queued is
        // dropped, so the status reaches even a client that does not read.
        stream.dropQueued();
        return endWithError(stream, error, options);
      }
      callOf(stream).record?.sent();
      endOk(stream);
    },
  });
}

/**
 * An error answer: Trailers-Only, or the trailers of a stream already
 * answering. Later writes to a finished stream are ignored. A client still
 * sending (an oversized message) is then stopped with NO_ERROR, as gRPC
 * servers do, so the status is what it reports.
 */
function respondError(stream: H2Stream, err: unknown, httpStatus = "200"): void {
  if (stream.closed || callOf(stream).finished) return;
  const status = statusFields(err);
  finish(stream, ConnectError.from(err).code);
  if (stream.headersSent) stream.end(encodeHeaders(status));
  else if (httpStatus === "200") stream.respond(encodeHeaders([...OK_HEADERS, ...status]), true);
  else stream.respond(encodeHeaders([[":status", httpStatus], ["content-type", "application/grpc"], ...status]), true);
}

/**
 * A streaming call: request frames become an async iterable of messages
 * (bidi) or the one message (server streaming); the handler's responses are
 * written as they come, waiting for the client to drain when it is slow.
 * A client half-close only ends the request iterable, as with etcd.
 */
function serveStream(
  stream: H2Stream,
  route: Extract<Rpc, { kind: "stream" }>,
  options: NativeLaneOptions,
): (reason: ConnectError) => void {
  const { ctx, abort } = callContext(stream);
  const { method, handler } = route;
  // Request bytes are credited back to the client as the handler takes the
  // messages: one that sends faster than the handler reads is held to its
  // windows, not queued without end.
  stream.flow = "consumed";
  let owed = 0;
  const decoder = new FrameDecoder(options.readMaxBytes);
  const settle = () => {
    if (owed === 0) return;
    // A message larger than the high-water mark is still let in, one stream of the connection at a time.
    const partial = decoder.pendingBytes;
    const large = stream.claimLargeSlot(partial > REQUEST_QUEUE_HIGH_WATER);
    if (requests.weight < REQUEST_QUEUE_HIGH_WATER && (partial < REQUEST_QUEUE_HIGH_WATER || large)) {
      stream.consumed(owed);
      owed = 0;
    }
  };
  const requests = new AsyncQueue<unknown>({ taken: settle });
  // A server stream with a byte path gets its request as bytes, and answers as bytes.
  const serverBytes = route.bytes?.kind === "server-stream" ? route.bytes.path : undefined;
  receiveMessages(
    stream,
    decoder,
    (m) => requests.push(serverBytes ? m : decodeRequest(method, m), m.length),
    (e) => requests.fail(e),
    (n) => {
      owed += n;
      settle();
    },
  );
  stream.onEnd = () => requests.end();

  void (async () => {
    let input: unknown = requests;
    if (method.methodKind === "server_streaming") {
      const all: unknown[] = [];
      for await (const m of requests) all.push(m);
      if (all.length !== 1) throw new ConnectError("grpc: expected exactly one request message", Code.Internal);
      input = all[0];
    }
    // Responses that are ready together (a watch event fanned out to many
    // watchers of one stream) leave in one socket write anyway (the
    // connection flushes once a tick); the sent-messages counter is bumped
    // once per such batch too.
    let batch = 0;
    const countBatch = () => {
      callOf(stream).record?.sent(batch);
      batch = 0;
    };
    if (serverBytes) {
      for await (const message of serverBytes(frame(input as Buffer), ctx)) {
        if (callOf(stream).finished || stream.closed) return;
        if (batch++ === 0) process.nextTick(countBatch);
        // The prefix and the message as they are: a large message is not copied to be framed.
        writeAnswer(stream, messagePrefix(message.length));
        if (!stream.write(message)) await new Promise<void>((resolve) => stream.onDrain(resolve));
      }
      return endOk(stream);
    }
    for await (const response of handler(input, ctx)) {
      if (callOf(stream).finished || stream.closed) return;
      if (batch++ === 0) process.nextTick(countBatch);
      const bytes =
        preEncodedFrame(response) ?? frame(toBinary(method.output, create(method.output, response as never)));
      let writable = true;
      if (bytes instanceof Uint8Array) writable = writeAnswer(stream, bytes);
      else for (const piece of bytes) writable = writeAnswer(stream, piece);
      if (!writable) await new Promise<void>((resolve) => stream.onDrain(resolve));
    }
    endOk(stream);
  })().catch((err) => endWithError(stream, err, options));
  return stopper(stream, abort);
}

/**
 * A bidi call whose handler works on bytes (BidiBytePath): request messages
 * go to it as they arrive, and its answers are frames, written as they come.
 * No async iteration, no protobuf: a keep-alive costs the proxy little more
 * than its socket writes.
 */
function serveBidiBytes(
  stream: H2Stream,
  path: BidiBytePath,
  options: NativeLaneOptions,
): (reason: ConnectError) => void {
  const { ctx, abort } = callContext(stream);
  const call = path(
    {
      send(bytes) {
        if (callOf(stream).finished || stream.closed) return;
        callOf(stream).record?.sent();
        writeAnswer(stream, bytes);
      },
      end: (error) => (error === undefined ? endOk(stream) : endWithError(stream, error, options)),
    },
    ctx,
  );
  stream.onClose(() => call.close());
  receiveMessages(stream, new FrameDecoder(options.readMaxBytes), (m) => call.message(m));
  stream.onEnd = () => call.halfClose();
  return stopper(stream, abort);
}

/**
 * Splits the request body into messages for `take`. A malformed frame, or a
 * message `take` refuses, ends the call with its error (after `failed`
 * hears it).
 */
function receiveMessages(
  stream: H2Stream,
  decoder: FrameDecoder,
  take: (message: Buffer) => void,
  failed?: (error: ConnectError) => void,
  /** The chunk's `bytes` were split into messages (for streams that credit flow control themselves). */
  afterChunk?: (bytes: number) => void,
): void {
  stream.onBody = (chunk) => {
    try {
      for (const m of decoder.push(chunk)) {
        callOf(stream).record?.received();
        take(m);
      }
      afterChunk?.(chunk.length);
    } catch (err) {
      const e = err instanceof FrameError ? new ConnectError(err.message, err.grpcCode) : ConnectError.from(err);
      failed?.(e);
      respondError(stream, e);
    }
  };
}

/** Writes one answer frame, sending the response headers first if still due; false if the client must drain. */
function writeAnswer(stream: H2Stream, bytes: Uint8Array): boolean {
  if (!stream.headersSent) stream.respond(OK_HEADER_BLOCK);
  return stream.write(bytes);
}

/** Ends a streaming call with OK, unless it already ended. */
function endOk(stream: H2Stream): void {
  if (callOf(stream).finished || stream.closed) return;
  finish(stream, GRPC_OK);
  if (stream.headersSent) stream.end(OK_TRAILER_BLOCK);
  else stream.respond(OK_TRAILERS_ONLY_BLOCK, true);
}

/** Ends a call with `err`; one that is not a ConnectError is a bug, and logged. */
function endWithError(stream: H2Stream, err: unknown, options: NativeLaneOptions): void {
  if (!(err instanceof ConnectError)) options.onInternalError?.(err, stream.headers[":path"]!);
  respondError(stream, err);
}

/**
 * Stops a streaming call from outside: the client gets `reason`, the
 * handler (and its upstream call) is cancelled.
 */
function stopper(stream: H2Stream, abort: (reason: ConnectError) => void): (reason: ConnectError) => void {
  return (reason) => {
    respondError(stream, reason);
    abort(reason);
  };
}

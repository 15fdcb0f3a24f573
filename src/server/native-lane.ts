import { create, fromBinary, toBinary, type DescMethodUnary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as http2 from "node:http2";
import { FORWARDED_METADATA, type CallContext } from "../call-context.js";
import { encodeGrpcMessage, frame, FrameDecoder, FrameError, parseGrpcTimeout } from "../grpc/wire.js";
import { isForwarder } from "../services/forward.js";
import type { ServiceBinding } from "../services/handlers.js";
import { isSafeToRepeat, safetyDependsOnRequest } from "../upstream/retry-policy.js";
import type { Upstream } from "../upstream/upstream.js";

/**
 * The native gRPC fast lane: unary calls with `content-type: application/grpc`
 * over HTTP/2 (etcdctl, grpc-go, grpc-js) are served straight from the
 * HTTP/2 stream, without Fastify and Connect's per-call machinery.
 *
 * - A method whose handler only forwards is relayed as bytes: the request
 *   frame goes to etcd as it came, the response message back as etcd sent
 *   it. Nothing is decoded unless the retry policy needs to look (Txn).
 * - A unary method with logic of its own (MemberList, MoveLeader, and later
 *   the cache) is decoded, handled by the same handler the Connect lane uses,
 *   and encoded.
 * - Everything else (streams, gRPC-JSON, compressed requests) returns false,
 *   and the caller hands the stream to the Connect lane.
 */
export type NativeLane = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => boolean;

interface Route {
  method: DescMethodUnary;
  /** Undefined for plain forwards. */
  handler: ((request: unknown, ctx: CallContext) => Promise<unknown>) | undefined;
}

export interface NativeLaneOptions {
  services: ServiceBinding[];
  upstream: Upstream;
  /** Largest request message accepted from a client. */
  readMaxBytes: number;
  /** Unexpected failures (bugs), for the log. */
  onInternalError?: (err: unknown, path: string) => void;
}

const { HTTP2_HEADER_PATH, HTTP2_HEADER_CONTENT_TYPE, NGHTTP2_NO_ERROR } = http2.constants;

export function createNativeLane(options: NativeLaneOptions): NativeLane {
  const routes = new Map<string, Route>();
  for (const { service, handlers } of options.services) {
    for (const method of service.methods) {
      if (method.methodKind !== "unary") continue;
      const handler = (handlers as Record<string, Route["handler"]>)[method.localName];
      routes.set(`/${service.typeName}/${method.name}`, {
        method: method as DescMethodUnary,
        handler: isForwarder(handler) ? undefined : handler,
      });
    }
  }

  return (stream, headers) => {
    const route = routes.get(headers[HTTP2_HEADER_PATH] as string);
    if (!route) return false;
    const type = headers[HTTP2_HEADER_CONTENT_TYPE];
    if (type !== "application/grpc" && type !== "application/grpc+proto") return false;
    const encoding = headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    serveUnary(stream, headers, route, options);
    return true;
  };
}

function serveUnary(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  route: Route,
  options: NativeLaneOptions,
): void {
  const ctx = callContext(stream, headers);
  const decoder = new FrameDecoder(options.readMaxBytes);
  const chunks: Buffer[] = [];
  let messages = 0;
  let failed = false;

  stream.on("data", (chunk: Buffer) => {
    if (failed) return;
    chunks.push(chunk);
    try {
      messages += decoder.push(chunk).length;
    } catch (err) {
      failed = true;
      const e = err as FrameError;
      respondError(stream, new ConnectError(e.message, e.grpcCode));
    }
  });
  stream.on("end", () => {
    if (failed) return;
    if (messages !== 1 || decoder.pendingBytes !== 0) {
      return respondError(
        stream,
        new ConnectError(
          messages === 0 && decoder.pendingBytes === 0 ? "grpc: no request message" : "unexpected EOF",
          messages > 1 ? Code.Unimplemented : Code.Internal,
        ),
      );
    }
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    handle(body, route, ctx, options).then(
      (response) => respond(stream, response),
      (err) => {
        if (!(err instanceof ConnectError)) options.onInternalError?.(err, headers[HTTP2_HEADER_PATH] as string);
        respondError(stream, err);
      },
    );
  });
  stream.on("error", () => {});
}

/** Produces the response message bytes for one framed request. */
async function handle(body: Buffer, route: Route, ctx: CallContext, options: NativeLaneOptions): Promise<Uint8Array> {
  const { method, handler } = route;
  const payload = body.subarray(5);
  if (!handler) {
    return options.upstream.unaryBytes(method, body, ctx, () =>
      isSafeToRepeat(method, safetyDependsOnRequest(method) ? fromBinary(method.input, payload) : undefined),
    );
  }
  let request;
  try {
    request = fromBinary(method.input, payload);
  } catch (err) {
    // etcd (grpc-go) answers an undecodable request with Internal.
    throw new ConnectError(`grpc: error unmarshalling request: ${(err as Error).message}`, Code.Internal);
  }
  const response = await handler(request, ctx);
  return toBinary(method.output, create(method.output, response as never));
}

/** Why a call's signal aborts; made once, as abort() without a reason builds a DOMException. */
const CLIENT_GONE = new ConnectError("context canceled", Code.Canceled);
const DEADLINE = new ConnectError("context deadline exceeded", Code.DeadlineExceeded);

/**
 * The call's metadata, deadline and cancellation, from the HTTP/2 stream.
 * The signal aborts only if the client leaves or time runs out before the
 * answer: a finished call costs no abort.
 */
function callContext(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): CallContext {
  const forwardHeaders: Record<string, string> = {};
  for (const key of FORWARDED_METADATA) {
    const value = headers[key];
    if (typeof value === "string") forwardHeaders[key] = value;
  }
  const controller = new AbortController();
  const timeoutMs = parseGrpcTimeout(headers["grpc-timeout"] as string | undefined);
  let timer: NodeJS.Timeout | undefined;
  if (timeoutMs !== undefined) {
    timer = setTimeout(() => {
      respondError(stream, DEADLINE);
      controller.abort(DEADLINE);
    }, timeoutMs);
  }
  stream.once("close", () => {
    clearTimeout(timer);
    if (!stream.headersSent) controller.abort(CLIENT_GONE);
  });
  return {
    forwardHeaders,
    deadline: timeoutMs === undefined ? undefined : Date.now() + timeoutMs,
    signal: controller.signal,
  };
}

const OK_HEADERS = { ":status": 200, "content-type": "application/grpc" };
const OK_TRAILERS = { "grpc-status": "0" };

function respond(stream: http2.ServerHttp2Stream, message: Uint8Array): void {
  if (stream.headersSent || stream.destroyed) return;
  stream.respond(OK_HEADERS, { waitForTrailers: true });
  stream.once("wantTrailers", () => stream.sendTrailers(OK_TRAILERS));
  stream.end(frame(message));
}

/** A Trailers-Only error answer; later writes to a finished stream are ignored. */
function respondError(stream: http2.ServerHttp2Stream, err: unknown): void {
  if (stream.headersSent || stream.destroyed) return;
  const ce = ConnectError.from(err);
  stream.respond(
    {
      ":status": 200,
      "content-type": "application/grpc",
      "grpc-status": String(ce.code),
      "grpc-message": encodeGrpcMessage(ce.rawMessage),
    },
    { endStream: true },
  );
  // A client still sending (an oversized message) has its answer: stop it
  // with NO_ERROR, as gRPC servers do, so the status is what it reports.
  if (!stream.readableEnded && !stream.closed) stream.close(NGHTTP2_NO_ERROR);
}

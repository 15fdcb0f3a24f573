import type { ConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest } from "@connectrpc/connect/protocol";
import { parseExactJson } from "../../grpc/json-numbers.js";

/**
 * Connect, gRPC-Web and gRPC with JSON bodies, their 64-bit numbers read
 * exactly. Connect reads JSON with JSON.parse, which rounds an integer past
 * 2^53 (a lease ID sent as a number would name another lease), and has no
 * hook for its parser; so each handler's request has such integers quoted
 * before Connect reads it (protobuf's JSON mapping reads 64-bit integers
 * from strings). Bodies without a run of 16 digits pass untouched.
 */
export function readJsonNumbersExactly(router: ConnectRouter, readMaxBytes: number): void {
  const handlers = router.handlers as UniversalHandler[];
  for (let i = 0; i < handlers.length; i++) {
    const handler = handlers[i]!;
    const exact = (request: UniversalServerRequest) => handler(exactRequest(request, readMaxBytes));
    handlers[i] = Object.assign(exact, handler);
  }
}

/** A digit run that a double may not hold: the only case worth rewriting. */
const LONG_INTEGER = /\d{16}/;

function exactRequest(request: UniversalServerRequest, readMaxBytes: number): UniversalServerRequest {
  if (request.method === "GET") return { ...request, url: exactQuery(request.url) };
  const type = (request.header.get("content-type") ?? "").split(";", 1)[0]!.trim().toLowerCase();
  const body = request.body;
  if (typeof body !== "object" || body === null || !(Symbol.asyncIterator in body)) return request;
  const bytes = body as AsyncIterable<Uint8Array>;
  // The body may grow by its quotes: the length the client declared no longer holds.
  const header = new Headers(request.header);
  header.delete("content-length");
  if (type === "application/json") return { ...request, header, body: wholeBody(bytes, readMaxBytes) };
  if (type.endsWith("+json")) return { ...request, header, body: enveloped(bytes, readMaxBytes) };
  return request;
}

/** Connect GET: `?encoding=json&message=…` (base64url with base64=1). */
function exactQuery(url: string): string {
  const at = url.indexOf("?");
  if (at === -1) return url;
  const query = new URLSearchParams(url.slice(at + 1));
  const message = query.get("message");
  if (query.get("encoding") !== "json" || message === null) return url;
  const base64 = query.get("base64") === "1";
  const text = base64 ? Buffer.from(message, "base64url").toString() : message;
  const exact = exactText(text);
  if (exact === text) return url;
  query.set("message", base64 ? Buffer.from(exact).toString("base64url") : exact);
  return `${url.slice(0, at)}?${query.toString()}`;
}

/** The text with its long integers quoted; unchanged when it has none, or is no JSON (Connect then says why). */
function exactText(text: string): string {
  if (!LONG_INTEGER.test(text)) return text;
  try {
    const documents = parseExactJson(text);
    return documents.length === 1 ? JSON.stringify(documents[0]!.value) : text;
  } catch {
    return text;
  }
}

function exactBytes(bytes: Uint8Array): Uint8Array {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString();
  const exact = exactText(text);
  return exact === text ? bytes : Buffer.from(exact);
}

/** A unary JSON body, read whole (Connect does the same); past the read limit it is passed on for Connect to refuse. */
async function* wholeBody(body: AsyncIterable<Uint8Array>, readMaxBytes: number): AsyncIterable<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const source = body[Symbol.asyncIterator]();
  for (;;) {
    const next = await source.next();
    if (next.done) break;
    chunks.push(next.value);
    size += next.value.length;
    if (size > readMaxBytes) {
      yield* chunks;
      yield* { [Symbol.asyncIterator]: () => source };
      return;
    }
  }
  yield exactBytes(Buffer.concat(chunks, size));
}

/** Enveloped messages (Connect streaming, gRPC-Web, gRPC), each rewritten as it completes; compressed ones pass as they are. */
async function* enveloped(body: AsyncIterable<Uint8Array>, readMaxBytes: number): AsyncIterable<Uint8Array> {
  let pending: Buffer = Buffer.alloc(0);
  const source = body[Symbol.asyncIterator]();
  for (;;) {
    const next = await source.next();
    if (next.done) break;
    pending = pending.length === 0 ? Buffer.from(next.value) : Buffer.concat([pending, next.value]);
    while (pending.length >= PREFIX) {
      const length = pending.readUInt32BE(1);
      if (length > readMaxBytes) {
        // Connect refuses it; nothing more is looked at.
        yield pending;
        yield* { [Symbol.asyncIterator]: () => source };
        return;
      }
      if (pending.length < PREFIX + length) break;
      const flags = pending[0]!;
      const payload = pending.subarray(PREFIX, PREFIX + length);
      yield (flags & COMPRESSED) !== 0 ? pending.subarray(0, PREFIX + length) : envelope(flags, exactBytes(payload));
      pending = pending.subarray(PREFIX + length);
    }
  }
  if (pending.length > 0) yield pending;
}

const PREFIX = 5;
const COMPRESSED = 0x01;

function envelope(flags: number, payload: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(PREFIX + payload.length);
  out[0] = flags;
  out.writeUInt32BE(payload.length, 1);
  out.set(payload, PREFIX);
  return out;
}

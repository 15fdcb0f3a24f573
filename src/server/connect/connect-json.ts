import { fromJsonString, toBinary, type DescMessage } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import {
  compressionNegotiate,
  readAllBytes,
  type UniversalHandler,
  type UniversalServerRequest,
  type UniversalServerResponse,
} from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { parseExactJson } from "../../grpc/json-numbers.js";
import { jsonOfBinary } from "../../grpc/json-transcoder.js";

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
  const read = await readWithin(body, readMaxBytes);
  if ("over" in read) yield* read.over;
  else yield exactBytes(read.whole);
}

/** A body read whole, or, past `readMaxBytes`, all of it still to be read (what was read, then the rest). */
async function readWithin(
  body: AsyncIterable<Uint8Array>,
  readMaxBytes: number,
): Promise<{ whole: Buffer } | { over: AsyncIterable<Uint8Array> }> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const source = body[Symbol.asyncIterator]();
  for (;;) {
    const next = await source.next();
    if (next.done) return { whole: Buffer.concat(chunks, size) };
    chunks.push(next.value);
    size += next.value.length;
    if (size > readMaxBytes) {
      return {
        over: (async function* () {
          yield* chunks;
          yield* { [Symbol.asyncIterator]: () => source };
        })(),
      };
    }
  }
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

/**
 * Connect's unary calls in JSON, answered with JSON written straight from
 * the answer's binary encoding (grpc/json-transcoder.ts). Connect writes
 * JSON with protobuf-es's toJson, whose base64 builds each string a
 * character at a time: a 1 MB Range of 2,000 keys cost 265 ms of CPU. So a
 * JSON call reaches Connect as the same call in binary, and its binary
 * answer is written as the JSON Connect would have written, then
 * compressed as Connect would have compressed it. What Connect must judge
 * as it came (a compressed request, JSON it would refuse, a body past the
 * read limit) goes to it untouched.
 */
export function answerJsonFromBinary(router: ConnectRouter, readMaxBytes: number): void {
  const handlers = router.handlers as UniversalHandler[];
  for (let i = 0; i < handlers.length; i++) {
    const handler = handlers[i]!;
    if (handler.method.methodKind !== "unary") continue;
    const viaBinary = (request: UniversalServerRequest) => jsonViaBinary(handler, request, readMaxBytes);
    handlers[i] = Object.assign(viaBinary, handler);
  }
}

/** What Connect serves its unary calls with: the same algorithms, in its order, from the same size. */
const COMPRESSIONS = [compressionGzip, compressionBrotli];
const COMPRESS_MIN_BYTES = 1024;
/** Connect's unary JSON types: `application/json`, with or without a UTF-8 charset. */
const UNARY_JSON = /^application\/json(?:;\s*charset=utf-?8)?$/i;
/** Connect writes protobuf's JSON names (`createRevision`). */
const CONNECT_NAMES = { useProtoFieldName: false };
/** Connect reads JSON leniently about fields it does not know. */
const READ = { ignoreUnknownFields: true };
const UTF8 = new TextDecoder();

async function jsonViaBinary(
  handler: UniversalHandler,
  request: UniversalServerRequest,
  readMaxBytes: number,
): Promise<UniversalServerResponse> {
  const binary =
    request.method === "GET" ? await binaryQuery(handler, request) : await binaryBody(handler, request, readMaxBytes);
  if (!("call" in binary)) return handler(binary.untouched);
  const answer = await handler(binary.call);
  if (answer.body === undefined) return answer;
  const body = await readAllBytes(answer.body, Number.MAX_SAFE_INTEGER);
  const header = new Headers(answer.header);
  let json: Uint8Array = body;
  if (answer.status === 200 && header.get("content-type") === "application/proto") {
    json = jsonOfBinary(handler.method.output, body, CONNECT_NAMES);
    header.set("content-type", "application/json");
  }
  const { response } = compressionNegotiate(COMPRESSIONS, null, binary.acceptEncoding, "accept-encoding");
  if (response && json.byteLength >= COMPRESS_MIN_BYTES) {
    json = await response.compress(json);
    header.set("content-encoding", response.name);
  }
  header.set("content-length", String(json.byteLength));
  return { ...answer, header, body: once(json) };
}

type BinaryCall =
  { call: UniversalServerRequest; acceptEncoding: string | null } | { untouched: UniversalServerRequest };

/** A POST of uncompressed JSON, as the same call in binary. */
async function binaryBody(
  handler: UniversalHandler,
  request: UniversalServerRequest,
  readMaxBytes: number,
): Promise<BinaryCall> {
  const type = request.header.get("content-type") ?? "";
  const body = request.body;
  if (!UNARY_JSON.test(type) || request.header.has("content-encoding")) return { untouched: request };
  if (typeof body !== "object" || body === null || !(Symbol.asyncIterator in body)) return { untouched: request };
  const read = await readWithin(body as AsyncIterable<Uint8Array>, readMaxBytes);
  if ("over" in read) return { untouched: { ...request, body: read.over } };
  const message = binaryOf(handler.method.input, read.whole);
  if (!message) return { untouched: { ...request, body: once(read.whole) } };
  const header = new Headers(request.header);
  header.set("content-type", "application/proto");
  header.set("content-length", String(message.byteLength));
  header.delete("accept-encoding");
  return { call: { ...request, header, body: once(message) }, acceptEncoding: request.header.get("accept-encoding") };
}

/** A GET with `encoding=json` and an uncompressed message, as the same GET in binary. */
async function binaryQuery(handler: UniversalHandler, request: UniversalServerRequest): Promise<BinaryCall> {
  const url = new URL(request.url);
  const query = url.searchParams;
  if (query.get("encoding") !== "json" || query.has("compression")) return { untouched: request };
  const raw = query.get("message") ?? "";
  const message = binaryOf(handler.method.input, query.get("base64") === "1" ? Buffer.from(raw, "base64url") : raw);
  if (!message) return { untouched: request };
  query.set("encoding", "proto");
  query.set("base64", "1");
  query.set("message", Buffer.from(message).toString("base64url"));
  const header = new Headers(request.header);
  header.delete("accept-encoding");
  return { call: { ...request, url: url.toString(), header }, acceptEncoding: request.header.get("accept-encoding") };
}

/** The request in binary, or undefined where Connect should read (and refuse) the JSON itself. */
function binaryOf(schema: DescMessage, json: Uint8Array | string): Uint8Array | undefined {
  try {
    // Decoded as Connect decodes it (TextDecoder drops a byte order mark).
    const text = typeof json === "string" ? json : UTF8.decode(json);
    return toBinary(schema, fromJsonString(schema, text, READ));
  } catch {
    return undefined;
  }
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

/**
 * The native gRPC wire format over HTTP/2 (PROTOCOL-HTTP2.md): message
 * framing, grpc-timeout and grpc-message encoding. Shared by the native lane
 * (server side) and the upstream client.
 */

import { Code, ConnectError } from "@connectrpc/connect";

/** grpc-status 0, OK: the one status Connect's Code enum has no member for. */
export const GRPC_OK = 0;

/** The length of gRPC's message prefix: a compression flag, then the length in 4 bytes. */
export const PREFIX_BYTES = 5;

/** Prefixes a serialized message with gRPC's 5-byte header (uncompressed). */
export function frame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(PREFIX_BYTES + message.length);
  writePrefix(out, message.length);
  out.set(message, PREFIX_BYTES);
  return out;
}

/** The message of a whole, uncompressed frame. */
export function messageOf(frame: Uint8Array): Uint8Array {
  return frame.subarray(PREFIX_BYTES);
}

/** Just the 5-byte prefix of an uncompressed message of `length` bytes. */
export function messagePrefix(length: number): Buffer {
  const out = Buffer.allocUnsafe(PREFIX_BYTES);
  writePrefix(out, length);
  return out;
}

function writePrefix(out: Buffer, length: number): void {
  out[0] = 0; // not compressed
  out.writeUInt32BE(length, 1);
}

export class FrameError extends Error {
  constructor(
    message: string,
    /** The gRPC status code the peer should get. */
    readonly grpcCode: Code,
  ) {
    super(message);
  }
}

const NO_MESSAGES: readonly Buffer[] = Object.freeze([]);

/** Splits a byte stream into gRPC message payloads, checking sizes as it goes. */
export class FrameDecoder {
  /** Chunks holding the start of a message whose rest has not arrived yet. */
  private pending: Buffer[] = [];
  private pendingTotal = 0;
  /** How many pending bytes complete what is awaited: the 5-byte prefix, or the whole message. */
  private needed = 0;
  /** With `assemble`: the message being received, and how much of it has arrived. */
  private message: Buffer | undefined;
  private messageHave = 0;

  /**
   * `assemble`, for etcd's answers: a message that does not arrive whole
   * is copied, as it comes, into one buffer of the size its prefix
   * announces, and nothing returned or kept is a view of a pushed chunk
   * (the chunks may be a reused read buffer). Only for a peer trusted not
   * to announce what it will not send: a client could make the proxy
   * allocate its limit for 5 bytes sent.
   */
  constructor(
    private readonly maxMessageBytes: number,
    private readonly assemble = false,
  ) {}

  /** Adds a chunk; returns the messages it completed (views into the chunk where possible). */
  push(chunk: Buffer): readonly Buffer[] {
    let bytes = chunk;
    /** Whether `bytes` is the caller's, to be copied before it is kept or returned. */
    let borrowed = this.assemble;
    let out: Buffer[] | undefined;
    if (this.message) {
      const n = Math.min(chunk.length, this.message.length - this.messageHave);
      chunk.copy(this.message, this.messageHave, 0, n);
      this.messageHave += n;
      if (this.messageHave < this.message.length) return NO_MESSAGES;
      out = [this.message];
      this.message = undefined;
      if (n === chunk.length) return out;
      bytes = chunk.subarray(n);
    } else if (this.pending.length > 0) {
      // A large message arrives in many chunks: join them once, when it is whole.
      this.pending.push(this.assemble ? Buffer.from(chunk) : kept(chunk));
      this.pendingTotal += chunk.length;
      if (this.pendingTotal < this.needed) return NO_MESSAGES;
      bytes = Buffer.concat(this.pending, this.pendingTotal);
      borrowed = false;
      this.pending = [];
      this.pendingTotal = 0;
    }
    let at = 0;
    while (at < bytes.length) {
      if (bytes.length - at < PREFIX_BYTES) {
        this.needed = PREFIX_BYTES;
        break;
      }
      if (bytes[at]! & 1)
        throw new FrameError("compressed messages are not supported without grpc-encoding", Code.Unimplemented);
      const length = bytes.readUInt32BE(at + 1);
      if (length > this.maxMessageBytes) {
        throw new FrameError(
          `grpc: received message larger than max (${length} vs. ${this.maxMessageBytes})`,
          Code.ResourceExhausted,
        );
      }
      if (bytes.length - at < PREFIX_BYTES + length) {
        if (this.assemble) {
          this.message = Buffer.allocUnsafe(length);
          this.messageHave = bytes.copy(this.message, 0, at + PREFIX_BYTES);
          return out ?? NO_MESSAGES;
        }
        this.needed = PREFIX_BYTES + length;
        break;
      }
      const whole = bytes.subarray(at + PREFIX_BYTES, at + PREFIX_BYTES + length);
      (out ??= []).push(borrowed ? Buffer.from(whole) : whole);
      at += PREFIX_BYTES + length;
    }
    if (at < bytes.length) {
      const rest = bytes.subarray(at);
      this.pending.push(borrowed ? Buffer.from(rest) : kept(rest));
      this.pendingTotal = bytes.length - at;
    }
    return out ?? NO_MESSAGES;
  }

  /** Bytes of an unfinished message still waiting for the rest. */
  get pendingBytes(): number {
    return this.message ? PREFIX_BYTES + this.messageHave : this.pendingTotal;
  }
}

/**
 * A piece of a message kept until the rest arrives: copied when it is a small
 * view of a much larger buffer (a socket read), which it would keep alive
 * whole. An answer waiting for its client to read holds its own bytes only.
 */
function kept(view: Buffer): Buffer {
  return view.length * 4 < view.buffer.byteLength ? Buffer.from(view) : view;
}

/**
 * The length of the framed message a unary request body of `length` bytes
 * starts with (`head`: its first PREFIX_BYTES bytes, fewer only if the body
 * is shorter). Whatever follows that message is ignored, as etcd 3.4 and
 * 3.5 (their grpc-go) ignore it. Throws a FrameError with the status etcd
 * gives for a body that holds no whole message.
 */
export function unaryFrameLength(head: Buffer, length: number, maxMessageBytes: number): number {
  if (length < PREFIX_BYTES)
    throw new FrameError(length === 0 ? "grpc: no request message" : "unexpected EOF", Code.Unknown);
  if (head[0]! & 1)
    throw new FrameError("compressed messages are not supported without grpc-encoding", Code.Unimplemented);
  const messageLength = head.readUInt32BE(1);
  if (messageLength > maxMessageBytes) {
    throw new FrameError(
      `grpc: received message larger than max (${messageLength} vs. ${maxMessageBytes})`,
      Code.ResourceExhausted,
    );
  }
  if (length < PREFIX_BYTES + messageLength) throw new FrameError("unexpected EOF", Code.Unknown);
  return PREFIX_BYTES + messageLength;
}

const TIMEOUT_UNITS_MS: Partial<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/**
 * Reads a grpc-timeout header ("100m", "5S") as grpc-go does: milliseconds
 * (whole: peers reject fractional values), or, for a value grpc-go refuses,
 * its words for why, as a string.
 */
export function decodeGrpcTimeout(value: string): number | string {
  if (value.length < 2) return `transport: timeout string is too short: ${goQuote(value)}`;
  if (value.length > 9) return `transport: timeout string is too long: ${goQuote(value)}`;
  const unitMs = TIMEOUT_UNITS_MS[value[value.length - 1]!];
  if (unitMs === undefined) return `transport: timeout unit is not recognized: ${goQuote(value)}`;
  const digits = value.slice(0, -1);
  if (!/^\d+$/.test(digits)) return `strconv.ParseUint: parsing ${goQuote(digits)}: invalid syntax`;
  return Math.ceil(Number(digits) * unitMs);
}

/**
 * A call's grpc-timeout header as grpc-go reads it: milliseconds, undefined
 * when absent, or grpc-go's refusal of a value it cannot read.
 */
export function readGrpcTimeout(value: string | undefined): number | undefined | ConnectError {
  if (value === undefined) return undefined;
  const decoded = decodeGrpcTimeout(value);
  return typeof decoded === "string" ? new ConnectError(`malformed grpc-timeout: ${decoded}`, Code.Internal) : decoded;
}

/** Go's %q of a header value (printable ASCII: JSON's quoting is the same). */
function goQuote(value: string): string {
  return JSON.stringify(value);
}

/** Writes milliseconds as a grpc-timeout header value. */
export function encodeGrpcTimeout(ms: number): string {
  return `${Math.max(1, Math.ceil(ms))}m`;
}

/**
 * The status fields of a call that ends with `err`: grpc-status, and
 * grpc-message percent-encoded as gRPC specifies. Every surface that
 * answers native gRPC writes its errors from here.
 */
export function statusFields(err: unknown): [["grpc-status", string], ["grpc-message", string]] {
  const ce = ConnectError.from(err);
  return [
    ["grpc-status", String(ce.code)],
    ["grpc-message", encodeGrpcMessage(ce.rawMessage)],
  ];
}

/**
 * gRPC's percent-encoding of `grpc-message`: only bytes outside printable
 * ASCII, and '%' itself, are escaped.
 */
export function encodeGrpcMessage(message: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(message)) return message;
  let out = "";
  for (const byte of Buffer.from(message, "utf8")) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

export function decodeGrpcMessage(value: string | undefined): string {
  if (value === undefined) return "";
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/**
 * The native gRPC wire format over HTTP/2 (PROTOCOL-HTTP2.md): message
 * framing, grpc-timeout and grpc-message encoding. Shared by the native lane
 * (server side) and the upstream client.
 */

/** Prefixes a serialized message with gRPC's 5-byte header (uncompressed). */
export function frame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  writePrefix(out, message.length);
  out.set(message, 5);
  return out;
}

/** Just the 5-byte prefix of an uncompressed message of `length` bytes. */
export function messagePrefix(length: number): Buffer {
  const out = Buffer.allocUnsafe(5);
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
    readonly grpcCode: number,
  ) {
    super(message);
  }
}

/** Splits a byte stream into gRPC message payloads, checking sizes as it goes. */
export class FrameDecoder {
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;

  constructor(private readonly maxMessageBytes: number) {}

  /** Adds a chunk; returns the messages it completed. */
  push(chunk: Buffer): Buffer[] {
    this.buffered.push(chunk);
    this.bufferedBytes += chunk.length;
    const out: Buffer[] = [];
    while (this.bufferedBytes >= 5) {
      const head = this.peek(5);
      if (head[0]! & 1) throw new FrameError("compressed messages are not supported without grpc-encoding", 12);
      const length = head.readUInt32BE(1);
      if (length > this.maxMessageBytes) {
        throw new FrameError(`grpc: received message larger than max (${length} vs. ${this.maxMessageBytes})`, 8);
      }
      if (this.bufferedBytes < 5 + length) break;
      out.push(this.take(5 + length).subarray(5));
    }
    return out;
  }

  /** Bytes of an unfinished message still waiting for the rest. */
  get pendingBytes(): number {
    return this.bufferedBytes;
  }

  private peek(n: number): Buffer {
    if (this.buffered[0]!.length < n) this.buffered = [Buffer.concat(this.buffered)];
    return this.buffered[0]!.subarray(0, n);
  }

  private take(n: number): Buffer {
    const all = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered);
    const taken = all.subarray(0, n);
    const rest = all.subarray(n);
    this.buffered = rest.length ? [rest] : [];
    this.bufferedBytes = rest.length;
    return taken;
  }
}

/**
 * The one message of a unary request body, or a FrameError with the status
 * grpc-go (and so etcd) gives for the same defect.
 */
export function singleFrame(body: Buffer, maxMessageBytes: number): Buffer {
  if (body.length < 5) throw new FrameError(body.length === 0 ? "grpc: no request message" : "unexpected EOF", 2);
  if (body[0]! & 1) throw new FrameError("compressed messages are not supported without grpc-encoding", 12);
  const length = body.readUInt32BE(1);
  if (length > maxMessageBytes) {
    throw new FrameError(`grpc: received message larger than max (${length} vs. ${maxMessageBytes})`, 8);
  }
  if (body.length < 5 + length) throw new FrameError("unexpected EOF", 2);
  if (body.length > 5 + length) throw new FrameError("grpc: client streaming protocol violation: want <EOF>", 13);
  return body.subarray(5);
}

const TIMEOUT_UNITS_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/** Parses a grpc-timeout header ("100m", "5S") into milliseconds. */
export function parseGrpcTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  // Whole milliseconds: peers reject fractional grpc-timeout values ("2999.876m").
  return m ? Math.ceil(Number(m[1]) * TIMEOUT_UNITS_MS[m[2]!]!) : undefined;
}

/** Writes milliseconds as a grpc-timeout header value. */
export function encodeGrpcTimeout(ms: number): string {
  return `${Math.max(1, Math.ceil(ms))}m`;
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

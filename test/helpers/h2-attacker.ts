// A raw HTTP/2 client for adversarial tests: it writes whatever frames it is
// told to, never checks them, reads only if asked, and records what the
// server sends back (frame types, RST_STREAM and GOAWAY codes).
import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import * as tls from "node:tls";

export const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export const T = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;
export const END_STREAM = 0x1;
export const END_HEADERS = 0x4;
export const ENHANCE_YOUR_CALM = 0xb;

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId, 5);
  return Buffer.concat([head, payload]);
}

export function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value);
  return b;
}

export function settings(...pairs: Array<[number, number]>): Buffer {
  const b = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([id, v], i) => {
    b.writeUInt16BE(id, i * 6);
    b.writeUInt32BE(v, i * 6 + 2);
  });
  return frame(T.SETTINGS, 0, 0, b);
}

/** HPACK: an integer with an N-bit prefix. */
function hpackInt(value: number, prefixBits: number, first: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  value -= max;
  while (value >= 0x80) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
  return out;
}

function hpackString(s: string): number[] {
  const bytes = Buffer.from(s, "latin1");
  return [...hpackInt(bytes.length, 7, 0), ...bytes];
}

/** A literal field without indexing (new name): whatever the name's case or content. */
export function literal(name: string, value: string): Buffer {
  return Buffer.from([0x00, ...hpackString(name), ...hpackString(value)]);
}

/** A literal field that the decoder adds to its dynamic table. */
export function literalIndexed(name: string, value: string): Buffer {
  return Buffer.from([0x40, ...hpackString(name), ...hpackString(value)]);
}

/** An indexed field (static or dynamic table). */
export function indexed(index: number): Buffer {
  return Buffer.from(hpackInt(index, 7, 0x80));
}

/** A gRPC request's header block for `path`. */
export function grpcRequestBlock(path: string, extra: Buffer[] = []): Buffer {
  return Buffer.concat([
    literal(":method", "POST"),
    literal(":scheme", "http"),
    literal(":path", path),
    literal(":authority", "localhost"),
    literal("content-type", "application/grpc"),
    literal("te", "trailers"),
    ...extra,
  ]);
}

/** One gRPC message: flag, length, payload. */
export function grpcMessage(payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** A RangeRequest for `key` (field 1, bytes), hand-encoded. */
export function rangeRequest(key: string, rangeEnd?: string): Buffer {
  const k = Buffer.from(key);
  const parts = [Buffer.from([0x0a, k.length]), k];
  if (rangeEnd !== undefined) {
    const e = Buffer.from(rangeEnd);
    parts.push(Buffer.from([0x12, e.length]), e);
  }
  return Buffer.concat(parts);
}

export interface Seen {
  frames: number;
  /** HEADERS frames with END_STREAM: answers (or Trailers-Only errors) that ended a stream. */
  endedByHeaders: number;
  bytes: number;
  rst: Map<number, number>;
  goaway: number | undefined;
  closed: boolean;
}

export interface Attacker {
  socket: Socket;
  seen: Seen;
  /** Writes bytes; resolves at once (false) if the socket's buffer is full. */
  write(bytes: Buffer): boolean;
  /** The preface and an empty SETTINGS (with `extra` settings). */
  handshake(...extra: Array<[number, number]>): void;
  closed: Promise<void>;
  destroy(): void;
}

/**
 * Opens a connection. With `read: false` the client never reads its socket
 * (TCP fills up, as with a client that does not read its answers).
 */
export async function attacker(address: string, opts: { read?: boolean; tls?: boolean } = {}): Promise<Attacker> {
  const [host, port] = address.split(":");
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s: Socket = opts.tls
      ? tls.connect({ host, port: Number(port), ALPNProtocols: ["h2"], rejectUnauthorized: false }, () => resolve(s))
      : connect(Number(port), host!, () => resolve(s));
    s.once("error", reject);
  });
  socket.on("error", () => {});
  const seen: Seen = { frames: 0, endedByHeaders: 0, bytes: 0, rst: new Map(), goaway: undefined, closed: false };
  let input = Buffer.alloc(0);
  if (opts.read !== false) {
    socket.on("data", (chunk: Buffer) => {
      seen.bytes += chunk.length;
      input = Buffer.concat([input, chunk]);
      while (input.length >= 9) {
        const length = input.readUIntBE(0, 3);
        if (input.length < 9 + length) break;
        const type = input[3]!;
        const streamId = input.readUInt32BE(5) & 0x7fffffff;
        const payload = input.subarray(9, 9 + length);
        seen.frames++;
        if (type === T.RST_STREAM) seen.rst.set(streamId, payload.readUInt32BE(0));
        if (type === T.HEADERS && input[4]! & END_STREAM) seen.endedByHeaders++;
        if (type === T.GOAWAY) seen.goaway = payload.readUInt32BE(4);
        input = input.subarray(9 + length);
      }
    });
  } else {
    socket.pause();
  }
  const closed = new Promise<void>((resolve) =>
    socket.once("close", () => {
      seen.closed = true;
      resolve();
    }),
  );
  return {
    socket,
    seen,
    write: (bytes) => !socket.destroyed && socket.write(bytes),
    handshake(...extra) {
      socket.write(Buffer.concat([PREFACE, settings(...extra)]));
    },
    closed,
    destroy: () => socket.destroy(),
  };
}

/** The resident set size of a process, in bytes (Linux). */
export function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

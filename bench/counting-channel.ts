// A gRPC channel on node's own HTTP/2 (nghttp2, not the proxy's stack) that
// sends pre-serialized requests and counts what comes back without decoding
// it. grpc-js spends 3–6 ms of CPU per megabyte it receives; on a 2-core
// machine shared with etcd and the proxy, that cost, not the server's, would
// set every large scenario's throughput. This client spends about 1 ms.
import http2 from "node:http2";

/** A stream's receive window: a 1 MB answer never waits a round trip for WINDOW_UPDATE. */
const STREAM_WINDOW = 16 << 20;
const SESSION_WINDOW = 64 << 20;

export class GrpcCallError extends Error {
  constructor(
    readonly code: number,
    readonly details: string,
  ) {
    super(`${code} ${details}`);
  }
}

/** Counts the messages' bytes in a gRPC body as it arrives, across DATA frames. */
export class MessageCounter {
  bytes = 0;
  private prefixLeft = 5;
  private messageLeft = 0;
  private length = 0;

  /** `ended`: told each message's length once its last byte has arrived. */
  constructor(private readonly ended?: (length: number) => void) {}

  feed(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.messageLeft > 0) {
        const take = Math.min(this.messageLeft, chunk.length - at);
        this.bytes += take;
        this.messageLeft -= take;
        at += take;
        if (this.messageLeft === 0) this.ended?.(this.length);
        continue;
      }
      // Byte 0 of the prefix is the compression flag, bytes 1–4 the length, big-endian.
      if (this.prefixLeft === 5) this.length = 0;
      else this.length = this.length * 256 + chunk[at]!;
      at++;
      if (--this.prefixLeft === 0) {
        this.messageLeft = this.length;
        this.prefixLeft = 5;
        if (this.length === 0) this.ended?.(0);
      }
    }
  }
}

function statusOf(headers: http2.IncomingHttpHeaders): GrpcCallError | undefined | null {
  const status = headers["grpc-status"];
  if (status === undefined) return null;
  if (status === "0") return undefined;
  const message = headers["grpc-message"];
  return new GrpcCallError(Number(status), decodeURIComponent(typeof message === "string" ? message : ""));
}

export class CountingChannel {
  private readonly session: http2.ClientHttp2Session;

  constructor(address: string) {
    this.session = http2.connect(`http://${address}`, {
      settings: { initialWindowSize: STREAM_WINDOW },
      maxSessionMemory: 256,
    });
    this.session.on("connect", () => this.session.setLocalWindowSize(SESSION_WINDOW));
    // A failed session fails its calls, each of which reports it.
    this.session.on("error", () => {});
  }

  /** A call with one request (unary or server-streaming); resolves to the answer's message bytes. */
  call(path: string, frame: Buffer): Promise<number> {
    return new Promise((resolve, reject) => {
      const stream = this.session.request({
        ":method": "POST",
        ":path": path,
        "content-type": "application/grpc",
        te: "trailers",
      });
      const counter = new MessageCounter();
      let failure: GrpcCallError | undefined | null = null;
      stream.on("response", (headers) => (failure = statusOf(headers)));
      stream.on("trailers", (trailers) => (failure = statusOf(trailers)));
      stream.on("data", (chunk: Buffer) => counter.feed(chunk));
      stream.on("error", (err) => reject(err));
      stream.on("close", () => {
        if (failure === null) reject(new GrpcCallError(14, `stream closed without a status (${stream.rstCode ?? 0})`));
        else if (failure) reject(failure);
        else resolve(counter.bytes);
      });
      stream.end(frame);
    });
  }

  /**
   * A bidirectional stream that sends `frames` and keeps its side open;
   * `ended` is told each answer's message length as its last byte arrives.
   */
  stream(path: string, frames: readonly Buffer[], ended: (length: number) => void): { cancel(): void } {
    const stream = this.session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
    });
    const counter = new MessageCounter(ended);
    stream.on("data", (chunk: Buffer) => counter.feed(chunk));
    // A failed stream delivers nothing more, which the caller notices.
    stream.on("error", () => {});
    for (const frame of frames) stream.write(frame);
    return { cancel: () => stream.close(http2.constants.NGHTTP2_CANCEL) };
  }

  close(): void {
    this.session.close();
  }
}

/** A request in gRPC's length-prefixed framing, uncompressed (not the proxy's own `frame()`: the load generator shares no code with what it measures). */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

import { Code, ConnectError } from "@connectrpc/connect";
import * as http2 from "node:http2";
import { decodeGrpcMessage, FrameDecoder } from "../grpc/wire.js";
import { notSentError } from "./errors.js";
import type { UpstreamTls } from "./upstream.js";

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM } = http2.constants;

export interface H2ClientOptions {
  /** HTTP/2 ping interval toward etcd; 0 disables. */
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
  /** Ping even while no call is open. */
  keepaliveWithoutStream: boolean;
  /** TLS options for https endpoints (CA, client certificate, verification). */
  tls?: UpstreamTls;
}

/**
 * A lean gRPC client for one etcd endpoint: one multiplexed HTTP/2 session,
 * dialled on first use and again after it closes. It moves bytes; callers
 * encode and decode. Its errors are ConnectErrors whose cause tells the
 * failover logic whether etcd can have seen the request (see errors.ts).
 */
export class H2Client {
  private session: http2.ClientHttp2Session | undefined;
  private pinger: NodeJS.Timeout | undefined;
  /** Calls open on this client, for keepalive-without-stream. */
  private openCalls = 0;

  constructor(
    readonly url: string,
    private readonly options: H2ClientOptions,
  ) {}

  /** Opens a call; the caller writes the request frames and ends the stream. */
  open(path: string, headers: http2.OutgoingHttpHeaders): http2.ClientHttp2Stream {
    const stream = this.connection().request(
      { ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers },
      { endStream: false },
    );
    if (this.options.keepaliveTimeMs > 0 && !this.options.keepaliveWithoutStream) {
      this.openCalls++;
      stream.once("close", () => this.openCalls--);
    }
    return stream;
  }

  /**
   * A unary call on raw bytes: sends one framed request, returns the one
   * response message (without its frame header) or throws etcd's status.
   */
  unary(
    path: string,
    requestFrame: Uint8Array,
    headers: http2.OutgoingHttpHeaders,
    signal: AbortSignal,
    maxResponseBytes: number,
  ): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(new ConnectError("context canceled", Code.Canceled));
      const stream = this.open(path, headers);
      const decoder = new FrameDecoder(maxResponseBytes);
      let message: Buffer | undefined;
      let status: http2.IncomingHttpHeaders | undefined;
      let failure: unknown;
      const onAbort = () => stream.close(NGHTTP2_CANCEL);
      signal.addEventListener("abort", onAbort, { once: true });

      stream.on("response", (h) => {
        if (h["grpc-status"] !== undefined) status = h; // Trailers-Only
      });
      stream.on("trailers", (t) => (status = t));
      stream.on("data", (chunk: Buffer) => {
        try {
          for (const m of decoder.push(chunk)) message ??= m;
        } catch (err) {
          failure = new ConnectError((err as Error).message, Code.ResourceExhausted);
          stream.close(NGHTTP2_CANCEL);
        }
      });
      stream.on("error", (err) => (failure ??= err));
      stream.on("close", () => {
        signal.removeEventListener("abort", onAbort);
        if (signal.aborted) return reject(new ConnectError("context canceled", Code.Canceled));
        if (failure !== undefined || status === undefined) {
          return reject(connectionError(stream, failure));
        }
        const code = Number(status["grpc-status"]);
        if (code !== 0) return reject(new ConnectError(decodeGrpcMessage(header(status, "grpc-message")), code));
        if (!message)
          return reject(new ConnectError("protocol error: missing output message for unary method", Code.Internal));
        resolve(message);
      });
      stream.end(requestFrame);
    });
  }

  close(): void {
    clearInterval(this.pinger);
    this.session?.close();
    this.session = undefined;
  }

  private connection(): http2.ClientHttp2Session {
    const current = this.session;
    if (current && !current.closed && !current.destroyed) return current;
    const tls = this.url.startsWith("https:") ? this.options.tls : undefined;
    const session = http2.connect(this.url, { settings: { enablePush: false }, ...tls });
    this.session = session;
    // A session error also fails its streams, which report it to their callers.
    session.on("error", () => {});
    session.on("goaway", () => this.forget(session));
    session.on("close", () => this.forget(session));
    session.unref();
    if (this.options.keepaliveTimeMs > 0) this.keepAlive(session);
    return session;
  }

  private forget(session: http2.ClientHttp2Session): void {
    if (this.session === session) {
      this.session = undefined;
      clearInterval(this.pinger);
    }
  }

  /** Pings etcd so a dead connection is noticed without waiting for a call. */
  private keepAlive(session: http2.ClientHttp2Session): void {
    clearInterval(this.pinger);
    this.pinger = setInterval(() => {
      if (session.closed || session.destroyed) return;
      if (!this.options.keepaliveWithoutStream && this.openCalls === 0) return;
      const timeout = setTimeout(
        () => session.destroy(new Error("keepalive ping timed out")),
        this.options.keepaliveTimeoutMs,
      );
      session.ping((err) => {
        clearTimeout(timeout);
        if (err) session.destroy(err);
      });
    }, this.options.keepaliveTimeMs);
    this.pinger.unref();
  }
}

function header(h: http2.IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * The error for a call that ended without a gRPC status. A stream that never
 * got an id, or that etcd refused, never reached etcd and may be re-sent.
 */
function connectionError(stream: http2.ClientHttp2Stream, failure: unknown): ConnectError {
  const reason = failure instanceof Error ? failure : undefined;
  const root = rootCause(reason);
  const message = root?.message ?? `http/2 stream closed with error code ${stream.rstCode}`;
  if (stream.pending || stream.rstCode === NGHTTP2_REFUSED_STREAM) return notSentError(message, reason);
  return new ConnectError(message, Code.Unavailable, undefined, undefined, reason ?? new Error(message));
}

function rootCause(err: Error | undefined): Error | undefined {
  let cur = err;
  while (cur && cur.cause instanceof Error) cur = cur.cause;
  return cur;
}

import { Code, ConnectError } from "@connectrpc/connect";
import type { AnswerGate } from "../call-context.js";
import * as net from "node:net";
import * as tls from "node:tls";
import { decodeGrpcMessage, FrameDecoder } from "../grpc/wire.js";
import { GatheredFrame, type RequestFrame } from "../grpc/request-frame.js";
import { H2ClientConnection, type H2ClientStream } from "../http2/client.js";
import { H2_LIMITS } from "../http2/limits.js";
import { ErrorCode } from "../http2/frames.js";
import { encodeHeaders, type HeaderList } from "../http2/hpack.js";
import { AsyncQueue } from "../util/async-queue.js";
import type { ReadLoan } from "../http2/read-loan.js";
import type { Answer } from "./answer.js";
import { UnaryAnswerReader } from "./unary-answer-reader.js";
import { upstreamFailure } from "./errors.js";

/** The upstream watchdog (see H2Client.watch): a hung member is left within about two seconds. */
const WATCHDOG_TICK_MS = 250;
const SILENCE_MS = 1_000;
const PING_TIMEOUT_MS = 1_000;
/**
 * etcd's server (grpc-go) strikes a ping that comes within 5 s of the last
 * one unless it has sent HEADERS or DATA since, and closes the connection
 * after two strikes. The watchdog pings only after etcd went silent while
 * owing an answer, so strikes pile up only while etcd answers nothing at
 * all, and then a closed connection is what the watchdog wants anyway.
 */
const MIN_PING_GAP_MS = 2_000;

/**
 * Answers this large are relayed as they arrive rather than assembled: a
 * megabyte passes through the proxy as views of its reads (see ReadLoan).
 */
const RELAY_FROM_BYTES = 128 << 10;

/** What grpc-go tells a call whose connection went away under it (etcdctl and clientv3 print it). */
const LOST_CONNECTION = "transport is closing";

/** TLS toward etcd's https endpoints. */
export interface UpstreamTls {
  /** CA bundle to verify etcd's certificates (--cacert); the system's when absent. */
  ca?: Buffer;
  /** Client certificate and key for etcd (--cert, --key). */
  cert?: Buffer;
  key?: Buffer;
  /** False with --insecure-skip-tls-verify. */
  rejectUnauthorized: boolean;
}

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
 * A lean gRPC client for one etcd endpoint: one multiplexed HTTP/2
 * connection (the proxy's own HTTP/2, src/http2), dialled on first use and
 * again after it closes. It moves bytes; callers encode and decode. Its
 * errors are ConnectErrors whose cause tells the failover logic whether etcd
 * can have seen the request (see errors.ts).
 */
export class H2Client {
  private connection_: H2ClientConnection | undefined;
  private pinger: NodeJS.Timeout | undefined;
  /** Calls open on this client, for keepalive-without-stream. */
  private openCalls = 0;
  private readonly target: URL;
  /** The request headers every call shares, encoded once; with each path's, as they are first used. */
  private readonly commonHeaders: Buffer;
  private readonly pathHeaders = new Map<string, Buffer>();

  constructor(
    readonly url: string,
    private readonly options: H2ClientOptions,
  ) {
    this.target = new URL(url);
    this.commonHeaders = encodeHeaders([
      [":method", "POST"],
      [":scheme", this.target.protocol === "https:" ? "https" : "http"],
      [":authority", this.target.host],
      ["content-type", "application/grpc"],
      ["te", "trailers"],
    ]);
  }

  /** Opens a call with its metadata; the caller writes the request frames and ends the stream. */
  open(path: string, metadata: Readonly<Record<string, string>>, connection = this.connection()): H2ClientStream {
    const stream = connection.request(this.headerBlock(path, metadata));
    if (this.options.keepaliveTimeMs > 0 && !this.options.keepaliveWithoutStream) {
      this.openCalls++;
      stream.onClose(() => this.openCalls--);
    }
    return stream;
  }

  /**
   * A unary call on raw bytes: sends one framed request, returns the one
   * response message (without its frame header) or throws etcd's status.
   * A message of RELAY_FROM_BYTES or more comes back as an ArrivingAnswer
   * as soon as its first bytes are in (see UnaryAnswerReader), and hears
   * etcd's status itself.
   */
  unary(
    path: string,
    requestFrame: RequestFrame,
    metadata: Readonly<Record<string, string>>,
    signal: AbortSignal,
    maxResponseBytes: number,
    gate?: AnswerGate,
  ): Promise<Answer> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(new ConnectError("context canceled", Code.Canceled));
      const reader = new UnaryAnswerReader(maxResponseBytes, RELAY_FROM_BYTES, {
        cancel: () => stream.reset(ErrorCode.CANCEL),
        delivered: (bytes) => delivered(bytes),
      });
      const { stream, delivered } = this.call(path, metadata, signal, gate, {
        body: (chunk, loan) => {
          const arriving = reader.push(chunk, loan);
          if (arriving) resolve(arriving);
        },
        end: (outcome) => {
          const result = reader.finish(outcome);
          if (result instanceof ConnectError) reject(result);
          else if (result) resolve(result);
        },
      });
      if (requestFrame instanceof GatheredFrame) for (const piece of requestFrame.pieces) stream.write(piece);
      else stream.write(requestFrame);
      stream.end();
    });
  }

  /**
   * A streaming call: sends `requests` (framed messages) as they come, and
   * resolves once etcd has answered with its response headers (so a dead
   * endpoint fails here, where the caller may still go elsewhere). Then
   * yields the response messages; etcd's status ends or fails them. Leaving
   * the iteration early cancels the call.
   */
  stream(
    path: string,
    requests: AsyncIterable<Uint8Array>,
    metadata: Readonly<Record<string, string>>,
    signal: AbortSignal,
    maxResponseBytes: number,
  ): Promise<AsyncIterable<Buffer>> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(new ConnectError("context canceled", Code.Canceled));
      // A consumer that stops reading, for whatever reason, cancels the call
      // (a no-op once it has ended).
      const messages = new AsyncQueue<Buffer>({ finished: () => stream.reset(ErrorCode.CANCEL) });
      let opened = false;
      const open = () => {
        if (opened) return;
        opened = true;
        resolve(messages);
      };
      const decoder = new FrameDecoder(maxResponseBytes, true);
      const { stream } = this.call(path, metadata, signal, undefined, {
        body: (chunk) => {
          for (const m of decoder.push(chunk)) messages.push(m);
        },
        end: (outcome) => {
          if (!opened && outcome) return reject(outcome);
          open();
          if (outcome) messages.fail(outcome);
          else messages.end();
        },
      });
      stream.onHeaders = open;
      void (async () => {
        try {
          for await (const request of requests) {
            if (stream.closed) return;
            if (!stream.write(request)) await new Promise<void>((r) => stream.onDrain(r));
          }
          stream.end();
        } catch {
          stream.reset(ErrorCode.CANCEL);
        }
      })();
    });
  }

  /**
   * Opens a call whose response body goes to `on.body` (which may throw a
   * FrameError); `on.end` hears how it ended: undefined for OK, else the
   * error (etcd's status, a cancellation, or the connection's failure).
   * `delivered` tells the client's gate of answer bytes passed on to the
   * client, which it counts as queued from then on.
   */
  private call(
    path: string,
    metadata: Readonly<Record<string, string>>,
    signal: AbortSignal,
    gate: AnswerGate | undefined,
    on: { body(chunk: Buffer, loan: ReadLoan | undefined): void; end(outcome: ConnectError | undefined): void },
  ): { stream: H2ClientStream; delivered(bytes: number): void } {
    const connection = this.connection();
    const stream = this.open(path, metadata, connection);
    let failure: ConnectError | undefined;
    const pace =
      gate &&
      paceAnswer(stream, gate, () => {
        failure = new ConnectError("the client is not reading its answers", Code.ResourceExhausted);
        stream.reset(ErrorCode.CANCEL);
      });
    // Only a paced answer starts from the small initial window; the rest take etcd's data as it comes.
    if (!pace) stream.widenWindow(H2_LIMITS.streamWindow);
    const onAbort = () => stream.reset(ErrorCode.CANCEL);
    signal.addEventListener("abort", onAbort, { once: true });
    stream.onBody = (chunk, loan) => {
      try {
        on.body(chunk, loan);
        pace?.arrived(chunk.length);
      } catch (err) {
        failure = new ConnectError((err as Error).message, Code.ResourceExhausted);
        stream.reset(ErrorCode.CANCEL);
      }
    };
    stream.onClose((err) => {
      signal.removeEventListener("abort", onAbort);
      if (signal.aborted) return on.end(new ConnectError("context canceled", Code.Canceled));
      if (failure) return on.end(failure);
      const status = grpcStatus(stream);
      if (status === undefined) return on.end(connectionError(connection, stream, err));
      const code = Number(status["grpc-status"]);
      on.end(code === 0 ? undefined : new ConnectError(decodeGrpcMessage(status["grpc-message"]), code));
    });
    return { stream, delivered: pace ? pace.delivered : () => {} };
  }

  close(): void {
    clearInterval(this.pinger);
    this.connection_?.close();
    this.connection_ = undefined;
  }

  /**
   * Leaves an endpoint that left the pool (auto-sync): calls in flight
   * finish (the connection closes with GOAWAY once they have), and streams
   * still open after `graceMs` end as a lost connection, which the watch hub
   * and the lease coalescer resume on another endpoint.
   */
  retire(graceMs: number): void {
    const connection = this.connection_;
    this.close();
    if (!connection || connection.destroyed) return;
    setTimeout(() => connection.destroy(new Error("the endpoint left the cluster")), graceMs).unref();
  }

  private headerBlock(path: string, metadata: Readonly<Record<string, string>>): Buffer {
    let block = this.pathHeaders.get(path);
    if (!block) {
      block = Buffer.concat([encodeHeaders([[":path", path]]), this.commonHeaders]);
      this.pathHeaders.set(path, block);
    }
    const entries = Object.entries(metadata);
    return entries.length === 0 ? block : Buffer.concat([block, encodeHeaders(entries)]);
  }

  private connection(): H2ClientConnection {
    const current = this.connection_;
    if (current?.usable) return current;
    current?.close();
    const host = this.target.hostname.replace(/^\[(.*)\]$/, "$1");
    const port = Number(this.target.port || (this.target.protocol === "https:" ? 443 : 80));
    const secure = this.target.protocol === "https:";
    let reader: H2ClientConnection | undefined;
    let readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    /** A borrower kept the last read's buffer (a client's socket write still points into it). */
    let kept = false;
    const socket = secure
      ? tls.connect({
          host,
          port,
          servername: net.isIP(host) ? undefined : host,
          ALPNProtocols: ["h2"],
          ...this.options.tls,
        })
      : // Plain TCP reads into one buffer per connection, reused unless a borrower kept it (see consumeReusedRead).
        net.connect({
          host,
          port,
          onread: {
            // net asks before every read which buffer to read into.
            buffer: () => {
              if (kept) readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
              kept = false;
              return readBuffer;
            },
            callback: (bytes, buffer) => {
              if (reader && !reader.consumeReusedRead((buffer as Buffer).subarray(0, bytes))) kept = true;
              return true;
            },
          },
        });
    socket.setNoDelay(true);
    socket.unref();
    const connection = new H2ClientConnection(socket, secure ? "secureConnect" : "connect");
    reader = connection;
    this.connection_ = connection;
    connection.once("close", () => this.forget(connection));
    if (this.options.keepaliveTimeMs > 0) this.keepAlive(connection);
    this.watch(connection);
    return connection;
  }

  /**
   * Notices a member that stops answering without closing its sockets
   * (SIGSTOP, a partition, a disk stall), whatever --dial-keepalive-* say:
   * once etcd has been silent for SILENCE_MS while owing an answer, one
   * PING; no answer within PING_TIMEOUT_MS closes the connection, and the
   * calls on it fail over. Pings are never closer than MIN_PING_GAP_MS.
   * A member whose process still runs but whose disk stalls answers pings:
   * its calls end with etcd's own "request timed out".
   */
  private watch(connection: H2ClientConnection): void {
    let lastPingAt = 0;
    let pinging = false;
    const timer = setInterval(() => {
      if (connection.destroyed) return clearInterval(timer);
      const silentSince = connection.silentSince;
      const now = Date.now();
      if (pinging || connection.size === 0 || silentSince === 0 || now - silentSince < SILENCE_MS) return;
      if (now - lastPingAt < MIN_PING_GAP_MS) return;
      pinging = true;
      lastPingAt = now;
      const timeout = setTimeout(
        () => connection.destroy(new Error("etcd did not answer a ping: the member is unresponsive")),
        PING_TIMEOUT_MS,
      );
      timeout.unref();
      connection.ping((err) => {
        pinging = false;
        clearTimeout(timeout);
        if (err) connection.destroy(err);
      });
    }, WATCHDOG_TICK_MS);
    timer.unref();
    connection.once("close", () => clearInterval(timer));
  }

  private forget(connection: H2ClientConnection): void {
    if (this.connection_ === connection) {
      this.connection_ = undefined;
      clearInterval(this.pinger);
    }
  }

  /** Pings etcd so a dead connection is noticed without waiting for a call. */
  private keepAlive(connection: H2ClientConnection): void {
    clearInterval(this.pinger);
    this.pinger = setInterval(() => {
      if (connection.destroyed) return;
      if (!this.options.keepaliveWithoutStream && this.openCalls === 0) return;
      const timeout = setTimeout(
        () => connection.destroy(new Error("keepalive ping timed out")),
        this.options.keepaliveTimeoutMs,
      );
      connection.ping((err) => {
        clearTimeout(timeout);
        if (err) connection.destroy(err);
      });
    }, this.options.keepaliveTimeMs);
    this.pinger.unref();
  }
}

/** The headers carrying the call's status: the trailers, or a Trailers-Only response. */
function grpcStatus(stream: H2ClientStream): HeaderList | undefined {
  if (stream.trailers) return stream.trailers;
  if (stream.response?.["grpc-status"] !== undefined) return stream.response;
  return undefined;
}

/**
 * The error for a call that ended without a gRPC status. A stream etcd
 * refused, or sent on a connection that never came up, never reached etcd
 * and may be re-sent.
 */
function connectionError(
  connection: H2ClientConnection,
  stream: H2ClientStream,
  failure: Error | undefined,
): ConnectError {
  const root = rootCause(failure);
  const message = root?.message ?? `http/2 stream closed with error code ${stream.rstCode ?? ErrorCode.INTERNAL_ERROR}`;
  if (!connection.mayHaveSeen(stream)) return upstreamFailure("not-sent", message, failure);
  // A call the connection was lost under gets grpc-go's words for it, not node's ("read ECONNRESET").
  return upstreamFailure("connection-lost", failure ? LOST_CONNECTION : message, failure);
}

function rootCause(err: Error | undefined): Error | undefined {
  let cur = err;
  while (cur && cur.cause instanceof Error) cur = cur.cause;
  return cur;
}

/**
 * The read buffer of a plain-TCP connection to etcd, one per connection.
 * Four times node's own 64 KiB: a 1 MB answer takes 7 reads instead of 18,
 * and the WINDOW_UPDATEs its frames earn leave in 6 writes instead of 8
 * (each a packet etcd must read too), since a read's frames are flushed
 * together.
 */
const READ_BUFFER_BYTES = 256 << 10;

/**
 * Lets an answer's bytes into the upstream stream's window only as the
 * client's gate admits them: etcd sends the rest once the client reads.
 * The upstream connection's window is credited as bytes arrive, so a
 * client that never reads stalls only its own calls, never other clients'.
 * Returns what to call with each chunk's size as it arrives, and with the
 * bytes a relayed answer passed on to the client.
 */
function paceAnswer(
  stream: H2ClientStream,
  gate: AnswerGate,
  refused: () => void,
): { arrived(bytes: number): void; delivered(bytes: number): void } {
  stream.flow = "paced";
  /** Admitted by the gate (on arrival, or in advance); settled once passed on to the client, or at close. */
  let admitted = 0;
  /** Arrived and not yet admitted. */
  let pending = 0;
  /** Admitted in advance of arrival: the window's growth. */
  let prepaid = 0;
  let received = 0;
  let waiting = false;
  /** Passed on to the client (a relayed answer), and of those, settled with the gate before the close. */
  let delivered = 0;
  let settledEarly = 0;
  // Bytes both admitted and passed on are the client connection's queue's
  // to count from then on: a relayed answer holds the gate only for what
  // the proxy has not yet handed to its client.
  const settleDelivered = () => {
    const settle = Math.min(admitted, delivered) - settledEarly;
    if (settle <= 0) return;
    settledEarly += settle;
    gate.settle(settle);
  };
  // An answer that outgrows its window gets a window twice as large, up to a client stream's, as far as
  // the gate admits the growth in advance: a large answer to a reading client does not wait a round trip
  // to etcd per 16 KB, and what the proxy may hold stays admitted.
  const grow = () => {
    const window = stream.receiveWindowSize;
    if (received <= window || window >= H2_LIMITS.streamWindow || stream.closed) return;
    const extra = Math.min(window, H2_LIMITS.streamWindow - window);
    if (!gate.admitAhead(extra)) return;
    admitted += extra;
    prepaid += extra;
    stream.growWindow(extra);
  };
  const admit = () => {
    waiting = false;
    if (stream.closed) return;
    if (pending > 0) {
      if (!gate.admit(pending)) {
        waiting = true;
        if (!gate.whenOpen(admit, stream.receiveWindowSize)) refused();
        return;
      }
      admitted += pending;
      stream.consumed(pending);
      pending = 0;
      settleDelivered();
    }
    grow();
  };
  stream.onClose(() => gate.settle(admitted - settledEarly));
  return {
    arrived(bytes) {
      received += bytes;
      const paid = Math.min(prepaid, bytes);
      prepaid -= paid;
      stream.consumed(paid);
      pending += bytes - paid;
      if (!waiting) admit();
      settleDelivered();
    },
    delivered(bytes) {
      delivered += bytes;
      settleDelivered();
    },
  };
}

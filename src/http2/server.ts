/** The server role of the proxy's own HTTP/2: client connections to the proxy. */
import type { Duplex } from "node:stream";
import { H2Connection } from "./connection.js";
import { SERVER_ROLE } from "./role.js";
import { ConnectionError, EMPTY, H2_LIMITS } from "./limits.js";
import { H2StreamBase } from "./stream.js";
import { ErrorCode, Flag, frame32, FRAME_HEADER_BYTES, FrameType, Setting, writeFrameHeader } from "./frames.js";
import { contentLength, FieldRules } from "./header-rules.js";
import type { HeaderList } from "./hpack.js";
import type { AnswerGate } from "../util/answer-gate.js";

export interface H2ServerOptions {
  /** SETTINGS_MAX_CONCURRENT_STREAMS; streams beyond it are refused. */
  maxConcurrentStreams: number;
  /** Each new stream, with its request headers, before any of its body (the first "stream" listener). */
  onStream: (stream: H2Stream) => void;
}

/**
 * How many streams a client may reset, or make the server reset by its
 * mistakes: a burst, then a steady rate (nghttp2's defaults, which node's
 * server applied). Opening and at once resetting streams makes the server
 * work for nothing (CVE-2023-44487), and so does provoking the server's
 * resets (CVE-2025-8671).
 */
const RESET_BURST = 1000;
const RESETS_PER_SECOND = 33;

/** One client connection; emits "stream" for each new stream (the handler, keepalive bookkeeping). */
export class H2ServerConnection extends H2Connection<H2Stream> {
  /** Highest stream id the client has opened. */
  private lastStreamId = 0;
  /** Resets the client may still make now (a token bucket). */
  private resetAllowance = RESET_BURST;
  private resetCheckedAt = performance.now();
  /** Checks each header block the client sends (RFC 9113 §8.2–8.3). */
  private readonly rules = new FieldRules();

  constructor(
    socket: Duplex,
    private readonly options: H2ServerOptions,
  ) {
    super(socket, SERVER_ROLE, [[Setting.MAX_CONCURRENT_STREAMS, options.maxConcurrentStreams]]);
    this.on("stream", options.onStream);
  }

  protected override lastPeerStreamId(): number {
    return this.lastStreamId;
  }

  protected override chargeReset(): void {
    const now = performance.now();
    this.resetAllowance = Math.min(
      RESET_BURST,
      this.resetAllowance + ((now - this.resetCheckedAt) / 1000) * RESETS_PER_SECOND,
    );
    this.resetCheckedAt = now;
    if (--this.resetAllowance < 0) {
      throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "too many stream resets");
    }
  }

  protected neverOpened(streamId: number): boolean {
    return streamId > this.lastStreamId;
  }

  protected onGoaway(): void {
    // The client opens no more streams; those open finish.
  }

  protected onHeaderBlock(streamId: number, flags: number, block: Buffer, selfDependent: boolean): void {
    const endStream = (flags & Flag.END_STREAM) !== 0;
    const existing = this.streams.get(streamId);
    if (existing) return this.onTrailers(existing, endStream, block);
    if (streamId % 2 === 0 || streamId <= this.lastStreamId) {
      this.rules.reset("trailers");
      this.hpack.decode(block, this.rules); // keeps the table in step
      if (streamId % 2 === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `HEADERS on even stream ${streamId}`);
      // Trailers for a stream this side already ended (an answer given before the request was whole, or a
      // refusal) may be ignored (RFC 9113 §5.1); malformed ones get the answer they get on an open stream, so
      // that it does not depend on whether the response won the race with them.
      const malformed = this.rules.verdict() !== undefined || (flags & Flag.END_STREAM) === 0;
      if (malformed && this.closedStreams.closedBy(streamId) === "local-reset") {
        return this.streamError(streamId, ErrorCode.PROTOCOL_ERROR);
      }
      return this.onNotOpen(streamId, FrameType.HEADERS);
    }
    this.lastStreamId = streamId;
    this.rules.reset("request");
    const headers = this.hpack.decode(block, this.rules);
    if (streamId > this.goawayLastId) {
      // Sent before the client saw our GOAWAY: its DATA may still come, and is ignored.
      return this.closedStreams.remember(streamId, "local-reset");
    }
    // grpc-go answers a header list over its limit with FRAME_SIZE_ERROR.
    if (this.hpack.oversized) return this.refuse(streamId, ErrorCode.FRAME_SIZE_ERROR);
    if (selfDependent || this.rules.verdict() !== undefined) return this.refuse(streamId, ErrorCode.PROTOCOL_ERROR);
    const length = contentLength(headers["content-length"]);
    if (Number.isNaN(length) || (endStream && length !== undefined && length !== 0)) {
      return this.refuse(streamId, ErrorCode.PROTOCOL_ERROR);
    }
    if (this.streams.size >= this.options.maxConcurrentStreams || this.stalledCost() > H2_LIMITS.maxStalledBytes) {
      return this.refuse(streamId, ErrorCode.REFUSED_STREAM);
    }
    const stream = new H2Stream(this, streamId, headers, this.peerInitialWindow);
    stream.expectedLength = length;
    this.streams.set(streamId, stream);
    this.emit("stream", stream);
    if (endStream) stream.receive(EMPTY, Flag.END_STREAM, 0);
  }

  /** A request the proxy will not serve is a stream error; the connection goes on. */
  private refuse(streamId: number, code: ErrorCode): void {
    this.closedStreams.remember(streamId, "local-reset");
    if (code === ErrorCode.REFUSED_STREAM) this.sendControl(frame32(FrameType.RST_STREAM, streamId, code));
    else this.streamError(streamId, code);
  }

  /** A second header block on an open stream: the client's trailers, which must end its side. */
  private onTrailers(stream: H2Stream, endStream: boolean, block: Buffer): void {
    this.rules.reset("trailers");
    this.hpack.decode(block, this.rules);
    if (stream.remoteEnded) return this.streamError(stream.id, ErrorCode.STREAM_CLOSED);
    if (!endStream || this.hpack.oversized || this.rules.verdict() !== undefined) {
      return this.streamError(stream.id, ErrorCode.PROTOCOL_ERROR);
    }
    stream.receive(EMPTY, Flag.END_STREAM, 0);
  }
}

/**
 * One request stream. The handler sets `onBody`/`onEnd` synchronously when
 * it gets the stream; `respond`, `write` and `end` answer. The stream closes
 * when the answer ends (a client still sending is then reset with NO_ERROR,
 * as gRPC servers do), when either side resets it, or when the connection
 * goes.
 */
export class H2Stream extends H2StreamBase {
  /** The client has ended its side. */
  onEnd: (() => void) | undefined;
  headersSent = false;
  /** Whatever the code serving this stream keeps of its call (the native lane's bookkeeping). */
  call: unknown = undefined;

  constructor(
    connection: H2ServerConnection,
    id: number,
    readonly headers: HeaderList,
    initialWindow: number,
  ) {
    super(connection, id, initialWindow);
  }

  /**
   * Sends response headers (a pre-encoded block); `endStream` makes it a
   * headers-only answer. Body written before it waits for it.
   */
  respond(block: Buffer, endStream = false): void {
    if (this.closed || this.headersSent) return;
    this.headersSent = true;
    this.connection.sendHeaders(this.id, block, endStream);
    if (endStream) this.endedLocally();
    else if (!this.pump()) this.connection.wait(this);
  }

  /**
   * A complete answer: headers, a body (its pieces sent as one DATA frame)
   * and trailers. When the flow-control windows take the body at once, the
   * three frames are built in one buffer; otherwise they go piece by piece.
   */
  respondWhole(headers: Buffer, body: readonly Uint8Array[], trailers: Buffer): void {
    if (this.closed || this.headersSent) return;
    let length = 0;
    for (const piece of body) length += piece.length;
    const max = this.connection.maxFrame;
    if (
      length > this.sendWindow ||
      headers.length > max ||
      trailers.length > max ||
      !this.connection.reserveWholeFrame(length)
    ) {
      this.respond(headers);
      for (const piece of body) this.write(piece);
      this.end(trailers);
      return;
    }
    this.headersSent = true;
    this.sendWindow -= length;
    const out = Buffer.allocUnsafe(3 * FRAME_HEADER_BYTES + headers.length + length + trailers.length);
    let at = writeFrameHeader(out, 0, headers.length, FrameType.HEADERS, Flag.END_HEADERS, this.id);
    at += headers.copy(out, at);
    at = writeFrameHeader(out, at, length, FrameType.DATA, 0, this.id);
    for (const piece of body) {
      out.set(piece, at);
      at += piece.length;
    }
    at = writeFrameHeader(out, at, trailers.length, FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, this.id);
    trailers.copy(out, at);
    this.connection.send(out);
    this.endedLocally();
  }

  /** The client's gate for answers from etcd (see AnswerGate). */
  get answerGate(): AnswerGate {
    return (this.connection as H2ServerConnection).answerGate;
  }

  override pump(): boolean {
    return this.headersSent ? super.pump() : true;
  }

  protected override endedLocally(): void {
    // The answer is complete: a client still sending is told to stop.
    if (this.remoteEnded) {
      this.closedBy = "peer";
    } else {
      this.connection.send(frame32(FrameType.RST_STREAM, this.id, ErrorCode.NO_ERROR));
      this.rstCode = ErrorCode.NO_ERROR;
    }
    this.close(undefined);
  }

  protected endedRemotely(): void {
    this.onEnd?.();
  }
}

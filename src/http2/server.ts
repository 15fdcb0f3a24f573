/** The server role of the proxy's own HTTP/2: client connections to the proxy. */
import type { Duplex } from "node:stream";
import { ConnectionError, EMPTY, H2Connection, H2StreamBase } from "./connection.js";
import { ErrorCode, Flag, frame32, FRAME_HEADER_BYTES, FrameType, Setting, writeFrameHeader } from "./frames.js";
import type { HeaderList } from "./hpack.js";

export interface H2ServerOptions {
  /** SETTINGS_MAX_CONCURRENT_STREAMS; streams beyond it are refused. */
  maxConcurrentStreams: number;
  /** Each new stream, with its request headers, before any of its body (the first "stream" listener). */
  onStream: (stream: H2Stream) => void;
}

/**
 * How many streams a client may reset: a burst, then a steady rate
 * (nghttp2's defaults, which node's server applied). Opening and at once
 * resetting streams makes the server work for nothing (CVE-2023-44487).
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

  constructor(
    socket: Duplex,
    private readonly options: H2ServerOptions,
  ) {
    super(socket, "server", [[Setting.MAX_CONCURRENT_STREAMS, options.maxConcurrentStreams]]);
    this.on("stream", options.onStream);
  }

  protected override lastPeerStreamId(): number {
    return this.lastStreamId;
  }

  protected override peerReset(): void {
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

  protected onHeaderBlock(streamId: number, flags: number, headers: HeaderList): void {
    const endStream = (flags & Flag.END_STREAM) !== 0;
    const existing = this.streams.get(streamId);
    if (existing) {
      // Trailers from the client: they must end its side.
      if (!endStream) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "second HEADERS without END_STREAM");
      existing.receive(EMPTY, Flag.END_STREAM, 0);
      return;
    }
    if (streamId % 2 === 0 || streamId <= this.lastStreamId) {
      if (streamId % 2 === 1 && streamId <= this.lastStreamId) return; // trailers of a stream already closed
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `HEADERS on stream ${streamId}, not a client stream`);
    }
    this.lastStreamId = streamId;
    if (streamId > this.goawayLastId) return;
    if (this.streams.size >= this.options.maxConcurrentStreams) {
      this.send(frame32(FrameType.RST_STREAM, streamId, ErrorCode.REFUSED_STREAM));
      return;
    }
    const stream = new H2Stream(this, streamId, headers, this.peerInitialWindow);
    this.streams.set(streamId, stream);
    this.emit("stream", stream);
    if (endStream) stream.receive(EMPTY, Flag.END_STREAM, 0);
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

  override pump(): boolean {
    return this.headersSent ? super.pump() : true;
  }

  protected override endedLocally(): void {
    // The answer is complete: a client still sending is told to stop.
    if (!this.remoteEnded) {
      this.connection.send(frame32(FrameType.RST_STREAM, this.id, ErrorCode.NO_ERROR));
      this.rstCode = ErrorCode.NO_ERROR;
    }
    this.localEnded = true;
    this.close(undefined);
  }

  protected endedRemotely(): void {
    this.onEnd?.();
  }
}

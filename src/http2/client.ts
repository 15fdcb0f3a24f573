/** The client role of the proxy's own HTTP/2: the proxy's connections to etcd. */
import type { Duplex } from "node:stream";
import { H2Connection } from "./connection.js";
import { CLIENT_ROLE } from "./role.js";
import { EMPTY } from "./limits.js";
import { H2StreamBase } from "./stream.js";
import { ErrorCode, Flag, frame32, FrameType, MAX_WINDOW } from "./frames.js";
import type { HeaderList } from "./hpack.js";

/** One connection to a server; `request` opens streams on it. */
export class H2ClientConnection extends H2Connection<H2ClientStream> {
  private nextStreamId = 1;
  /** The socket connected, so streams sent on it may have reached the server. */
  connected = false;

  constructor(socket: Duplex, connectEvent: "connect" | "secureConnect") {
    super(socket, CLIENT_ROLE);
    socket.once(connectEvent, () => (this.connected = true));
  }

  /** Whether a new stream can be opened here (not closing, ids left). */
  get usable(): boolean {
    return !this.closed && !this.destroyed && this.nextStreamId < MAX_WINDOW;
  }

  /** Opens a stream by sending its request headers (a complete header block). */
  request(headerBlock: Buffer): H2ClientStream {
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const stream = new H2ClientStream(this, id, this.peerInitialWindow);
    this.streams.set(id, stream);
    this.sendHeaders(id, headerBlock, false);
    return stream;
  }

  protected neverOpened(streamId: number): boolean {
    return streamId >= this.nextStreamId;
  }

  protected onGoaway(lastStreamId: number): void {
    // Streams above the last one the server took were never processed: safe to send again elsewhere.
    for (const stream of this.streams.values()) {
      if (stream.id > lastStreamId) stream.refuse();
    }
  }

  protected onHeaderBlock(streamId: number, flags: number, block: Buffer): void {
    const headers = this.hpack.decode(block);
    this.streams.get(streamId)?.receiveHeaders(headers, (flags & Flag.END_STREAM) !== 0);
  }

  /** Whether the server can have seen stream `stream` (false when it provably did not). */
  mayHaveSeen(stream: H2ClientStream): boolean {
    return this.connected && !stream.refused;
  }
}

/**
 * One call. Callers set `onBody` (and `onClose`), write the request and end
 * it; `response` and `trailers` hold what the server answered.
 */
export class H2ClientStream extends H2StreamBase {
  response: HeaderList | undefined;
  trailers: HeaderList | undefined;
  /** The server refused it (REFUSED_STREAM, or above a GOAWAY's last stream): it was never processed. */
  refused = false;

  /** The response headers arrived (not for a Trailers-Only answer, which only closes). */
  onHeaders: (() => void) | undefined;

  receiveHeaders(headers: HeaderList, endStream: boolean): void {
    if (this.response === undefined) {
      this.response = headers;
      if (!endStream) this.onHeaders?.();
    } else this.trailers = headers;
    if (endStream) this.receive(EMPTY, Flag.END_STREAM, 0);
  }

  override receiveReset(code: number): void {
    if (code === ErrorCode.REFUSED_STREAM) this.refused = true;
    super.receiveReset(code);
  }

  refuse(): void {
    this.refused = true;
    this.close(new Error("the server refused the stream"));
  }

  protected endedRemotely(): void {
    // The server has answered; a request still being sent is cancelled.
    if (!this.localEnded) {
      this.connection.send(frame32(FrameType.RST_STREAM, this.id, ErrorCode.CANCEL));
      this.rstCode = ErrorCode.CANCEL;
    }
    this.close(undefined);
  }
}

/**
 * One HTTP/2 stream as both roles see it (server.ts and client.ts add what
 * each role needs): the body going out, queued and flow controlled with
 * back-pressure, the body coming in, its windows enforced and credited as it
 * is consumed, and closing, once.
 */
import { ErrorCode, Flag, frame, frame32, FRAME_HEADER_BYTES, FrameType, writeFrameHeader } from "./frames.js";
import { H2_LIMITS, STREAM_HIGH_WATER, type ClosedBy, type StreamState } from "./limits.js";
import { ReceiveWindow } from "./receive-window.js";
import type { Borrower, ReadLoan } from "./read-loan.js";

/**
 * What a stream needs of its connection (H2Connection is one): a place in
 * the send queue, the connection's send window, its frames, and the
 * accounting of what its peer sent and left unread.
 */
export interface StreamHost {
  /** SETTINGS_INITIAL_WINDOW_SIZE this side announced. */
  readonly streamWindow: number;
  send(bytes: Uint8Array): void;
  sendControl(bytes: Uint8Array): void;
  sendHeaders(streamId: number, block: Buffer, endStream: boolean): void;
  /** Queues the stream to be pumped at the next flush. */
  schedule(stream: H2StreamBase): void;
  /** Pumps and writes now; true if the socket took everything (see ConnectionOutput.flushNow). */
  flushNow(): boolean;
  /** Parks the stream until the connection's send window opens. */
  wait(stream: H2StreamBase): void;
  takeSendWindow(wanted: number): number;
  /** Takes `n` bytes of send window only if a whole frame of them may go now. */
  reserveWholeFrame(n: number): boolean;
  /** The peer's SETTINGS_MAX_FRAME_SIZE. */
  readonly maxFrame: number;
  largeSlot(stream: H2StreamBase, claim: boolean): boolean;
  addBacklog(n: number): void;
  /** Credits `n` received bytes back to the peer's connection window. */
  release(n: number): void;
  streamError(streamId: number, code: ErrorCode): void;
  /** The stream closed: the connection lets it go. */
  forget(stream: H2StreamBase): void;
}

/**
 * When a stream's received bytes are credited back to the peer:
 * - "receipt": at once (the proxy's upstream calls, whose readers keep up);
 * - "close": the stream window at once, the connection's when the stream
 *   closes (a unary call's request, held whole until its answer);
 * - "consumed": as the reader calls `consumed` (streams whose messages
 *   queue up: a request the reader does not take stops the sender);
 * - "paced": the connection's at once, the stream's as the reader calls
 *   `consumed` (an answer from etcd, let in as fast as its client reads:
 *   one stalled stream never holds the connection's window).
 */
export type FlowCredit = "receipt" | "close" | "consumed" | "paced";

/**
 * What both roles' streams share: the body going out (queued, flow
 * controlled, with back-pressure), the body coming in (windows enforced and
 * credited as it is consumed), and closing, once.
 *
 * States (RFC 9113 §5.1), from this side's view of a stream the peer opened:
 *
 *     open ──peer END_STREAM──▶ half-closed (remote) ──our END_STREAM──▶ closed
 *       │                                                                  ▲
 *       └──our END_STREAM──▶ half-closed (local) ──peer END_STREAM─────────┤
 *     any ──RST_STREAM (either side) or connection loss────────────────────┘
 *
 * A server stream that answers before the peer has ended sends
 * RST_STREAM(NO_ERROR) and closes (gRPC servers do the same).
 */
export abstract class H2StreamBase implements Borrower {
  /**
   * The peer's body bytes, as they come; a chunk with a `loan` is a view of
   * a reused read buffer, to be copied (or lent on) if kept past the call.
   */
  onBody: ((chunk: Buffer, loan: ReadLoan | undefined) => void) | undefined;
  /** Where the stream stands (the diagram above); "half-closed (local)" once this side's END_STREAM is queued. */
  state: StreamState = "open";
  /** The RST_STREAM code that closed the stream, if one did. */
  rstCode: number | undefined;
  /** Who closed the stream: what late frames on it mean. */
  closedBy: ClosedBy = "local-reset";
  /** The connection's send window for this stream. */
  sendWindow: number;
  /** When received bytes are credited back (see FlowCredit). */
  flow: FlowCredit = "receipt";
  /** The request's content-length, which the DATA must add up to (RFC 9113 §8.1.1). */
  expectedLength: number | undefined;

  private closeListeners: Array<(err: Error | undefined) => void> | ((err: Error | undefined) => void) | undefined;
  private drainListeners: Array<() => void> = [];
  private queue: Uint8Array[] = [];
  private queued = 0;
  /** What ends the body once the queue is sent: a trailer block, or null for an empty END_STREAM DATA. */
  private ending: Buffer | null | undefined;
  /** What the peer may still send on this stream, credited back as its reader consumes. */
  private readonly receiving: ReceiveWindow;
  /** Received bytes not yet released to the connection window. */
  private held = 0;
  private bodyReceived = 0;

  constructor(
    protected readonly connection: StreamHost,
    readonly id: number,
    initialWindow: number,
  ) {
    this.sendWindow = initialWindow;
    this.receiving = new ReceiveWindow(connection.streamWindow);
  }

  /** Response bytes queued and not yet sent. */
  get queuedBytes(): number {
    return this.queued;
  }

  get closed(): boolean {
    return this.state === "closed";
  }

  /** The peer has sent END_STREAM and this side has not. */
  get remoteEnded(): boolean {
    return this.state === "half-closed (remote)";
  }

  /** This side has queued its END_STREAM and the peer has not. */
  get localEnded(): boolean {
    return this.state === "half-closed (local)";
  }

  /**
   * Runs once when the stream closes, for whatever reason (an Error when the
   * connection failed), a microtask after the close.
   */
  onClose(fn: (err: Error | undefined) => void): void {
    if (this.closed) return void queueMicrotask(() => fn(undefined));
    const current = this.closeListeners;
    if (current === undefined) this.closeListeners = fn;
    else if (typeof current === "function") this.closeListeners = [current, fn];
    else current.push(fn);
  }

  /** node-style alias, so keepalive bookkeeping treats both servers alike. */
  once(_event: "close", fn: () => void): this {
    this.onClose(fn);
    return this;
  }

  /** Runs once when queued data has drained below the high-water mark (or the stream closed). */
  onDrain(fn: () => void): void {
    if (this.closed) return void queueMicrotask(fn);
    this.drainListeners.push(fn);
  }

  /**
   * Queues body bytes, sent when the connection flushes; false asks the
   * caller to wait for onDrain. Bytes under a `loan` are sent, or copied,
   * before the lender reads again (see release).
   */
  write(data: Uint8Array, loan?: ReadLoan): boolean {
    if (this.closed || this.ending !== undefined) return false;
    if (loan?.covers(data) && !loan.borrow(this)) data = Buffer.from(data);
    if (data.length > 0) {
      this.queue.push(data);
      this.queued += data.length;
      this.connection.addBacklog(data.length);
      this.connection.schedule(this);
    }
    return this.queued < STREAM_HIGH_WATER;
  }

  /**
   * The lender is about to read again: what is queued under its loan goes
   * to the socket now, and what the windows hold back is copied. False if
   * the socket did not take it all at once (it still points into the loan).
   */
  release(loan: ReadLoan): boolean {
    const written = this.connection.flushNow();
    for (let i = 0; i < this.queue.length; i++) {
      const piece = this.queue[i]!;
      if (loan.covers(piece)) this.queue[i] = Buffer.from(piece);
    }
    return written;
  }

  /** Drops the body bytes queued and not yet sent (an answer that can no longer complete). */
  dropQueued(): void {
    this.connection.addBacklog(-this.queued);
    this.queue = [];
    this.queued = 0;
  }

  /** Ends this side, after the queued body: with a trailer block, or with an empty END_STREAM DATA frame. */
  end(trailers?: Buffer): void {
    if (this.closed || this.ending !== undefined) return;
    this.ending = trailers ?? null;
    if (this.queued > 0) this.connection.schedule(this);
    else if (!this.pump()) this.connection.wait(this);
  }

  /** Resets the stream (RST_STREAM) and closes it. */
  reset(code: number = ErrorCode.CANCEL): void {
    if (this.closed) return;
    this.connection.send(frame32(FrameType.RST_STREAM, this.id, code));
    this.rstCode = code;
    this.close(undefined);
  }

  /**
   * Sends what the flow-control windows allow; true when nothing is left
   * waiting (all data sent, and the end if one was asked for).
   */
  pump(): boolean {
    if (this.closed || this.localEnded) return true;
    while (this.queued > 0) {
      const budget = Math.min(this.queued, this.sendWindow);
      if (budget <= 0) return false;
      const n = this.connection.takeSendWindow(budget);
      if (n === 0) return false;
      this.sendWindow -= n;
      const last = n === this.queued && this.ending === null;
      this.sendData(n, last ? Flag.END_STREAM : 0);
      if (last) {
        this.endedLocally();
        return true;
      }
    }
    if (this.drainListeners.length > 0) for (const fn of this.drainListeners.splice(0)) fn();
    if (this.ending === undefined) return true;
    if (this.ending === null) this.connection.send(frame(FrameType.DATA, Flag.END_STREAM, this.id));
    else this.connection.sendHeaders(this.id, this.ending, true);
    this.endedLocally();
    return true;
  }

  /**
   * One DATA frame carrying the next `n` queued bytes, however many writes
   * they came in: its header, then the writes themselves (or parts of them),
   * copied only once, when the connection joins what it sends in a tick.
   */
  private sendData(n: number, flags: number): void {
    const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
    writeFrameHeader(header, 0, n, FrameType.DATA, flags, this.id);
    this.connection.send(header);
    let left = n;
    let taken = 0;
    while (left > 0) {
      const head = this.queue[taken]!;
      if (head.length <= left) {
        this.connection.send(head);
        left -= head.length;
        taken++;
      } else {
        this.connection.send(head.subarray(0, left));
        this.queue[taken] = head.subarray(left);
        left = 0;
      }
    }
    this.queue.splice(0, taken);
    this.queued -= n;
    this.connection.addBacklog(-n);
  }

  /**
   * Connection input for this stream; `size` is the whole frame's payload,
   * padding included, which is what the windows count.
   */
  receive(chunk: Buffer, endStream: number, size: number, loan?: ReadLoan): void {
    if (this.remoteEnded || this.closed) {
      // DATA after the peer's END_STREAM (half-closed remote): a stream error.
      this.connection.release(size);
      if (!this.closed) this.connection.streamError(this.id, ErrorCode.STREAM_CLOSED);
      return;
    }
    if (!this.receiving.take(size)) {
      this.connection.release(size);
      return this.connection.streamError(this.id, ErrorCode.FLOW_CONTROL_ERROR);
    }
    this.held += size;
    const padding = size - chunk.length;
    if (padding > 0) this.consumed(padding);
    if (chunk.length > 0) {
      this.bodyReceived += chunk.length;
      if (this.expectedLength !== undefined && this.bodyReceived > this.expectedLength) {
        return this.connection.streamError(this.id, ErrorCode.PROTOCOL_ERROR);
      }
      if (this.flow === "receipt") this.consumed(chunk.length);
      else if (this.flow === "paced") {
        this.held -= chunk.length;
        this.connection.release(chunk.length);
      } else if (this.flow === "close") {
        this.creditStream(chunk.length);
        // A request larger than half the connection window passes on credit as it comes, one stream at a time.
        if (this.held > H2_LIMITS.connectionWindow / 2 && this.connection.largeSlot(this, true)) {
          this.flow = "receipt";
          this.connection.release(this.held);
          this.held = 0;
        }
      }
      this.onBody?.(chunk, loan);
    }
    if (endStream && !this.closed) {
      if (this.expectedLength !== undefined && this.bodyReceived !== this.expectedLength) {
        return this.connection.streamError(this.id, ErrorCode.PROTOCOL_ERROR);
      }
      // Half-closed (local) stays so until endedRemotely closes the stream.
      if (this.state === "open") this.state = "half-closed (remote)";
      this.endedRemotely();
    }
  }

  /** The request bytes its content-length still promises, or -1 (no length declared, or the request ended). */
  owedBody(): number {
    return this.expectedLength === undefined || this.remoteEnded || this.closedBy === "peer"
      ? -1
      : this.expectedLength - this.bodyReceived;
  }

  /** Claims (or gives back) the connection's one slot for holding a large request unreleased. */
  claimLargeSlot(claim: boolean): boolean {
    return this.connection.largeSlot(this, claim);
  }

  /**
   * The reader is done with `n` received bytes: both windows get them back,
   * or with `connectionToo` false only the stream's (the connection's waits
   * for `releaseHeld` or the close).
   */
  consumed(n: number, connectionToo = true): void {
    if (n <= 0) return;
    if (this.flow !== "paced" && connectionToo) {
      // Bytes released already (releaseHeld, or at receipt) are not released twice.
      const release = Math.min(n, this.held);
      this.held -= release;
      this.connection.release(release);
    }
    this.creditStream(n);
  }

  /** Raises this stream's receive window to `size` at once (streams whose reader keeps up). */
  widenWindow(size: number): void {
    if (this.closed) return;
    const more = this.receiving.widen(size);
    if (more > 0) this.connection.send(frame32(FrameType.WINDOW_UPDATE, this.id, more));
  }

  /** This stream's receive window as last announced (the initial one, widened or grown since). */
  get receiveWindowSize(): number {
    return this.receiving.size;
  }

  /** Lets the peer send `extra` bytes more than it may now, and keeps the window that much larger. */
  growWindow(extra: number): void {
    if (extra <= 0 || this.closed || this.remoteEnded) return;
    this.connection.send(frame32(FrameType.WINDOW_UPDATE, this.id, this.receiving.grow(extra)));
  }

  /** Gives the connection's window every byte this stream still holds. */
  releaseHeld(): void {
    this.connection.release(this.held);
    this.held = 0;
  }

  /** Gives `n` bytes back to this stream's window only (the connection's waits for close). */
  private creditStream(n: number): void {
    if (this.closed || this.remoteEnded) return;
    const increment = this.receiving.credit(n);
    if (increment > 0) this.connection.sendControl(frame32(FrameType.WINDOW_UPDATE, this.id, increment));
  }

  receiveReset(code: number): void {
    if (this.closed) return;
    this.rstCode = code;
    this.closedBy = "peer";
    this.close(undefined);
  }

  /** This side's END_STREAM has been queued. */
  protected endedLocally(): void {
    if (this.remoteEnded) {
      this.closedBy = "peer";
      this.close(undefined);
    } else {
      this.state = "half-closed (local)";
    }
  }

  /** The peer's END_STREAM arrived. */
  protected abstract endedRemotely(): void;

  /** Closes the stream and forgets it. */
  protected close(err: Error | undefined): void {
    if (this.closed) return;
    this.terminate(err);
    this.connection.forget(this);
  }

  /** Marks the stream closed and tells its listeners, once (the connection calls it when it dies). */
  terminate(err: Error | undefined): void {
    if (this.closed) return;
    this.state = "closed";
    this.connection.largeSlot(this, false);
    this.connection.addBacklog(-this.queued);
    this.queue = [];
    this.queued = 0;
    // Whatever the reader still held is no longer anyone's.
    this.connection.release(this.held);
    this.held = 0;
    const listeners = this.closeListeners;
    this.closeListeners = undefined;
    // A microtask later: whoever closed the stream (reset, end) is never re-entered by its own listeners.
    if (listeners) {
      queueMicrotask(() => {
        if (typeof listeners === "function") listeners(err);
        else for (const fn of listeners) fn(err);
      });
    }
    for (const fn of this.drainListeners.splice(0)) fn();
  }
}

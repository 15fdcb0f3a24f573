/**
 * A connection's sending side: the queue of frames for the socket, the
 * streams waiting to send, the connection's send window, and the defences
 * against a peer that does not read. Everything queued in one tick leaves
 * in one socket write (or one writev, when it holds large pieces).
 */
import type { Duplex } from "node:stream";
import { DEFAULT_MAX_FRAME, DEFAULT_WINDOW, ErrorCode, MAX_WINDOW } from "./frames.js";
import { ConnectionError, H2_LIMITS } from "./limits.js";
import type { H2StreamBase } from "./stream.js";

/** Pieces at least this large are written to the socket as they are, not joined with the others first. */
const WRITE_AS_IS_BYTES = 4096;

export class ConnectionOutput {
  private out: Uint8Array[] = [];
  /** Bytes handed to the socket so far. */
  written = 0;
  private flushQueued = false;
  /**
   * Streams written to in this tick, pumped when the connection flushes: a
   * stream's messages of one tick (a watch event for a hundred watchers of
   * one stream) leave as one DATA frame, not one frame each.
   */
  private readonly ready = new Set<H2StreamBase>();
  /** Streams with data waiting for window or for the socket to drain. */
  private readonly waiting = new Set<H2StreamBase>();
  private socketBlocked = false;
  /** The peer's SETTINGS_MAX_FRAME_SIZE. */
  maxFrame = DEFAULT_MAX_FRAME;
  /** What the peer lets this side send on the connection. */
  private sendWindow = DEFAULT_WINDOW;
  /** Response bytes queued on streams, and control frames queued while the socket is full. */
  backlog = 0;
  private controlQueued = 0;

  constructor(
    private readonly socket: Duplex,
    /** The peer is not trusted: control answers are capped, reading stops while it does not read, unread output is bounded. */
    private readonly defends: boolean,
    private readonly isDestroyed: () => boolean,
  ) {}

  /** Queues bytes for the socket. */
  send(bytes: Uint8Array): void {
    if (this.isDestroyed()) return;
    this.out.push(bytes);
    this.flushSoon();
  }

  /**
   * Queues a frame the peer's input made this side owe (an ACK, a reset, a
   * window update). A peer that provokes them without reading the answers
   * (SETTINGS or PING floods) is cut off past the cap.
   */
  sendControl(bytes: Uint8Array): void {
    if (this.defends && this.socketBlocked && ++this.controlQueued > H2_LIMITS.maxQueuedControlFrames) {
      throw new ConnectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        "too many control frames queued for a peer that does not read",
      );
    }
    this.send(bytes);
  }

  /** Pumps `stream` when the connection flushes, with whatever else it is written in this tick. */
  schedule(stream: H2StreamBase): void {
    if (this.isDestroyed()) return;
    this.ready.add(stream);
    this.flushSoon();
  }

  /** Parks `stream` until the window opens or the socket drains. */
  wait(stream: H2StreamBase): void {
    this.waiting.add(stream);
  }

  forget(stream: H2StreamBase): void {
    this.waiting.delete(stream);
    this.ready.delete(stream);
  }

  /** What stalled streams cost the connection now (see H2_LIMITS.maxStalledBytes). */
  stalledCost(): number {
    return this.backlog + this.waiting.size * H2_LIMITS.stalledStreamCost;
  }

  /** Connection-level budget for one DATA frame of up to `wanted` bytes; the caller spends it. */
  takeSendWindow(wanted: number): number {
    if (this.socketBlocked) return 0;
    const n = Math.min(wanted, this.sendWindow, this.maxFrame);
    this.sendWindow -= n;
    return n;
  }

  /**
   * Spends `n` bytes of the connection's window for one DATA frame sent at
   * once, or returns false (and spends nothing) if it cannot go now.
   */
  reserveWholeFrame(n: number): boolean {
    if (this.socketBlocked || n > this.sendWindow || n > this.maxFrame) return false;
    this.sendWindow -= n;
    return true;
  }

  /** The peer's WINDOW_UPDATE on the connection. */
  widen(increment: number): void {
    this.sendWindow += increment;
    if (this.sendWindow > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "window overflow");
    this.serveWaiting();
  }

  /** A stream's window opened: it sends what it can, and waits no longer if it sent everything. */
  pumpNow(stream: H2StreamBase): void {
    if (stream.pump()) this.waiting.delete(stream);
  }

  /** Lets streams with queued data send what the windows allow. */
  serveWaiting(): void {
    for (const stream of this.waiting) {
      if (this.socketBlocked || this.sendWindow <= 0) return;
      if (stream.pump()) this.waiting.delete(stream);
    }
  }

  onDrain(): void {
    this.socketBlocked = false;
    this.controlQueued = 0;
    if (this.defends && !this.isDestroyed()) this.socket.resume();
    this.serveWaiting();
  }

  private flushSoon(): void {
    if (!this.flushQueued) {
      this.flushQueued = true;
      process.nextTick(this.flush);
    }
  }

  /**
   * Flushes now rather than at the end of the tick (a stream letting go of
   * lent views); true when the socket took everything at once, so nothing
   * written still points into the caller's memory.
   */
  flushNow(): boolean {
    this.flush();
    return this.socket.writableLength === 0;
  }

  readonly flush = (): void => {
    for (const stream of this.ready) if (!stream.pump()) this.waiting.add(stream);
    this.ready.clear();
    this.flushQueued = false;
    if (this.defends && this.backlog > H2_LIMITS.maxStalledBytes) this.shedStalled();
    if (this.out.length === 0 || this.socket.destroyed) return;
    const pieces = this.out;
    this.out = [];
    let bytes = 0;
    let large = false;
    for (const piece of pieces) {
      bytes += piece.length;
      if (piece.length >= WRITE_AS_IS_BYTES) large = true;
    }
    this.written += bytes;
    let accepted: boolean;
    if (pieces.length === 1) accepted = this.socket.write(pieces[0]!);
    else if (!large) accepted = this.socket.write(Buffer.concat(pieces, bytes));
    else accepted = this.writeAsIs(pieces);
    if (!accepted && !this.socketBlocked) {
      this.socketBlocked = true;
      // A peer that does not read gets nothing more read from it either:
      // what it sends would only pile up answers it will not take.
      if (this.defends) this.socket.pause();
    }
  };

  /**
   * Small pieces (frame headers, small frames) joined, large ones (a large
   * answer's DATA, as views of etcd's bytes) as they are, in one writev: a
   * megabyte is not copied. False if the socket wants a drain.
   */
  private writeAsIs(pieces: readonly Uint8Array[]): boolean {
    let accepted = true;
    this.socket.cork();
    let from = 0;
    for (let i = 0; i <= pieces.length; i++) {
      const piece = pieces[i];
      if (piece !== undefined && piece.length < WRITE_AS_IS_BYTES) continue;
      if (i - from === 1) accepted = this.socket.write(pieces[from]!) && accepted;
      else if (i > from) accepted = this.socket.write(Buffer.concat(pieces.slice(from, i))) && accepted;
      if (piece !== undefined) accepted = this.socket.write(piece) && accepted;
      from = i + 1;
    }
    this.socket.uncork();
    return accepted;
  }

  /**
   * Resets the largest stalled streams until the backlog fits the budget,
   * leaving at least one: a single large answer to a slow reader may wait.
   */
  private shedStalled(): void {
    while (this.backlog > H2_LIMITS.maxStalledBytes && this.waiting.size > 1) {
      let largest: H2StreamBase | undefined;
      for (const stream of this.waiting) if (!largest || stream.queuedBytes > largest.queuedBytes) largest = stream;
      if (!largest || largest.queuedBytes === 0) return;
      this.waiting.delete(largest);
      largest.reset(ErrorCode.ENHANCE_YOUR_CALM);
    }
  }
}

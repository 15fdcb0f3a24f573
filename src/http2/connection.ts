/**
 * What both ends of the proxy's own HTTP/2 (RFC 9113) share: framing,
 * SETTINGS, PING, flow control in both directions, header blocks with
 * CONTINUATION, and output batching. server.ts and client.ts add the roles.
 *
 * Why not node's HTTP/2: it costs more CPU per gRPC call than the rest of a
 * proxied call together, because every stream is a Duplex with its own
 * buffers, events and header objects. Here a stream is a plain object with
 * callbacks, constant header blocks are encoded once, and everything a
 * connection sends in one tick leaves in one socket write.
 *
 * Not done: server push (never enabled), priorities (ignored, as RFC 9113
 * allows), and outgoing header compression (literals only).
 */
import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import { CompressionError, HpackDecoder, type HeaderList } from "./hpack.js";
import {
  CLIENT_PREFACE,
  DEFAULT_MAX_FRAME,
  DEFAULT_WINDOW,
  ErrorCode,
  Flag,
  frame,
  frame32,
  FRAME_HEADER_BYTES,
  FrameType,
  goawayFrame,
  MAX_WINDOW,
  Setting,
  settingsFrame,
  writeFrameHeader,
} from "./frames.js";

/** What this side announces. Large receive windows: the proxy reads as fast as data comes. */
const HEADER_TABLE_SIZE = 4096;
const STREAM_WINDOW = 1 << 20;
const CONNECTION_WINDOW = 16 << 20;
/** The largest header block (with CONTINUATIONs) accepted before the connection is closed. */
const MAX_HEADER_BLOCK = 1 << 20;
/** A stream's write() asks the caller to wait once this much is queued on it. */
const STREAM_HIGH_WATER = 64 * 1024;

export const EMPTY = Buffer.alloc(0);

export class ConnectionError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/**
 * One HTTP/2 connection. Events: "error" (a protocol error that closed it),
 * "ping" (the peer pinged), "close". goaway, close, destroy and ping mirror
 * node's Http2Session.
 */
export abstract class H2Connection<S extends H2StreamBase = H2StreamBase> extends EventEmitter {
  closed = false;
  destroyed = false;

  protected readonly streams = new Map<number, S>();
  protected readonly hpack = new HpackDecoder(HEADER_TABLE_SIZE);
  /** Streams above this id are refused or ignored after a GOAWAY. */
  protected goawayLastId = MAX_WINDOW;

  private input: Buffer = EMPTY;
  private prefaceExpected: boolean;
  /** A header block waiting for its CONTINUATION frames. */
  private pendingHeaders: { streamId: number; flags: number; chunks: Buffer[]; size: number } | undefined;

  /** Sending: the peer's settings and the connection's flow-control window. */
  protected peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = DEFAULT_MAX_FRAME;
  private sendWindow = DEFAULT_WINDOW;
  /** Streams with data waiting for window or for the socket to drain. */
  private readonly waiting = new Set<H2StreamBase>();
  /**
   * Streams written to in this tick, pumped when the connection flushes: a
   * stream's messages of one tick (a watch event for a hundred watchers of
   * one stream) leave as one DATA frame, not one frame each.
   */
  private readonly ready = new Set<H2StreamBase>();
  private socketBlocked = false;

  /** Receiving: bytes taken since the last connection WINDOW_UPDATE. */
  private received = 0;

  private out: Uint8Array[] = [];
  /** Bytes handed to the socket so far. */
  private written = 0;
  private flushQueued = false;
  private readonly pings: Array<(err: Error | null) => void> = [];

  constructor(
    readonly socket: Duplex,
    role: "server" | "client",
    /** Role-specific SETTINGS, sent with the connection's first frames. */
    extraSettings: Array<[Setting, number]> = [],
  ) {
    super();
    this.prefaceExpected = role === "server";
    if (role === "client") this.send(CLIENT_PREFACE);
    this.send(
      settingsFrame([[Setting.INITIAL_WINDOW_SIZE, STREAM_WINDOW], [Setting.ENABLE_PUSH, 0], ...extraSettings]),
    );
    this.send(frame32(FrameType.WINDOW_UPDATE, 0, CONNECTION_WINDOW - DEFAULT_WINDOW));
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("drain", () => this.onDrain());
    socket.on("error", (err) => this.destroy(err));
    socket.on("close", () => this.destroy());
    socket.on("end", () => this.destroy());
  }

  /** A complete header block for `streamId` (HEADERS plus any CONTINUATIONs). */
  protected abstract onHeaderBlock(streamId: number, flags: number, headers: HeaderList): void;

  /** The peer sent GOAWAY: streams above `lastStreamId` were not processed. */
  protected abstract onGoaway(lastStreamId: number, code: number): void;

  /** Whether `streamId` was never opened (DATA on it is a protocol error). */
  protected abstract neverOpened(streamId: number): boolean;

  /** Tells the peer to open no new streams; those open may finish. */
  goaway(code: number = ErrorCode.NO_ERROR, lastStreamId = this.lastPeerStreamId(), debug?: Uint8Array): void {
    if (this.destroyed) return;
    this.goawayLastId = Math.min(this.goawayLastId, lastStreamId);
    this.send(goawayFrame(this.goawayLastId, code, debug));
  }

  protected lastPeerStreamId(): number {
    return 0;
  }

  /** Graceful close: GOAWAY, then the socket closes once the open streams are done. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.goaway();
    this.closeIfIdle();
  }

  /** Closes at once: every open stream ends as reset. */
  destroy(err?: Error): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.closed = true;
    this.flush();
    const failure = err ?? new Error("connection closed");
    for (const stream of this.streams.values()) stream.terminate(failure);
    this.streams.clear();
    for (const callback of this.pings.splice(0)) callback(failure);
    this.socket.destroy();
    this.emit("close");
  }

  /** Sends a PING; `callback` runs when it is answered or the connection ends. */
  ping(callback: (err: Error | null) => void): boolean {
    if (this.destroyed) return false;
    this.pings.push(callback);
    this.send(frame(FrameType.PING, 0, 0, Buffer.alloc(8)));
    return true;
  }

  /** Bytes handed to the socket so far (keepalive tells a busy connection's pings from idle chatter). */
  get bytesWritten(): number {
    return this.written;
  }

  /** Open streams. */
  get size(): number {
    return this.streams.size;
  }

  // ---- output -------------------------------------------------------------

  /** Queues bytes for the socket; everything queued in one tick leaves in one write. */
  send(bytes: Uint8Array): void {
    if (this.destroyed) return;
    this.out.push(bytes);
    this.flushSoon();
  }

  /** Pumps `stream` when the connection flushes, with whatever else it is written in this tick. */
  schedule(stream: H2StreamBase): void {
    if (this.destroyed) return;
    this.ready.add(stream);
    this.flushSoon();
  }

  private flushSoon(): void {
    if (!this.flushQueued) {
      this.flushQueued = true;
      process.nextTick(this.flush);
    }
  }

  private readonly flush = (): void => {
    for (const stream of this.ready) if (!stream.pump()) this.waiting.add(stream);
    this.ready.clear();
    this.flushQueued = false;
    if (this.out.length === 0 || this.socket.destroyed) return;
    const bytes = this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out);
    this.out.length = 0;
    this.written += bytes.length;
    if (!this.socket.write(bytes)) this.socketBlocked = true;
  };

  private onDrain(): void {
    this.socketBlocked = false;
    this.serveWaiting();
  }

  /** Lets streams with queued data send what the windows allow. */
  private serveWaiting(): void {
    for (const stream of this.waiting) {
      if (this.socketBlocked || this.sendWindow <= 0) return;
      if (stream.pump()) this.waiting.delete(stream);
    }
  }

  /** Connection-level budget for one DATA frame of up to `wanted` bytes; the caller spends it. */
  takeSendWindow(wanted: number): number {
    if (this.socketBlocked) return 0;
    const n = Math.min(wanted, this.sendWindow, this.peerMaxFrame);
    this.sendWindow -= n;
    return n;
  }

  /**
   * Spends `n` bytes of the connection's window for one DATA frame sent at
   * once, or returns false (and spends nothing) if it cannot go now.
   */
  reserveWholeFrame(n: number): boolean {
    if (this.socketBlocked || n > this.sendWindow || n > this.peerMaxFrame) return false;
    this.sendWindow -= n;
    return true;
  }

  /** The largest frame payload the peer accepts. */
  get maxFrame(): number {
    return this.peerMaxFrame;
  }

  wait(stream: H2StreamBase): void {
    this.waiting.add(stream);
  }

  /** Sends a header block, split into CONTINUATION frames if larger than the peer's frame limit. */
  sendHeaders(streamId: number, block: Buffer, endStream: boolean): void {
    const endFlag = endStream ? Flag.END_STREAM : 0;
    if (block.length <= this.peerMaxFrame) {
      this.send(frame(FrameType.HEADERS, endFlag | Flag.END_HEADERS, streamId, block));
      return;
    }
    for (let offset = 0; offset < block.length; offset += this.peerMaxFrame) {
      const last = offset + this.peerMaxFrame >= block.length;
      const part = block.subarray(offset, offset + this.peerMaxFrame);
      const type = offset === 0 ? FrameType.HEADERS : FrameType.CONTINUATION;
      this.send(frame(type, (offset === 0 ? endFlag : 0) | (last ? Flag.END_HEADERS : 0), streamId, part));
    }
  }

  /** A stream has closed (both sides done, or reset). */
  forget(stream: H2StreamBase): void {
    this.streams.delete(stream.id);
    this.waiting.delete(stream);
    this.ready.delete(stream);
    this.closeIfIdle();
  }

  protected closeIfIdle(): void {
    if (this.closed && this.streams.size === 0 && !this.destroyed) {
      this.flush();
      this.socket.end();
      this.destroyed = true;
      this.emit("close");
    }
  }

  // ---- input --------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.destroyed) return;
    this.input = this.input.length === 0 ? chunk : Buffer.concat([this.input, chunk]);
    try {
      if (this.prefaceExpected) {
        if (this.input.length < CLIENT_PREFACE.length) return;
        if (!this.input.subarray(0, CLIENT_PREFACE.length).equals(CLIENT_PREFACE)) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad connection preface");
        }
        this.prefaceExpected = false;
        this.input = this.input.subarray(CLIENT_PREFACE.length);
      }
      let offset = 0;
      const input = this.input;
      while (input.length - offset >= FRAME_HEADER_BYTES) {
        const length = input.readUIntBE(offset, 3);
        if (length > DEFAULT_MAX_FRAME) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "frame too large");
        const end = offset + FRAME_HEADER_BYTES + length;
        if (end > input.length) break;
        const type = input[offset + 3]!;
        const flags = input[offset + 4]!;
        const streamId = input.readUInt32BE(offset + 5) & MAX_WINDOW;
        const payload = input.subarray(offset + FRAME_HEADER_BYTES, end);
        offset = end;
        this.onFrame(type, flags, streamId, payload);
        if (this.destroyed) return;
      }
      this.input = offset === input.length ? EMPTY : input.subarray(offset);
      if (this.received >= CONNECTION_WINDOW / 2) {
        this.send(frame32(FrameType.WINDOW_UPDATE, 0, this.received));
        this.received = 0;
      }
    } catch (err) {
      const code =
        err instanceof ConnectionError
          ? err.code
          : err instanceof CompressionError
            ? ErrorCode.COMPRESSION_ERROR
            : ErrorCode.INTERNAL_ERROR;
      if (this.listenerCount("error") > 0) this.emit("error", err);
      this.send(goawayFrame(this.lastPeerStreamId(), code, Buffer.from((err as Error).message)));
      this.destroy(err as Error);
    }
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.pendingHeaders && type !== FrameType.CONTINUATION) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "expected CONTINUATION");
    }
    switch (type) {
      case FrameType.DATA:
        return this.onDataFrame(flags, streamId, payload);
      case FrameType.HEADERS:
        return this.onHeadersFrame(flags, streamId, payload);
      case FrameType.CONTINUATION:
        return this.onContinuation(flags, streamId, payload);
      case FrameType.RST_STREAM:
        if (streamId === 0 || payload.length !== 4) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad RST_STREAM");
        }
        {
          const stream = this.streams.get(streamId);
          if (!stream) return;
          this.peerReset();
          stream.receiveReset(payload.readUInt32BE(0));
        }
        return;
      case FrameType.SETTINGS:
        return this.onSettings(flags, streamId, payload);
      case FrameType.PING:
        if (streamId !== 0 || payload.length !== 8) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad PING");
        if (flags & Flag.ACK) {
          this.pings.shift()?.(null);
        } else {
          this.send(frame(FrameType.PING, Flag.ACK, 0, payload));
          this.emit("ping");
        }
        return;
      case FrameType.GOAWAY:
        if (payload.length < 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "bad GOAWAY");
        this.closed = true;
        this.onGoaway(payload.readUInt32BE(0) & MAX_WINDOW, payload.readUInt32BE(4));
        this.closeIfIdle();
        return;
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(streamId, payload);
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "push is disabled");
      default:
        return; // PRIORITY and unknown frame types are ignored
    }
  }

  private onDataFrame(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    this.received += payload.length;
    const stream = this.streams.get(streamId);
    if (!stream) {
      // A stream that closed (a reset crossed with the peer's data); ids never opened are an error.
      if (this.neverOpened(streamId)) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream");
      return;
    }
    stream.receive(unpad(flags, payload), flags & Flag.END_STREAM, payload.length);
  }

  private onHeadersFrame(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    let block = unpad(flags, payload);
    if (flags & Flag.PRIORITY) block = block.subarray(5);
    if (flags & Flag.END_HEADERS) return this.onHeaderBlock(streamId, flags, this.hpack.decode(block));
    this.pendingHeaders = { streamId, flags, chunks: [block], size: block.length };
  }

  private onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const pending = this.pendingHeaders;
    if (!pending || pending.streamId !== streamId) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "unexpected CONTINUATION");
    }
    pending.chunks.push(payload);
    pending.size += payload.length;
    if (pending.size > MAX_HEADER_BLOCK) {
      throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large");
    }
    if (flags & Flag.END_HEADERS) {
      this.pendingHeaders = undefined;
      // Decoded even for a stream that is gone: the table must stay in step with the peer's.
      this.onHeaderBlock(streamId, pending.flags, this.hpack.decode(Buffer.concat(pending.chunks)));
    }
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & Flag.ACK) return;
    if (payload.length % 6 !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "bad SETTINGS length");
    for (let i = 0; i < payload.length; i += 6) {
      const id = payload.readUInt16BE(i);
      const value = payload.readUInt32BE(i + 2);
      if (id === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "window too large");
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const stream of this.streams.values()) stream.sendWindow += delta;
      } else if (id === Setting.MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME || value > 16_777_215) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad MAX_FRAME_SIZE");
        }
        this.peerMaxFrame = value;
      } else {
        this.onPeerSetting(id, value);
      }
      // HEADER_TABLE_SIZE: this side never indexes, so any size suits it.
    }
    this.send(frame(FrameType.SETTINGS, Flag.ACK, 0));
    this.serveWaiting();
  }

  /** The peer reset an open stream; a role may limit how often (throw a ConnectionError to close). */
  protected peerReset(): void {}

  /** Settings only one role cares about (the client: MAX_CONCURRENT_STREAMS). */
  protected onPeerSetting(_id: number, _value: number): void {}

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "bad WINDOW_UPDATE");
    const increment = payload.readUInt32BE(0) & MAX_WINDOW;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "zero WINDOW_UPDATE");
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "window overflow");
      this.serveWaiting();
      return;
    }
    const stream = this.streams.get(streamId);
    if (!stream) return;
    if (increment === 0 || stream.sendWindow + increment > MAX_WINDOW) {
      stream.reset(increment === 0 ? ErrorCode.PROTOCOL_ERROR : ErrorCode.FLOW_CONTROL_ERROR);
      return;
    }
    stream.sendWindow += increment;
    if (stream.pump()) this.waiting.delete(stream);
  }
}

function unpad(flags: number, payload: Buffer): Buffer {
  if (!(flags & Flag.PADDED)) return payload;
  if (payload.length === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad padding");
  const pad = payload[0]!;
  if (pad >= payload.length) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad padding");
  return payload.subarray(1, payload.length - pad);
}

/**
 * What both roles' streams share: the body going out (queued, flow
 * controlled, with back-pressure), the body coming in (with window
 * updates), and closing, once.
 */
export abstract class H2StreamBase {
  /** The peer's body bytes, as they come. */
  onBody: ((chunk: Buffer) => void) | undefined;
  closed = false;
  /** The peer has sent END_STREAM. */
  remoteEnded = false;
  /** This side has queued its END_STREAM. */
  localEnded = false;
  /** The RST_STREAM code that closed the stream, if one did. */
  rstCode: number | undefined;
  /** The connection's send window for this stream. */
  sendWindow: number;

  private closeListeners: Array<(err: Error | undefined) => void> | ((err: Error | undefined) => void) | undefined;
  private drainListeners: Array<() => void> = [];
  private queue: Uint8Array[] = [];
  private queued = 0;
  /** What ends the body once the queue is sent: a trailer block, or null for an empty END_STREAM DATA. */
  private ending: Buffer | null | undefined;
  private receivedUnacked = 0;

  constructor(
    protected readonly connection: H2Connection,
    readonly id: number,
    initialWindow: number,
  ) {
    this.sendWindow = initialWindow;
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

  /** Queues body bytes, sent when the connection flushes; false asks the caller to wait for onDrain. */
  write(data: Uint8Array): boolean {
    if (this.closed || this.ending !== undefined) return false;
    if (data.length > 0) {
      this.queue.push(data);
      this.queued += data.length;
      this.connection.schedule(this);
    }
    return this.queued < STREAM_HIGH_WATER;
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
  }

  /** Connection input for this stream; `size` counts padding too, for flow control. */
  receive(chunk: Buffer, endStream: number, size: number): void {
    if (this.remoteEnded) {
      if (!this.closed) this.reset(ErrorCode.STREAM_CLOSED);
      return;
    }
    if (chunk.length > 0) this.onBody?.(chunk);
    this.receivedUnacked += size;
    if (endStream) {
      this.remoteEnded = true;
      this.endedRemotely();
    } else if (this.receivedUnacked >= STREAM_WINDOW / 2 && !this.closed) {
      this.connection.send(frame32(FrameType.WINDOW_UPDATE, this.id, this.receivedUnacked));
      this.receivedUnacked = 0;
    }
  }

  receiveReset(code: number): void {
    if (this.closed) return;
    this.rstCode = code;
    this.close(undefined);
  }

  /** This side's END_STREAM has been queued. */
  protected endedLocally(): void {
    this.localEnded = true;
    if (this.remoteEnded) this.close(undefined);
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
    this.closed = true;
    this.queue = [];
    this.queued = 0;
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

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
import { CompressionError, HpackDecoder } from "./hpack.js";
import {
  CLIENT_PREFACE,
  DEFAULT_MAX_FRAME,
  DEFAULT_WINDOW,
  ErrorCode,
  Flag,
  frame,
  frame32,
  FrameType,
  goawayFrame,
  MAX_WINDOW,
  Setting,
  settingsFrame,
} from "./frames.js";
import { AnswerBudget } from "./answer-budget.js";
import { FrameReader } from "./frame-reader.js";
import { ReceiveWindow } from "./receive-window.js";
import { ConnectionError, H2_LIMITS, type ClosedBy } from "./limits.js";
import type { H2StreamBase, StreamHost } from "./stream.js";

/**
 * What a connection's role decides. The server role accepts connections
 * from clients the proxy does not control and defends against them: control
 * answers are capped, reading stops while the peer does not read, output
 * for unread streams is bounded, closed streams are remembered, and the
 * handshake has a deadline. The client role dials etcd, which it trusts.
 */
export interface RolePolicy {
  /** The peer opens the connection with the client preface. */
  readonly accepts: boolean;
  readonly defends: boolean;
  /** SETTINGS_INITIAL_WINDOW_SIZE this side gives each stream. */
  readonly streamWindow: number;
}

/** Pieces at least this large are written to the socket as they are, not joined with the others first. */
const WRITE_AS_IS_BYTES = 4096;

export const SERVER_ROLE: RolePolicy = { accepts: true, defends: true, streamWindow: H2_LIMITS.streamWindow };
export const CLIENT_ROLE: RolePolicy = { accepts: false, defends: false, streamWindow: H2_LIMITS.upstreamStreamWindow };

/**
 * A connection's life: "closing" once either side sent GOAWAY (open streams
 * finish, no new ones), "destroyed" once its socket is ended or gone.
 */
export type ConnectionState = "open" | "closing" | "destroyed";

/**
 * One HTTP/2 connection. Events: "error" (a protocol error that closed it),
 * "ping" (the peer pinged), "close". goaway, close, destroy and ping mirror
 * node's Http2Session.
 */
export abstract class H2Connection<S extends H2StreamBase = H2StreamBase> extends EventEmitter implements StreamHost {
  state: ConnectionState = "open";

  /** No new streams: closing or destroyed (node's Http2Session.closed). */
  get closed(): boolean {
    return this.state !== "open";
  }

  get destroyed(): boolean {
    return this.state === "destroyed";
  }

  protected readonly streams = new Map<number, S>();
  protected readonly hpack = new HpackDecoder(H2_LIMITS.headerTableSize, H2_LIMITS.maxHeaderListSize);
  /** Streams above this id are refused or ignored after a GOAWAY. */
  protected goawayLastId = MAX_WINDOW;
  /**
   * Peer streams that closed lately and how (see ClosedBy), as a ring: a
   * map churned by every call cost GC work, and it is read only when a
   * frame comes for a stream that is no longer open.
   */
  private readonly closedIds = new Int32Array(H2_LIMITS.closedStreamMemory);
  private readonly closedHow = new Uint8Array(H2_LIMITS.closedStreamMemory);
  private closedNext = 0;
  /** Ids up to this one may have closed and been forgotten. */
  protected forgottenBelow = 0;

  /** The input, cut into frames. */
  private readonly reader: FrameReader;
  /** A server connection has not had its client's first SETTINGS yet. */
  private settingsExpected: boolean;
  private handshakeTimer: NodeJS.Timeout | undefined;
  /** A header block waiting for its CONTINUATION frames. */
  private pendingHeaders:
    | { streamId: number; flags: number; chunks: Buffer[]; size: number; frames: number; selfDependent: boolean }
    | undefined;
  /** What the role decides: whether the peer is defended against, and how the connection starts. */
  protected readonly policy: RolePolicy;
  /** The receive window this side gives each stream (SETTINGS_INITIAL_WINDOW_SIZE), and credits by. */
  readonly streamWindow: number;

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

  /** Receiving: what the peer may still send on the connection, credited as streams release bytes. */
  private readonly receiving = new ReceiveWindow(H2_LIMITS.connectionWindow);
  /** Response bytes queued on streams, and control frames queued while the socket is full. */
  private backlog = 0;
  private controlQueued = 0;

  private out: Uint8Array[] = [];
  /** Bytes handed to the socket so far. */
  private written = 0;
  private flushQueued = false;
  private readonly pings: Array<(err: Error | null) => void> = [];

  constructor(
    readonly socket: Duplex,
    policy: RolePolicy,
    /** Role-specific SETTINGS, sent with the connection's first frames. */
    extraSettings: Array<[Setting, number]> = [],
  ) {
    super();
    this.policy = policy;
    this.streamWindow = policy.streamWindow;
    this.settingsExpected = policy.accepts;
    this.reader = new FrameReader(
      policy.accepts,
      (type, flags, streamId, payload) => this.onFrame(type, flags, streamId, payload),
      () => !this.destroyed,
    );
    if (!policy.accepts) this.send(CLIENT_PREFACE);
    this.send(
      settingsFrame([
        [Setting.INITIAL_WINDOW_SIZE, this.streamWindow],
        [Setting.ENABLE_PUSH, 0],
        [Setting.MAX_HEADER_LIST_SIZE, H2_LIMITS.maxHeaderListSize],
        ...extraSettings,
      ]),
    );
    this.send(frame32(FrameType.WINDOW_UPDATE, 0, H2_LIMITS.connectionWindow - DEFAULT_WINDOW));
    if (this.policy.defends) {
      this.handshakeTimer = setTimeout(
        () => this.fail(new ConnectionError(ErrorCode.PROTOCOL_ERROR, "no preface and SETTINGS in time")),
        H2_LIMITS.handshakeTimeoutMs,
      );
      this.handshakeTimer.unref?.();
    }
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("drain", () => this.onDrain());
    socket.on("error", (err) => this.destroy(err));
    socket.on("close", () => this.destroy());
    socket.on("end", () => this.destroy());
  }

  /**
   * A complete header block for `streamId` (HEADERS plus any CONTINUATIONs),
   * still encoded: the role decodes it with `this.hpack`, under the rules
   * it holds the block to, and must decode every block, even one it then
   * refuses, to keep the dynamic table in step. `selfDependent`: the
   * HEADERS frame named its own stream as its dependency (a stream error).
   */
  protected abstract onHeaderBlock(streamId: number, flags: number, block: Buffer, selfDependent: boolean): void;

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
    this.state = "closing";
    this.goaway();
    this.closeIfIdle();
  }

  /** Closes at once: every open stream ends as reset. */
  destroy(err?: Error): void {
    if (this.destroyed) return;
    this.state = "destroyed";
    clearTimeout(this.handshakeTimer);
    this.flush();
    const failure = err ?? new Error("connection closed");
    for (const stream of this.streams.values()) stream.terminate(failure);
    this.streams.clear();
    for (const callback of this.pings.splice(0)) callback(failure);
    if (err instanceof ConnectionError && !this.socket.destroyed) {
      // Let the GOAWAY that explains it leave first (a TLS socket destroyed at
      // once drops what it has not encrypted yet), but never wait long on a
      // peer that does not read.
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1_000).unref();
    } else this.socket.destroy();
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
    if (this.silentSince === 0 && !this.policy.defends) this.silentSince = Date.now();
    this.out.push(bytes);
    this.flushSoon();
  }

  /**
   * Since when the peer has sent nothing while this side has sent it
   * something (0: the peer has spoken since); kept toward etcd only. A peer
   * that is frozen (SIGSTOP, a partition) keeps its socket open but stays
   * silent; the upstream's watchdog reads this.
   */
  silentSince = 0;

  /**
   * Queues a frame the peer's input made this side owe (an ACK, a reset, a
   * window update). A peer that provokes them without reading the answers
   * (SETTINGS or PING floods) is cut off past the cap.
   */
  sendControl(bytes: Uint8Array): void {
    if (this.policy.defends && this.socketBlocked && ++this.controlQueued > H2_LIMITS.maxQueuedControlFrames) {
      throw new ConnectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        "too many control frames queued for a peer that does not read",
      );
    }
    this.send(bytes);
  }

  /**
   * The one stream that may hold more than half the connection window
   * unreleased (a request larger than the window would otherwise never
   * arrive whole); a stream asks with `claim` true, and gives it back.
   */
  private largeHolder: H2StreamBase | undefined;
  largeSlot(stream: H2StreamBase, claim: boolean): boolean {
    if (!claim) {
      if (this.largeHolder === stream) this.largeHolder = undefined;
      return false;
    }
    if (this.largeHolder !== undefined && this.largeHolder !== stream && !this.largeHolder.closed) return false;
    this.largeHolder = stream;
    return true;
  }

  /** A stream has queued (+) or sent or dropped (-) response bytes. */
  addBacklog(n: number): void {
    this.backlog += n;
    if (n < 0) this.answerGate.drained();
  }

  /** This client's gate for answers from etcd (see AnswerGate and AnswerBudget). */
  readonly answerGate = new AnswerBudget(
    H2_LIMITS.maxUnreadAnswers,
    () => this.backlog,
    () => !this.destroyed,
  );

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
    if (this.policy.defends && this.backlog > H2_LIMITS.maxStalledBytes) this.shedStalled();
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
      if (this.policy.defends) this.socket.pause();
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

  private onDrain(): void {
    this.socketBlocked = false;
    this.controlQueued = 0;
    if (this.policy.defends && !this.destroyed) this.socket.resume();
    this.serveWaiting();
  }

  /** What stalled streams cost the connection now (see H2_LIMITS.maxStalledBytes). */
  protected stalledCost(): number {
    return this.backlog + this.waiting.size * H2_LIMITS.stalledStreamCost;
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
    if (this.policy.defends) this.rememberClosed(stream.id, stream.closedBy);
    this.closeIfIdle();
  }

  /** Remembers how a peer stream closed, forgetting the oldest past the memory's size. */
  protected rememberClosed(streamId: number, how: ClosedBy): void {
    const at = this.closedNext;
    const oldest = this.closedIds[at]!;
    if (oldest > this.forgottenBelow) this.forgottenBelow = oldest;
    this.closedIds[at] = streamId;
    this.closedHow[at] = how === "peer" ? 1 : 2;
    this.closedNext = (at + 1) % H2_LIMITS.closedStreamMemory;
  }

  private closedBy(streamId: number): ClosedBy | undefined {
    const at = this.closedIds.indexOf(streamId);
    if (at < 0 || streamId === 0) return undefined;
    return this.closedHow[at] === 1 ? "peer" : "local-reset";
  }

  /**
   * A frame of `type` for a stream that is not open. Idle streams (never
   * opened) make it a connection error; streams the peer ended or reset
   * make DATA a stream error and HEADERS a connection error of type
   * STREAM_CLOSED; after this side's reset, frames are ignored.
   */
  protected onNotOpen(streamId: number, type: FrameType): void {
    if (this.neverOpened(streamId)) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `${FrameType[type]} on idle stream ${streamId}`);
    }
    if (type !== FrameType.DATA && type !== FrameType.HEADERS) return;
    const how = this.closedBy(streamId);
    if (how === undefined && this.policy.defends && streamId > this.forgottenBelow) {
      // Not open, not remembered, and not old: an id the peer skipped, which it may never use again.
      throw new ConnectionError(
        ErrorCode.PROTOCOL_ERROR,
        `${FrameType[type]} on stream ${streamId}, below the last opened`,
      );
    }
    if (how !== "peer") return;
    if (type === FrameType.HEADERS)
      throw new ConnectionError(ErrorCode.STREAM_CLOSED, `HEADERS on closed stream ${streamId}`);
    this.streamError(streamId, ErrorCode.STREAM_CLOSED);
  }

  /**
   * Answers a peer's mistake on one stream with RST_STREAM. Such resets
   * cost the peer as its own do (the rapid-reset budget): a client that
   * provokes them cannot get around the limit ("MadeYouReset").
   */
  streamError(streamId: number, code: ErrorCode): void {
    this.chargeReset();
    const stream = this.streams.get(streamId);
    if (stream) stream.reset(code);
    else this.sendControl(frame32(FrameType.RST_STREAM, streamId, code));
  }

  protected closeIfIdle(): void {
    if (this.closed && this.streams.size === 0 && !this.destroyed) {
      clearTimeout(this.handshakeTimer);
      this.flush();
      this.socket.end();
      this.state = "destroyed";
      this.emit("close");
    }
  }

  /** Releases `n` received bytes to the connection window (their stream has consumed or dropped them). */
  release(n: number): void {
    if (n <= 0 || this.destroyed) return;
    const increment = this.receiving.credit(n);
    if (increment > 0) this.sendControl(frame32(FrameType.WINDOW_UPDATE, 0, increment));
  }

  /** Ends the connection for a protocol error: GOAWAY with the error's code, then close. */
  private fail(err: Error): void {
    if (this.destroyed) return;
    const code =
      err instanceof ConnectionError
        ? err.code
        : err instanceof CompressionError
          ? ErrorCode.COMPRESSION_ERROR
          : ErrorCode.INTERNAL_ERROR;
    if (this.listenerCount("error") > 0) this.emit("error", err);
    this.send(goawayFrame(this.lastPeerStreamId(), code, Buffer.from(err.message)));
    this.destroy(err);
  }

  // ---- input --------------------------------------------------------------

  /**
   * Input read into a buffer the socket reuses (net's `onread`): nothing
   * of it is kept past this call but copies, and DATA goes to streams as a
   * view that their readers copy (the upstream's FrameDecoder assembles).
   * No 64 KB buffer is allocated per read, which is most of the garbage a
   * large answer from etcd makes.
   */
  consumeReusedRead(chunk: Buffer): void {
    this.inputReused = true;
    try {
      this.onData(chunk, true);
    } finally {
      this.inputReused = false;
    }
  }

  /** The frame being handled is a view of a reused read buffer: what is kept past it must be copied. */
  private inputReused = false;

  private onData(chunk: Buffer, reused = false): void {
    if (this.destroyed) return;
    this.silentSince = 0;
    try {
      this.reader.push(chunk, reused);
    } catch (err) {
      this.fail(err as Error);
    }
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.pendingHeaders && type !== FrameType.CONTINUATION) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "expected CONTINUATION");
    }
    if (this.settingsExpected) {
      // RFC 9113 §3.4: the preface is followed by a SETTINGS frame.
      if (type !== FrameType.SETTINGS || flags & Flag.ACK) {
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "the preface must be followed by SETTINGS");
      }
      this.settingsExpected = false;
      clearTimeout(this.handshakeTimer);
    }
    switch (type) {
      case FrameType.DATA:
        return this.onDataFrame(flags, streamId, payload);
      case FrameType.HEADERS:
        return this.onHeadersFrame(flags, streamId, payload);
      case FrameType.CONTINUATION:
        return this.onContinuation(flags, streamId, payload);
      case FrameType.PRIORITY:
        return this.onPriority(streamId, payload);
      case FrameType.RST_STREAM:
        return this.onReset(streamId, payload);
      case FrameType.SETTINGS:
        return this.onSettings(flags, streamId, payload);
      case FrameType.PING:
        if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
        if (payload.length !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "bad PING length");
        if (flags & Flag.ACK) {
          this.pings.shift()?.(null);
        } else {
          this.sendControl(frame(FrameType.PING, Flag.ACK, 0, payload));
          this.emit("ping");
        }
        return;
      case FrameType.GOAWAY:
        if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
        if (payload.length < 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "bad GOAWAY");
        if (this.state === "open") this.state = "closing";
        this.onGoaway(payload.readUInt32BE(0) & MAX_WINDOW, payload.readUInt32BE(4));
        this.closeIfIdle();
        return;
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(streamId, payload);
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "push is disabled");
      default:
        return; // unknown frame types are ignored (RFC 9113 §4.1)
    }
  }

  private onDataFrame(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    // The whole frame counts against the windows, padding included.
    if (!this.receiving.take(payload.length)) {
      throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection window");
    }
    const stream = this.streams.get(streamId);
    if (!stream) {
      this.release(payload.length); // nobody will consume these bytes
      return this.onNotOpen(streamId, FrameType.DATA);
    }
    stream.receive(unpad(flags, payload), flags & Flag.END_STREAM, payload.length);
  }

  private onHeadersFrame(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    let block = unpad(flags, payload);
    let selfDependent = false;
    if (flags & Flag.PRIORITY) {
      if (block.length < 5) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short for its priority");
      selfDependent = (block.readUInt32BE(0) & MAX_WINDOW) === streamId;
      block = block.subarray(5);
    }
    if (flags & Flag.END_HEADERS) return this.onHeaderBlock(streamId, flags, block, selfDependent);
    const kept = this.inputReused ? Buffer.from(block) : block;
    this.pendingHeaders = { streamId, flags, chunks: [kept], size: block.length, frames: 1, selfDependent };
  }

  private onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const pending = this.pendingHeaders;
    if (!pending || pending.streamId !== streamId) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "unexpected CONTINUATION");
    }
    pending.chunks.push(this.inputReused ? Buffer.from(payload) : payload);
    pending.size += payload.length;
    if (pending.size > H2_LIMITS.maxHeaderBlockBytes || ++pending.frames > H2_LIMITS.maxHeaderBlockFrames) {
      throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large");
    }
    if (flags & Flag.END_HEADERS) {
      this.pendingHeaders = undefined;
      // Decoded even for a stream that is gone: the table must stay in step with the peer's.
      this.onHeaderBlock(streamId, pending.flags, Buffer.concat(pending.chunks, pending.size), pending.selfDependent);
    }
  }

  private onPriority(streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
    if (payload.length !== 5) return this.streamError(streamId, ErrorCode.FRAME_SIZE_ERROR);
    // Priorities are otherwise ignored, as RFC 9113 allows; a stream cannot depend on itself.
    if ((payload.readUInt32BE(0) & MAX_WINDOW) === streamId) this.streamError(streamId, ErrorCode.PROTOCOL_ERROR);
  }

  private onReset(streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0");
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "bad RST_STREAM length");
    const stream = this.streams.get(streamId);
    if (!stream) return this.onNotOpen(streamId, FrameType.RST_STREAM);
    this.chargeReset();
    stream.receiveReset(payload.readUInt32BE(0));
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & Flag.ACK) {
      if (payload.length !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload");
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "bad SETTINGS length");
    for (let i = 0; i < payload.length; i += 6) {
      const id = payload.readUInt16BE(i);
      const value = payload.readUInt32BE(i + 2);
      if (id === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "window too large");
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const stream of this.streams.values()) {
          stream.sendWindow += delta;
          if (stream.sendWindow > MAX_WINDOW)
            throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "window overflow");
        }
      } else if (id === Setting.MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME || value > 16_777_215) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad MAX_FRAME_SIZE");
        }
        this.peerMaxFrame = value;
      } else if (id === Setting.ENABLE_PUSH) {
        if (value > 1) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad ENABLE_PUSH");
      } else {
        this.onPeerSetting(id, value);
      }
      // HEADER_TABLE_SIZE: this side never indexes, so any size suits it.
    }
    this.sendControl(frame(FrameType.SETTINGS, Flag.ACK, 0));
    this.serveWaiting();
  }

  /**
   * A stream was reset, by the peer or for the peer's mistake; a role may
   * limit how often (throw a ConnectionError to close).
   */
  protected chargeReset(): void {}

  /** Settings only one role cares about (the client: MAX_CONCURRENT_STREAMS). */
  protected onPeerSetting(_id: number, _value: number): void {}

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "bad WINDOW_UPDATE");
    const increment = payload.readUInt32BE(0) & MAX_WINDOW;
    if (streamId === 0) {
      // RFC 9113 §6.9: a zero increment on the connection is a connection error.
      if (increment === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "zero WINDOW_UPDATE");
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "window overflow");
      this.serveWaiting();
      return;
    }
    const stream = this.streams.get(streamId);
    if (!stream) return this.onNotOpen(streamId, FrameType.WINDOW_UPDATE);
    if (increment === 0 || stream.sendWindow + increment > MAX_WINDOW) {
      return this.streamError(streamId, increment === 0 ? ErrorCode.PROTOCOL_ERROR : ErrorCode.FLOW_CONTROL_ERROR);
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

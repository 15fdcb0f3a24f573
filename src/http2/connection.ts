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
import { ClosedStreams } from "./closed-streams.js";
import { ConnectionOutput } from "./connection-output.js";
import { FrameReader } from "./frame-reader.js";
import { HeaderBlockAssembler, unpad } from "./header-block.js";
import { ReceiveWindow } from "./receive-window.js";
import { ReadLoan } from "./read-loan.js";
import { ConnectionError, H2_LIMITS } from "./limits.js";
import type { RolePolicy } from "./role.js";
import type { H2StreamBase, StreamHost } from "./stream.js";

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
  /** Peer streams that closed lately, and how. */
  protected readonly closedStreams = new ClosedStreams(H2_LIMITS.closedStreamMemory);

  /** The input, cut into frames. */
  private readonly reader: FrameReader;
  /** A server connection has not had its client's first SETTINGS yet. */
  private settingsExpected: boolean;
  private handshakeTimer: NodeJS.Timeout | undefined;
  /** Header blocks, joined from HEADERS and CONTINUATION frames. */
  private readonly headerBlocks = new HeaderBlockAssembler((streamId, flags, block, selfDependent) =>
    this.onHeaderBlock(streamId, flags, block, selfDependent),
  );
  /** What the role decides: whether the peer is defended against, and how the connection starts. */
  protected readonly policy: RolePolicy;
  /** The receive window this side gives each stream (SETTINGS_INITIAL_WINDOW_SIZE), and credits by. */
  readonly streamWindow: number;

  /** The window the peer gives each stream (its SETTINGS_INITIAL_WINDOW_SIZE). */
  protected peerInitialWindow = DEFAULT_WINDOW;
  /** Sending: frames, waiting streams and the connection's send window. */
  private readonly output: ConnectionOutput;
  /** Receiving: what the peer may still send on the connection, credited as streams release bytes. */
  private readonly receiving = new ReceiveWindow(H2_LIMITS.connectionWindow);
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
    this.output = new ConnectionOutput(socket, policy.defends, () => this.destroyed);
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
    socket.on("drain", () => this.output.onDrain());
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
    this.output.flush();
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
    return this.output.written;
  }

  /** Open streams. */
  get size(): number {
    return this.streams.size;
  }

  // ---- output -------------------------------------------------------------

  /** Queues bytes for the socket; everything queued in one tick leaves in one write. */
  send(bytes: Uint8Array): void {
    if (this.silentSince === 0 && !this.policy.defends && !this.destroyed) this.silentSince = Date.now();
    this.output.send(bytes);
  }

  /**
   * Since when the peer has sent nothing while this side has sent it
   * something (0: the peer has spoken since); kept toward etcd only. A peer
   * that is frozen (SIGSTOP, a partition) keeps its socket open but stays
   * silent; the upstream's watchdog reads this.
   */
  silentSince = 0;

  sendControl(bytes: Uint8Array): void {
    if (this.silentSince === 0 && !this.policy.defends && !this.destroyed) this.silentSince = Date.now();
    this.output.sendControl(bytes);
  }

  schedule(stream: H2StreamBase): void {
    this.output.schedule(stream);
  }

  flushNow(): boolean {
    return this.output.flushNow();
  }

  wait(stream: H2StreamBase): void {
    this.output.wait(stream);
  }

  takeSendWindow(wanted: number): number {
    return this.output.takeSendWindow(wanted);
  }

  reserveWholeFrame(n: number): boolean {
    return this.output.reserveWholeFrame(n);
  }

  /** The largest frame payload the peer accepts. */
  get maxFrame(): number {
    return this.output.maxFrame;
  }

  /** What stalled streams cost the connection now (see H2_LIMITS.maxStalledBytes). */
  protected stalledCost(): number {
    return this.output.stalledCost();
  }

  /** A stream has queued (+) or sent or dropped (-) response bytes. */
  addBacklog(n: number): void {
    this.output.backlog += n;
    if (n < 0) this.answerGate.drained();
  }

  /** This client's gate for answers from etcd (see AnswerGate and AnswerBudget). */
  readonly answerGate = new AnswerBudget(
    H2_LIMITS.maxUnreadAnswers,
    () => this.output.backlog,
    () => !this.destroyed,
  );

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

  /** Sends a header block, split into CONTINUATION frames if larger than the peer's frame limit. */
  sendHeaders(streamId: number, block: Buffer, endStream: boolean): void {
    const endFlag = endStream ? Flag.END_STREAM : 0;
    const max = this.output.maxFrame;
    if (block.length <= max) {
      this.send(frame(FrameType.HEADERS, endFlag | Flag.END_HEADERS, streamId, block));
      return;
    }
    for (let offset = 0; offset < block.length; offset += max) {
      const last = offset + max >= block.length;
      const part = block.subarray(offset, offset + max);
      const type = offset === 0 ? FrameType.HEADERS : FrameType.CONTINUATION;
      this.send(frame(type, (offset === 0 ? endFlag : 0) | (last ? Flag.END_HEADERS : 0), streamId, part));
    }
  }

  /** A stream has closed (both sides done, or reset). */
  forget(stream: H2StreamBase): void {
    this.streams.delete(stream.id);
    this.output.forget(stream);
    if (this.policy.defends) this.closedStreams.remember(stream.id, stream.closedBy, stream.owedBody());
    this.closeIfIdle();
  }

  /**
   * A frame of `type` for a stream that is not open. Idle streams (never
   * opened) make it a connection error; streams the peer ended or reset
   * make DATA a stream error and HEADERS a connection error of type
   * STREAM_CLOSED; after this side's reset, frames are ignored until the
   * peer resets the stream too.
   */
  protected onNotOpen(streamId: number, type: FrameType): void {
    if (this.neverOpened(streamId)) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `${FrameType[type]} on idle stream ${streamId}`);
    }
    if (type === FrameType.RST_STREAM) {
      // The peer has now reset a stream this side had closed: what it sends there next is on a stream it
      // closed itself (STREAM_CLOSED), however the race between the two ends went.
      this.closedStreams.closedByPeerToo(streamId);
      return;
    }
    if (type !== FrameType.DATA && type !== FrameType.HEADERS) return;
    const how = this.closedStreams.closedBy(streamId);
    if (how === undefined && this.policy.defends && streamId > this.closedStreams.forgottenBelow) {
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
      this.output.flush();
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
   * view, lent (ReadLoan) until the read is done. No buffer is allocated
   * per read, which is most of the garbage a large answer from etcd makes.
   * False when a borrower kept the buffer: the next read needs a new one.
   */
  consumeReusedRead(chunk: Buffer): boolean {
    this.inputReused = true;
    const loan = (this.loan = new ReadLoan(chunk.buffer));
    try {
      this.onData(chunk, true);
    } finally {
      this.inputReused = false;
      this.loan = undefined;
    }
    return loan.settle();
  }

  /** The frame being handled is a view of a reused read buffer: what is kept past it must be copied. */
  private inputReused = false;
  /** The read being handled, whose DATA views streams may lend on (see ReadLoan). */
  private loan: ReadLoan | undefined;

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
    if (this.headerBlocks.open && type !== FrameType.CONTINUATION) {
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
        return this.headerBlocks.headers(flags, streamId, payload, this.inputReused);
      case FrameType.CONTINUATION:
        return this.headerBlocks.continuation(flags, streamId, payload, this.inputReused);
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
      const owed = this.closedStreams.owed(streamId);
      if (
        owed >= 0 &&
        this.closedStreams.breaksLength(streamId, unpad(flags, payload).length, (flags & Flag.END_STREAM) !== 0)
      ) {
        return this.streamError(streamId, ErrorCode.PROTOCOL_ERROR);
      }
      return this.onNotOpen(streamId, FrameType.DATA);
    }
    stream.receive(unpad(flags, payload), flags & Flag.END_STREAM, payload.length, this.loan);
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
        this.output.maxFrame = value;
      } else if (id === Setting.ENABLE_PUSH) {
        if (value > 1) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad ENABLE_PUSH");
      } else {
        this.onPeerSetting(id, value);
      }
      // HEADER_TABLE_SIZE: this side never indexes, so any size suits it.
    }
    this.sendControl(frame(FrameType.SETTINGS, Flag.ACK, 0));
    this.output.serveWaiting();
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
      return this.output.widen(increment);
    }
    const stream = this.streams.get(streamId);
    if (!stream) return this.onNotOpen(streamId, FrameType.WINDOW_UPDATE);
    if (increment === 0 || stream.sendWindow + increment > MAX_WINDOW) {
      return this.streamError(streamId, increment === 0 ? ErrorCode.PROTOCOL_ERROR : ErrorCode.FLOW_CONTROL_ERROR);
    }
    stream.sendWindow += increment;
    this.output.pumpNow(stream);
  }
}

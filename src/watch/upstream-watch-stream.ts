import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { CallContext } from "../call-context.js";
import type { ResponseHeader, WatchRequestSchema, WatchResponse } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import type { Event } from "../gen/etcd/api/mvccpb/kv_pb.js";
import { isConnectionFailure, toClientError } from "../upstream/errors.js";
import { AsyncQueue } from "../util/async-queue.js";
import { NO_WATCH_ID, headerAt } from "./responses.js";
import type { SharedWatch } from "./shared-watch.js";

type WatchRequestInit = MessageInitShape<typeof WatchRequestSchema>;

/** The upstream Watch RPC: a bidi stream toward etcd with the given metadata. */
export type WatchUpstream = (
  requests: AsyncIterable<WatchRequestInit>,
  ctx: CallContext,
) => AsyncIterable<WatchResponse>;

export interface StreamOptions {
  /** Back-off between attempts to reopen a lost stream. */
  reconnectMinMs: number;
  reconnectMaxMs: number;
  /** How often an unanswered progress request is asked again (etcd ignores it while a watcher catches up). */
  progressRetryMs: number;
  /**
   * Whether etcd sends a progress answer only after the events it owes the
   * stream (3.4.25+, 3.5.8+). When it may not, each answer is confirmed by
   * the next before anyone is told (see progressAnswered).
   */
  progressOrdered?: () => boolean;
}

/** What the stream tells the watches' registry: etcd's answers, by watch. */
export interface StreamListener {
  /** Whether a stream is still wanted (watches, or a client stream that must hear of leader loss). */
  wanted(): boolean;
  /** The watches to create on a new stream. */
  resumable(): Iterable<SharedWatch>;
  created(watch: SharedWatch, header: ResponseHeader): void;
  createRefused(watch: SharedWatch, header: ResponseHeader, reason: string): void;
  canceled(watch: SharedWatch, header: ResponseHeader, compactRevision: bigint, reason: string): void;
  events(watch: SharedWatch, header: ResponseHeader, events: Event[]): void;
  progress(watch: SharedWatch, header: ResponseHeader): void;
  /** The endpoint went away; the stream reopens after a back-off. */
  reconnecting(err: unknown): void;
  /** etcd ended the stream for a reason of its own (no leader, bad token): it is over for every watch. */
  failed(err: ConnectError): void;
}

/** One open stream toward etcd, and the watches created on it, by their IDs there. */
interface Connection {
  requests: AsyncQueue<WatchRequestInit>;
  abort: AbortController;
  byId: Map<bigint, SharedWatch>;
  idOf: Map<SharedWatch, bigint>;
  nextId: bigint;
}

/** The stream's life: no stream needed, one open, waiting to reopen a lost one, or closed for good. */
type StreamState =
  | { kind: "idle" }
  | { kind: "open"; conn: Connection }
  | { kind: "backing-off"; timer: NodeJS.Timeout }
  | { kind: "closed" };

interface ProgressWaiter {
  answered(header: ResponseHeader): void;
  failed(err: unknown): void;
}

/** A progress answer from etcd that may have overtaken events it owed, held until the next answer confirms it. */
interface HeldProgress {
  conn: Connection;
  header: ResponseHeader;
  /** An event at or below the answer's revision came after it: the answer had overtaken it. */
  overtook: boolean;
}

/**
 * The one upstream Watch stream of a caller identity: it opens when a watch
 * needs it, creates and cancels watches on it by ID, hands etcd's answers
 * to the registry by watch, asks etcd for progress for every client stream
 * that asked (one question in flight), and when its endpoint goes away
 * reopens elsewhere after a back-off, re-creating every watch where its
 * receivers stand.
 */
export class UpstreamWatchStream {
  private state: StreamState = { kind: "idle" };
  private reconnectDelay: number;
  private progressWaiters: ProgressWaiter[] = [];
  private heldProgress: HeldProgress | undefined;
  private progressTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly upstream: WatchUpstream,
    private readonly forwardHeaders: Readonly<Record<string, string>>,
    private readonly options: StreamOptions,
    private readonly listener: StreamListener,
  ) {
    this.reconnectDelay = options.reconnectMinMs;
  }

  /** Opens the stream if none is open or on its way. */
  open(): void {
    if (this.state.kind === "idle") this.connect();
  }

  /** Creates `watch` upstream: now on an open stream, else when the stream (re)opens. */
  create(watch: SharedWatch): void {
    if (this.state.kind === "open") {
      if (!this.state.conn.idOf.has(watch)) this.sendCreate(this.state.conn, watch);
      return;
    }
    this.open();
  }

  /** Forgets `watch` on the stream, and asks etcd to cancel it unless etcd ended it already. */
  cancel(watch: SharedWatch): void {
    if (this.state.kind !== "open") return;
    const { conn } = this.state;
    const id = conn.idOf.get(watch);
    if (id === undefined) return;
    this.forget(conn, id);
    if (watch.state !== "dead") conn.requests.push({ requestUnion: { case: "cancelRequest", value: { watchId: id } } });
  }

  /** Ends the stream when the registry no longer wants it. */
  closeIfUnwanted(): void {
    if (this.state.kind !== "closed" && !this.listener.wanted()) this.enter({ kind: "idle" });
  }

  close(): void {
    this.enter({ kind: "closed" });
  }

  /**
   * Resolves with a header whose revision every live watch of the stream
   * has fully delivered: etcd's answer to a progress request.
   */
  requestProgress(signal: AbortSignal): Promise<ResponseHeader> {
    return new Promise((resolve, reject) => {
      const waiter: ProgressWaiter = {
        answered: (header) => {
          signal.removeEventListener("abort", onAbort);
          resolve(header);
        },
        failed: (err) => {
          signal.removeEventListener("abort", onAbort);
          reject(err);
        },
      };
      const onAbort = () => {
        this.progressWaiters = this.progressWaiters.filter((w) => w !== waiter);
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.progressWaiters.push(waiter);
      if (this.progressWaiters.length === 1) this.askProgress();
    });
  }

  /** The one place the stream's state changes; what the old state held is let go here. */
  private enter(next: StreamState): void {
    const previous = this.state;
    this.state = next;
    if (previous.kind === "backing-off") clearTimeout(previous.timer);
    if (previous.kind === "open") {
      previous.conn.requests.end();
      previous.conn.abort.abort(new ConnectError("watch channel closed", Code.Canceled));
    }
    if (next.kind === "closed") clearTimeout(this.progressTimer);
  }

  private connect(): void {
    const conn: Connection = {
      requests: new AsyncQueue<WatchRequestInit>(),
      abort: new AbortController(),
      byId: new Map(),
      idOf: new Map(),
      nextId: 1n, // 0 asks etcd to choose
    };
    this.enter({ kind: "open", conn });
    const ctx: CallContext = { forwardHeaders: this.forwardHeaders, deadline: undefined, signal: conn.abort.signal };
    void this.pump(conn, ctx);
    // Watches that outlived a lost stream resume where their receivers stand.
    for (const w of this.listener.resumable()) {
      w.skipToReceivers();
      this.sendCreate(conn, w);
    }
    if (this.progressWaiters.length > 0) this.askProgress();
  }

  private sendCreate(conn: Connection, watch: SharedWatch): void {
    const id = conn.nextId++;
    conn.byId.set(id, watch);
    conn.idOf.set(watch, id);
    conn.requests.push({
      requestUnion: {
        case: "createRequest",
        value: {
          key: watch.key,
          rangeEnd: watch.rangeEnd,
          startRevision: watch.recreating(),
          prevKv: true,
          progressNotify: true,
          watchId: id,
        },
      },
    });
  }

  private forget(conn: Connection, id: bigint): void {
    const watch = conn.byId.get(id);
    conn.byId.delete(id);
    if (watch) conn.idOf.delete(watch);
  }

  private isCurrent(conn: Connection): boolean {
    return this.state.kind === "open" && this.state.conn === conn;
  }

  private async pump(conn: Connection, ctx: CallContext): Promise<void> {
    let failure: unknown; // none: etcd ended the stream cleanly (shutting down)
    try {
      for await (const response of this.upstream(conn.requests, ctx)) {
        if (!this.isCurrent(conn)) return;
        this.reconnectDelay = this.options.reconnectMinMs;
        this.dispatch(conn, response);
      }
    } catch (err) {
      failure = err;
    }
    if (!this.isCurrent(conn)) return; // closed on purpose
    if (endpointLost(failure)) {
      this.listener.reconnecting(failure);
      this.backOff();
    } else {
      this.enter({ kind: "idle" });
      const err = toClientError(failure);
      for (const waiter of this.progressWaiters.splice(0)) waiter.failed(err);
      this.listener.failed(err);
    }
  }

  private backOff(): void {
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(delay * 2, this.options.reconnectMaxMs);
    const timer = setTimeout(() => {
      this.enter({ kind: "idle" });
      if (this.listener.wanted()) this.connect();
    }, delay);
    this.enter({ kind: "backing-off", timer });
  }

  private askProgress(): void {
    clearTimeout(this.progressTimer);
    if (this.progressWaiters.length === 0) return;
    if (this.state.kind === "open")
      this.state.conn.requests.push({ requestUnion: { case: "progressRequest", value: {} } });
    this.progressTimer = setTimeout(() => this.askProgress(), this.options.progressRetryMs);
    this.progressTimer.unref();
  }

  private dispatch(conn: Connection, response: WatchResponse): void {
    const header = response.header ?? headerAt(undefined, 0n);
    if (response.watchId === NO_WATCH_ID && !response.created) {
      this.progressAnswered(conn, header);
      return;
    }
    const watch = conn.byId.get(response.watchId);
    if (!watch) {
      // A create etcd refused with the ID it could not use (-1): the oldest
      // pending create on this stream is the one refused.
      if (response.created && response.canceled) this.refusePending(conn, header, response.cancelReason);
      return;
    }
    if (response.created) {
      if (response.canceled) {
        this.forget(conn, response.watchId);
        this.listener.createRefused(watch, header, response.cancelReason);
        return;
      }
      this.listener.created(watch, header);
      return;
    }
    if (response.canceled) {
      this.forget(conn, response.watchId);
      this.listener.canceled(watch, header, response.compactRevision, response.cancelReason);
      return;
    }
    if (response.events.length > 0) {
      const held = this.heldProgress;
      if (held?.conn === conn && response.events[0]!.kv!.modRevision <= held.header.revision) held.overtook = true;
      this.listener.events(watch, header, response.events);
      return;
    }
    this.listener.progress(watch, header);
  }

  private refusePending(conn: Connection, header: ResponseHeader, reason: string): void {
    for (const [id, w] of conn.byId) {
      if (w.state !== "pending") continue;
      this.forget(conn, id);
      this.listener.createRefused(w, header, reason);
      return;
    }
  }

  /**
   * etcd's answer to a progress request on the stream. etcd 3.4 answers with
   * its current revision even while it is still catching up a watcher
   * created from the past, whose older events then follow: only watches
   * known to be synced may move past the answer. Before 3.4.25 and 3.5.8 it
   * may also answer ahead of events it already owes a synced watch; those
   * still arrive, and are delivered (SharedWatch.eventsUpTo).
   */
  private progressAnswered(conn: Connection, header: ResponseHeader): void {
    if (this.options.progressOrdered?.() ?? false) {
      // Such an etcd answers only once every watcher of the stream is synced, after what it owed them.
      for (const w of conn.byId.values()) if (w.state === "live") w.vouchedUpTo(header);
      return this.progressConfirmed(conn, header);
    }
    // etcd before 3.4.25 and 3.5.8 sends this answer on a path of its own,
    // which can overtake events it already owes the stream. The events it
    // owed when it answered were queued before the answer was made, so an
    // answer asked for after this one came, with no such event in between,
    // vouches for this one.
    const held = this.heldProgress;
    if (held?.conn === conn && !held.overtook) {
      this.heldProgress = undefined;
      return this.progressConfirmed(conn, held.header);
    }
    this.heldProgress = { conn, header, overtook: false };
    conn.requests.push({ requestUnion: { case: "progressRequest", value: {} } });
  }

  private progressConfirmed(conn: Connection, header: ResponseHeader): void {
    for (const w of conn.byId.values()) if (w.synced) w.advanceTo(header.revision + 1n);
    clearTimeout(this.progressTimer);
    for (const waiter of this.progressWaiters.splice(0)) waiter.answered(header);
  }
}

/**
 * Whether a stream ended because its endpoint went away rather than because
 * etcd refused it; a clean end (etcd shutting down) counts as going away.
 */
function endpointLost(failure: unknown): boolean {
  return failure === undefined || !(failure instanceof ConnectError) || isConnectionFailure(failure);
}

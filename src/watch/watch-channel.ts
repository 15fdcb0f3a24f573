import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { CallContext } from "../call-context.js";
import type { ResponseHeader, WatchRequestSchema, WatchResponse } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { isConnectionFailure, toClientError } from "../upstream/errors.js";
import { AsyncQueue } from "../util/async-queue.js";
import type { HistoryLimits } from "./event-history.js";
import { NO_WATCH_ID, headerAt } from "./responses.js";
import { SharedWatch, type Receiver } from "./shared-watch.js";

type WatchRequestInit = MessageInitShape<typeof WatchRequestSchema>;

/** The upstream Watch RPC: a bidi stream toward etcd with the given metadata. */
export type WatchUpstream = (
  requests: AsyncIterable<WatchRequestInit>,
  ctx: CallContext,
) => AsyncIterable<WatchResponse>;

/** What the channel reports, for metrics and logs. */
export interface ChannelEvents {
  sharedWatchStarted(): void;
  sharedWatchStopped(receivers: number): void;
  coalescedDeliveries(n: number): void;
  replayed(entries: number): void;
  reconnecting(err: unknown): void;
}

/** A client stream as the channel sees it: it may have to end with etcd's error. */
export interface ChannelMember {
  fail(err: ConnectError): void;
}

export interface ChannelOptions {
  history: HistoryLimits;
  /** Back-off between attempts to reopen a lost upstream stream. */
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

/** A progress answer from etcd that may have overtaken events it owed, held until the next answer confirms it. */
interface HeldProgress {
  conn: Connection;
  header: ResponseHeader;
  /** An event at or below the answer's revision came after it: the answer had overtaken it. */
  overtook: boolean;
}

/** How a watcher joins: at once (with a made-up Created), or when etcd creates the watch. */
export type Joined =
  { kind: "joined"; watch: SharedWatch; header: ResponseHeader } | { kind: "waiting"; watch: SharedWatch };

interface ProgressWaiter {
  answered(header: ResponseHeader): void;
  failed(err: unknown): void;
}

interface Connection {
  requests: AsyncQueue<WatchRequestInit>;
  abort: AbortController;
  byId: Map<bigint, SharedWatch>;
  nextId: bigint;
}

/**
 * Everything watched with one caller identity (auth token, and whether the
 * caller requires a leader): the shared watches, grouped by key range, and
 * the one upstream Watch stream that carries them. Identities never share
 * an upstream watch, so nobody gets an event etcd would refuse them.
 *
 * When the stream's endpoint fails, a new stream opens elsewhere and every
 * shared watch resumes from its nextRev; clients notice nothing. When etcd
 * itself ends the stream (no leader, bad token), every client stream of the
 * identity ends with etcd's error, as it would direct.
 */
export class WatchChannel {
  private readonly groups = new Map<string, SharedWatch[]>();
  private readonly members = new Set<ChannelMember>();
  private connection: Connection | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectDelay: number;
  private progressWaiters: ProgressWaiter[] = [];
  private heldProgress: HeldProgress | undefined;
  private progressTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly upstream: WatchUpstream,
    private readonly forwardHeaders: Readonly<Record<string, string>>,
    /** Keep a stream open even with no watches, so etcd can end it on leader loss. */
    private readonly monitorsLeader: boolean,
    private readonly options: ChannelOptions,
    private readonly events: ChannelEvents,
  ) {
    this.reconnectDelay = options.reconnectMinMs;
  }

  /** Whether no client stream and no watch uses this channel any more. */
  get idle(): boolean {
    return this.members.size === 0 && this.groups.size === 0;
  }

  /** The freshest header etcd sent on any watch of this identity, for answers the proxy makes up. */
  latestHeader(): ResponseHeader | undefined {
    let best: ResponseHeader | undefined;
    for (const group of this.groups.values())
      for (const w of group) if (w.header && (!best || w.header.revision > best.revision)) best = w.header;
    return best;
  }

  addMember(member: ChannelMember): void {
    this.members.add(member);
    if (this.monitorsLeader) this.ensureConnection();
  }

  removeMember(member: ChannelMember): void {
    this.members.delete(member);
    this.closeIfUnused();
  }

  /** The shared watch a new watcher can use without opening one, if any. */
  findJoinable(key: Uint8Array, rangeEnd: Uint8Array, startRevision: bigint): SharedWatch | undefined {
    const group = this.groups.get(rangeKey(key, rangeEnd));
    if (!group) return undefined;
    for (const w of group) if (joinKind(w, startRevision)) return w;
    return undefined;
  }

  /**
   * Adds `receiver` (wanting events from `startRevision`, 0 for "now") to a
   * shared watch of its range: an existing one if it can serve it without a
   * gap (and `own` is not asked), else a new upstream watch.
   */
  join(receiver: Receiver, key: Uint8Array, rangeEnd: Uint8Array, startRevision: bigint, own = false): Joined {
    const groupKey = rangeKey(key, rangeEnd);
    let group = this.groups.get(groupKey);
    if (group) {
      for (const w of own ? [] : group) {
        const kind = joinKind(w, startRevision);
        if (!kind) continue;
        w.receivers.add(receiver);
        receiver.shared = w;
        if (kind === "waiting") return { kind, watch: w };
        // A watcher from "now" starts where the watch stands: the last
        // revision it delivered, which may lie a little in etcd's past.
        receiver.nextRev = startRevision === 0n ? w.nextRev : startRevision;
        return { kind, watch: w, header: { ...w.header!, revision: w.nextRev - 1n } };
      }
    } else {
      group = [];
      this.groups.set(groupKey, group);
    }
    const watch = new SharedWatch(key, rangeEnd, startRevision, this.options.history);
    watch.receivers.add(receiver);
    receiver.shared = watch;
    group.push(watch);
    this.events.sharedWatchStarted();
    this.open(watch);
    return { kind: "waiting", watch };
  }

  /** Replays what `receiver` missed from `watch`'s history (after its Created went out). */
  replay(watch: SharedWatch, receiver: Receiver, fromRevision: bigint): void {
    if (fromRevision < watch.nextRev) this.events.replayed(watch.replay(receiver, fromRevision));
  }

  /** Removes `receiver`; the last one out cancels the upstream watch. */
  leave(receiver: Receiver, watch: SharedWatch): void {
    if (!watch.receivers.delete(receiver)) return;
    if (watch.receivers.size === 0) this.stop(watch);
  }

  /**
   * Resolves with a header whose revision every live watch of this identity
   * has fully delivered: etcd's answer to a progress request on the stream.
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

  close(): void {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.progressTimer);
    this.disconnect();
  }

  private askProgress(): void {
    clearTimeout(this.progressTimer);
    if (this.progressWaiters.length === 0) return;
    this.connection?.requests.push({ requestUnion: { case: "progressRequest", value: {} } });
    this.progressTimer = setTimeout(() => this.askProgress(), this.options.progressRetryMs);
    this.progressTimer.unref();
  }

  private open(watch: SharedWatch): void {
    const conn = this.ensureConnection();
    if (conn && watch.upstreamId === 0n) this.sendCreate(conn, watch);
  }

  private sendCreate(conn: Connection, watch: SharedWatch): void {
    const id = conn.nextId++;
    watch.upstreamId = id;
    // From the last event etcd sent, not from a progress answer that may have overtaken owed events.
    watch.createdFrom = watch.eventsUpTo;
    watch.synced = false;
    watch.vouched = false;
    conn.byId.set(id, watch);
    conn.requests.push({
      requestUnion: {
        case: "createRequest",
        value: {
          key: watch.key,
          rangeEnd: watch.rangeEnd,
          startRevision: watch.createdFrom,
          prevKv: true,
          progressNotify: true,
          watchId: id,
        },
      },
    });
  }

  private stop(watch: SharedWatch): void {
    const groupKey = rangeKey(watch.key, watch.rangeEnd);
    const group = this.groups.get(groupKey);
    if (group) {
      const at = group.indexOf(watch);
      if (at >= 0) {
        group.splice(at, 1);
        this.events.sharedWatchStopped(watch.receivers.size);
      }
      if (group.length === 0) this.groups.delete(groupKey);
    }
    const conn = this.connection;
    if (conn && watch.upstreamId !== 0n && conn.byId.get(watch.upstreamId) === watch) {
      conn.byId.delete(watch.upstreamId);
      if (watch.state !== "dead") {
        conn.requests.push({ requestUnion: { case: "cancelRequest", value: { watchId: watch.upstreamId } } });
      }
    }
    watch.upstreamId = 0n;
    watch.state = "dead";
    this.closeIfUnused();
  }

  private closeIfUnused(): void {
    if (this.groups.size > 0 || (this.monitorsLeader && this.members.size > 0)) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.disconnect();
  }

  private disconnect(): void {
    const conn = this.connection;
    this.connection = undefined;
    if (!conn) return;
    conn.requests.end();
    conn.abort.abort(new ConnectError("watch channel closed", Code.Canceled));
  }

  private ensureConnection(): Connection | undefined {
    if (this.connection) return this.connection;
    if (this.closed || this.reconnectTimer) return undefined; // the timer reopens and re-creates
    const conn: Connection = {
      requests: new AsyncQueue<WatchRequestInit>(),
      abort: new AbortController(),
      byId: new Map(),
      nextId: 1n, // 0 asks etcd to choose
    };
    this.connection = conn;
    const ctx: CallContext = { forwardHeaders: this.forwardHeaders, deadline: undefined, signal: conn.abort.signal };
    void this.pump(conn, ctx);
    // Watches that outlived a lost stream resume where their receivers stand.
    for (const group of this.groups.values())
      for (const w of group)
        if (w.state !== "dead" && w.upstreamId === 0n) {
          w.skipToReceivers();
          this.sendCreate(conn, w);
        }
    if (this.progressWaiters.length > 0) this.askProgress();
    return conn;
  }

  private async pump(conn: Connection, ctx: CallContext): Promise<void> {
    let failure: unknown; // none: etcd ended the stream cleanly (shutting down)
    try {
      for await (const response of this.upstream(conn.requests, ctx)) {
        if (this.connection !== conn) return;
        this.reconnectDelay = this.options.reconnectMinMs;
        this.dispatch(conn, response);
      }
    } catch (err) {
      failure = err;
    }
    if (this.connection !== conn) return; // closed on purpose
    this.connection = undefined;
    conn.requests.end();
    for (const w of conn.byId.values()) w.upstreamId = 0n;
    if (endpointLost(failure)) {
      this.events.reconnecting(failure);
      this.scheduleReconnect();
    } else {
      this.failAll(toClientError(failure));
    }
  }

  private scheduleReconnect(): void {
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(delay * 2, this.options.reconnectMaxMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.groups.size > 0 || (this.monitorsLeader && this.members.size > 0)) this.ensureConnection();
    }, delay);
  }

  /** etcd ended the stream for a reason of its own: every client stream of this identity ends with it. */
  private failAll(err: ConnectError): void {
    const watches = [...this.groups.values()].flat();
    this.groups.clear();
    for (const w of watches) {
      this.events.sharedWatchStopped(w.receivers.size);
      w.state = "dead";
      w.receivers.clear();
    }
    for (const waiter of this.progressWaiters.splice(0)) waiter.failed(err);
    for (const m of [...this.members]) m.fail(err);
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
        conn.byId.delete(response.watchId);
        this.removeFromGroup(watch);
        watch.onCreateFailed(header, response.cancelReason);
        return;
      }
      watch.onCreated(header);
      this.tryMerge(watch);
      return;
    }
    if (response.canceled) {
      conn.byId.delete(response.watchId);
      this.removeFromGroup(watch);
      if (response.compactRevision > 0n) this.keepUncompacted(watch, response.compactRevision);
      watch.onCanceled(header, response.compactRevision, response.cancelReason);
      return;
    }
    if (response.events.length > 0) {
      const held = this.heldProgress;
      if (held?.conn === conn && response.events[0]!.kv!.modRevision <= held.header.revision) held.overtook = true;
      this.events.coalescedDeliveries(watch.onEvents(header, response.events));
      this.tryMerge(watch);
      return;
    }
    watch.onProgress(header);
    this.tryMerge(watch);
  }

  /**
   * etcd cancelled `watch` for compaction: that answer belongs only to the
   * receivers that still need a compacted revision. The others (which
   * joined later, from later revisions) move to another watch of the range
   * from where they stand, as their own watches would have gone on.
   */
  private keepUncompacted(watch: SharedWatch, compactRevision: bigint): void {
    const keep = [...watch.receivers].filter((r) => r.nextRev >= compactRevision);
    for (const r of keep) {
      watch.receivers.delete(r);
      const joined = this.join(r, watch.key, watch.rangeEnd, r.nextRev);
      if (joined.kind === "joined") this.replay(joined.watch, r, r.nextRev);
    }
  }

  private refusePending(conn: Connection, header: ResponseHeader, reason: string): void {
    for (const [id, w] of conn.byId) {
      if (w.state !== "pending") continue;
      conn.byId.delete(id);
      this.removeFromGroup(w);
      w.onCreateFailed(header, reason);
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

  private removeFromGroup(watch: SharedWatch): void {
    const groupKey = rangeKey(watch.key, watch.rangeEnd);
    const group = this.groups.get(groupKey);
    if (!group) return;
    const at = group.indexOf(watch);
    if (at < 0) return;
    group.splice(at, 1);
    if (group.length === 0) this.groups.delete(groupKey);
    this.events.sharedWatchStopped(watch.receivers.size);
  }

  /**
   * Folds `watch` into another live watch of its range that can serve its
   * receivers without a gap: one that is not ahead of it, or whose history
   * reaches back to it. Same-range watches thus converge onto one. Only
   * watches etcd has vouched for merge: one created from the past may yet
   * be cancelled for compaction, and its receivers must hear that.
   */
  private tryMerge(watch: SharedWatch): void {
    const group = this.groups.get(rangeKey(watch.key, watch.rangeEnd));
    if (!group || group.length < 2 || watch.state !== "live" || !watch.vouched) return;
    for (const other of group) {
      if (other === watch || other.state !== "live" || !other.vouched) continue;
      let from = watch;
      let into = other;
      if (other.nextRev === watch.nextRev && other.receivers.size < watch.receivers.size) [from, into] = [other, watch];
      const fits = into.nextRev <= from.nextRev || into.history.covers(from.nextRev);
      if (!fits) continue;
      const moving = [...from.receivers];
      from.receivers.clear();
      // Between from's last event and its position, etcd may still owe events (see eventsUpTo): into brings them.
      const owedFrom = into.history.covers(from.eventsUpTo) ? from.eventsUpTo : from.nextRev;
      for (const r of moving) {
        if (r.nextRev < owedFrom) r.nextRev = owedFrom;
        into.receivers.add(r);
        r.shared = into;
        if (into.nextRev > owedFrom) this.events.replayed(into.replay(r, owedFrom));
      }
      this.stop(from);
      return;
    }
  }
}

/**
 * Whether a stream ended because its endpoint went away rather than because
 * etcd refused it; a clean end (etcd shutting down) counts as going away.
 */
function endpointLost(failure: unknown): boolean {
  return failure === undefined || !(failure instanceof ConnectError) || isConnectionFailure(failure);
}

/** How a watcher wanting events from `startRevision` can use `watch`, if at all. */
function joinKind(watch: SharedWatch, startRevision: bigint): "joined" | "waiting" | undefined {
  // A watch from a negative revision is etcd's to cancel; nobody joins it.
  if (watch.state === "dead" || watch.nextRev < 0n) return undefined;
  if (watch.state === "pending") {
    // etcd's answer to the pending create (where "now" is, or a compaction)
    // is the answer a watcher from the same start would get: only those
    // may wait for it.
    return startRevision === watch.nextRev ? "waiting" : undefined;
  }
  if (startRevision === 0n) return watch.caughtUp ? "joined" : undefined;
  return startRevision >= watch.nextRev || watch.history.covers(startRevision) ? "joined" : undefined;
}

/** A map key for a byte range. */
function rangeKey(key: Uint8Array, rangeEnd: Uint8Array): string {
  return `${key.length}:${Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("latin1")}${Buffer.from(
    rangeEnd.buffer,
    rangeEnd.byteOffset,
    rangeEnd.byteLength,
  ).toString("latin1")}`;
}

import type { ConnectError } from "@connectrpc/connect";
import type { ResponseHeader } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import type { Event } from "../gen/etcd/api/mvccpb/kv_pb.js";
import type { HistoryLimits } from "./event-history.js";
import { SharedWatch, type Receiver } from "./shared-watch.js";
import {
  UpstreamWatchStream,
  type StreamListener,
  type StreamOptions,
  type WatchUpstream,
} from "./upstream-watch-stream.js";

export type { WatchUpstream } from "./upstream-watch-stream.js";

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

export interface ChannelOptions extends StreamOptions {
  history: HistoryLimits;
}

/** How a watcher joins: at once (with a made-up Created), or when etcd creates the watch. */
export type Joined =
  { kind: "joined"; watch: SharedWatch; header: ResponseHeader } | { kind: "waiting"; watch: SharedWatch };

/**
 * Everything watched with one caller identity (auth token, and whether the
 * caller requires a leader): the shared watches, grouped by key range, on
 * the one upstream Watch stream that carries them. Identities never share
 * an upstream watch, so nobody gets an event etcd would refuse them.
 *
 * This is the registry of range groups: who joins which watch, when same-range
 * watches merge, and who a compaction cancel belongs to. The stream's own
 * life (opening, reconnecting, progress requests) is UpstreamWatchStream's.
 * When the stream's endpoint fails, a new stream opens elsewhere and every
 * shared watch resumes from its nextRev; clients notice nothing. When etcd
 * itself ends the stream (no leader, bad token), every client stream of the
 * identity ends with etcd's error, as it would direct.
 */
export class WatchChannel implements StreamListener {
  private readonly groups = new Map<string, SharedWatch[]>();
  private readonly members = new Set<ChannelMember>();
  private readonly stream: UpstreamWatchStream;

  constructor(
    upstream: WatchUpstream,
    forwardHeaders: Readonly<Record<string, string>>,
    /** Keep a stream open even with no watches, so etcd can end it on leader loss. */
    private readonly monitorsLeader: boolean,
    private readonly options: ChannelOptions,
    private readonly channelEvents: ChannelEvents,
  ) {
    this.stream = new UpstreamWatchStream(upstream, forwardHeaders, options, this);
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
    if (this.monitorsLeader) this.stream.open();
  }

  removeMember(member: ChannelMember): void {
    this.members.delete(member);
    this.stream.closeIfUnwanted();
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
        w.addReceiver(receiver);
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
    watch.addReceiver(receiver);
    group.push(watch);
    this.channelEvents.sharedWatchStarted();
    this.stream.create(watch);
    return { kind: "waiting", watch };
  }

  /** Replays what `receiver` missed from `watch`'s history (after its Created went out). */
  replay(watch: SharedWatch, receiver: Receiver, fromRevision: bigint): void {
    if (fromRevision < watch.nextRev) this.channelEvents.replayed(watch.replay(receiver, fromRevision));
  }

  /** Removes `receiver`; the last one out cancels the upstream watch. */
  leave(receiver: Receiver, watch: SharedWatch): void {
    if (!watch.removeReceiver(receiver)) return;
    if (watch.receivers.size === 0) this.stop(watch);
  }

  /**
   * Resolves with a header whose revision every live watch of this identity
   * has fully delivered: etcd's answer to a progress request on the stream.
   */
  requestProgress(signal: AbortSignal): Promise<ResponseHeader> {
    return this.stream.requestProgress(signal);
  }

  close(): void {
    this.stream.close();
  }

  // What the stream asks and tells.

  wanted(): boolean {
    return this.groups.size > 0 || (this.monitorsLeader && this.members.size > 0);
  }

  *resumable(): Iterable<SharedWatch> {
    for (const group of this.groups.values()) for (const w of group) if (w.state !== "dead") yield w;
  }

  created(watch: SharedWatch, header: ResponseHeader): void {
    watch.onCreated(header);
    this.tryMerge(watch);
  }

  createRefused(watch: SharedWatch, header: ResponseHeader, reason: string): void {
    this.removeFromGroup(watch);
    watch.onCreateFailed(header, reason);
  }

  canceled(watch: SharedWatch, header: ResponseHeader, compactRevision: bigint, reason: string): void {
    this.removeFromGroup(watch);
    if (compactRevision > 0n) this.keepUncompacted(watch, compactRevision);
    watch.onCanceled(header, compactRevision, reason);
  }

  events(watch: SharedWatch, header: ResponseHeader, events: Event[]): void {
    this.channelEvents.coalescedDeliveries(watch.onEvents(header, events));
    this.tryMerge(watch);
  }

  progress(watch: SharedWatch, header: ResponseHeader): void {
    watch.onProgress(header);
    this.tryMerge(watch);
  }

  reconnecting(err: unknown): void {
    this.channelEvents.reconnecting(err);
  }

  /** etcd ended the stream for a reason of its own: every client stream of this identity ends with it. */
  failed(err: ConnectError): void {
    const watches = [...this.groups.values()].flat();
    this.groups.clear();
    for (const w of watches) {
      this.channelEvents.sharedWatchStopped(w.receivers.size);
      w.end();
    }
    for (const m of [...this.members]) m.fail(err);
  }

  private stop(watch: SharedWatch): void {
    this.removeFromGroup(watch);
    this.stream.cancel(watch);
    watch.end();
    this.stream.closeIfUnwanted();
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
      watch.removeReceiver(r);
      const joined = this.join(r, watch.key, watch.rangeEnd, r.nextRev);
      if (joined.kind === "joined") this.replay(joined.watch, r, r.nextRev);
    }
  }

  private removeFromGroup(watch: SharedWatch): void {
    const groupKey = rangeKey(watch.key, watch.rangeEnd);
    const group = this.groups.get(groupKey);
    if (!group) return;
    const at = group.indexOf(watch);
    if (at < 0) return;
    group.splice(at, 1);
    if (group.length === 0) this.groups.delete(groupKey);
    this.channelEvents.sharedWatchStopped(watch.receivers.size);
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
      const moving = from.takeReceivers();
      // Between from's last event and its position, etcd may still owe events (see eventsUpTo): into brings them.
      const owedFrom = into.history.covers(from.eventsUpTo) ? from.eventsUpTo : from.nextRev;
      for (const r of moving) {
        if (r.nextRev < owedFrom) r.nextRev = owedFrom;
        into.addReceiver(r);
        if (into.nextRev > owedFrom) this.channelEvents.replayed(into.replay(r, owedFrom));
      }
      this.stop(from);
      return;
    }
  }
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

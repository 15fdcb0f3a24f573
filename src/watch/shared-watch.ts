import type { ResponseHeader } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import type { Event } from "../gen/etcd/api/mvccpb/kv_pb.js";
import { EventHistory, type HistoryLimits } from "./event-history.js";
import { EventDelivery } from "./responses.js";

/** What a shared watch needs from the client watchers it serves. */
export interface Receiver {
  /** The next revision this receiver may get; events before it are dropped (duplicates). */
  nextRev: bigint;
  /** The shared watch serving it; kept up to date by the channel. */
  shared: SharedWatch | undefined;
  /** etcd created the upstream watch; a receiver still waiting for its Created gets this header. */
  upstreamCreated(header: ResponseHeader): void;
  /** The upstream watch could not be created: etcd's reason. */
  createFailed(header: ResponseHeader, reason: string): void;
  deliver(delivery: EventDelivery): void;
  progress(header: ResponseHeader): void;
  /** The upstream watch ended (compaction, permission, ...); it will never deliver again. */
  canceled(header: ResponseHeader, compactRevision: bigint, reason: string): void;
}

export type SharedWatchState = "pending" | "live" | "dead";

/**
 * One upstream watcher on a key range, and the client watchers it serves.
 * It always asks etcd for prev_kv and progress notifications; each receiver
 * filters for itself.
 *
 * `nextRev` is the promise it keeps: every event of the range before it has
 * been delivered, every one from it on will be. It is 0 only while a watch
 * from "now" waits for etcd to say which revision now is.
 */
export class SharedWatch {
  readonly #receivers = new Set<Receiver>();
  #state: SharedWatchState = "pending";
  #nextRev: bigint;
  #eventsUpTo: bigint;
  #header: ResponseHeader | undefined;
  #createdFrom = 0n;
  #synced = false;
  #vouched = false;
  readonly history: EventHistory;

  constructor(
    readonly key: Uint8Array,
    readonly rangeEnd: Uint8Array,
    startRevision: bigint,
    historyLimits: HistoryLimits,
  ) {
    this.#nextRev = startRevision;
    this.#eventsUpTo = startRevision;
    this.history = new EventHistory(historyLimits);
  }

  get receivers(): ReadonlySet<Receiver> {
    return this.#receivers;
  }

  get state(): SharedWatchState {
    return this.#state;
  }

  /** The promise it keeps (see the class comment). */
  get nextRev(): bigint {
    return this.#nextRev;
  }

  /**
   * The revision after the last event etcd sent on this watch (or where the
   * watch started): events before it are duplicates (a re-created watch
   * replays them). Only events and the watch's own progress notifications
   * move it. etcd before 3.4.25 and 3.5.8 can answer a stream's progress
   * request before sending events it already owes (etcd issue 15220): such
   * an answer moves nextRev, and an event below nextRev but at or after
   * eventsUpTo is one etcd still owed, so it is delivered, not dropped.
   */
  get eventsUpTo(): bigint {
    return this.#eventsUpTo;
  }

  /** The last header etcd sent on this watch. */
  get header(): ResponseHeader | undefined {
    return this.#header;
  }

  /**
   * etcd is known to have sent it every event up to its latest revision:
   * created from "now" or the future, or since told so by a progress
   * notification of its own (etcd notifies only watchers it has synced).
   * A watcher created from the past is being caught up until then.
   */
  get synced(): boolean {
    return this.#synced;
  }

  /**
   * etcd has shown that its upstream watcher's start revision is not
   * compacted: created from "now" or the future, or since sent events or
   * progress (etcd cancels a compacted watcher before either).
   */
  get vouched(): boolean {
    return this.#vouched;
  }

  addReceiver(receiver: Receiver): void {
    this.#receivers.add(receiver);
    receiver.shared = this;
  }

  /** Whether it served `receiver`. */
  removeReceiver(receiver: Receiver): boolean {
    return this.#receivers.delete(receiver);
  }

  /** Hands every receiver over (to another watch of the range). */
  takeReceivers(): Receiver[] {
    const all = [...this.#receivers];
    this.#receivers.clear();
    return all;
  }

  /**
   * It is being created upstream (again, after a lost stream): from the last
   * event etcd sent, not from a progress answer that may have overtaken owed
   * events. Returns the start revision to ask for.
   */
  recreating(): bigint {
    this.#createdFrom = this.#eventsUpTo;
    this.#synced = false;
    this.#vouched = false;
    return this.#createdFrom;
  }

  /** Nobody is served by it any more, or etcd ended it. */
  end(): void {
    this.#state = "dead";
    this.#receivers.clear();
  }

  /**
   * True when the watch has delivered everything etcd had when it last spoke,
   * so a watcher from "now" may join without starting in the past.
   */
  get caughtUp(): boolean {
    return this.#state === "live" && this.#header !== undefined && this.#nextRev > this.#header.revision;
  }

  onCreated(header: ResponseHeader): void {
    this.#header = header;
    this.#synced = this.#createdFrom === 0n || this.#createdFrom > header.revision;
    this.#vouched = this.#synced;
    // A re-created watch after failover keeps its place; clients already
    // have their Created.
    if (this.#state !== "pending") return;
    this.#state = "live";
    if (this.#nextRev === 0n) this.#nextRev = this.#eventsUpTo = header.revision + 1n;
    this.history.startAt(this.#nextRev);
    for (const r of this.#receivers) r.upstreamCreated(header);
  }

  onCreateFailed(header: ResponseHeader, reason: string): void {
    this.#state = "dead";
    for (const r of this.#receivers) r.createFailed(header, reason);
    this.#receivers.clear();
  }

  /** Returns how many receivers got the events beyond the first (coalesced deliveries). */
  onEvents(header: ResponseHeader, events: Event[]): number {
    this.#header = header;
    this.#vouched = true;
    const last = events[events.length - 1]!.kv!.modRevision;
    if (last < this.#eventsUpTo) return 0; // already delivered before a failover
    this.#eventsUpTo = last + 1n;
    if (this.#nextRev < this.#eventsUpTo) this.#nextRev = this.#eventsUpTo;
    const delivery = new EventDelivery(header, events);
    this.history.append(delivery);
    for (const r of this.#receivers) r.deliver(delivery);
    return Math.max(0, this.#receivers.size - 1);
  }

  /** The watch's own progress notification: it comes in order with its events, on every etcd. */
  onProgress(header: ResponseHeader): void {
    this.vouchedUpTo(header);
    for (const r of this.#receivers) r.progress(header);
  }

  /**
   * etcd vouched that the watch has had every event up to the header's
   * revision: its own progress notification, or a stream's progress answer
   * from an etcd that answers only once every watcher is synced.
   */
  vouchedUpTo(header: ResponseHeader): void {
    this.#header = header;
    this.#synced = true;
    this.#vouched = true;
    this.advanceTo(header.revision + 1n);
    if (this.#state === "live" && this.#eventsUpTo < this.#nextRev) this.#eventsUpTo = this.#nextRev;
  }

  /** etcd said nothing of the range happened before `revision`. */
  advanceTo(revision: bigint): void {
    if (this.#state === "live" && revision > this.#nextRev) this.#nextRev = revision;
  }

  /**
   * Before a live watch is re-created on a new stream: no receiver needs
   * anything before the lowest revision they need next, and a watch on a
   * quiet range may stand far behind it. Resuming from there instead keeps
   * a compaction in between from cancelling receivers that a direct watch
   * would not have cancelled. The history restarts there too: it must hold
   * every event from its start.
   */
  skipToReceivers(): void {
    if (this.#state !== "live" || this.#receivers.size === 0) return;
    let lowest: bigint | undefined;
    for (const r of this.#receivers) if (lowest === undefined || r.nextRev < lowest) lowest = r.nextRev;
    if (lowest! > this.#eventsUpTo) this.#eventsUpTo = lowest!;
    if (lowest! <= this.#nextRev) return;
    this.#nextRev = lowest!;
    this.history.restartAt(lowest!);
  }

  onCanceled(header: ResponseHeader, compactRevision: bigint, reason: string): void {
    this.#state = "dead";
    this.#header = header;
    for (const r of this.#receivers) r.canceled(header, compactRevision, reason);
    this.#receivers.clear();
  }

  /**
   * Replays held events from `revision` on to `receiver` (its own nextRev
   * drops what it has); returns how many history entries that took.
   */
  replay(receiver: Receiver, revision: bigint): number {
    const { deliveries, entries } = this.history.catchUp(revision);
    for (const delivery of deliveries) receiver.deliver(delivery);
    return entries;
  }
}

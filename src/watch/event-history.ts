import { EventDelivery, eventBytes } from "./responses.js";

/**
 * One upstream response's events, as they arrived (ascending revisions),
 * kept as the delivery that sent them live: a replay to many watchers
 * reuses its encoded variants.
 */
export interface HistoryEntry {
  /** The highest revision among the events. */
  readonly revision: bigint;
  readonly delivery: EventDelivery;
  readonly bytes: number;
}

export interface HistoryLimits {
  /** Most revisions kept. */
  maxEntries: number;
  /** Most key, value and previous-value bytes kept. */
  maxBytes: number;
  /** Most event bytes a replay merges into one delivery (several entries become one response). */
  replayBatchBytes: number;
}

/** A replay: the held events from some revision on, merged into as few deliveries as the limit allows. */
export interface CatchUp {
  readonly deliveries: readonly EventDelivery[];
  /** How many history entries they hold. */
  readonly entries: number;
}

/**
 * The recent events of one shared watch, so that a watcher asking for an
 * older start revision than the watch has reached can still be served from
 * memory instead of opening its own upstream watch.
 *
 * `from` is the invariant that matters: every event of the range with a
 * revision >= `from`, up to what the watch has delivered, is held here.
 */
export class EventHistory {
  private entries: HistoryEntry[] = [];
  private head = 0;
  private bytes = 0;
  private coveredFrom: bigint | undefined;
  /** Replays made since the history last changed, by start revision: watchers rejoining together share one. */
  private readonly catchUps = new Map<bigint, CatchUp>();

  constructor(private readonly limits: HistoryLimits) {}

  /** The lowest revision from which the history is complete, or undefined before it starts. */
  get from(): bigint | undefined {
    return this.coveredFrom;
  }

  /** Starts coverage at `revision` (the watch's first revision). Events before it never existed for us. */
  startAt(revision: bigint): void {
    this.coveredFrom ??= revision;
  }

  /** Drops everything held and starts coverage again at `revision`. */
  restartAt(revision: bigint): void {
    this.entries = [];
    this.head = 0;
    this.bytes = 0;
    this.catchUps.clear();
    this.coveredFrom = revision;
  }

  /** True when every event of the range from `revision` on is held. */
  covers(revision: bigint): boolean {
    return this.coveredFrom !== undefined && this.coveredFrom <= revision;
  }

  append(delivery: EventDelivery): void {
    if (delivery.events.length === 0 || this.coveredFrom === undefined) return;
    const bytes = eventBytes(delivery.events);
    const entry = { revision: delivery.lastRevision, delivery, bytes };
    this.catchUps.clear();
    this.entries.push(entry);
    this.bytes += bytes;
    while (this.size > this.limits.maxEntries || (this.bytes > this.limits.maxBytes && this.size > 0)) {
      const dropped = this.entries[this.head++]!;
      this.bytes -= dropped.bytes;
      this.coveredFrom = dropped.revision + 1n;
    }
    // Compact the backing array once the dropped prefix dominates it.
    if (this.head > 64 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }

  /** The held entries that contain events at or after `revision`, oldest first. */
  since(revision: bigint): HistoryEntry[] {
    const out: HistoryEntry[] = [];
    for (let i = this.head; i < this.entries.length; i++) {
      const entry = this.entries[i]!;
      if (entry.revision >= revision) out.push(entry);
    }
    return out;
  }

  /**
   * The held events from `revision` on, for a receiver catching up: runs of
   * entries merged into one delivery each, up to replayBatchBytes, so the
   * receiver gets its backlog in few responses (as etcd batches a watcher it
   * syncs from storage), and receivers asking for the same revision share
   * the deliveries and their encodings.
   */
  catchUp(revision: bigint): CatchUp {
    let made = this.catchUps.get(revision);
    if (made) return made;
    const entries = this.since(revision);
    const deliveries: EventDelivery[] = [];
    for (let start = 0; start < entries.length;) {
      let end = start + 1;
      let bytes = entries[start]!.bytes;
      while (end < entries.length && bytes + entries[end]!.bytes <= this.limits.replayBatchBytes) {
        bytes += entries[end]!.bytes;
        end++;
      }
      deliveries.push(end - start === 1 ? entries[start]!.delivery : merge(entries.slice(start, end)));
      start = end;
    }
    made = { deliveries, entries: entries.length };
    this.catchUps.set(revision, made);
    return made;
  }

  private get size(): number {
    return this.entries.length - this.head;
  }
}

/** One delivery of several entries' events, with the newest header. */
function merge(entries: readonly HistoryEntry[]): EventDelivery {
  const events = entries.flatMap((e) => e.delivery.events);
  return new EventDelivery(entries[entries.length - 1]!.delivery.header, events);
}

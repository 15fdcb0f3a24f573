import type { Event } from "../gen/etcd/api/mvccpb/kv_pb.js";
import type { EventDelivery } from "./responses.js";

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

  constructor(private readonly limits: HistoryLimits) {}

  /** The lowest revision from which the history is complete, or undefined before it starts. */
  get from(): bigint | undefined {
    return this.coveredFrom;
  }

  /** Starts coverage at `revision` (the watch's first revision). Events before it never existed for us. */
  startAt(revision: bigint): void {
    this.coveredFrom ??= revision;
  }

  /** True when every event of the range from `revision` on is held. */
  covers(revision: bigint): boolean {
    return this.coveredFrom !== undefined && this.coveredFrom <= revision;
  }

  append(delivery: EventDelivery): void {
    if (delivery.events.length === 0 || this.coveredFrom === undefined) return;
    const bytes = eventBytes(delivery.events);
    const entry = { revision: delivery.lastRevision, delivery, bytes };
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

  private get size(): number {
    return this.entries.length - this.head;
  }
}

/** Approximate memory of events: their keys, values and previous values. */
export function eventBytes(events: readonly Event[]): number {
  let n = 0;
  for (const e of events) {
    n += 48;
    if (e.kv) n += e.kv.key.length + e.kv.value.length;
    if (e.prevKv) n += e.prevKv.key.length + e.prevKv.value.length;
  }
  return n;
}

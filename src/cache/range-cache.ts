import { isSingleKey, overlaps, type KeyInterval } from "../util/key-range.js";

export interface RangeCacheLimits {
  /** Most bytes of cached responses (keys and bookkeeping counted roughly). */
  maxBytes: number;
  maxEntries: number;
  /** An entry is served for at most this long after etcd produced it. */
  ttlMs: number;
}

interface Entry {
  readonly id: string;
  readonly interval: KeyInterval;
  readonly response: Uint8Array;
  readonly bytes: number;
  readonly filledAt: number;
  /** The revision etcd read the data at. */
  readonly revision: bigint;
}

/** An invalidation, remembered briefly so a read that raced it is not cached. */
interface Invalidation {
  readonly epoch: number;
  /** Undefined: everything. */
  readonly interval: KeyInterval | undefined;
}

const RECENT_INVALIDATIONS = 1024;
const ENTRY_OVERHEAD_BYTES = 160;

export interface CacheStats {
  entries: number;
  bytes: number;
}

/**
 * Range responses by (caller identity, request), LRU-evicted within a byte
 * and an entry budget, each served for at most `ttlMs`. Invalidation is by
 * key interval: single-key entries are found through an index, range
 * entries by a scan (they are few, and short-lived).
 *
 * A fill carries the epoch at which its read started; if anything
 * overlapping was invalidated since, the fill is dropped, so a read that
 * raced a write can never put the old value back.
 */
export class RangeCache {
  private readonly entries = new Map<string, Entry>(); // iteration order = LRU order
  private readonly byKey = new Map<string, Set<Entry>>();
  private readonly ranges = new Set<Entry>();
  private readonly recent: Invalidation[] = [];
  private epoch = 0;
  private totalBytes = 0;

  constructor(private readonly limits: RangeCacheLimits) {}

  get stats(): CacheStats {
    return { entries: this.entries.size, bytes: this.totalBytes };
  }

  /** A fresh cached response, or undefined; `age` hears how old a served one is. */
  lookup(id: string, now: number, age?: (ms: number) => void): Uint8Array | undefined {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    if (now - entry.filledAt > this.limits.ttlMs) {
      this.remove(entry);
      return undefined;
    }
    // Most recently used goes last.
    this.entries.delete(id);
    this.entries.set(id, entry);
    age?.(now - entry.filledAt);
    return entry.response;
  }

  /** Call before reading from etcd; pass the result to fill(). */
  startFill(): number {
    return this.epoch;
  }

  fill(
    id: string,
    interval: KeyInterval,
    response: Uint8Array,
    revision: bigint,
    startedAt: number,
    now: number,
  ): void {
    if (this.limits.maxBytes <= 0 || this.racedInvalidation(interval, startedAt)) return;
    const bytes = response.length + id.length + ENTRY_OVERHEAD_BYTES;
    if (bytes > this.limits.maxBytes) return;
    const old = this.entries.get(id);
    if (old) this.remove(old);
    const entry: Entry = { id, interval, response, bytes, filledAt: now, revision };
    this.entries.set(id, entry);
    this.totalBytes += bytes;
    if (isSingleKey(interval)) {
      let set = this.byKey.get(interval.lo);
      if (!set) this.byKey.set(interval.lo, (set = new Set()));
      set.add(entry);
    } else {
      this.ranges.add(entry);
    }
    while (this.totalBytes > this.limits.maxBytes || this.entries.size > this.limits.maxEntries) {
      this.remove(this.entries.values().next().value!);
    }
  }

  /** Drops every entry whose range overlaps `interval`, for every identity. */
  invalidate(interval: KeyInterval): void {
    this.remember(interval);
    if (this.entries.size === 0) return;
    if (isSingleKey(interval)) {
      const set = this.byKey.get(interval.lo);
      if (set) for (const e of [...set]) this.remove(e);
    } else {
      for (const [key, set] of this.byKey) {
        if (key >= interval.lo && (interval.hi === null || key < interval.hi)) for (const e of [...set]) this.remove(e);
      }
    }
    for (const e of this.ranges) if (overlaps(e.interval, interval)) this.remove(e);
  }

  /** Drops entries read before `revision`: writes between their read and it may have gone unseen. */
  dropOlderThan(revision: bigint): void {
    this.remember(undefined);
    for (const e of [...this.entries.values()]) if (e.revision < revision) this.remove(e);
  }

  invalidateAll(): void {
    this.remember(undefined);
    for (const e of [...this.entries.values()]) this.remove(e);
  }

  /** Drops expired entries, so the index holds only what may still be served. */
  sweep(now: number): void {
    for (const e of this.entries.values()) {
      // LRU order is not expiry order, but a hit refreshes neither; scan all.
      if (now - e.filledAt > this.limits.ttlMs) this.remove(e);
    }
  }

  private remember(interval: KeyInterval | undefined): void {
    this.epoch++;
    this.recent.push({ epoch: this.epoch, interval });
    if (this.recent.length > RECENT_INVALIDATIONS) this.recent.shift();
  }

  private racedInvalidation(interval: KeyInterval, startedAt: number): boolean {
    if (startedAt === this.epoch) return false;
    const oldest = this.recent[0];
    if (!oldest || oldest.epoch > startedAt + 1) return true; // too long ago to tell
    for (let i = this.recent.length - 1; i >= 0; i--) {
      const inv = this.recent[i]!;
      if (inv.epoch <= startedAt) break;
      if (inv.interval === undefined || overlaps(inv.interval, interval)) return true;
    }
    return false;
  }

  private remove(entry: Entry): void {
    if (this.entries.get(entry.id) !== entry) return;
    this.entries.delete(entry.id);
    this.totalBytes -= entry.bytes;
    if (isSingleKey(entry.interval)) {
      const set = this.byKey.get(entry.interval.lo);
      set?.delete(entry);
      if (set?.size === 0) this.byKey.delete(entry.interval.lo);
    } else {
      this.ranges.delete(entry);
    }
  }
}

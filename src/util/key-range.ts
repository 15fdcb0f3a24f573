/**
 * etcd key ranges as half-open intervals of latin1 strings, whose code-unit
 * order is etcd's byte order. etcd's conventions: no range end means the one
 * key; a range end of "\0" means every key from `key` on.
 */
export interface KeyInterval {
  readonly lo: string;
  /** Exclusive; null for "to the end of the keyspace". */
  readonly hi: string | null;
}

export function bytesToString(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
}

/** The interval etcd reads from a request's key and range_end. */
export function keyInterval(key: Uint8Array, rangeEnd: Uint8Array): KeyInterval {
  const lo = bytesToString(key);
  if (rangeEnd.length === 0) return { lo, hi: `${lo}\0` };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { lo, hi: null };
  return { lo, hi: bytesToString(rangeEnd) };
}

/** True when the interval is exactly one key. */
export function isSingleKey(i: KeyInterval): boolean {
  return i.hi !== null && i.hi.length === i.lo.length + 1 && i.hi.endsWith("\0") && i.hi.startsWith(i.lo);
}

export function overlaps(a: KeyInterval, b: KeyInterval): boolean {
  return (b.hi === null || a.lo < b.hi) && (a.hi === null || b.lo < a.hi);
}

/** True when every key of `inner` lies in `outer`. */
export function contains(outer: KeyInterval, inner: KeyInterval): boolean {
  if (inner.lo < outer.lo) return false;
  if (outer.hi === null) return true;
  return inner.hi !== null ? inner.hi <= outer.hi : false;
}

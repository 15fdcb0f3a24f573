import { create } from "@bufbuild/protobuf";
import {
  RangeResponseSchema,
  type RangeRequest,
  type RangeResponse,
  type ResponseHeader,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { KeyValueSchema, type KeyValue } from "../gen/etcd/api/mvccpb/kv_pb.js";
import { bytesToString, keyInterval, overlaps, type KeyInterval } from "../util/key-range.js";

/** After a key's ownership is lost, the proxy leaves it alone this long (as etcd's leasing client does). */
export const REACQUIRE_BACKOFF_MS = 2_000;

/** What the proxy holds at most (etcd's client holds without bound): past it, new keys are read from etcd. */
export const MAX_OWNED_KEYS = 65_536;
export const MAX_OWNED_BYTES = 64 * 1024 * 1024;
/** Past this many given-up keys remembered, those out of their backoff are forgotten. */
const GIVEN_UP_SWEEP_AT = 4_096;

interface LeasedKey {
  /** etcd's answer to a plain Get of the key, kept current by the proxy's own writes. */
  answer: RangeResponse;
  /** A revision at or after the creation of the proxy's ownership record: writes guard on it. */
  recordRevision: bigint;
  /** Writes of this key by the proxy in flight; reads wait for them. */
  writes: Array<Promise<unknown>>;
}

/** Map keys: the key's bytes as latin1, whose order is etcd's byte order. */
const mapKey = bytesToString;

/** One of the proxy's writes, numbered in the order they began. */
interface OwnWrite {
  ranges: KeyInterval[];
  seq: number;
  done: boolean;
}

/** An acquisition in flight: the first write that may have raced it. */
export interface Acquisition {
  readonly since: number;
}

/**
 * The keys this proxy owns under the leasing protocol, with what etcd held
 * for each. Pure bookkeeping: the protocol (leasing-kv.ts) decides when a
 * key is owned, written or given up.
 */
export class LeasedKeys {
  private readonly keys = new Map<string, LeasedKey>();
  /** Keys given up lately: when, and the revision at which etcd said so (0 when the proxy chose to). */
  private readonly givenUp = new Map<string, { at: number; revision: bigint }>();
  /** Keys and values held, in bytes. */
  private heldBytes = 0;
  /**
   * The proxy's own writes that an acquisition in flight may have raced: an
   * acquiring read can be applied before one of them and answered after
   * it, and must then not be held (the write did not know the key was owned).
   */
  private ownWrites: OwnWrite[] = [];
  private nextWrite = 0;
  private readonly acquisitions = new Set<Acquisition>();

  get size(): number {
    return this.keys.size;
  }

  /** Whether one more key may be owned within MAX_OWNED_KEYS and MAX_OWNED_BYTES. */
  get hasRoom(): boolean {
    return this.keys.size < MAX_OWNED_KEYS && this.heldBytes < MAX_OWNED_BYTES;
  }

  /** Whether the proxy may try to own `key` now (not given up within the backoff). */
  mayAcquire(key: Uint8Array, now = Date.now()): boolean {
    const given = this.givenUp.get(mapKey(key));
    if (given === undefined) return true;
    if (now - given.at < REACQUIRE_BACKOFF_MS) return false;
    this.givenUp.delete(mapKey(key));
    return true;
  }

  /** Marks an acquisition's start; own() or abandon() ends it. */
  acquiring(): Acquisition {
    const inFlight = this.ownWrites.find((w) => !w.done);
    const acquisition = { since: inFlight?.seq ?? this.nextWrite };
    this.acquisitions.add(acquisition);
    return acquisition;
  }

  /** The acquisition failed: nothing is owned. */
  abandon(acquisition: Acquisition): void {
    this.acquisitions.delete(acquisition);
    this.pruneOwnWrites();
  }

  /**
   * Takes ownership of `key`, with etcd's answer to a plain Get at
   * `recordRevision`, unless etcd took it back at or after that revision
   * (a writer's request can be heard before the acquiring Txn's answer), or
   * one of the proxy's own writes of the key was in flight meanwhile.
   */
  own(key: Uint8Array, answer: RangeResponse, recordRevision: bigint, acquisition: Acquisition): void {
    const at = keyInterval(key, new Uint8Array());
    const raced = this.ownWrites.some((w) => w.seq >= acquisition.since && w.ranges.some((r) => overlaps(r, at)));
    this.abandon(acquisition);
    if (raced) return;
    const given = this.givenUp.get(mapKey(key));
    // Taken back at or before the revision the acquisition read: etcd's answer already lacks the ownership.
    if (given && given.revision >= recordRevision) return;
    this.forget(mapKey(key));
    this.keys.set(mapKey(key), { answer, recordRevision, writes: [] });
    this.heldBytes += sizeOf(answer);
  }

  owns(key: Uint8Array): boolean {
    return this.keys.has(mapKey(key));
  }

  /** The revision writes of `key` guard on: 0 for a key the proxy does not own. */
  recordRevision(key: Uint8Array): bigint {
    return this.keys.get(mapKey(key))?.recordRevision ?? 0n;
  }

  /**
   * The answer to `request` from what the proxy holds, once its own writes of
   * the key are done; undefined when it does not own the key.
   */
  async answer(request: RangeRequest): Promise<RangeResponse | undefined> {
    let leased = this.keys.get(mapKey(request.key));
    while (leased && leased.writes.length > 0) {
      await Promise.allSettled(leased.writes);
      leased = this.keys.get(mapKey(request.key));
    }
    return leased && filtered(leased.answer, request);
  }

  /**
   * Runs `write`, of the key `ranges`, with readers of the owned `keys`
   * held until it is done; no acquisition it may race takes a key of them.
   */
  async writing<T>(ranges: KeyInterval[], keys: Uint8Array[], write: () => Promise<T>): Promise<T> {
    const own: OwnWrite = { ranges, seq: this.nextWrite++, done: false };
    this.ownWrites.push(own);
    const held = keys.map((k) => this.keys.get(mapKey(k))).filter((k) => k !== undefined);
    let finished!: () => void;
    const done = new Promise<void>((resolve) => (finished = resolve));
    for (const leased of held) leased.writes.push(done);
    try {
      return await write();
    } finally {
      finished();
      for (const leased of held) leased.writes.splice(leased.writes.indexOf(done), 1);
      own.done = true;
      this.pruneOwnWrites();
    }
  }

  /** Keeps the writes in flight and those an acquisition in flight may have raced. */
  private pruneOwnWrites(): void {
    let oldest = Infinity;
    for (const a of this.acquisitions) oldest = Math.min(oldest, a.since);
    this.ownWrites = this.ownWrites.filter((w) => !w.done || w.seq >= oldest);
  }

  /**
   * The proxy's put of `value` at `header`'s revision (a plain put: no
   * lease, nothing ignored). With another write of the key in flight, its
   * version and create revision cannot be known here: the key is given up.
   */
  put(key: Uint8Array, value: Uint8Array, header: ResponseHeader): void {
    const leased = this.keys.get(mapKey(key));
    if (leased && leased.writes.length > 1) return this.giveUp(key);
    if (!leased || header.revision < leased.answer.header!.revision) return;
    const old = leased.answer.kvs[0];
    const kv = create(KeyValueSchema, {
      key,
      value,
      createRevision: old?.createRevision ?? header.revision,
      modRevision: header.revision,
      version: (old?.version ?? 0n) + 1n,
      lease: 0n,
    });
    this.replace(leased, create(RangeResponseSchema, { header, kvs: [kv], count: 1n }));
  }

  /** The proxy's delete of `key` at `header`'s revision. */
  deleted(key: Uint8Array, header: ResponseHeader): void {
    const leased = this.keys.get(mapKey(key));
    if (leased && leased.writes.length > 1) return this.giveUp(key);
    if (!leased || header.revision < leased.answer.header!.revision) return;
    this.replace(leased, create(RangeResponseSchema, { header, kvs: [], count: 0n }));
  }

  private replace(leased: LeasedKey, answer: RangeResponse): void {
    this.heldBytes += sizeOf(answer) - sizeOf(leased.answer);
    leased.answer = answer;
  }

  private forget(k: string): void {
    const leased = this.keys.get(k);
    if (!leased) return;
    this.heldBytes -= sizeOf(leased.answer);
    this.keys.delete(k);
  }

  /**
   * Gives up `key`: nothing is served from it any more, and it is not taken
   * again within the backoff. `revision`: when etcd took it back (a writer's
   * request, the record's deletion), so an older acquisition cannot own it.
   */
  giveUp(key: Uint8Array, revision = 0n, now = Date.now()): void {
    const k = mapKey(key);
    this.forget(k);
    if (this.givenUp.size >= GIVEN_UP_SWEEP_AT) {
      for (const [g, given] of this.givenUp) if (now - given.at >= REACQUIRE_BACKOFF_MS) this.givenUp.delete(g);
    }
    this.givenUp.set(k, { at: now, revision });
  }

  /** Keys owned within the range etcd reads from `key` and `rangeEnd`. */
  ownedIn(key: Uint8Array, rangeEnd: Uint8Array): Uint8Array[] {
    const range = keyInterval(key, rangeEnd);
    const owned: Uint8Array[] = [];
    for (const k of this.keys.keys()) {
      if (k >= range.lo && (range.hi === null || k < range.hi)) owned.push(new Uint8Array(Buffer.from(k, "latin1")));
    }
    return owned;
  }

  /** Forgets everything (the ownership records are gone with the session's lease). */
  clear(): void {
    this.keys.clear();
    this.givenUp.clear();
    this.heldBytes = 0;
  }
}

function sizeOf(answer: RangeResponse): number {
  const kv = answer.kvs[0];
  return kv ? kv.key.length + kv.value.length : 0;
}

/**
 * `request`'s view of a plain Get's answer, as etcd would give it: keys-only
 * and count-only, and the revision filters (which, like etcd's, leave the
 * count as it was).
 */
export function filtered(answer: RangeResponse, request: RangeRequest): RangeResponse {
  const kv: KeyValue | undefined = answer.kvs[0];
  const dropped =
    !kv ||
    request.countOnly ||
    (request.minModRevision > 0n && kv.modRevision < request.minModRevision) ||
    (request.maxModRevision > 0n && kv.modRevision > request.maxModRevision) ||
    (request.minCreateRevision > 0n && kv.createRevision < request.minCreateRevision) ||
    (request.maxCreateRevision > 0n && kv.createRevision > request.maxCreateRevision);
  const kvs = dropped ? [] : [request.keysOnly ? create(KeyValueSchema, { ...kv, value: new Uint8Array() }) : kv];
  return create(RangeResponseSchema, { header: answer.header, kvs, count: answer.count });
}

/**
 * The keys of one replicated prefix at one revision, sorted by key bytes.
 * Each key keeps etcd's KeyValue as it encodes (so an answer is made of
 * these bytes, never re-encoded per read) and its decoded fields, which are
 * views into those bytes.
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { KeyValueSchema, type KeyValue } from "../gen/etcd/api/mvccpb/kv_pb.js";
import { bytesToString as idOf } from "../util/key-range.js";

export interface ReplicaEntry {
  /** The key as a latin1 string: its code units are its bytes, so string order is byte order. */
  readonly id: string;
  readonly kv: KeyValue;
  /** The KeyValue as etcd encodes it. */
  readonly encoded: Uint8Array;
  /** The same without its value, made on the first keys-only read. */
  keysOnly: Uint8Array | undefined;
}

/** What an entry costs beyond its bytes (the object, the id string, the decoded message). */
const ENTRY_OVERHEAD_BYTES = 200;

export class ReplicaStore {
  private readonly entries: ReplicaEntry[] = [];
  private heldBytes = 0;

  get size(): number {
    return this.entries.length;
  }

  /** Roughly what the replica holds in memory. */
  get bytes(): number {
    return this.heldBytes;
  }

  /** Adds or replaces `kv` (a PUT event, or a key read while loading). */
  put(kv: KeyValue): void {
    const encoded = toBinary(KeyValueSchema, kv);
    // Decoded again from its own compact bytes: key and value become views of them.
    const entry: ReplicaEntry = {
      id: idOf(kv.key),
      kv: fromBinary(KeyValueSchema, encoded),
      encoded,
      keysOnly: undefined,
    };
    const at = this.lowerBound(entry.id);
    const old = this.entries[at];
    if (old?.id === entry.id) {
      this.heldBytes -= cost(old);
      this.entries[at] = entry;
    } else {
      this.entries.splice(at, 0, entry);
    }
    this.heldBytes += cost(entry);
  }

  /** Removes `key` (a DELETE event). */
  delete(key: Uint8Array): void {
    const id = idOf(key);
    const at = this.lowerBound(id);
    const old = this.entries[at];
    if (old?.id !== id) return;
    this.entries.splice(at, 1);
    this.heldBytes -= cost(old);
  }

  /**
   * The entries etcd's Range would visit for `key` and `rangeEnd`: one key
   * (empty end), every key from `key` on ("\0"), or [key, rangeEnd).
   */
  span(key: Uint8Array, rangeEnd: Uint8Array): readonly ReplicaEntry[] {
    const from = this.lowerBound(idOf(key));
    if (rangeEnd.length === 0) {
      const entry = this.entries[from];
      return entry !== undefined && entry.id === idOf(key) ? [entry] : [];
    }
    if (rangeEnd.length === 1 && rangeEnd[0] === 0) return this.entries.slice(from);
    const end = idOf(rangeEnd);
    if (end <= idOf(key)) return [];
    return this.entries.slice(from, this.lowerBound(end));
  }

  /** Every entry, in key order. */
  all(): readonly ReplicaEntry[] {
    return this.entries;
  }

  clear(): void {
    this.entries.length = 0;
    this.heldBytes = 0;
  }

  /** The first position whose id is not below `id`. */
  private lowerBound(id: string): number {
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.entries[mid]!.id < id) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

function cost(entry: ReplicaEntry): number {
  return entry.encoded.length + entry.id.length + ENTRY_OVERHEAD_BYTES;
}

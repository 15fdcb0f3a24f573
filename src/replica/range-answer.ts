/**
 * etcd's Range, answered from a replica: the same keys, order, count and
 * `more` as etcd's apply step gives, and the same KeyValue bytes. Where etcd's
 * answer depends on something the replica cannot reproduce, the request is
 * unanswerable here and goes to etcd.
 */
import { toBinary } from "@bufbuild/protobuf";
import {
  RangeRequest_SortOrder as SortOrder,
  RangeRequest_SortTarget as SortTarget,
  ResponseHeaderSchema,
  type RangeRequest,
  type ResponseHeader,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { KeyValueSchema } from "../gen/etcd/api/mvccpb/kv_pb.js";
import type { ReplicaEntry } from "./replica-store.js";
import { varintSize, writeVarint } from "../grpc/varint.js";

export type RangeAnswer = { kind: "answer"; bytes: Buffer } | { kind: "unanswerable"; reason: string };

/**
 * Go's sort.Sort is not stable, except on 12 elements or fewer (an
 * insertion sort): past that, the order etcd gives keys with equal sort
 * values cannot be known here.
 */
const GO_INSERTION_SORT_MAX = 12;

/**
 * `entries` are the keys in the request's range at the revision in
 * `header`, in key order (ReplicaStore.span).
 */
export function answerRange(
  entries: readonly ReplicaEntry[],
  request: RangeRequest,
  header: ResponseHeader,
): RangeAnswer {
  if (!(request.sortOrder in SortOrder) || !(request.sortTarget in SortTarget)) {
    return { kind: "unanswerable", reason: "a sort option etcd must judge" };
  }
  if (request.limit < 0n) return { kind: "unanswerable", reason: "a negative limit" };
  const count = entries.length;
  if (request.countOnly) return { kind: "answer", bytes: encodeRangeResponse(header, [], false, count) };

  const filtered =
    request.minModRevision !== 0n ||
    request.maxModRevision !== 0n ||
    request.minCreateRevision !== 0n ||
    request.maxCreateRevision !== 0n;
  const limit = Number(request.limit);
  let picked: readonly ReplicaEntry[] = entries;
  // etcd reads one more than the limit, in key order, unless it must sort or filter everything first.
  if (limit > 0 && request.sortOrder === SortOrder.NONE && !filtered) picked = entries.slice(0, limit + 1);
  if (filtered) picked = picked.filter((e) => kept(e, request));

  let order = request.sortOrder;
  if (request.sortTarget !== SortTarget.KEY && order === SortOrder.NONE) order = SortOrder.ASCEND;
  if (order !== SortOrder.NONE) {
    const sorted = sortEntries(picked, request.sortTarget, order === SortOrder.DESCEND);
    if (sorted === undefined) return { kind: "unanswerable", reason: "equal sort values etcd orders unpredictably" };
    picked = sorted;
  }
  let more = false;
  if (limit > 0 && picked.length > limit) {
    picked = picked.slice(0, limit);
    more = true;
  }
  const kvs = picked.map((e) => (request.keysOnly ? keysOnlyBytes(e) : e.encoded));
  return { kind: "answer", bytes: encodeRangeResponse(header, kvs, more, count) };
}

function kept(e: ReplicaEntry, r: RangeRequest): boolean {
  const { modRevision, createRevision } = e.kv;
  if (r.maxModRevision !== 0n && modRevision > r.maxModRevision) return false;
  if (r.minModRevision !== 0n && modRevision < r.minModRevision) return false;
  if (r.maxCreateRevision !== 0n && createRevision > r.maxCreateRevision) return false;
  if (r.minCreateRevision !== 0n && createRevision < r.minCreateRevision) return false;
  return true;
}

/** Sorted as etcd sorts, or undefined where etcd's order of equal values is not knowable. */
function sortEntries(
  entries: readonly ReplicaEntry[],
  target: SortTarget,
  descending: boolean,
): ReplicaEntry[] | undefined {
  const compare = comparator(target);
  const sign = descending ? -1 : 1;
  // Stable: on equal values the key order stays, as Go's insertion sort keeps it.
  const sorted = [...entries].sort((a, b) => sign * compare(a, b));
  if (target !== SortTarget.KEY && sorted.length > GO_INSERTION_SORT_MAX) {
    for (let i = 1; i < sorted.length; i++) if (compare(sorted[i - 1]!, sorted[i]!) === 0) return undefined;
  }
  return sorted;
}

function comparator(target: SortTarget): (a: ReplicaEntry, b: ReplicaEntry) => number {
  const byBigint = (pick: (e: ReplicaEntry) => bigint) => (a: ReplicaEntry, b: ReplicaEntry) => {
    const x = pick(a);
    const y = pick(b);
    return x < y ? -1 : x > y ? 1 : 0;
  };
  switch (target) {
    case SortTarget.VERSION:
      return byBigint((e) => e.kv.version);
    case SortTarget.CREATE:
      return byBigint((e) => e.kv.createRevision);
    case SortTarget.MOD:
      return byBigint((e) => e.kv.modRevision);
    case SortTarget.VALUE:
      return (a, b) => Buffer.compare(a.kv.value, b.kv.value);
    default:
      return (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  }
}

function keysOnlyBytes(e: ReplicaEntry): Uint8Array {
  e.keysOnly ??= e.kv.value.length === 0 ? e.encoded : toBinary(KeyValueSchema, { ...e.kv, value: new Uint8Array(0) });
  return e.keysOnly;
}

/**
 * RangeResponse in field order, as etcd (gogoproto) writes it: header (1),
 * kvs (2), more (3, when true), count (4, when not 0). The KVs are copied in
 * as they are.
 */
export function encodeRangeResponse(
  header: ResponseHeader,
  kvs: readonly Uint8Array[],
  more: boolean,
  count: number,
): Buffer {
  const head = toBinary(ResponseHeaderSchema, header);
  let size = 1 + varintSize(head.length) + head.length;
  for (const kv of kvs) size += 1 + varintSize(kv.length) + kv.length;
  if (more) size += 2;
  if (count !== 0) size += 1 + varintSize(count);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  const field = (tag: number, bytes: Uint8Array) => {
    out[at++] = tag;
    at = writeVarint(out, at, bytes.length);
    out.set(bytes, at);
    at += bytes.length;
  };
  field(0x0a, head);
  for (const kv of kvs) field(0x12, kv);
  if (more) {
    out[at++] = 0x18;
    out[at++] = 1;
  }
  if (count !== 0) {
    out[at++] = 0x20;
    at = writeVarint(out, at, count);
  }
  return out;
}

/**
 * mvccpb's Event and KeyValue in protobuf's binary form, sized first and
 * written into one buffer. protobuf-es encodes each nested message into a
 * buffer of its own and copies that into its parent's, so a watch event's
 * 1 MiB value was copied three times on its way into a WatchResponse's
 * events field; here it is copied once. The bytes are toBinary's
 * (test/unit/event-wire.test.ts); a message carrying unknown fields is left
 * to toBinary, which writes them.
 */
import type { Event, KeyValue } from "../gen/etcd/api/mvccpb/kv_pb.js";
import { varintSize, writeVarint } from "./varint.js";

/** WatchResponse.events is field 11, length-delimited. */
const EVENTS_TAG = (11 << 3) | 2;
const EVENT_TYPE_TAG = (1 << 3) | 0;
const EVENT_KV_TAG = (2 << 3) | 2;
const EVENT_PREV_KV_TAG = (3 << 3) | 2;
const KV_KEY_TAG = (1 << 3) | 2;
const KV_CREATE_REVISION_TAG = (2 << 3) | 0;
const KV_MOD_REVISION_TAG = (3 << 3) | 0;
const KV_VERSION_TAG = (4 << 3) | 0;
const KV_VALUE_TAG = (5 << 3) | 2;
const KV_LEASE_TAG = (6 << 3) | 0;

const MAX_EXACT = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * WatchResponse's events field, one entry per event, as toBinary writes it;
 * undefined if any of the messages has unknown fields.
 */
export function encodeEventsField(events: readonly Event[]): Buffer | undefined {
  let total = 0;
  const sizes = new Array<number>(events.length);
  for (let i = 0; i < events.length; i++) {
    if (hasUnknown(events[i]!)) return undefined;
    const size = (sizes[i] = eventSize(events[i]!));
    total += 1 + varintSize(size) + size;
  }
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  for (let i = 0; i < events.length; i++) {
    out[at++] = EVENTS_TAG;
    at = writeVarint(out, at, sizes[i]!);
    at = writeEvent(out, at, events[i]!);
  }
  return out;
}

/** Bytes of one event as a length-delimited field, tag included (toBinary's, unknown fields and all). */
export function eventFieldSize(event: Event): number {
  const size = eventSize(event);
  return 1 + varintSize(size) + size;
}

function hasUnknown(event: Event): boolean {
  return (
    (event.$unknown?.length ?? 0) > 0 ||
    (event.kv?.$unknown?.length ?? 0) > 0 ||
    (event.prevKv?.$unknown?.length ?? 0) > 0
  );
}

function eventSize(event: Event): number {
  let size = event.type === 0 ? 0 : 1 + int32Size(event.type);
  if (event.kv) size += messageFieldSize(keyValueSize(event.kv));
  if (event.prevKv) size += messageFieldSize(keyValueSize(event.prevKv));
  for (const field of event.$unknown ?? []) size += unknownSize(field);
  return size;
}

function keyValueSize(kv: KeyValue): number {
  let size = 0;
  if (kv.key.length > 0) size += messageFieldSize(kv.key.length);
  if (kv.createRevision !== 0n) size += 1 + int64Size(kv.createRevision);
  if (kv.modRevision !== 0n) size += 1 + int64Size(kv.modRevision);
  if (kv.version !== 0n) size += 1 + int64Size(kv.version);
  if (kv.value.length > 0) size += messageFieldSize(kv.value.length);
  if (kv.lease !== 0n) size += 1 + int64Size(kv.lease);
  for (const field of kv.$unknown ?? []) size += unknownSize(field);
  return size;
}

/** Sizes only: what toBinary writes for an unknown field (its tag, then its data as read). */
function unknownSize(field: { no: number; wireType: number; data: Uint8Array }): number {
  return varintSize(((field.no << 3) | field.wireType) >>> 0) + field.data.length;
}

function writeEvent(out: Buffer, at: number, event: Event): number {
  if (event.type !== 0) {
    out[at++] = EVENT_TYPE_TAG;
    at = writeInt64(out, at, BigInt(event.type));
  }
  if (event.kv) at = writeKeyValueField(out, at, EVENT_KV_TAG, event.kv);
  if (event.prevKv) at = writeKeyValueField(out, at, EVENT_PREV_KV_TAG, event.prevKv);
  return at;
}

function writeKeyValueField(out: Buffer, at: number, tag: number, kv: KeyValue): number {
  out[at++] = tag;
  at = writeVarint(out, at, keyValueSize(kv));
  if (kv.key.length > 0) at = writeBytes(out, at, KV_KEY_TAG, kv.key);
  if (kv.createRevision !== 0n) at = writeInt64Field(out, at, KV_CREATE_REVISION_TAG, kv.createRevision);
  if (kv.modRevision !== 0n) at = writeInt64Field(out, at, KV_MOD_REVISION_TAG, kv.modRevision);
  if (kv.version !== 0n) at = writeInt64Field(out, at, KV_VERSION_TAG, kv.version);
  if (kv.value.length > 0) at = writeBytes(out, at, KV_VALUE_TAG, kv.value);
  if (kv.lease !== 0n) at = writeInt64Field(out, at, KV_LEASE_TAG, kv.lease);
  return at;
}

function writeBytes(out: Buffer, at: number, tag: number, bytes: Uint8Array): number {
  out[at++] = tag;
  at = writeVarint(out, at, bytes.length);
  out.set(bytes, at);
  return at + bytes.length;
}

function writeInt64Field(out: Buffer, at: number, tag: number, value: bigint): number {
  out[at++] = tag;
  return writeInt64(out, at, value);
}

/** A length-delimited field's size around `length` bytes of content (a one-byte tag). */
function messageFieldSize(length: number): number {
  return 1 + varintSize(length) + length;
}

/** An int32 (an enum) is written as its 64-bit sign extension: negative ones take ten bytes. */
function int32Size(n: number): number {
  return n < 0 ? 10 : varintSize(n);
}

function int64Size(value: bigint): number {
  if (value < 0n) return 10;
  if (value <= MAX_EXACT) return varintSize(Number(value));
  let size = 1;
  for (let rest = value >> 7n; rest > 0n; rest >>= 7n) size++;
  return size;
}

function writeInt64(out: Buffer, at: number, value: bigint): number {
  if (value >= 0n && value <= MAX_EXACT) return writeVarint(out, at, Number(value));
  let rest = BigInt.asUintN(64, value);
  while (rest >= 0x80n) {
    out[at++] = Number(rest & 0x7fn) | 0x80;
    rest >>= 7n;
  }
  out[at++] = Number(rest);
  return at;
}

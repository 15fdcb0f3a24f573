import { create, toBinary } from "@bufbuild/protobuf";
import {
  ResponseHeaderSchema,
  WatchResponseSchema,
  type ResponseHeader,
  type WatchResponse,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { Event_EventType, type Event } from "../gen/etcd/api/mvccpb/kv_pb.js";
import { encodeEventsField, eventFieldSize } from "../grpc/event-wire.js";
import { withFrameEncoder, type FrameEncoder } from "../grpc/pre-encoded.js";
import { PREFIX_BYTES } from "../grpc/wire.js";

/** What a client watcher asked for that shapes the events it gets. */
export interface EventFilter {
  readonly prevKv: boolean;
  readonly noPut: boolean;
  readonly noDelete: boolean;
}

/** etcd's answers and cancel reasons, word for word. */
export const REASONS = {
  compacted: "etcdserver: mvcc: required revision has been compacted",
  emptyRange: "mvcc: watcher range is empty",
  duplicateId: "mvcc: duplicate watch ID provided on the WatchStream",
} as const;

/** The watch ID etcd uses for answers that belong to no single watcher. */
export const NO_WATCH_ID = -1n;

/** A plain WatchResponse; building the object by hand is the hot path of fan-out. */
export function watchResponse(fields: Partial<Omit<WatchResponse, "$typeName">>): WatchResponse {
  return {
    $typeName: "etcdserverpb.WatchResponse",
    header: fields.header,
    watchId: fields.watchId ?? 0n,
    created: fields.created ?? false,
    canceled: fields.canceled ?? false,
    compactRevision: fields.compactRevision ?? 0n,
    cancelReason: fields.cancelReason ?? "",
    fragment: fields.fragment ?? false,
    events: fields.events ?? [],
  };
}

/** A header for answers the proxy makes up, from the last one etcd sent (cluster, member, term). */
export function headerAt(last: ResponseHeader | undefined, revision: bigint): ResponseHeader {
  return last ? { ...last, revision } : create(ResponseHeaderSchema, { revision });
}

/** The approximate buffer cost of a response that carries no events. */
export const CONTROL_RESPONSE_BYTES = 64;

/**
 * One upstream events response, prepared for its receivers. Most receivers
 * want the same events (all of them, with or without prev_kv, with or without
 * a filter), so each such variant is built, weighed and encoded once.
 */
export class EventDelivery {
  /** Variants by filter, for receivers that want every event; see variantFor. */
  private readonly variants = new Map<number, Variant>();
  /** Variants by filter and start revision, for receivers that already have the first events. */
  private partial: Map<string, Variant> | undefined;
  readonly firstRevision: bigint;
  readonly lastRevision: bigint;
  /**
   * What a receiver needs next once it has this delivery. Fields, not
   * getters: every receiver reads them for every delivery, and sharing one
   * bigint spares each receiver an allocation.
   */
  readonly nextRevision: bigint;

  constructor(
    readonly header: ResponseHeader,
    readonly events: readonly Event[],
  ) {
    this.firstRevision = events[0]!.kv!.modRevision;
    this.lastRevision = events[events.length - 1]!.kv!.modRevision;
    this.nextRevision = this.lastRevision + 1n;
  }

  /**
   * The events a receiver gets: those at or after `fromRevision`, filtered,
   * prev_kv stripped unless asked for. Receivers asking alike share one
   * variant, and so one encoding: a slow stream's watchers rejoining in the
   * middle of a delivery all start from the same revision.
   */
  variantFor(filter: EventFilter, fromRevision: bigint): Variant {
    const key = (filter.prevKv ? 1 : 0) | (filter.noPut ? 2 : 0) | (filter.noDelete ? 4 : 0);
    if (fromRevision > this.firstRevision) {
      const partialKey = `${key}:${fromRevision}`;
      this.partial ??= new Map();
      let variant = this.partial.get(partialKey);
      if (!variant) {
        variant = new Variant(this.header, shape(this.events, filter, fromRevision));
        this.partial.set(partialKey, variant);
      }
      return variant;
    }
    let variant = this.variants.get(key);
    if (!variant) {
      variant = new Variant(this.header, shape(this.events, filter, 0n));
      this.variants.set(key, variant);
    }
    return variant;
  }
}

/** One set of events as some receivers get it; the wire encoding is made lazily, once. */
export class Variant implements FrameEncoder<WatchResponse> {
  readonly bytes: number;
  /** The encoded header field and events field; watch_id (field 2) goes between them. */
  private encoded: { head: Uint8Array; tail: Uint8Array } | undefined;

  constructor(
    readonly header: ResponseHeader,
    readonly events: Event[],
  ) {
    this.bytes = eventBytes(events) + CONTROL_RESPONSE_BYTES;
  }

  /** The response for watcher `watchId`, with a cheap native encoding attached. */
  responseFor(watchId: bigint): WatchResponse {
    const response = watchResponse({ header: this.header, watchId, events: this.events });
    return watchId >= 0n ? withFrameEncoder(response, this) : response;
  }

  /** The serialized size of the response, as etcd measures it before fragmenting. */
  encodedSize(watchId: bigint): number {
    const { head, tail } = this.encode();
    return head.length + watchIdFieldLength(watchId) + tail.length;
  }

  frame(message: WatchResponse): Uint8Array | readonly Uint8Array[] {
    // Only watch_id differs between receivers: the rest is encoded once and
    // copied, giving the same bytes as encoding each response in full.
    const { head, tail } = this.encode();
    return responseFrame(head, message.watchId, [tail], tail.length);
  }

  /** The encoded header field and events field; watch_id (field 2) goes between them. */
  encode(): { head: Uint8Array; tail: Uint8Array } {
    return (this.encoded ??= {
      head: toBinary(WatchResponseSchema, watchResponse({ header: this.header })),
      // A large value is copied once, where toBinary would copy it three times.
      tail: encodeEventsField(this.events) ?? toBinary(WatchResponseSchema, watchResponse({ events: this.events })),
    });
  }
}

/**
 * The event responses for one watcher that its client has not read yet,
 * made one: a client that fell behind catches up in few responses, as etcd
 * batches the events of a watcher that fell behind. It replaces the
 * watcher's queued response, and is itself a WatchResponse: the newest
 * header and every variant's events in order. Its wire form reuses each
 * variant's encoded events, and is what encoding it afresh would give.
 *
 * Under overload this runs for every event of every watcher that fell
 * behind, so a batch keeps little of its own: its variants are the first
 * `count` of a run that the watchers batching alike share, its event list
 * is made only if a lane reads it (the native lane sends the frame), and
 * its header is set when it is sealed.
 */
export class EventBatch implements WatchResponse, FrameEncoder<WatchResponse> {
  readonly $typeName = "etcdserverpb.WatchResponse";
  readonly created = false;
  readonly canceled = false;
  readonly compactRevision = 0n;
  readonly cancelReason = "";
  readonly fragment = false;
  /**
   * The header of the batch's first two variants until `seal`: protobuf-es
   * wants it as an own property, and keeping it current on every add would
   * cost a store into every batch for every event.
   */
  header: ResponseHeader;
  /** The buffer cost of the events, as Variant.bytes counts it (nothing is encoded until sent). */
  bytes: number;
  private run: Variant[];
  private count: number;

  /**
   * A batch of `first` and `second` for `watchId`. It shares `run` when
   * that starts with the same two variants: a stream's watchers of one
   * shared watch fall behind together, and get the same deliveries in turn.
   */
  constructor(
    readonly watchId: bigint,
    first: Variant,
    second: Variant,
    run?: Variant[],
  ) {
    this.run = run !== undefined && run[0] === first && run[1] === second ? run : [first, second];
    this.count = 2;
    this.header = second.header;
    this.bytes = first.bytes + second.bytes;
    if (watchId >= 0n) withFrameEncoder(this, this); // as Variant.responseFor
  }

  /** The run of variants this batch reads its first `count` from, for the next batch to share. */
  get sharedRun(): Variant[] {
    return this.run;
  }

  add(variant: Variant): void {
    if (this.run[this.count] !== variant) {
      // Another batch on the run took a different turn: continue on a copy.
      if (this.count < this.run.length) this.run = this.run.slice(0, this.count);
      this.run.push(variant);
    }
    this.count++;
    this.bytes += variant.bytes;
  }

  /** Gives the batch its newest header, once nothing more is added (the client is taking it). */
  seal(): void {
    this.header = this.run[this.count - 1]!.header;
  }

  get events(): Event[] {
    return this.variants().flatMap((v) => v.events);
  }

  frame(message: WatchResponse): Uint8Array | readonly Uint8Array[] {
    const variants = this.variants();
    let tailBytes = 0;
    const tails = variants.map((v) => {
      const { tail } = v.encode();
      tailBytes += tail.length;
      return tail;
    });
    return responseFrame(variants[variants.length - 1]!.encode().head, message.watchId, tails, tailBytes);
  }

  private variants(): Variant[] {
    return this.run.length === this.count ? this.run : this.run.slice(0, this.count);
  }
}

/** A gRPC frame of a WatchResponse: the header field, watch_id, then the events fields. */
function responseFrame(
  head: Uint8Array,
  watchId: bigint,
  tails: Uint8Array[],
  tailBytes: number,
): Uint8Array | readonly Uint8Array[] {
  const idLength = watchIdFieldLength(watchId);
  const length = head.length + idLength + tailBytes;
  if (tailBytes >= SHARED_TAIL_BYTES) {
    // Large events: the receiver's own prefix, header and watch ID, then the shared encoded events as they are.
    const own = Buffer.allocUnsafe(PREFIX_BYTES + head.length + idLength);
    own[0] = 0;
    own.writeUInt32BE(length, 1);
    own.set(head, PREFIX_BYTES);
    if (idLength > 0) writeWatchIdField(own, PREFIX_BYTES + head.length, watchId);
    return [own, ...tails];
  }
  const out = Buffer.allocUnsafe(PREFIX_BYTES + length);
  out[0] = 0;
  out.writeUInt32BE(length, 1);
  out.set(head, PREFIX_BYTES);
  if (idLength > 0) writeWatchIdField(out, PREFIX_BYTES + head.length, watchId);
  let at = PREFIX_BYTES + head.length + idLength;
  for (const tail of tails) {
    out.set(tail, at);
    at += tail.length;
  }
  return out;
}

/** Encoded events at least this large are sent to each receiver as they are, not copied into its frame. */
const SHARED_TAIL_BYTES = 16 << 10;

function shape(events: readonly Event[], filter: EventFilter, fromRevision: bigint): Event[] {
  const out: Event[] = [];
  for (const event of events) {
    if (event.kv!.modRevision < fromRevision) continue;
    if (filter.noPut && event.type === Event_EventType.PUT) continue;
    if (filter.noDelete && event.type === Event_EventType.DELETE) continue;
    out.push(filter.prevKv || event.prevKv === undefined ? event : { ...event, prevKv: undefined });
  }
  return out;
}

/** Bytes of field 2 (watch_id, varint); none for 0, which protobuf omits. */
function watchIdFieldLength(id: bigint): number {
  if (id === 0n) return 0;
  if (id < 0n) return 11;
  let n = 1;
  for (let v = id >> 7n; v > 0n; v >>= 7n) n++;
  return 1 + n;
}

function writeWatchIdField(out: Buffer, at: number, id: bigint): void {
  out[at++] = 0x10; // field 2, varint
  let v = BigInt.asUintN(64, id);
  while (v >= 0x80n) {
    out[at++] = Number(v & 0x7fn) | 0x80;
    v >>= 7n;
  }
  out[at] = Number(v);
}

/**
 * Splits a response the way etcd does for watchers that asked for fragments:
 * only when it reaches `maxBytes` and has more than one event; each piece but
 * the last is marked `fragment`.
 */
export function fragmentResponse(response: WatchResponse, maxBytes: number): WatchResponse[] {
  const events = response.events;
  if (events.length < 2) return [response];
  const eventSizes = events.map(eventFieldSize);
  const baseSize = toBinary(WatchResponseSchema, { ...response, events: [] }).length;
  if (eventSizes.reduce((a, b) => a + b, baseSize) < maxBytes) return [response];
  const pieces: WatchResponse[] = [];
  let start = 0;
  while (start < events.length) {
    let size = baseSize + 2; // the fragment flag
    let end = start;
    while (end < events.length) {
      const next = size + eventSizes[end]!;
      if (end > start && next >= maxBytes) break;
      size = next;
      end++;
    }
    // Built afresh: a copy would carry the whole response's pre-encoded frame.
    pieces.push(
      watchResponse({
        header: response.header,
        watchId: response.watchId,
        created: response.created,
        canceled: response.canceled,
        compactRevision: response.compactRevision,
        cancelReason: response.cancelReason,
        fragment: end < events.length,
        events: events.slice(start, end),
      }),
    );
    start = end;
  }
  return pieces;
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

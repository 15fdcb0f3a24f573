/**
 * An in-memory etcd KV behind the Upstream contract, for unit tests of what
 * sits above the upstream (the namespace, the cache, leasing): Range (one
 * key, a range, "\0" for every key from one on; limit, keys-only,
 * count-only), Put (prev_kv), DeleteRange (prev_kv), and Txn with value,
 * version, create and mod compares and nested Txns. It keeps one revision
 * for the store, as etcd does, and counts the calls it gets.
 */
import { create, fromBinary, toBinary, type DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { CallContext } from "../../src/call-context.js";
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  KV,
  Lease,
  Maintenance,
  ResponseHeaderSchema,
  Watch,
  type Compare,
  type DeleteRangeRequest,
  type PutRequest,
  type RangeRequest,
  type RequestOp,
  type TxnRequest,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { KeyValueSchema, type KeyValue } from "../../src/gen/etcd/api/mvccpb/kv_pb.js";
import { messageOf } from "../../src/grpc/wire.js";
import { AsyncQueue } from "../../src/util/async-queue.js";
import { UpstreamBase, type EndpointStatus } from "../../src/upstream/upstream.js";

const key = (b: Uint8Array) => Buffer.from(b).toString("latin1");
const b = (k: string) => Buffer.from(k, "latin1");

export class FakeEtcd extends UpstreamBase {
  revision = 1n;
  private readonly store = new Map<string, KeyValue>();
  /** Calls received, by method name. */
  readonly calls = new Map<string, number>();
  /** The store after each revision, for checking an answer against the revision it claims. */
  private readonly snapshots = new Map<bigint, Map<string, KeyValue>>([[1n, new Map()]]);
  /** Hears every revision made, with the keys it wrote. */
  onWrite: ((revision: bigint, keys: Uint8Array[]) => void) | undefined;

  /** The store as it was at `revision` (undefined before the fake's first one, or past its last). */
  at(revision: bigint): ReadonlyMap<string, KeyValue> | undefined {
    return this.snapshots.get(revision);
  }

  header() {
    return create(ResponseHeaderSchema, { clusterId: 1n, memberId: 1n, raftTerm: 1n, revision: this.revision });
  }

  /** Every key and value held, sorted, for comparisons. */
  dump(): Array<[string, string]> {
    return [...this.store.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([k, kv]) => [k, Buffer.from(kv.value).toString("latin1")]);
  }

  async unaryBytes(method: DescMethod, requestFrame: Buffer, _ctx: CallContext): Promise<Buffer> {
    this.calls.set(method.name, (this.calls.get(method.name) ?? 0) + 1);
    const before = this.revision;
    const touched: Uint8Array[] = [];
    this.touched = touched;
    const answer = this.apply(method, messageOf(requestFrame));
    if (this.revision !== before) {
      this.snapshots.set(this.revision, new Map(this.store));
      this.onWrite?.(this.revision, touched);
      for (const listener of this.writeListeners) listener(this.revision);
    }
    return answer;
  }

  private touched: Uint8Array[] = [];

  private apply(method: DescMethod, payload: Uint8Array): Buffer {
    switch (method) {
      case KV.method.range:
        return this.encode(KV.method.range, this.range(fromBinary(KV.method.range.input, payload)));
      case KV.method.put:
        return this.encode(KV.method.put, this.put(fromBinary(KV.method.put.input, payload)));
      case KV.method.deleteRange:
        return this.encode(KV.method.deleteRange, this.deleteRange(fromBinary(KV.method.deleteRange.input, payload)));
      case KV.method.txn:
        return this.encode(KV.method.txn, this.txn(fromBinary(KV.method.txn.input, payload)));
      case Lease.method.leaseGrant: {
        const { ID, TTL } = fromBinary(Lease.method.leaseGrant.input, payload);
        const id = ID !== 0n ? ID : BigInt(1000 + this.leases.size);
        this.leases.set(id, TTL);
        const answer = { header: this.header(), ID: id, TTL };
        return Buffer.from(toBinary(Lease.method.leaseGrant.output, create(Lease.method.leaseGrant.output, answer)));
      }
      case Lease.method.leaseRevoke: {
        const { ID } = fromBinary(Lease.method.leaseRevoke.input, payload);
        this.leases.delete(ID);
        const attached = [...this.store.values()].filter((kv) => kv.lease === ID);
        if (attached.length > 0) this.revision++;
        for (const kv of attached)
          this.deleteRange({ key: kv.key, rangeEnd: new Uint8Array() } as DeleteRangeRequest, this.revision);
        const answer = { header: this.header() };
        return Buffer.from(toBinary(Lease.method.leaseRevoke.output, create(Lease.method.leaseRevoke.output, answer)));
      }
      default:
        throw new Error(`the fake etcd has no ${method.name}`);
    }
  }

  private encode<
    M extends typeof KV.method.range | typeof KV.method.put | typeof KV.method.deleteRange | typeof KV.method.txn,
  >(method: M, response: object): Buffer {
    return Buffer.from(toBinary(method.output, create(method.output, response as never)));
  }

  private inRange(k: string, request: { key: Uint8Array; rangeEnd: Uint8Array }): boolean {
    const lo = key(request.key);
    if (request.rangeEnd.length === 0) return k === lo;
    if (request.rangeEnd.length === 1 && request.rangeEnd[0] === 0) return k >= lo;
    return k >= lo && k < key(request.rangeEnd);
  }

  private matching(
    request: { key: Uint8Array; rangeEnd: Uint8Array },
    store: ReadonlyMap<string, KeyValue> = this.store,
  ): KeyValue[] {
    return [...store.entries()]
      .filter(([k]) => this.inRange(k, request))
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([, kv]) => kv);
  }

  /** Revisions below this one are compacted: Ranges and watches from them are refused. */
  compactRevision = 0n;

  compact(revision: bigint): void {
    if (revision > this.compactRevision) this.compactRevision = revision;
  }

  range(request: RangeRequest) {
    let store: ReadonlyMap<string, KeyValue> = this.store;
    if (request.revision > 0n) {
      if (request.revision < this.compactRevision) {
        throw new ConnectError("etcdserver: mvcc: required revision has been compacted", Code.OutOfRange);
      }
      if (request.revision > this.revision) {
        throw new ConnectError("etcdserver: mvcc: required revision is a future revision", Code.OutOfRange);
      }
      store = this.stateBefore(request.revision + 1n);
    }
    const all = this.matching(request, store);
    const limited = request.limit > 0n ? all.slice(0, Number(request.limit)) : all;
    const kvs = request.countOnly
      ? []
      : limited.map((kv) => (request.keysOnly ? create(KeyValueSchema, { ...kv, value: new Uint8Array() }) : kv));
    // etcd's header carries the store's current revision, whatever revision was read.
    return { header: this.header(), kvs, count: BigInt(all.length), more: limited.length < all.length };
  }

  put(request: PutRequest, revision = ++this.revision) {
    const before = this.store.get(key(request.key));
    this.touched.push(request.key);
    this.store.set(
      key(request.key),
      create(KeyValueSchema, {
        key: request.key,
        value: request.ignoreValue ? (before?.value ?? new Uint8Array()) : request.value,
        createRevision: before?.createRevision ?? revision,
        modRevision: revision,
        version: (before?.version ?? 0n) + 1n,
        lease: request.ignoreLease ? (before?.lease ?? 0n) : request.lease,
      }),
    );
    return { header: this.header(), prevKv: request.prevKv ? before : undefined };
  }

  deleteRange(request: DeleteRangeRequest, revision?: bigint) {
    const doomed = this.matching(request);
    if (doomed.length > 0 && revision === undefined) this.revision++;
    for (const kv of doomed) {
      this.store.delete(key(kv.key));
      this.touched.push(kv.key);
    }
    return { header: this.header(), deleted: BigInt(doomed.length), prevKvs: request.prevKv ? doomed : [] };
  }

  /** `revision`: the enclosing Txn's, for a nested one. */
  txn(request: TxnRequest, revision?: bigint): object {
    const succeeded = request.compare.every((c) => this.holds(c));
    const ops = succeeded ? request.success : request.failure;
    const outermost = revision === undefined;
    const writeAt = revision ?? (ops.some(writes_) ? this.revision + 1n : undefined);
    const touchedBefore = this.touched.length;
    if (outermost && writeAt !== undefined) this.revision = writeAt;
    const responses = ops.map((op) => this.op(op, writeAt));
    // As etcd's store: a Txn that changed nothing (a delete of no key) makes no revision.
    if (outermost && writeAt !== undefined && this.touched.length === touchedBefore) this.revision = writeAt - 1n;
    return { header: this.header(), succeeded, responses };
  }

  private op(op: RequestOp, revision: bigint | undefined): object {
    const r = op.request;
    switch (r.case) {
      case "requestRange":
        return { response: { case: "responseRange", value: this.range(r.value) } };
      case "requestPut":
        return { response: { case: "responsePut", value: this.put(r.value, revision) } };
      case "requestDeleteRange":
        return { response: { case: "responseDeleteRange", value: this.deleteRange(r.value, revision) } };
      case "requestTxn":
        return { response: { case: "responseTxn", value: this.txn(r.value, revision) } };
      default:
        throw new Error("an empty request op");
    }
  }

  private holds(c: Compare): boolean {
    const kvs = this.matching(c);
    const targets = kvs.length > 0 ? kvs : [undefined];
    return targets.every((kv) => {
      if (c.target === Compare_CompareTarget.VALUE && !kv) return false; // etcd: a value compare needs the key
      const [field, unionCase] = COMPARED[c.target];
      const have = kv ? kv[field] : field === "value" ? new Uint8Array() : 0n;
      const given = c.targetUnion.case === unionCase ? c.targetUnion.value : 0n;
      const [h, w] = field === "value" ? [key(have as Uint8Array), key(given as Uint8Array)] : [have, given];
      switch (c.result) {
        case Compare_CompareResult.EQUAL:
          return h === w;
        case Compare_CompareResult.NOT_EQUAL:
          return h !== w;
        case Compare_CompareResult.GREATER:
          return h > w;
        case Compare_CompareResult.LESS:
          return h < w;
      }
    });
  }

  /** What Maintenance.Snapshot streams, in 32 KiB blobs as etcd sends it. */
  snapshot = Buffer.alloc(0);

  async *serverStreamBytes(method: DescMethod): AsyncIterable<Buffer> {
    if (method !== Maintenance.method.snapshot) throw new Error(`the fake etcd has no ${method.name} stream`);
    for (let at = 0; at < this.snapshot.length || at === 0; at += SNAPSHOT_BLOB_BYTES) {
      const blob = this.snapshot.subarray(at, at + SNAPSHOT_BLOB_BYTES);
      const remainingBytes = BigInt(Math.max(0, this.snapshot.length - at - blob.length));
      const answer = create(Maintenance.method.snapshot.output, { header: this.header(), remainingBytes, blob });
      yield Buffer.from(toBinary(Maintenance.method.snapshot.output, answer));
      if (this.snapshot.length === 0) return;
    }
  }

  /** Leases by ID, with the TTL a renewal answers. */
  readonly leases = new Map<bigint, bigint>();
  /** Keep-alive streams opened, with the caller's metadata, and renewals received. */
  readonly keepAliveStreams: Array<Readonly<Record<string, string>>> = [];
  renewals = 0;
  /** Set to end the next keep-alive stream after this many renewals, with this error. */
  breakKeepAlive: { after: number; error: Error } | undefined;

  bidiStreamBytes(method: DescMethod, requestFrames: AsyncIterable<Uint8Array>, ctx: CallContext) {
    if (method === Lease.method.leaseKeepAlive) return this.keepAliveStream(requestFrames, ctx);
    if (method === Watch.method.watch) return this.watchStream(requestFrames, ctx);
    throw new Error(`the fake etcd has no ${method.name} stream`);
  }

  /**
   * Watch: each create from its start revision (0: now), events of every
   * later write in order, whole revisions at a time; progress answered in
   * order after the events (as etcd 3.5.8+), or, with `progressOvertakes`
   * (etcd before 3.4.25), at once while the events of writes wait for
   * flushWatches(); a create from a compacted
   * revision is canceled with the compact revision; breakWatches() ends
   * every stream as a lost endpoint. No prev_kv.
   */
  private watchStream(requestFrames: AsyncIterable<Uint8Array>, ctx: CallContext): AsyncIterable<Buffer> {
    const out = new AsyncQueue<Buffer>();
    const encode = (r: object) =>
      Buffer.from(toBinary(Watch.method.watch.output, create(Watch.method.watch.output, r as never)));
    const watchers = new Map<bigint, { range: { key: Uint8Array; rangeEnd: Uint8Array }; next: bigint }>();
    let nextId = 1n;
    const deliver = (upTo: bigint) => {
      for (const [watchId, w] of watchers) {
        for (; w.next <= upTo; w.next++) {
          const now = this.snapshots.get(w.next);
          const before = this.stateBefore(w.next);
          if (!now) continue;
          const events = [...new Set([...now.keys(), ...before.keys()])]
            .filter((k) => this.inRange(k, w.range))
            .sort()
            .flatMap((k): Array<{ type: number; kv: object }> => {
              const kv = now.get(k);
              if (kv && kv.modRevision === w.next) return [{ type: 0, kv }];
              if (!kv && before.has(k)) return [{ type: 1, kv: { key: b(k), modRevision: w.next } }];
              return [];
            });
          if (events.length > 0) out.push(encode({ header: this.header(), watchId, events }));
        }
      }
    };
    const listener = (revision: bigint) => {
      if (!this.progressOvertakes) deliver(revision);
    };
    const flush = () => deliver(this.revision);
    this.watchFlushers.add(flush);
    this.writeListeners.add(listener);
    const stop = (err?: Error) => {
      this.writeListeners.delete(listener);
      this.watchFlushers.delete(flush);
      this.watchBreakers.delete(stop);
      if (err) out.fail(err);
      else out.end();
    };
    this.watchBreakers.add(stop);
    ctx.signal.addEventListener("abort", () => stop(), { once: true });
    void (async () => {
      for await (const f of requestFrames) {
        const request = fromBinary(Watch.method.watch.input, messageOf(f)).requestUnion;
        if (request.case === "createRequest") {
          const watchId = nextId++;
          const start = request.value.startRevision;
          out.push(encode({ header: this.header(), watchId, created: true }));
          if (start > 0n && start < this.compactRevision) {
            out.push(encode({ header: this.header(), watchId, canceled: true, compactRevision: this.compactRevision }));
            continue;
          }
          watchers.set(watchId, { range: request.value, next: start > 0n ? start : this.revision + 1n });
          deliver(this.revision);
        } else if (request.case === "cancelRequest") {
          watchers.delete(request.value.watchId);
        } else if (request.case === "progressRequest") {
          if (watchers.size > 0) out.push(encode({ header: this.header(), watchId: -1n }));
        }
      }
      stop();
    })();
    return out;
  }

  /** The store just before `revision`. */
  private stateBefore(revision: bigint): ReadonlyMap<string, KeyValue> {
    for (let r = revision - 1n; r >= 1n; r--) {
      const snapshot = this.snapshots.get(r);
      if (snapshot) return snapshot;
    }
    return new Map();
  }

  private readonly writeListeners = new Set<(revision: bigint) => void>();
  private readonly watchFlushers = new Set<() => void>();

  /**
   * As etcd before 3.4.25: a write's events wait until flushWatches(), and a
   * progress answer goes at once, ahead of them (etcd issue 15220).
   */
  progressOvertakes = false;

  /** Sends every watch stream the events its writes still owe it. */
  flushWatches(): void {
    for (const flush of this.watchFlushers) flush();
  }
  private readonly watchBreakers = new Set<(err?: Error) => void>();

  /** Every open watch stream fails, as when its endpoint goes away. */
  breakWatches(): void {
    for (const stop of [...this.watchBreakers]) stop(new ConnectError("the endpoint went away", Code.Unavailable));
  }

  private async *keepAliveStream(requestFrames: AsyncIterable<Uint8Array>, ctx: CallContext) {
    this.keepAliveStreams.push(ctx.forwardHeaders);
    const breaking = this.breakKeepAlive;
    this.breakKeepAlive = undefined;
    let served = 0;
    for await (const request of requestFrames) {
      if (breaking && served++ >= breaking.after) throw breaking.error;
      const { ID } = fromBinary(Lease.method.leaseKeepAlive.input, messageOf(request));
      this.renewals++;
      await new Promise((r) => setImmediate(r));
      const answer = { header: this.header(), ID, TTL: this.leases.get(ID) ?? 0n };
      yield Buffer.from(
        toBinary(Lease.method.leaseKeepAlive.output, create(Lease.method.leaseKeepAlive.output, answer)),
      );
    }
  }
  unaryOnLeaderBytes(method: DescMethod, requestFrame: Buffer, ctx: CallContext): Promise<Buffer> {
    return this.unaryBytes(method, requestFrame, ctx);
  }
  unaryOnEndpointBytes(_url: string, method: DescMethod, requestFrame: Buffer, ctx: CallContext): Promise<Buffer> {
    return this.unaryBytes(method, requestFrame, ctx);
  }
  endpoints() {
    return [{ url: "http://fake", up: true, current: true }];
  }
  async statusOfEach(): Promise<EndpointStatus[]> {
    return [];
  }
  close(): void {}
}

/** Which field of a key each compare target reads, and the case of the compare's value. */
const COMPARED: Record<
  Compare_CompareTarget,
  [keyof KeyValue & ("value" | "version" | "createRevision" | "modRevision" | "lease"), string]
> = {
  [Compare_CompareTarget.VALUE]: ["value", "value"],
  [Compare_CompareTarget.VERSION]: ["version", "version"],
  [Compare_CompareTarget.CREATE]: ["createRevision", "createRevision"],
  [Compare_CompareTarget.MOD]: ["modRevision", "modRevision"],
  [Compare_CompareTarget.LEASE]: ["lease", "lease"],
};

function writes_(op: RequestOp): boolean {
  const r = op.request;
  return (
    r.case === "requestPut" ||
    r.case === "requestDeleteRange" ||
    (r.case === "requestTxn" && [...r.value.success, ...r.value.failure].some(writes_))
  );
}

/** A fake etcd whose every answer takes a few milliseconds before and after it is applied, as `delay` says. */
export class SlowEtcd extends FakeEtcd {
  constructor(private readonly delay: () => number) {
    super();
  }

  override async unaryBytes(method: DescMethod, requestFrame: Buffer, ctx: CallContext): Promise<Buffer> {
    await new Promise((r) => setTimeout(r, this.delay()));
    const answer = await super.unaryBytes(method, requestFrame, ctx);
    await new Promise((r) => setTimeout(r, this.delay()));
    return answer;
  }
}

const SNAPSHOT_BLOB_BYTES = 32 << 10;

/** Delays of 0 to `spread - 1` ms from a seed, so that a failing interleaving replays. */
export function seededDelays(seed: number, spread: number): () => number {
  let state = seed;
  return () => (state = (state * 1103515245 + 12345) & 0x7fffffff) % spread;
}

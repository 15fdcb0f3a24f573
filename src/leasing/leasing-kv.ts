import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { CallContext } from "../call-context.js";
import {
  Compare_CompareResult,
  Compare_CompareTarget,
  KV,
  Lease,
  Watch,
  type CompareSchema,
  type DeleteRangeRequest,
  type DeleteRangeResponse,
  type PutRequest,
  type PutResponse,
  type RangeRequest,
  type RangeResponse,
  type RequestOp,
  type RequestOpSchema,
  type TxnRequest,
  type TxnResponse,
  type WatchRequestSchema,
  type WatchResponse,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { Event_EventType, type KeyValue } from "../gen/etcd/api/mvccpb/kv_pb.js";
import type { KeepAliveCoalescer } from "../keepalive/keepalive-coalescer.js";
import type { Metrics } from "../metrics.js";
import { KeyPrefix } from "../namespace/prefix.js";
import { bytesToString, keyInterval, type KeyInterval } from "../util/key-range.js";
import type { ProxyIdentity } from "../upstream/proxy-identity.js";
import type { Upstream } from "../upstream/upstream.js";
import { sleep } from "../util/abortable-sleep.js";
import { AsyncQueue } from "../util/async-queue.js";
import { filtered, LeasedKeys, type Acquisition } from "./leased-keys.js";

/** The value a writer puts on an owner's record to ask for the key (etcd's leasing protocol). */
const REVOKE = Buffer.from("REVOKE");
/** The session lease's TTL, concurrency.NewSession's default, as etcd's proxy uses it. */
const SESSION_TTL_SECONDS = 60;
/** Owned keys are served only while the session lease is surely alive: its TTL from the last renewal sent, less this. */
const SESSION_MARGIN_MS = 2_000;
const SESSION_RETRY_MS = 1_000;
const OWN_CALL_TIMEOUT_MS = 5_000;
/** Owners one write asks to give their keys up at once (each wait is a watch on etcd). */
const REVOKES_AT_ONCE = 64;

export interface LeasingOptions {
  /** --experimental-leasing-prefix: where ownership records live (inside --namespace, as with etcd's proxy). */
  prefix: Uint8Array;
  /** Who the proxy is for its session: its lease, records' upkeep and the watch on them. */
  identity: ProxyIdentity;
  onProblem: (message: string, err?: unknown) => void;
}

type CompareInit = MessageInitShape<typeof CompareSchema>;
type RequestOpInit = MessageInitShape<typeof RequestOpSchema>;
type WatchRequestInit = MessageInitShape<typeof WatchRequestSchema>;

/** One key or range a write touches. */
interface Written {
  key: Uint8Array;
  rangeEnd: Uint8Array;
}

/** The proxy's session: a lease that ownership records hang on, and a watch over the records. */
interface Session {
  leaseId: bigint;
  /** Owned keys may be served until then. */
  validUntil: number;
  abort: AbortController;
}

/**
 * --experimental-leasing-prefix: etcd's client-side leasing protocol
 * (client/v3/leasing), so linearizable single-key reads are answered by the
 * proxy for as long as it owns the key, and writers through any leasing
 * client (another proxy, etcd's proxy, clientv3's leasing KV) take ownership
 * away first.
 *
 * - A read of key K that the proxy does not own tries to own it: one Txn
 *   that reads K and, if no record exists under prefix+K and K has no lease,
 *   creates the record "" on the session's lease.
 * - A write of K is a Txn guarded on "no record under prefix+K newer than
 *   ours". If another client owns K, the writer puts "REVOKE" on its record
 *   (keeping its lease) and waits until the owner deletes it, then writes.
 * - The owner watches its records; on "REVOKE" it stops serving K and
 *   deletes the record.
 *
 * Only callers without an auth token are served from owned keys, and only
 * they acquire: a cached answer is never shown to another user. Writes of
 * every caller follow the protocol, as that caller.
 */
export class LeasingKv {
  private readonly records: KeyPrefix;
  private readonly keys = new LeasedKeys();
  private session: Session | undefined;
  private starting: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly upstream: Upstream,
    private readonly keepAlives: KeepAliveCoalescer,
    private readonly options: LeasingOptions,
    private readonly metrics: Metrics["leasing"],
  ) {
    this.records = new KeyPrefix(options.prefix);
  }

  /** How many keys the proxy owns now. */
  get owned(): number {
    return this.keys.size;
  }

  async range(request: RangeRequest, ctx: CallContext): Promise<RangeResponse> {
    const servable =
      request.rangeEnd.length === 0 && request.revision === 0n && ctx.forwardHeaders["token"] === undefined;
    const session = servable ? this.liveSession() : undefined;
    if (!session) return this.upstream.unary(KV.method.range, request, ctx);
    const held = await this.keys.answer(request);
    if (held) {
      this.metrics.localReads.inc();
      return held;
    }
    if (request.serializable || !this.keys.hasRoom || !this.keys.mayAcquire(request.key)) {
      return this.upstream.unary(KV.method.range, request, ctx);
    }
    let acquired: RangeResponse;
    const acquisition = this.keys.acquiring();
    try {
      acquired = await this.acquire(request.key, session, acquisition, ctx);
    } catch {
      // Leasing never fails a read: if the record was made after all, a writer's REVOKE still reaches the watch.
      this.keys.abandon(acquisition);
      this.keys.giveUp(request.key);
      return this.upstream.unary(KV.method.range, request, ctx);
    }
    return filtered(acquired, request);
  }

  put(request: PutRequest, ctx: CallContext): Promise<PutResponse> {
    const written = [{ key: request.key, rangeEnd: new Uint8Array() }];
    return this.keys.writing(intervalsOf(written), [request.key], async () => {
      const done = await this.write({ request: { case: "requestPut", value: request } }, written, ctx);
      const answer = done.responses[0]!.response.value as PutResponse;
      answer.header = done.header;
      const plain = request.lease === 0n && !request.ignoreValue && !request.ignoreLease;
      if (plain) this.keys.put(request.key, request.value, done.header!);
      else this.keys.giveUp(request.key);
      return answer;
    });
  }

  async deleteRange(request: DeleteRangeRequest, ctx: CallContext): Promise<DeleteRangeResponse> {
    const owned = this.keys.ownedIn(request.key, request.rangeEnd);
    return this.keys.writing(intervalsOf([request]), owned, async () => {
      const done = await this.write({ request: { case: "requestDeleteRange", value: request } }, [request], ctx);
      const answer = done.responses[0]!.response.value as DeleteRangeResponse;
      answer.header = done.header;
      for (const key of owned) this.keys.deleted(key, done.header!);
      return answer;
    });
  }

  async txn(request: TxnRequest, ctx: CallContext): Promise<TxnResponse> {
    const written = writesOf([...request.success, ...request.failure]);
    if (written.length === 0) return this.upstream.unary(KV.method.txn, request, ctx);
    const owned = written.flatMap((w) => this.keys.ownedIn(w.key, w.rangeEnd));
    return this.keys.writing(intervalsOf(written), owned, async () => {
      const done = await this.write({ request: { case: "requestTxn", value: request } }, written, ctx);
      const answer = done.responses[0]!.response.value as TxnResponse;
      answer.header = done.header;
      // Which branch ran, nested Txns included, is etcd's to tell: read those keys from etcd again.
      for (const key of owned) this.keys.giveUp(key);
      return answer;
    });
  }

  /** Ends the session; resolves once its lease is revoked (its records deleted), or could not be. */
  close(): Promise<void> {
    this.closed = true;
    return this.endSession("the proxy is shutting down");
  }

  /**
   * Runs `op` in a Txn guarded on every touched key's record: it commits only
   * if no leasing client but this proxy owns any of them. Otherwise the
   * owners are asked to give their keys up, and the Txn is tried again.
   */
  private async write(op: RequestOpInit, written: Written[], ctx: CallContext): Promise<TxnResponse> {
    // Per touched key or range: records created before this revision are the proxy's own.
    const floors = written.map((w) =>
      this.keys.ownedIn(w.key, w.rangeEnd).reduce((max, k) => {
        const rev = this.keys.recordRevision(k);
        return rev > max ? rev : max;
      }, 0n),
    );
    for (;;) {
      const compare: CompareInit[] = written.map((w, i) => ({
        key: this.records.add(w.key),
        rangeEnd: this.records.rangeEnd(w.rangeEnd),
        target: Compare_CompareTarget.CREATE,
        result: Compare_CompareResult.LESS,
        targetUnion: { case: "createRevision", value: floors[i]! + 1n },
      }));
      const failure: RequestOpInit[] = written.map((w) => ({
        request: {
          case: "requestRange",
          value: { key: this.records.add(w.key), rangeEnd: this.records.rangeEnd(w.rangeEnd) },
        },
      }));
      let done: TxnResponse;
      try {
        done = await this.upstream.unary(KV.method.txn, { compare, success: [op], failure }, ctx);
      } catch (err) {
        // Whether it was applied is unknown: what the proxy holds of these keys may be stale.
        for (const w of written) for (const k of this.keys.ownedIn(w.key, w.rangeEnd)) this.keys.giveUp(k);
        throw err;
      }
      if (done.succeeded) return done;
      const owners: KeyValue[] = [];
      done.responses.forEach((r, i) => {
        for (const record of (r.response.value as RangeResponse).kvs) {
          if (this.session && record.lease === this.session.leaseId) {
            if (record.createRevision > floors[i]!) floors[i] = record.createRevision;
          } else {
            owners.push(record);
          }
        }
      });
      // Each wait holds a watch: a range write over many owned keys asks a batch of owners at a time.
      for (let at = 0; at < owners.length; at += REVOKES_AT_ONCE) {
        const batch = owners.slice(at, at + REVOKES_AT_ONCE);
        await Promise.all(batch.map((record) => this.revoke(record, done.header!.revision, ctx)));
      }
    }
  }

  /** Asks the owner of `record` to give its key up, and waits until the record is gone. */
  private async revoke(record: KeyValue, seenAt: bigint, ctx: CallContext): Promise<void> {
    let from = seenAt;
    if (!REVOKE.equals(record.value)) {
      const asked = await this.upstream.unary(
        KV.method.txn,
        {
          compare: [sameRecord(record)],
          success: [{ request: { case: "requestPut", value: { key: record.key, value: REVOKE, ignoreLease: true } } }],
        },
        ctx,
      );
      if (!asked.succeeded) return; // that record is gone or replaced: the next attempt sees what is there now
      from = asked.header!.revision;
    }
    await this.deletionOf(record.key, from, ctx);
  }

  /** Resolves once `key` is deleted after revision `after` (the owner gave it up, or its lease expired). */
  private async deletionOf(key: Uint8Array, after: bigint, ctx: CallContext): Promise<void> {
    const requests = new AsyncQueue<WatchRequestInit>();
    requests.push({ requestUnion: { case: "createRequest", value: { key, startRevision: after + 1n } } });
    const abort = new AbortController();
    const signal = AbortSignal.any([ctx.signal, abort.signal]);
    try {
      for await (const answer of this.upstream.bidiStream(Watch.method.watch, requests, { ...ctx, signal })) {
        if (answer.canceled) return; // compacted past `after`: the next attempt reads the record afresh
        if (answer.events.some((e) => e.type === Event_EventType.DELETE)) return;
      }
    } finally {
      abort.abort();
      requests.end();
    }
  }

  /** Reads `key` and, if nobody owns it and it has no lease, takes ownership. */
  private async acquire(
    key: Uint8Array,
    session: Session,
    acquisition: Acquisition,
    ctx: CallContext,
  ): Promise<RangeResponse> {
    const record = this.records.add(key);
    const done = await this.upstream.unary(
      KV.method.txn,
      {
        compare: [
          {
            key: record,
            target: Compare_CompareTarget.CREATE,
            result: Compare_CompareResult.EQUAL,
            targetUnion: { case: "createRevision", value: 0n },
          },
          {
            key,
            target: Compare_CompareTarget.LEASE,
            result: Compare_CompareResult.EQUAL,
            targetUnion: { case: "lease", value: 0n },
          },
        ],
        success: [
          { request: { case: "requestRange", value: { key } } },
          { request: { case: "requestPut", value: { key: record, lease: session.leaseId } } },
        ],
        failure: [
          { request: { case: "requestRange", value: { key } } },
          { request: { case: "requestRange", value: { key: record } } },
        ],
      },
      ctx,
    );
    const read = done.responses[0]!.response.value as RangeResponse;
    const answer = create(KV.method.range.output, { ...read, header: done.header });
    // A record of ours that a writer has asked for (REVOKE) is no longer ours to serve from.
    const existing = done.succeeded ? undefined : (done.responses[1]!.response.value as RangeResponse).kvs[0];
    const ours = done.succeeded || (existing?.lease === session.leaseId && !REVOKE.equals(existing.value));
    if (ours && this.session === session) this.keys.own(key, answer, done.header!.revision, acquisition);
    else this.keys.abandon(acquisition);
    return answer;
  }

  /** The session, if owned keys may be served now; otherwise starts one (in the background) and says none. */
  private liveSession(): Session | undefined {
    const session = this.session;
    if (session && Date.now() < session.validUntil - SESSION_MARGIN_MS) return session;
    if (!this.starting && !this.closed) {
      this.starting = this.startSession()
        .catch(async (err: unknown) => {
          this.options.onProblem("leasing: could not start a session; reads go to etcd meanwhile", err);
          await new Promise((r) => setTimeout(r, SESSION_RETRY_MS).unref());
        })
        .finally(() => (this.starting = undefined));
    }
    return undefined;
  }

  private async startSession(): Promise<void> {
    void this.endSession("a new session starts");
    const { identity } = this.options;
    const granted = await this.upstream.unary(
      Lease.method.leaseGrant,
      { TTL: BigInt(SESSION_TTL_SECONDS) },
      await identity.context(OWN_CALL_TIMEOUT_MS),
    );
    const session: Session = {
      leaseId: granted.ID,
      validUntil: Date.now() + Number(granted.TTL) * 1000,
      abort: new AbortController(),
    };
    const ctx: CallContext = {
      forwardHeaders: await identity.metadata(),
      deadline: undefined,
      signal: session.abort.signal,
    };
    const requests = new AsyncQueue<WatchRequestInit>();
    requests.push({
      requestUnion: {
        case: "createRequest",
        value: { key: this.records.add(new Uint8Array()), rangeEnd: this.records.rangeEnd(Uint8Array.of(0)) },
      },
    });
    const answers = this.upstream.bidiStream(Watch.method.watch, requests, ctx)[Symbol.asyncIterator]();
    const created = await answers.next();
    if (created.done || created.value.canceled) {
      session.abort.abort();
      throw new Error(`etcd refused the watch on the leasing records: ${created.value?.cancelReason ?? "it ended"}`);
    }
    if (this.closed) return session.abort.abort();
    this.session = session;
    void this.followRecords(session, answers, requests);
    void this.keepSessionAlive(session);
  }

  /** Ends the session: nothing owned is served any more, and its lease is revoked so writers wait for no one. */
  private async endSession(reason: string): Promise<void> {
    const session = this.session;
    if (!session) return;
    this.session = undefined;
    this.keys.clear();
    session.abort.abort(new Error(reason));
    try {
      const ctx = await this.options.identity.context(OWN_CALL_TIMEOUT_MS);
      await this.upstream.unary(Lease.method.leaseRevoke, { ID: session.leaseId }, ctx);
    } catch {
      // unrevoked, the lease still expires within its TTL
    }
  }

  /** Renews the session lease every third of its TTL; a lease etcd no longer has ends the session. */
  private async keepSessionAlive(session: Session): Promise<void> {
    const { signal } = session.abort;
    while (await sleep((SESSION_TTL_SECONDS * 1000) / 3, signal)) {
      const sentAt = Date.now();
      try {
        const renewed = await this.keepAlives.renewOnce(session.leaseId, await this.options.identity.metadata());
        if (renewed.TTL <= 0n) return void this.endSession("the leasing session's lease expired");
        session.validUntil = sentAt + Number(renewed.TTL) * 1000;
      } catch (err) {
        // Served keys stop at validUntil; the next renewal may still save the session.
        this.options.onProblem("leasing: a session renewal failed", err);
      }
    }
  }

  /** Gives keys up as writers ask (or as their records vanish); a lost watch ends the session. */
  private async followRecords(
    session: Session,
    answers: AsyncIterator<WatchResponse>,
    requests: AsyncQueue<WatchRequestInit>,
  ): Promise<void> {
    try {
      for (let next = await answers.next(); !next.done && !next.value.canceled; next = await answers.next()) {
        for (const event of next.value.events) {
          const record = event.kv!;
          if (!this.records.owns(record.key)) continue;
          const key = record.key.subarray(this.options.prefix.length);
          if (event.type === Event_EventType.DELETE) {
            // The record is gone (its lease ended, or a client deleted it): writers no longer ask the proxy.
            if (this.keys.owns(key)) this.keys.giveUp(key, record.modRevision);
          } else if (REVOKE.equals(record.value) && record.lease === session.leaseId) {
            void this.rescind(key, record, session);
          }
        }
      }
    } catch (err) {
      if (!session.abort.signal.aborted) this.options.onProblem("leasing: the watch on the records was lost", err);
    } finally {
      requests.end();
      if (this.session === session) void this.endSession("the watch on the leasing records ended");
    }
  }

  /** A writer asked for `key`: stop serving it, then delete the record so the writer may go on. */
  private async rescind(key: Uint8Array, revoked: KeyValue, session: Session): Promise<void> {
    // Ownership taken after the writer asked (a record made anew) stays.
    if (this.keys.recordRevision(key) > revoked.modRevision) return;
    if (this.keys.owns(key)) this.metrics.revoked.inc();
    this.keys.giveUp(key, revoked.modRevision);
    while (!session.abort.signal.aborted) {
      try {
        const ctx = await this.options.identity.context(OWN_CALL_TIMEOUT_MS, session.abort.signal);
        await this.upstream.unary(
          KV.method.txn,
          {
            compare: [
              {
                key: revoked.key,
                target: Compare_CompareTarget.CREATE,
                result: Compare_CompareResult.LESS,
                targetUnion: { case: "createRevision", value: revoked.modRevision },
              },
            ],
            success: [{ request: { case: "requestDeleteRange", value: { key: revoked.key } } }],
          },
          ctx,
        );
        return;
      } catch (err) {
        this.options.onProblem("leasing: could not give a key up; retrying", err);
        if (!(await sleep(SESSION_RETRY_MS, session.abort.signal))) return;
      }
    }
  }
}

function intervalsOf(written: Written[]): KeyInterval[] {
  return written.map((w) => keyInterval(w.key, w.rangeEnd));
}

/** A compare that holds while `record` is still the same record (not deleted, not made anew). */
function sameRecord(record: KeyValue): CompareInit {
  return {
    key: record.key,
    target: Compare_CompareTarget.CREATE,
    result: Compare_CompareResult.EQUAL,
    targetUnion: { case: "createRevision", value: record.createRevision },
  };
}

/** Every key and range the ops (nested Txns included, both branches) may write, each once. */
function writesOf(ops: RequestOp[]): Written[] {
  const written = new Map<string, Written>();
  const add = (w: Written) => written.set(`${w.key.length}:${bytesToString(w.key)}${bytesToString(w.rangeEnd)}`, w);
  const visit = (ops: RequestOp[]) => {
    for (const op of ops) {
      const r = op.request;
      if (r.case === "requestPut") add({ key: r.value.key, rangeEnd: new Uint8Array() });
      else if (r.case === "requestDeleteRange") add(r.value);
      else if (r.case === "requestTxn") visit([...r.value.success, ...r.value.failure]);
    }
  };
  visit(ops);
  return [...written.values()];
}

import type { MessageShape } from "@bufbuild/protobuf";
import type { CallContext } from "../call-context.js";
import {
  KV,
  type DeleteRangeRequestSchema,
  type PutRequestSchema,
  type RangeRequestSchema,
  type TxnRequestSchema,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { decodeRequest } from "../grpc/decode.js";
import { messageBytesField, requestMessage, type RequestFrame } from "../grpc/request-frame.js";
import type { Metrics } from "../metrics.js";
import type { ProxyIdentity } from "../upstream/proxy-identity.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { internalWatch, type WatchOpener } from "../watch/internal-watch.js";
import { childSignal } from "../util/child-signal.js";
import { headerRevision } from "../grpc/header-revision.js";
import { bytesToString, keyInterval, type KeyInterval } from "../util/key-range.js";
import { RangeCache, type RangeCacheLimits } from "./range-cache.js";
import { ArrivingAnswer, type Answer } from "../upstream/answer.js";

type RangeRequest = MessageShape<typeof RangeRequestSchema>;
type TxnRequest = MessageShape<typeof TxnRequestSchema>;

export interface KvCacheOptions extends RangeCacheLimits {
  /** Who opens the invalidation watch (--user), for clusters with auth on. */
  identity: ProxyIdentity;
  /** How long to wait before reopening the invalidation watch after etcd refused or ended it. */
  watchRetryMs: number;
  /**
   * How long no read may fill the cache, once it holds nothing, before its
   * invalidation watch is closed; the next fill opens it again.
   */
  watchIdleMs: number;
  onWatchProblem?: (reason: string) => void;
  /**
   * --experimental-serializable-ordering: the highest store revision seen;
   * a hit from below it is not served (etcd is asked instead).
   */
  revisionFloor?: () => bigint;
  /** Ranges another feature answers from memory (the consistent cache's prefixes): never looked up or filled here. */
  answeredElsewhere?: (range: KeyInterval) => boolean;
}

const WHOLE_KEYSPACE = new Uint8Array([0]);
/** The decoded-request memo: how many requests it holds, and the largest it takes. */
const MEMO_ENTRIES = 1024;
const MEMO_MAX_REQUEST_BYTES = 1024;
const SWEEP_MS = 1000;

/**
 * The proxy's range cache, as KV handlers use it: serializable Ranges are
 * answered from it, every successful latest-revision Range fills it (a
 * large answer only when the read was serializable), and
 * every write through the proxy empties what it touched before the writer
 * hears back. Writes by any other route arrive through one watch over the
 * whole keyspace; and no entry outlives the TTL, which also bounds how long
 * a revoked permission can still be served.
 *
 * Entries belong to the caller's identity (its auth token; anonymous
 * callers share one), and are never served to another.
 */
export class KvCache {
  private readonly cache: RangeCache;
  /** Recent requests' bytes (with the caller's token), decoded, with their cache ids. Never stale: it holds no answers. */
  private readonly decoded = new Map<string, IdentifiedRange>();
  private watching = false;
  /** Closes the open invalidation watch for want of entries (see sweep). */
  private closeIdleWatch: (() => void) | undefined;
  /** When a read last filled the cache. */
  private lastFilled = 0;
  private readonly sweeper: NodeJS.Timeout;
  private readonly stop = new AbortController();

  constructor(
    private readonly options: KvCacheOptions,
    private readonly metrics: Metrics["cache"],
    private readonly openWatch: WatchOpener,
  ) {
    this.cache = new RangeCache(options);
    this.sweeper = setInterval(() => this.sweep(Date.now()), SWEEP_MS);
    this.sweeper.unref();
  }

  /** Answers a Range from the cache when it may, else through `fetch` (etcd), filling the cache. */
  range(request: RangeRequest, ctx: CallContext, fetch: () => Promise<Answer>): Promise<Answer> {
    return Promise.resolve(this.answer(this.identified(ctx, request), fetch));
  }

  /**
   * range() on the request's bytes: the answer itself when the cache has it,
   * else a promise. A request seen before (same bytes, same caller) skips
   * decoding and building its cache id, most of a hit's work besides the
   * answer.
   */
  rangeBytes(payload: Uint8Array, ctx: CallContext, fetch: () => Promise<Answer>): Answer | Promise<Answer> {
    if (payload.length > MEMO_MAX_REQUEST_BYTES) {
      return this.answer(this.identified(ctx, decodeRequest(KV.method.range, payload)), fetch);
    }
    const token = ctx.forwardHeaders["token"] ?? "";
    const memoKey = `${token.length}:${token}${Buffer.from(payload.buffer, payload.byteOffset, payload.length).toString("latin1")}`;
    let memo = this.decoded.get(memoKey);
    if (!memo) {
      memo = this.identified(ctx, decodeRequest(KV.method.range, payload));
      if (this.decoded.size >= MEMO_ENTRIES) this.decoded.clear();
      this.decoded.set(memoKey, memo);
    }
    return this.answer(memo, fetch);
  }

  /** A request with its cache id: none for a past revision, or for a range answered elsewhere. */
  private identified(ctx: CallContext, request: RangeRequest): IdentifiedRange {
    const elsewhere = this.options.answeredElsewhere?.(keyInterval(request.key, request.rangeEnd)) ?? false;
    return { request, id: request.revision === 0n && !elsewhere ? cacheId(ctx, request) : "" };
  }

  private answer({ request, id }: IdentifiedRange, fetch: () => Promise<Answer>): Answer | Promise<Answer> {
    // Reads of a past revision are left to etcd: compaction, which the
    // cache cannot see, decides whether they succeed.
    if (id === "") return fetch();
    if (request.serializable) {
      const hit = this.cache.lookup(id, Date.now(), (ms) => this.metrics.hitAge.observe(ms / 1000));
      const floor = this.options.revisionFloor;
      if (hit && (!floor || headerRevision(hit) >= floor())) {
        this.metrics.hits.inc();
        return hit;
      }
      this.metrics.misses.inc();
    }
    return this.fill(request, id, fetch);
  }

  private async fill(request: RangeRequest, id: string, fetch: () => Promise<Answer>): Promise<Answer> {
    const started = this.cache.startFill();
    let response = await fetch();
    if (response instanceof ArrivingAnswer) {
      // A large answer is kept only for a serializable read, the only kind a
      // hit serves; any other passes on as it arrives, never held whole.
      if (!request.serializable) return response;
      response = await response.whole();
    }
    const revision = headerRevision(response);
    this.lastFilled = Date.now();
    this.cache.fill(id, keyInterval(request.key, request.rangeEnd), response, revision, started, this.lastFilled);
    this.report();
    this.watchWrites();
    return response;
  }

  /** Runs a write and empties what it touches, whether or not it succeeded (it may have applied). */
  async write<T>(touched: KeyInterval[] | "everything", call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } finally {
      if (touched === "everything") this.cache.invalidateAll();
      else for (const interval of touched) this.cache.invalidate(interval);
      this.report();
    }
  }

  /** Entries and bytes held now. */
  get stats(): { entries: number; bytes: number } {
    return this.cache.stats;
  }

  close(): void {
    clearInterval(this.sweeper);
    this.stop.abort();
  }

  /**
   * Drops expired entries, and closes the invalidation watch once the cache
   * holds nothing and no read has filled it for watchIdleMs: the watch
   * carries every value written to etcd by anyone, and a proxy that serves
   * no reads has no use for it.
   */
  private sweep(now: number): void {
    this.cache.sweep(now);
    this.report();
    if (this.cache.stats.entries === 0 && now - this.lastFilled >= this.options.watchIdleMs) this.closeIdleWatch?.();
  }

  private report(): void {
    const { entries, bytes } = this.cache.stats;
    this.metrics.keys.set(entries);
    this.metrics.bytes.set(bytes);
  }

  /**
   * One watch over the whole keyspace, opened with the first cached entry,
   * turns writes by other routes into invalidations. While it is down the
   * cache is emptied and relies on the TTL alone.
   */
  private watchWrites(): void {
    if (this.watching || this.stop.signal.aborted) return;
    this.watching = true;
    const scope = childSignal(this.stop.signal);
    let idle = false;
    this.closeIdleWatch = () => {
      idle = true;
      scope.release();
    };
    void (async () => {
      let problem = "the invalidation watch ended";
      try {
        const watch = internalWatch(this.openWatch, {
          key: WHOLE_KEYSPACE,
          rangeEnd: WHOLE_KEYSPACE,
          metadata: await this.options.identity.metadata(),
          signal: scope.signal,
        });
        for await (const response of watch) {
          // The watch sees every write after the revision it starts at;
          // entries read before it may have missed some.
          if (response.created && !response.canceled) this.cache.dropOlderThan(response.header?.revision ?? 0n);
          for (const event of response.events) {
            this.cache.invalidate(keyInterval(event.kv!.key, new Uint8Array(0)));
            this.metrics.watchInvalidations.inc();
          }
          if (response.canceled) {
            problem = `the invalidation watch was refused: ${response.cancelReason || "canceled"}`;
            this.options.identity.refused(new ConnectError(response.cancelReason, Code.PermissionDenied));
            break;
          }
        }
      } catch (err) {
        if (!idle) this.options.identity.refused(err);
        problem = `the invalidation watch failed: ${String(err)}`;
      }
      scope.release();
      this.closeIdleWatch = undefined;
      // Nothing watches for other routes' writes now: what the cache holds could miss them.
      this.cache.invalidateAll();
      this.report();
      if (idle) {
        this.watching = false;
        return;
      }
      if (this.stop.signal.aborted) return;
      this.options.onWatchProblem?.(problem);
      setTimeout(() => {
        this.watching = false;
      }, this.options.watchRetryMs).unref();
    })();
  }
}

/** A Range request with its cache id (empty for one that is never cached). */
interface IdentifiedRange {
  request: RangeRequest;
  id: string;
}

/** The cache key: identity, then every field of the request that shapes the answer. */
function cacheId(ctx: CallContext, r: RangeRequest): string {
  const token = ctx.forwardHeaders["token"] ?? "";
  const key = bytesToString(r.key);
  const end = bytesToString(r.rangeEnd);
  // Lengths first, so no choice of bytes makes two different requests one key.
  return `${token.length}:${token}${key.length}:${key}${end.length}:${end}|${r.limit}|${r.sortOrder}|${r.sortTarget}|${
    r.keysOnly ? 1 : 0
  }|${r.countOnly ? 1 : 0}|${r.minModRevision}|${r.maxModRevision}|${r.minCreateRevision}|${r.maxCreateRevision}`;
}

export function putTouches(request: MessageShape<typeof PutRequestSchema>): KeyInterval[] {
  return [keyInterval(request.key, new Uint8Array(0))];
}

/** PutRequest's `key`. */
const PUT_KEY_FIELD = 1;

/** What a Put touches, read from its frame: a 1 MiB value is neither joined nor decoded. */
export function putFrameTouches(requestFrame: RequestFrame): KeyInterval[] {
  let key: Uint8Array | undefined;
  try {
    key = messageBytesField(requestFrame, PUT_KEY_FIELD);
  } catch {
    // Bytes that are not a Put: decoding them throws etcd's own refusal.
    key = decodeRequest(KV.method.put, requestMessage(requestFrame)).key;
  }
  return [keyInterval(key ?? new Uint8Array(0), new Uint8Array(0))];
}

export function deleteTouches(request: MessageShape<typeof DeleteRangeRequestSchema>): KeyInterval[] {
  return [keyInterval(request.key, request.rangeEnd)];
}

/** Every key a Txn may write, in both branches and nested Txns (which branch ran does not matter). */
export function txnTouches(txn: TxnRequest): KeyInterval[] {
  const out: KeyInterval[] = [];
  for (const op of [...txn.success, ...txn.failure]) {
    const r = op.request;
    if (r.case === "requestPut") out.push(...putTouches(r.value));
    else if (r.case === "requestDeleteRange") out.push(...deleteTouches(r.value));
    else if (r.case === "requestTxn") out.push(...txnTouches(r.value));
  }
  return out;
}

/**
 * An in-memory replica of every key under one prefix (--consistent-cache-
 * prefix): loaded by a paginated Range at one revision, then kept current
 * by one watch from the next revision, through the proxy's watch hub. It
 * knows the revision it has applied: moved by events, and by answers to the
 * progress requests it asks when a read waits for a revision no event
 * brought, where etcd's progress answers can be trusted (3.4.25 and 3.5.8 and
 * later); before those, by events only. After a compaction, a lost stream or
 * a refusal it rests, then loads again; it never serves while it is not known
 * to be current.
 */
import { create } from "@bufbuild/protobuf";
import type { CallContext } from "../call-context.js";
import {
  KV,
  WatchRequestSchema,
  type RangeRequest,
  type ResponseHeader,
  type WatchRequest,
  type WatchResponse,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { Event_EventType } from "../gen/etcd/api/mvccpb/kv_pb.js";
import type { Upstream } from "../upstream/upstream.js";
import type { ProxyIdentity } from "../upstream/proxy-identity.js";
import { AsyncQueue } from "../util/async-queue.js";
import { keyInterval, type KeyInterval } from "../util/key-range.js";
import type { WatchOpener } from "../watch/internal-watch.js";
import { prefixEnd } from "../namespace/prefix.js";
import { NO_WATCH_ID } from "../watch/responses.js";
import { answerRange, type RangeAnswer } from "./range-answer.js";
import { ReplicaStore } from "./replica-store.js";

export interface ReplicaOptions {
  /** Keys per page while loading. */
  pageKeys: number;
  /** How long a load or watch waits before trying again after a failure: doubling from the first, up to the second. */
  retryMs: { first: number; max: number };
  /** How long a replica over the byte budget waits before loading again. */
  overBudgetRetryMs: number;
  /** How soon a progress request is asked again when its answer did not reach the revision a read waits for. */
  progressRetryMs: number;
  loadTimeoutMs: number;
  /**
   * Where progress answers cannot be trusted: how long a read waits for
   * events to bring the replica to its revision. Nothing can vouch for a
   * prefix that no write touched, so such a read goes to etcd after this.
   */
  eventsOnlyWaitMs: number;
  /** Whether a progress answer vouches for every event before it (WatchHub.progressVouches). */
  progressVouches(): boolean;
}

/** What a replica tells the feature that owns it. */
export interface ReplicaEvents {
  /** Whether the replicas together, this one as it is now, fit their byte budget. */
  fits(): boolean;
  /** The replica stopped being served and will load again. */
  interrupted(replica: PrefixReplica, why: string): void;
  /** Its size or revision changed. */
  changed(replica: PrefixReplica): void;
}

type ReplicaState =
  | { kind: "loading"; stop: AbortController }
  | { kind: "live"; stop: AbortController; requests: AsyncQueue<WatchRequest> }
  | { kind: "resting"; timer: NodeJS.Timeout; why: string }
  | { kind: "stopped" };

interface RevisionWaiter {
  revision: bigint;
  done(reached: boolean): void;
}

export class PrefixReplica {
  readonly interval: KeyInterval;
  /** The prefix as text, for metrics and logs. */
  readonly name: string;
  private state: ReplicaState = { kind: "stopped" };
  private readonly store = new ReplicaStore();
  /** The revision the store is at; meaningful while live. */
  private applied = 0n;
  private waiters: RevisionWaiter[] = [];
  private progressAsked = false;
  private progressTimer: NodeJS.Timeout | undefined;
  private failures = 0;

  constructor(
    /** The prefix, in the client's key space (under --namespace, the namespace is not part of it). */
    readonly prefix: Uint8Array,
    private readonly upstream: Upstream,
    private readonly openWatch: WatchOpener,
    private readonly identity: ProxyIdentity,
    private readonly options: ReplicaOptions,
    private readonly events: ReplicaEvents,
  ) {
    this.interval = keyInterval(prefix, prefixEnd(prefix));
    this.name = Buffer.from(prefix).toString("utf8");
  }

  get live(): boolean {
    return this.state.kind === "live";
  }

  get revision(): bigint {
    return this.state.kind === "live" ? this.applied : 0n;
  }

  get keys(): number {
    return this.store.size;
  }

  get bytes(): number {
    return this.store.bytes;
  }

  /** Why it is not serving, when it is not. */
  get why(): string | undefined {
    return this.state.kind === "resting" ? this.state.why : this.state.kind === "live" ? undefined : this.state.kind;
  }

  start(): void {
    if (this.state.kind === "stopped") this.load();
  }

  stop(): void {
    this.moveTo({ kind: "stopped" });
  }

  /**
   * Resolves true once the replica has applied `revision` (asking etcd for
   * progress if no event brings it and progress can be trusted), false if it
   * stops being live or `timeoutMs` passes first.
   */
  reach(revision: bigint, timeoutMs: number): Promise<boolean> {
    if (this.state.kind !== "live") return Promise.resolve(false);
    if (this.applied >= revision) return Promise.resolve(true);
    const vouched = this.options.progressVouches();
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => finish(false),
        vouched ? timeoutMs : Math.min(timeoutMs, this.options.eventsOnlyWaitMs),
      );
      const waiter: RevisionWaiter = { revision, done: (reached) => finish(reached) };
      const finish = (reached: boolean) => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(reached);
      };
      this.waiters.push(waiter);
      if (vouched) this.askProgress();
    });
  }

  /**
   * The request answered from the store as it is now, at the revision
   * applied; undefined while not live. `asked` (the request's bytes) lets
   * reads of one request at one revision share one answer: many clients
   * listing a prefix between two writes cost one encoding.
   */
  answer(request: RangeRequest, header: ResponseHeader, asked?: string): RangeAnswer | undefined {
    if (this.state.kind !== "live") return undefined;
    const stamp = `${this.applied}/${header.clusterId}/${header.memberId}/${header.raftTerm}`;
    const memo = asked === undefined ? undefined : this.answers.get(asked);
    if (memo?.stamp === stamp) return memo.answer;
    const entries = this.store.span(request.key, request.rangeEnd);
    const answer = answerRange(entries, request, { ...header, revision: this.applied });
    if (asked !== undefined) this.remember(asked, stamp, answer);
    return answer;
  }

  /** Recent answers by request, each valid at one revision and header. */
  private readonly answers = new Map<string, { stamp: string; answer: RangeAnswer }>();
  private answerBytes = 0;

  private remember(asked: string, stamp: string, answer: RangeAnswer): void {
    const size = answer.kind === "answer" ? answer.bytes.length : 0;
    const old = this.answers.get(asked);
    if (old?.answer.kind === "answer") this.answerBytes -= old.answer.bytes.length;
    this.answers.delete(asked);
    // Oldest first out, within a count and a byte bound (the answers are also what clients are being sent).
    while (this.answers.size > 0 && (this.answers.size >= MEMO_ANSWERS || this.answerBytes + size > MEMO_BYTES)) {
      const [oldest, entry] = this.answers.entries().next().value!;
      if (entry.answer.kind === "answer") this.answerBytes -= entry.answer.bytes.length;
      this.answers.delete(oldest);
    }
    if (size > MEMO_BYTES) return;
    this.answers.set(asked, { stamp, answer });
    this.answerBytes += size;
  }

  /** The one place the state changes: what the old state held is let go. */
  private moveTo(next: ReplicaState): void {
    const old = this.state;
    if (old.kind === "loading") old.stop.abort();
    if (old.kind === "live") {
      old.stop.abort();
      old.requests.end();
    }
    if (old.kind === "resting") clearTimeout(old.timer);
    this.state = next;
    if (next.kind !== "live") {
      this.answers.clear();
      this.answerBytes = 0;
      clearTimeout(this.progressTimer);
      this.progressAsked = false;
      for (const w of [...this.waiters]) w.done(false);
      this.store.clear();
    }
    this.events.changed(this);
  }

  private load(): void {
    const stop = new AbortController();
    this.moveTo({ kind: "loading", stop });
    void this.loadPages(stop.signal).then(
      (revision) => {
        if (stop.signal.aborted) return;
        if (revision === undefined) return this.rest("over the byte budget", this.options.overBudgetRetryMs);
        this.failures = 0;
        this.watchFrom(revision);
      },
      (err: unknown) => {
        if (stop.signal.aborted) return;
        this.identity.refused(err);
        this.fail(`loading failed: ${(err as Error).message ?? String(err)}`);
      },
    );
  }

  /** Reads every key under the prefix at one revision; undefined if they do not fit the budget. */
  private async loadPages(signal: AbortSignal): Promise<bigint | undefined> {
    const metadata = await this.identity.metadata();
    const rangeEnd = prefixEnd(this.prefix);
    let key: Uint8Array = this.prefix;
    let revision = 0n;
    for (;;) {
      const ctx: CallContext = {
        forwardHeaders: metadata,
        deadline: Date.now() + this.options.loadTimeoutMs,
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.options.loadTimeoutMs)]),
      };
      const page = await this.upstream.unary(
        KV.method.range,
        { key, rangeEnd, revision, limit: BigInt(this.options.pageKeys) },
        ctx,
      );
      if (signal.aborted) return revision;
      if (revision === 0n) revision = page.header?.revision ?? 0n;
      for (const kv of page.kvs) this.store.put(kv);
      if (!this.events.fits()) return undefined;
      const last = page.kvs.at(-1);
      if (!page.more || last === undefined) return revision;
      key = new Uint8Array([...last.key, 0]);
    }
  }

  private watchFrom(loaded: bigint): void {
    const stop = new AbortController();
    const requests = new AsyncQueue<WatchRequest>();
    this.applied = loaded;
    requests.push(
      create(WatchRequestSchema, {
        requestUnion: {
          case: "createRequest",
          value: { key: this.prefix, rangeEnd: prefixEnd(this.prefix), startRevision: loaded + 1n },
        },
      }),
    );
    this.moveTo({ kind: "live", stop, requests });
    void (async () => {
      let why = "the watch ended";
      try {
        const ctx: CallContext = {
          forwardHeaders: await this.identity.metadata(),
          deadline: undefined,
          signal: stop.signal,
        };
        for await (const response of this.openWatch(requests, ctx)) {
          if (stop.signal.aborted) return;
          if (response.canceled) {
            why =
              response.compactRevision > 0n
                ? "the watch was compacted"
                : `the watch was refused: ${response.cancelReason}`;
            break;
          }
          if (!this.apply(response)) {
            return this.rest("over the byte budget", this.options.overBudgetRetryMs);
          }
        }
      } catch (err) {
        why = `the watch failed: ${(err as Error).message ?? String(err)}`;
      }
      if (!stop.signal.aborted) this.fail(why);
    })();
  }

  /** Applies one watch response; false if the replica no longer fits the budget. */
  private apply(response: WatchResponse): boolean {
    if (response.events.length > 0) {
      let revision = this.applied;
      for (const event of response.events) {
        const kv = event.kv;
        if (!kv) continue;
        if (event.type === Event_EventType.DELETE) this.store.delete(kv.key);
        else this.store.put(kv);
        if (kv.modRevision > revision) revision = kv.modRevision;
      }
      if (!this.events.fits()) return false;
      // Answers made before these events are of another store, whatever revision they carry.
      this.answers.clear();
      this.answerBytes = 0;
      this.advance(revision);
    } else if (!response.created && response.watchId === NO_WATCH_ID) {
      // The hub's answer to a progress request: every event up to it has been sent on this stream,
      // where etcd's answers vouch for that (found otherwise by the robustness suite: a stale read).
      this.progressAsked = false;
      if (!this.options.progressVouches()) return true;
      this.advance(response.header?.revision ?? 0n);
      if (this.waiters.length > 0) this.askProgressSoon();
    }
    return true;
  }

  private advance(revision: bigint): void {
    if (revision <= this.applied) return;
    this.applied = revision;
    for (const w of [...this.waiters]) if (w.revision <= revision) w.done(true);
    this.events.changed(this);
  }

  private askProgress(): void {
    if (this.state.kind !== "live" || this.progressAsked) return;
    this.progressAsked = true;
    this.state.requests.push(create(WatchRequestSchema, { requestUnion: { case: "progressRequest", value: {} } }));
  }

  /** The member the watch is on may be behind the one that answered the read's check: ask again shortly. */
  private askProgressSoon(): void {
    clearTimeout(this.progressTimer);
    this.progressTimer = setTimeout(() => this.askProgress(), this.options.progressRetryMs);
    this.progressTimer.unref();
  }

  private fail(why: string): void {
    const delay = Math.min(this.options.retryMs.first * 2 ** this.failures, this.options.retryMs.max);
    this.failures++;
    this.rest(why, delay);
  }

  private rest(why: string, delayMs: number): void {
    if (this.state.kind === "stopped") return;
    const timer = setTimeout(() => this.load(), delayMs);
    timer.unref();
    this.moveTo({ kind: "resting", timer, why });
    this.events.interrupted(this, why);
  }
}

/** Answers kept for reads of the same request at the same revision. */
const MEMO_ANSWERS = 64;
const MEMO_BYTES = 64 * 1024 * 1024;

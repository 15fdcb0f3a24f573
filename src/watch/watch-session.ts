import type { ConnectError } from "@connectrpc/connect";
import type { CallContext } from "../call-context.js";
import {
  type ResponseHeader,
  type WatchCreateRequest,
  type WatchRequest,
  type WatchResponse,
} from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { AsyncQueue } from "../util/async-queue.js";
import {
  CONTROL_RESPONSE_BYTES,
  EventBatch,
  NO_WATCH_ID,
  REASONS,
  fragmentResponse,
  headerAt,
  watchResponse,
  type Variant,
} from "./responses.js";
import type { ChannelMember, WatchChannel } from "./watch-channel.js";
import { ClientWatcher, type WatcherSink } from "./client-watcher.js";

export interface SessionLimits {
  /**
   * Unread responses a client stream may hold. Past it, its watchers step
   * off their shared watches; once a quarter of it is left they rejoin from
   * the revision they need next (history, or etcd's own storage).
   */
  bufferBytes: number;
  /**
   * Largest response made of a watcher's unread event responses. A client
   * that fell behind gets its backlog batched (as etcd batches a watcher
   * that fell behind) up to this size.
   */
  batchBytes: number;
  /** Size from which a response is split for watchers that asked for fragments (etcd's request limit). */
  fragmentBytes: number;
}

/** What a session tells the hub, for metrics. */
export interface SessionEvents {
  watcherAdded(): void;
  watcherRemoved(): void;
  setAside(watchers: number): void;
  closed(): void;
}

/**
 * What etcd says of a watcher that would join a shared watch instead of
 * opening its own: it may ("join"), it refuses it (its words), or the proxy
 * cannot vouch for the join (its start revision is compacted, or etcd could
 * not be asked) and the watcher gets an upstream watch of its own, so that
 * etcd itself answers it.
 */
export type JoinVerdict = { kind: "join" } | { kind: "own" } | { kind: "refused"; reason: string };

/**
 * Asks etcd about a join: whether the caller may read the range (callers
 * with a token), and whether `startRevision` (0: not asked) is compacted.
 */
export type JoinCheck = (
  key: Uint8Array,
  rangeEnd: Uint8Array,
  startRevision: bigint,
  ctx: CallContext,
) => Promise<JoinVerdict>;

/**
 * One client Watch stream, with etcd's semantics: watch IDs are the client's
 * own or count up from 0, every watcher gets exactly one Created and hears
 * why it ends, a half-close keeps events flowing, and progress requests are
 * answered. Its watchers ride on the identity's shared watches.
 */
export class WatchSession implements ChannelMember, WatcherSink {
  private readonly watchers = new Map<bigint, ClientWatcher>();
  /** The last variant weighed in full, and the queued response that carries its weight. */
  private weighed: { variant: Variant; seq: number } | undefined;
  private readonly output = new AsyncQueue<WatchResponse>({
    taking: (response) => {
      if (response instanceof EventBatch) response.seal();
    },
    taken: () => {
      if (this.setAside && this.output.weight <= this.limits.bufferBytes / 4) this.rejoin();
    },
    finished: () => this.close(),
    // The transport takes responses a macrotask after they are pushed: when
    // the proxy falls behind etcd, one socket read brings many upstream
    // responses, and each watcher's events from them leave batched.
    wakeLater: true,
  });
  private nextAutoId = 0n;
  private closed = false;
  /** Progress requests not yet answered, and whether a question to the channel is out. */
  private progress = { asked: 0, inFlight: false };
  /** The newest revision of any event sent on this stream: progress is never told behind it. */
  private lastEventRevision = 0n;
  private progressRetry: NodeJS.Timeout | undefined;
  private progressDeferrals = 0;
  /**
   * The sequence number of the last response that was not a watcher's
   * events: events are never batched into a response queued before it, so
   * nothing moves ahead of a Created, a cancel or a progress answer.
   */
  private batchFloor = -1;
  /** The run of variants of the last batch made, which the next may share (see EventBatch). */
  private lastRun: Variant[] | undefined;
  /** Watchers taken off their shared watches while the client catches up on reading. */
  private setAside: ClientWatcher[] | undefined;

  constructor(
    private readonly channel: WatchChannel,
    private readonly ctx: CallContext,
    private readonly limits: SessionLimits,
    private readonly checkJoin: JoinCheck,
    private readonly events: SessionEvents,
  ) {}

  serve(requests: AsyncIterable<WatchRequest>): AsyncIterable<WatchResponse> {
    this.channel.addMember(this);
    if (this.ctx.signal.aborted) this.close();
    else this.ctx.signal.addEventListener("abort", () => this.close(), { once: true });
    void this.readRequests(requests);
    return this.output;
  }

  fail(err: ConnectError): void {
    this.output.fail(err);
    this.close();
  }

  private async readRequests(requests: AsyncIterable<WatchRequest>): Promise<void> {
    try {
      for await (const request of requests) {
        if (this.closed) return;
        const r = request.requestUnion;
        if (r.case === "createRequest") await this.create(r.value);
        else if (r.case === "cancelRequest") this.cancel(r.value.watchId);
        else if (r.case === "progressRequest") this.requestProgress();
        // etcd ignores requests of any other kind.
      }
      // A half-closed stream stays open and keeps delivering, as with etcd.
    } catch {
      this.close(); // the client's request stream broke: the call is over
    }
  }

  private async create(request: WatchCreateRequest): Promise<void> {
    const key = request.key.length === 0 ? ZERO_KEY : request.key; // the smallest key, as etcd reads it
    const { rangeEnd, startRevision } = request;
    if (!isValidRange(key, rangeEnd)) return this.refuse(REASONS.emptyRange);
    if (request.watchId !== 0n && this.watchers.has(request.watchId)) return this.refuse(REASONS.duplicateId);
    // A new upstream watch is checked by etcd itself; a join must be too,
    // or a revoked user would keep getting events, and a watcher from a
    // compacted revision would be served from history instead of cancelled.
    const joinable = this.channel.findJoinable(key, rangeEnd, startRevision);
    const fromPast = startRevision !== 0n && joinable?.state === "live";
    // A negative start: etcd 3.4 creates the watch, then cancels it as
    // compacted; 3.5 refuses it at once. etcd answers on a watch of its own.
    let own = startRevision < 0n;
    if (joinable && (fromPast || this.ctx.forwardHeaders["token"] !== undefined)) {
      const verdict = await this.checkJoin(key, rangeEnd, fromPast ? startRevision : 0n, this.ctx);
      if (this.closed) return;
      if (verdict.kind === "refused") return this.refuse(verdict.reason);
      own = verdict.kind === "own";
    }

    const auto = request.watchId === 0n;
    const id = auto ? this.allocateId() : request.watchId;
    const watcher = new ClientWatcher(this, id, key, request, auto);
    this.watchers.set(id, watcher);
    this.events.watcherAdded();
    const joined = this.channel.join(watcher, key, rangeEnd, startRevision, own);
    if (joined.kind === "joined") {
      watcher.markCreated(joined.header);
      if (startRevision !== 0n && startRevision < joined.watch.nextRev) {
        this.channel.replay(joined.watch, watcher, startRevision);
      }
      return;
    }
    watcher.nextRev = startRevision;
    // The next request waits for etcd's Created, so Created answers keep
    // the order of the requests, as clients that count on it expect.
    await watcher.settled();
  }

  private allocateId(): bigint {
    while (this.watchers.has(this.nextAutoId)) this.nextAutoId++;
    return this.nextAutoId++;
  }

  private refuse(reason: string): void {
    const header = this.channel.latestHeader() ?? headerAt(undefined, 0n);
    this.push(watchResponse({ header, watchId: NO_WATCH_ID, created: true, canceled: true, cancelReason: reason }));
  }

  /** The header for a cancel answer: the last etcd sent on the watcher's range, else on any. */
  private cancelHeader(watcher: ClientWatcher): ResponseHeader {
    return watcher.shared?.header ?? this.channel.latestHeader() ?? headerAt(undefined, 0n);
  }

  private cancel(id: bigint): void {
    const watcher = this.watchers.get(id);
    if (!watcher) return; // etcd ignores unknown IDs
    const header = this.cancelHeader(watcher);
    this.remove(watcher);
    this.push(watchResponse({ header, watchId: id, canceled: true }));
  }

  /**
   * Answers, as etcd does (watch ID -1), with a revision up to which every
   * watcher of this stream has been sent every event. etcd itself answers
   * nothing on a stream without watchers.
   */
  private requestProgress(): void {
    if (this.watchers.size === 0) return;
    this.progress.asked++;
    if (!this.progress.inFlight && this.progressRetry === undefined) this.askChannelForProgress();
  }

  /**
   * One question to the channel at a time, answering every request asked
   * before it went out. Requests that come while it waits (a client asking
   * every 100 ms through a failover) wait for the next question, so each is
   * answered by an etcd answer given after it was asked, and the client's
   * signal holds one listener, not one per request.
   */
  private askChannelForProgress(): void {
    clearTimeout(this.progressRetry);
    this.progressRetry = undefined;
    const answering = this.progress.asked;
    this.progress = { asked: 0, inFlight: true };
    this.channel.requestProgress(this.ctx.signal).then(
      (header) => {
        this.progress.inFlight = false;
        if (this.closed) return;
        // What every watcher of the stream has been sent: a watcher on a live
        // shared watch is owed nothing before the watch's position (etcd's
        // answer moved it); one set aside, nothing before its own.
        // Never past etcd's own revision: its answer's, or that of an event it already sent.
        let revision = header.revision > this.lastEventRevision ? header.revision : this.lastEventRevision;
        for (const w of this.watchers.values()) {
          const watch = w.shared;
          const upTo = watch?.state === "live" ? watch.nextRev - 1n : w.nextRev - 1n;
          if (upTo < revision) revision = upTo;
        }
        // A notification behind an event this stream was already sent would
        // be true but useless, and clients take it as going back (etcd's
        // robustness rules forbid it): ask again, a little later, until an
        // answer covers it. On etcd before 3.4.25 a watch from the past on a
        // quiet range may never be vouched for again; after a few tries the
        // answer goes out as it is.
        if (revision < this.lastEventRevision && this.progressDeferrals < MAX_PROGRESS_DEFERRALS) {
          this.progressDeferrals++;
          this.progress.asked += answering;
          clearTimeout(this.progressRetry);
          this.progressRetry = setTimeout(() => {
            if (!this.closed && !this.progress.inFlight && this.progress.asked > 0) this.askChannelForProgress();
          }, PROGRESS_REASK_MS);
          return;
        }
        this.progressDeferrals = 0;
        for (let i = 0; i < answering; i++) {
          this.push(watchResponse({ header: { ...header, revision }, watchId: NO_WATCH_ID }));
        }
        if (this.progress.asked > 0 && this.watchers.size > 0) this.askChannelForProgress();
      },
      () => {
        this.progress.inFlight = false; // the stream ended first
      },
    );
  }

  /** Called by watchers: etcd created the watch they wait on. */
  sendCreated(watcher: ClientWatcher, header: ResponseHeader): void {
    this.push(watchResponse({ header, watchId: watcher.id, created: true }));
  }

  /** Called by watchers: etcd refused the watch they waited on. */
  sendCreateFailed(watcher: ClientWatcher, header: ResponseHeader, reason: string): void {
    this.forget(watcher);
    if (watcher.autoId && this.nextAutoId === watcher.id + 1n) this.nextAutoId = watcher.id; // etcd spends no ID on a refusal
    this.push(watchResponse({ header, watchId: NO_WATCH_ID, created: true, canceled: true, cancelReason: reason }));
  }

  sendEvents(watcher: ClientWatcher, variant: Variant): void {
    const last = variant.events[variant.events.length - 1]?.kv?.modRevision ?? 0n;
    if (last > this.lastEventRevision) this.lastEventRevision = last;
    if (watcher.fragment && variant.events.length > 1 && variant.encodedSize(watcher.id) >= this.limits.fragmentBytes) {
      const pieces = fragmentResponse(variant.responseFor(watcher.id), this.limits.fragmentBytes);
      for (const piece of pieces) this.push(piece, variant.bytes / pieces.length);
      return;
    }
    if (this.batchUnread(watcher, variant)) return;
    const shared = this.sharesWeight(variant);
    // Fields rather than an object: this runs once per watcher per event.
    watcher.unreadSeq = this.push(
      variant.responseFor(watcher.id),
      shared ? CONTROL_RESPONSE_BYTES : variant.bytes,
      true,
    );
    if (!shared) this.weighed = { variant, seq: watcher.unreadSeq };
    watcher.unreadVariant = variant;
    watcher.unreadBatch = undefined;
  }

  /**
   * Adds `variant` to the watcher's last event response if the client has
   * not read it yet; false if that cannot be done.
   */
  private batchUnread(watcher: ClientWatcher, variant: Variant): boolean {
    const seq = watcher.unreadSeq;
    if (seq <= this.batchFloor || !this.output.holds(seq) || watcher.fragment) return false;
    const batch = watcher.unreadBatch;
    if ((batch ?? watcher.unreadVariant!).bytes + variant.bytes > this.limits.batchBytes) return false;
    if (batch) batch.add(variant);
    else {
      const made = new EventBatch(watcher.id, watcher.unreadVariant!, variant, this.lastRun);
      this.lastRun = made.sharedRun;
      this.output.replace(seq, made);
      watcher.unreadBatch = made;
    }
    const shared = this.sharesWeight(variant);
    this.output.addWeight(seq, shared ? CONTROL_RESPONSE_BYTES : variant.bytes);
    if (!shared) this.weighed = { variant, seq };
    this.checkBacklog();
    return true;
  }

  /**
   * Whether `variant` is weighed already by a response still queued: the
   * same events for another watcher of this stream share one encoding (the
   * native lane sends it to each as it is), so they cost the buffer once,
   * not once per watcher. A megabyte event to 100 watchers of one stream
   * holds a megabyte, and is weighed so.
   */
  private sharesWeight(variant: Variant): boolean {
    const weighed = this.weighed;
    return weighed !== undefined && weighed.variant === variant && this.output.holds(weighed.seq);
  }

  sendProgress(watcher: ClientWatcher, header: ResponseHeader): void {
    this.push(watchResponse({ header, watchId: watcher.id }));
  }

  /** Called by watchers: their shared watch ended upstream (compaction, permission, ...). */
  sendCanceled(watcher: ClientWatcher, header: ResponseHeader, compactRevision: bigint, reason: string): void {
    this.forget(watcher);
    this.push(watchResponse({ header, watchId: watcher.id, canceled: true, compactRevision, cancelReason: reason }));
  }

  /** Queues a response; returns its sequence number in the output queue. */
  private push(response: WatchResponse, bytes = CONTROL_RESPONSE_BYTES, events = false): number {
    if (this.closed) return -1;
    const seq = this.output.push(response, bytes);
    if (!events) this.batchFloor = seq;
    this.checkBacklog();
    return seq;
  }

  private checkBacklog(): void {
    // The newest event may always come on top of the limit: one larger than the limit (etcd takes
    // values up to 1.5 MiB) would otherwise set the watchers aside at every event, read or not.
    const weighed = this.weighed;
    const newest = weighed && this.output.holds(weighed.seq) ? weighed.variant.bytes : 0;
    if (this.output.weight > this.limits.bufferBytes + newest && !this.setAside) this.setWatchersAside();
  }

  /**
   * The client is not reading. Rather than buffer without bound, or hold up
   * the other receivers of the shared watches, its watchers step off them,
   * as etcd moves a slow watcher to its "victims" and later serves it from
   * storage. Nothing is lost: each keeps the revision it needs next.
   */
  private setWatchersAside(): void {
    const aside = [...this.watchers.values()].filter((w) => w.created && w.shared);
    if (aside.length === 0) return;
    for (const w of aside) {
      this.channel.leave(w, w.shared!);
      w.shared = undefined;
    }
    this.setAside = aside;
    this.events.setAside(aside.length);
  }

  /** The client caught up: its watchers rejoin from where they stood, through history or etcd. */
  private rejoin(): void {
    const aside = this.setAside ?? [];
    this.setAside = undefined;
    for (const w of aside) if (this.watchers.get(w.id) === w) void this.rejoinOne(w);
  }

  /**
   * Rejoins one watcher that was set aside. If its next revision would come
   * from a shared watch's history, etcd is asked first whether that
   * revision is compacted meanwhile: then the watcher gets a watch of its
   * own, and etcd's compaction cancel, as a slow watcher direct would.
   */
  private async rejoinOne(w: ClientWatcher): Promise<void> {
    const from = w.nextRev;
    const joinable = this.channel.findJoinable(w.key, w.rangeEnd, from);
    let own = false;
    if (joinable?.state === "live" && from < joinable.nextRev) {
      const verdict = await this.checkJoin(w.key, w.rangeEnd, from, this.ctx);
      if (this.closed || this.watchers.get(w.id) !== w || w.shared) return;
      own = verdict.kind !== "join"; // a refusal too: etcd answers the watcher itself
    }
    const joined = this.channel.join(w, w.key, w.rangeEnd, from, own);
    if (joined.kind === "joined" && from < joined.watch.nextRev) this.channel.replay(joined.watch, w, from);
  }

  /** Takes `watcher` off its shared watch and out of this stream. */
  private remove(watcher: ClientWatcher): void {
    if (watcher.shared) this.channel.leave(watcher, watcher.shared);
    this.forget(watcher);
  }

  /** Drops `watcher` from this stream (its shared watch already let it go). */
  private forget(watcher: ClientWatcher): void {
    if (this.watchers.get(watcher.id) !== watcher) return;
    this.watchers.delete(watcher.id);
    watcher.shared = undefined;
    watcher.release();
    this.events.watcherRemoved();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.progressRetry);
    for (const w of [...this.watchers.values()]) this.remove(w);
    this.channel.removeMember(this);
    this.output.end();
    this.events.closed();
  }
}

const ZERO_KEY = new Uint8Array([0]);
/** How soon a progress request is asked again when etcd's answer did not yet cover what the stream was sent. */
const PROGRESS_REASK_MS = 50;
/** How often it is asked again before the answer goes out behind the stream's events. */
const MAX_PROGRESS_DEFERRALS = 10;

/** etcd's rule: no end, the "\0" end (every key from `key`), or an end after the key. */
function isValidRange(key: Uint8Array, rangeEnd: Uint8Array): boolean {
  if (rangeEnd.length === 0 || (rangeEnd.length === 1 && rangeEnd[0] === 0)) return true;
  return Buffer.compare(key, rangeEnd) < 0;
}

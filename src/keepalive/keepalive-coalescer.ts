import { fromBinary, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { callerIdentity, type CallContext, type CallerIdentity } from "../call-context.js";
import { Lease, LeaseKeepAliveResponseSchema } from "../gen/etcd/api/etcdserverpb/rpc_pb.js";
import { frame, messageOf } from "../grpc/wire.js";
import type { Metrics } from "../metrics.js";
import { isConnectionFailure } from "../upstream/errors.js";
import type { Upstream } from "../upstream/upstream.js";
import { AsyncQueue } from "../util/async-queue.js";
import { keepAliveRequestFrame, leaseIdOfResponse } from "./keepalive-wire.js";

export type KeepAliveResponse = MessageShape<typeof LeaseKeepAliveResponseSchema>;

/** Who hears how a renewal went. One waiter may wait on many renewals (a client stream's). */
export interface KeepAliveWaiter {
  /** etcd's answer, as the gRPC frame etcd sent (shared by every waiter: do not change it). */
  answer(frame: Uint8Array): void;
  fail(error: unknown): void;
}

/**
 * How many times in a row the shared stream may die on connection failures
 * before the requests waiting on it fail: enough to move across every
 * endpoint of a 3-member cluster, not so many that clients hang.
 */
const MAX_REOPENS_WITHOUT_ANSWER = 3;

/**
 * How long renewals may wait with no answer at all before their stream is
 * taken for stuck. etcd answers a renewal within a heartbeat or so; one that
 * waits longer is usually held by a follower forwarding to a leader that
 * hung, which etcd gives up on only after its request timeout (5 s plus two
 * election timeouts), longer than short leases live. A stuck stream is
 * abandoned (etcd drops the forward) and its renewals re-sent on a new one,
 * again every RENEWAL_STALL_MS while nothing is answered: a new stream
 * forwards to whichever leader the member knows by then, so renewals reach
 * a new leader within about a second of its election, however long that
 * takes. Leases cannot expire while there is no leader (a new one extends
 * them all), so nothing is lost by waiting; a client that requires a leader
 * gets etcd's "no leader" on the next stream.
 */
export const RENEWAL_STALL_MS = 1_000;

/**
 * How long the upstream keep-alive stream stays open with no renewal in
 * flight: past it, it is closed, as the watch hub closes a watch its last
 * watcher left, and the next renewal opens a new one.
 */
export const KEEPALIVE_IDLE_CLOSE_MS = 10_000;

/**
 * Coalesces every client's lease keep-alives onto one upstream LeaseKeepAlive
 * stream, the way etcd's proxy coalesces them, without its flaws:
 *
 * - A keep-alive is answered as soon as etcd answers the renewal that covers
 *   it. Requests for a lease whose renewal is already in flight share it;
 *   otherwise a renewal goes out at once. Nothing waits for a timer.
 * - The proxy renews a lease only when a client asks, so a lease expires TTL
 *   after its last client keep-alive, as it would direct.
 * - The answer is etcd's own (header, ID, TTL): TTL 0 for an unknown lease.
 *
 * Keep-alives are coalesced per caller identity (auth token, and whether a
 * leader is required), as watches are: etcd 3.5 checks the token of every
 * renewal, so one identity's keep-alive never rides another's stream, and a
 * refused token ends only its own clients' streams. Clients that require a
 * leader share a stream that carries `hasleader`, so etcd can end it when
 * the leader is lost. A stream left idle is closed and forgotten.
 */
export class KeepAliveCoalescer {
  private readonly streams = new Map<string, SharedKeepAliveStream>();

  constructor(
    private readonly upstream: Upstream,
    private readonly metrics: Metrics["lease"],
  ) {}

  /** Renews lease `id` for the caller whose metadata is `caller`; `waiter` hears etcd's answer. */
  renew(id: bigint, caller: Readonly<Record<string, string>>, waiter: KeepAliveWaiter): void {
    const identity = callerIdentity(caller);
    let stream = this.streams.get(identity.key);
    if (!stream) {
      const made = new SharedKeepAliveStream(this.upstream, identity, this.metrics, () => {
        if (this.streams.get(identity.key) === made) this.streams.delete(identity.key);
      });
      stream = made;
      this.streams.set(identity.key, stream);
    }
    stream.renew(id, waiter);
  }

  /** How many identities have a keep-alive stream (open or opening). */
  get identities(): number {
    return this.streams.size;
  }

  /** Renews lease `id` once; resolves with etcd's answer, decoded. */
  renewOnce(id: bigint, caller: Readonly<Record<string, string>>): Promise<KeepAliveResponse> {
    return new Promise((resolve, reject) =>
      this.renew(id, caller, {
        answer: (bytes) => resolve(fromBinary(LeaseKeepAliveResponseSchema, messageOf(bytes))),
        fail: reject,
      }),
    );
  }

  close(): void {
    for (const s of this.streams.values()) s.close();
    this.streams.clear();
  }
}

/** One upstream keep-alive stream and the renewals in flight on it. */
class SharedKeepAliveStream {
  /** Renewals sent and not yet answered, by lease ID. */
  private readonly inflight = new Map<bigint, KeepAliveWaiter[]>();
  /** The request frames of the open upstream stream. */
  private requests: AsyncQueue<Uint8Array> | undefined;
  private abort: AbortController | undefined;
  private failuresWithoutAnswer = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  /** When etcd last answered on this identity's stream, or the stream was (re)opened. */
  private progressAt = 0;

  constructor(
    private readonly upstream: Upstream,
    private readonly identity: CallerIdentity,
    private readonly metrics: Metrics["lease"],
    /** The stream closed with nothing in flight: its owner forgets it. */
    private readonly onIdle: () => void,
  ) {}

  renew(id: bigint, waiter: KeepAliveWaiter): void {
    const waiters = this.inflight.get(id);
    if (waiters) {
      waiters.push(waiter);
      return;
    }
    this.inflight.set(id, [waiter]);
    this.send(id);
  }

  close(): void {
    clearTimeout(this.idleTimer);
    clearTimeout(this.stallTimer);
    this.abort?.abort(new ConnectError("the proxy is shutting down", Code.Unavailable));
  }

  /** Nothing in flight: close the upstream stream once it has stayed so for a while. */
  private idleSoon(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      const requests = this.requests;
      if (this.inflight.size > 0 || !requests) return;
      this.requests = undefined;
      requests.end(); // a half-close: etcd ends the stream
      this.onIdle(); // the next renewal of this identity makes a new one
    }, KEEPALIVE_IDLE_CLOSE_MS);
    this.idleTimer.unref();
  }

  private send(id: bigint): void {
    clearTimeout(this.idleTimer);
    this.open().push(keepAliveRequestFrame(id));
    this.metrics.renewalsSent.inc();
    this.watchForStall();
  }

  /** Arms the stall check while renewals are in flight (one timer, re-armed from the last progress). */
  private watchForStall(): void {
    if (this.stallTimer) return;
    const due = Math.max(0, this.progressAt + RENEWAL_STALL_MS - Date.now());
    this.stallTimer = setTimeout(() => {
      this.stallTimer = undefined;
      if (this.inflight.size === 0 || !this.requests) return;
      if (Date.now() - this.progressAt < RENEWAL_STALL_MS) return this.watchForStall();
      this.metrics.stalledStreams.inc();
      this.abandon();
      for (const id of this.inflight.keys()) this.send(id);
    }, due);
    this.stallTimer.unref();
  }

  /** Gives up the open upstream stream; its pump ends quietly (it is no longer the current one). */
  private abandon(): void {
    const requests = this.requests;
    this.requests = undefined;
    requests?.end();
    this.abort?.abort(new ConnectError("the renewals on this stream stalled", Code.Canceled));
  }

  private open(): AsyncQueue<Uint8Array> {
    if (this.requests) return this.requests;
    const requests = new AsyncQueue<Uint8Array>();
    const abort = new AbortController();
    this.requests = requests;
    this.abort = abort;
    this.progressAt = Date.now();
    const ctx: CallContext = {
      forwardHeaders: this.identity.forwardHeaders,
      deadline: undefined,
      signal: abort.signal,
    };
    this.metrics.upstreamStreams.inc();
    void this.pump(requests, ctx).finally(() => this.metrics.upstreamStreams.dec());
    return requests;
  }

  private async pump(requests: AsyncQueue<Uint8Array>, ctx: CallContext): Promise<void> {
    try {
      for await (const answer of this.upstream.bidiStreamBytes(Lease.method.leaseKeepAlive, requests, ctx)) {
        this.failuresWithoutAnswer = 0;
        this.progressAt = Date.now();
        const id = leaseIdOfResponse(answer);
        const waiters = this.inflight.get(id);
        if (!waiters) continue;
        this.inflight.delete(id);
        const answerFrame = frame(answer);
        for (const w of waiters) w.answer(answerFrame);
        if (this.inflight.size === 0 && this.requests === requests) this.idleSoon();
      }
      this.lost(requests, new ConnectError("etcd closed the lease keep-alive stream", Code.Unavailable));
    } catch (err) {
      this.lost(requests, err);
    }
  }

  /**
   * The upstream stream ended. If its endpoint failed, a new stream opens on
   * another endpoint and re-sends the renewals in flight; if etcd itself
   * ended it (no leader, ...), the waiting requests get etcd's error.
   */
  private lost(requests: AsyncQueue<Uint8Array>, err: unknown): void {
    // A stream closed for idling ends here too; renewals since are another stream's.
    if (this.requests !== requests) return;
    this.requests = undefined;
    requests.end();
    if (this.inflight.size === 0) return this.onIdle();
    const retry =
      isConnectionFailure(err) &&
      !this.abort?.signal.aborted &&
      ++this.failuresWithoutAnswer <= MAX_REOPENS_WITHOUT_ANSWER;
    if (retry) {
      for (const id of this.inflight.keys()) this.send(id);
      return;
    }
    const error = ConnectError.from(err);
    const waiting = [...this.inflight.values()].flat();
    this.inflight.clear();
    this.onIdle();
    for (const w of waiting) w.fail(error);
  }
}

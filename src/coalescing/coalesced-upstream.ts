import { ConnectError } from "@connectrpc/connect";
import type { CallContext } from "../call-context.js";
import { wholeFrame, type RequestFrame } from "../grpc/request-frame.js";
import { ArrivingAnswer, shareAnswer, type Answer } from "../upstream/answer.js";
import { UpstreamDecorator, type Upstream } from "../upstream/upstream.js";

/** Range requests longer than this are sent on their own: real ones are a few dozen bytes. */
const MAX_KEYED_REQUEST_BYTES = 4096;

/**
 * What a rider's answer gate must admit ahead, about one large answer, to
 * ride a shared call, which etcd sends unpaced; a client that is not
 * reading its answers gets no room, and its Range goes alone, paced.
 */
const RIDER_RESERVE_BYTES = 1 << 20;

/** A Range waiting for the call it will share. */
interface Rider {
  readonly ctx: CallContext;
  resolve(answer: Answer): void;
  reject(reason: unknown): void;
}

/**
 * The calls for one request (same bytes, same caller): the call out with
 * etcd that later Ranges wait behind (beside it, only calls of riders whose
 * client had no room to share), and the riders who came while it was out,
 * who go together once it comes back.
 */
interface Flight {
  next: Rider[] | undefined;
}

/**
 * Identical Ranges share calls to etcd (`--coalesce-ranges`): a Range that
 * arrives while the same request from the same caller is with etcd waits
 * for that call's answer to start, then goes to etcd in one call with every
 * other Range that arrived meanwhile. Each shared call is sent after every
 * Range it answers arrived, so its answer is one each of them could have
 * had from etcd alone: linearizable reads stay linearizable. A call already
 * sent is never joined, since etcd may have read before a late Range came.
 * "Same caller" is every header forwarded to etcd (the auth token,
 * hasleader, the API version), so etcd checks every caller's rights.
 */
export class CoalescedUpstream extends UpstreamDecorator {
  private readonly flights = new Map<string, Flight>();

  constructor(
    inner: Upstream,
    /** Told how many Ranges each shared call answered beyond its first. */
    private readonly onShared: (riders: number) => void = () => {},
  ) {
    super(inner);
  }

  protected override rangeBytes(requestFrame: RequestFrame, ctx: CallContext, safe: () => boolean): Promise<Answer> {
    const key = flightKey(requestFrame, ctx);
    if (key === undefined) return super.rangeBytes(requestFrame, ctx, safe);
    const flight = this.flights.get(key);
    if (!flight) {
      const out: Flight = { next: undefined };
      this.flights.set(key, out);
      const answer = super.rangeBytes(requestFrame, ctx, safe);
      this.whenBack(answer, key, out, requestFrame);
      return answer;
    }
    return new Promise<Answer>((resolve, reject) => {
      const rider: Rider = { ctx, resolve, reject };
      (flight.next ??= []).push(rider);
      onAbort(ctx.signal, (reason) => {
        // Still waiting: it leaves the group; already sent: the shared call hears of it.
        const index = flight.next?.indexOf(rider) ?? -1;
        if (index >= 0) flight.next!.splice(index, 1);
        reject(reason);
      });
    });
  }

  /** Once the call in flight has its answer (or failed), the riders who came meanwhile go. */
  private whenBack(answer: Promise<Answer>, key: string, flight: Flight, requestFrame: RequestFrame): void {
    const next = () => {
      const riders = flight.next;
      flight.next = undefined;
      if (!riders?.length) return void this.flights.delete(key);
      this.whenBack(this.send(riders, requestFrame), key, flight, requestFrame);
    };
    answer.then(next, next);
  }

  /**
   * One call for `riders`: their own if alone; else shared by those whose
   * client has room for an unpaced answer, each given its own copy, while
   * the others go alone.
   */
  private send(riders: Rider[], requestFrame: RequestFrame): Promise<Answer> {
    if (riders.length === 1) return this.alone(riders[0]!, requestFrame);
    const sharing: Rider[] = [];
    let last: Promise<Answer> | undefined;
    for (const rider of riders) {
      if (rider.ctx.answers?.admitAhead(RIDER_RESERVE_BYTES) ?? true) sharing.push(rider);
      else last = this.alone(rider, requestFrame);
    }
    if (sharing.length < 2) {
      for (const rider of sharing) {
        rider.ctx.answers?.settle(RIDER_RESERVE_BYTES);
        last = this.alone(rider, requestFrame);
      }
      return last!;
    }
    this.onShared(sharing.length - 1);
    const release = () => sharing.forEach((r) => r.ctx.answers?.settle(RIDER_RESERVE_BYTES));
    const answer = super.rangeBytes(requestFrame, sharedContext(sharing), () => true);
    answer.then(
      (shared) =>
        shareAnswer(shared, sharing.length, release).forEach((copy, i) => {
          const rider = sharing[i]!;
          // One who left has been told so: its copy is given up, not left to gather the bytes.
          if (rider.ctx.signal.aborted && copy instanceof ArrivingAnswer) copy.discard();
          else rider.resolve(copy);
        }),
      (err: unknown) => {
        release();
        sharing.forEach((r) => r.reject(err));
      },
    );
    return answer;
  }

  private alone(rider: Rider, requestFrame: RequestFrame): Promise<Answer> {
    const answer = super.rangeBytes(requestFrame, rider.ctx, () => true);
    answer.then(rider.resolve, rider.reject);
    return answer;
  }
}

/** The request and the caller, as a map key; undefined for a request too large to be worth keying. */
function flightKey(requestFrame: RequestFrame, ctx: CallContext): string | undefined {
  if (requestFrame.length > MAX_KEYED_REQUEST_BYTES) return undefined;
  const h = ctx.forwardHeaders;
  return `${h["token"] ?? ""}\0${h["hasleader"] ?? ""}\0${h["client-api-version"] ?? ""}\0${wholeFrame(requestFrame).toString("latin1")}`;
}

/**
 * A shared call's context: the riders' headers (the same, by the key), the
 * latest deadline (none if one has none), no answer pacing (one client's
 * reading must not hold the others'), and cancelled once every rider left.
 */
function sharedContext(riders: Rider[]): CallContext {
  const controller = new AbortController();
  let staying = riders.length;
  for (const rider of riders) {
    onAbort(rider.ctx.signal, (reason) => {
      if (--staying === 0) controller.abort(reason);
    });
  }
  const deadlines = riders.map((r) => r.ctx.deadline);
  return {
    forwardHeaders: riders[0]!.ctx.forwardHeaders,
    deadline: deadlines.includes(undefined) ? undefined : Math.max(...(deadlines as number[])),
    signal: controller.signal,
  };
}

/** Calls `then` with the call's error once `signal` aborts (at once if it has). */
function onAbort(signal: AbortSignal, then: (reason: ConnectError) => void): void {
  if (signal.aborted) return then(ConnectError.from(signal.reason));
  signal.addEventListener("abort", () => then(ConnectError.from(signal.reason)), { once: true });
}

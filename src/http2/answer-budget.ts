import type { AnswerGate } from "../util/answer-gate.js";

/**
 * One client connection's budget for answers from etcd it has not read
 * (the AnswerGate the upstream paces answers by): answers admitted and
 * bytes queued to the client together stay under `limit`, though one
 * answer alone may always come in. Calls that wait for room may hold half
 * the limit together, each counted at what it may come to hold.
 */
/** Windows grow ahead of arrival only while less than this part of the limit is queued to the client. */
const AHEAD_WHILE_QUEUED_UNDER = 8;

export class AnswerBudget implements AnswerGate {
  /** Bytes of answers admitted from etcd and not yet delivered or dropped. */
  private inFlight = 0;
  private waiters: Array<() => void> = [];
  /** What the waiting calls may hold together. */
  private waitersHold = 0;

  constructor(
    private readonly limit: number,
    /** Bytes queued to the client and not yet sent. */
    private readonly queued: () => number,
    /** Whether the connection still serves: a closed one wakes nobody. */
    private readonly serving: () => boolean,
  ) {}

  admit(bytes: number): boolean {
    if (this.inFlight > 0 && this.inFlight + this.queued() + bytes > this.limit) return false;
    this.inFlight += bytes;
    return true;
  }

  admitAhead(bytes: number): boolean {
    return this.queued() <= this.limit / AHEAD_WHILE_QUEUED_UNDER && this.admit(bytes);
  }

  settle(bytes: number): void {
    this.inFlight -= bytes;
    this.wake();
  }

  whenOpen(fn: () => void, holding: number): boolean {
    if (this.waitersHold + holding > this.limit / 2) return false;
    this.waitersHold += holding;
    this.waiters.push(fn);
    return true;
  }

  /** The connection sent or dropped queued bytes: waiting calls may go on. */
  drained(): void {
    this.wake();
  }

  private wake(): void {
    if (this.waiters.length === 0 || this.inFlight + this.queued() >= this.limit || !this.serving()) return;
    const waiters = this.waiters;
    this.waiters = [];
    this.waitersHold = 0;
    for (const fn of waiters) fn();
  }
}

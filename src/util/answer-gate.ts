/**
 * How much of its calls' answers a client is ready to take. The upstream
 * lets an answer's bytes come from etcd only as far as the gate admits
 * them, so a client that does not read cannot make the proxy hold etcd's
 * answers for it (back-pressure from the client's window to etcd's).
 */
export interface AnswerGate {
  /** May `bytes` more of an answer come in now? When not, ask `whenOpen`. */
  admit(bytes: number): boolean;
  /**
   * May `bytes` more come in ahead of their arrival (a window's growth)?
   * Only while the client keeps up: a slow client's calls keep small
   * windows, so many of them waiting hold little.
   */
  admitAhead(bytes: number): boolean;
  /** A call's admitted bytes were delivered or dropped. */
  settle(bytes: number): void;
  /**
   * Runs `fn` once, when `admit` may say yes again. `holding`: what the
   * waiting call may come to hold meanwhile (its stream's window). False
   * when waiting calls would hold too much (the call should give up: the
   * client is not reading).
   */
  whenOpen(fn: () => void, holding: number): boolean;
}

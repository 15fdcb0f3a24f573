/**
 * A linearizability checker after Wing & Gong, as porcupine implements it:
 * a depth-first search over the order in which concurrent operations took
 * effect, which backtracks when the model cannot explain an answer, and
 * remembers every (set of operations applied, model state) pair it has
 * already explored so that no state is searched twice.
 *
 * The model may be non-deterministic (a request whose answer never came may
 * or may not have happened): a step returns every state it may lead to, and
 * the search carries the set of them, as porcupine's NondeterministicModel
 * does.
 */

/** One operation of a history, as a client saw it. */
export interface Operation<I, O> {
  client: number;
  input: I;
  /** When it was sent. */
  call: number;
  /** When its answer came; Infinity when none did (it may or may not have happened). */
  return: number;
  /** Its answer; undefined when none came. */
  output: O | undefined;
}

export interface Model<S, I, O> {
  init(): S;
  /** Every state the operation may leave `state` in, given the answer seen; none when the answer cannot be. */
  step(state: S, input: I, output: O | undefined): S[];
  /** Equal states, equal keys: what the search remembers. */
  key(state: S): string;
}

export type Verdict =
  | { linearizable: true; order: number[] }
  | {
      linearizable: false;
      /** The longest prefix of operations (indexes into the history) that could be ordered. */
      longest: number[];
      /**
       * Where the search came deepest and could go no further: first the
       * operation whose answer came before any order could explain it, then
       * the others still pending there. The fault is among them.
       */
      stuck: number[];
    }
  | { linearizable: "unknown"; reason: string };

/** States the search may remember before it gives up, to bound its memory. */
const MEMO_LIMIT = 2_000_000;

interface Entry {
  kind: "call" | "return";
  op: number;
  time: number;
  prev: Entry | undefined;
  next: Entry | undefined;
  /** A call's return entry. */
  match: Entry | undefined;
}

/** Checks `history` against `model`; gives up with "unknown" after `budgetMs`. */
export function checkLinearizable<S, I, O>(
  model: Model<S, I, O>,
  history: ReadonlyArray<Operation<I, O>>,
  budgetMs = 60_000,
): Verdict {
  const head = buildEntries(history);
  const n = history.length;
  const linearized = new Uint32Array(Math.ceil(n / 32) + 1);
  const seen = new Set<string>();
  const stack: Array<{ entry: Entry; states: S[] }> = [];
  let states: S[] = [model.init()];
  let longest: number[] = [];
  let stuck: number[] = [];
  const deadline = performance.now() + budgetMs;
  let steps = 0;
  let entry = head.next;
  while (head.next !== undefined) {
    if (++steps % 4096 === 0 && performance.now() > deadline) {
      return { linearizable: "unknown", reason: `no verdict within ${budgetMs} ms (${steps} steps)` };
    }
    if (entry === undefined) break; // cannot happen: a return always stops the scan first
    if (entry.kind === "call") {
      const op = history[entry.op]!;
      const next = distinct(
        model,
        states.flatMap((s) => model.step(s, op.input, op.output)),
      );
      if (next.length > 0) {
        setBit(linearized, entry.op);
        const memo = `${bitsKey(linearized)}#${next.map((s) => model.key(s)).join("|")}`;
        if (seen.size >= MEMO_LIMIT) {
          return { linearizable: "unknown", reason: `more than ${MEMO_LIMIT} states to remember (${steps} steps)` };
        }
        if (!seen.has(memo)) {
          seen.add(memo);
          stack.push({ entry, states });
          if (stack.length > longest.length) longest = stack.map((s) => s.entry.op);
          states = next;
          lift(entry);
          entry = head.next;
          continue;
        }
        clearBit(linearized, entry.op);
      }
      entry = entry.next;
      continue;
    }
    // A return whose call could not be placed before it: undo the last choice.
    if (stack.length >= longest.length) {
      // As deep as the search has come: this operation, or one pending with it, is the one no order explains.
      longest = stack.map((s) => s.entry.op);
      stuck = [entry.op, ...pendingAt(head).filter((op) => op !== entry!.op)];
    }
    if (stack.length === 0) return { linearizable: false, longest, stuck };
    const top = stack.pop()!;
    states = top.states;
    clearBit(linearized, top.entry.op);
    unlift(top.entry);
    entry = top.entry.next;
  }
  return { linearizable: true, order: stack.map((s) => s.entry.op) };
}

function buildEntries<I, O>(history: ReadonlyArray<Operation<I, O>>): Entry {
  const entries: Entry[] = [];
  history.forEach((op, i) => {
    const ret: Entry = { kind: "return", op: i, time: op.return, prev: undefined, next: undefined, match: undefined };
    const call: Entry = { kind: "call", op: i, time: op.call, prev: undefined, next: undefined, match: ret };
    entries.push(call, ret);
  });
  // Calls before returns at the same instant: two operations that touch in time may be in either order.
  entries.sort((a, b) => a.time - b.time || (a.kind === b.kind ? 0 : a.kind === "call" ? -1 : 1));
  const head: Entry = { kind: "call", op: -1, time: -Infinity, prev: undefined, next: undefined, match: undefined };
  let last = head;
  for (const e of entries) {
    last.next = e;
    e.prev = last;
    last = e;
  }
  return head;
}

/** Takes a call and its return out of the list: the operation has taken effect. */
function lift(call: Entry): void {
  call.prev!.next = call.next;
  if (call.next) call.next.prev = call.prev;
  const ret = call.match!;
  ret.prev!.next = ret.next;
  if (ret.next) ret.next.prev = ret.prev;
}

/** Puts them back, in the reverse order. */
function unlift(call: Entry): void {
  const ret = call.match!;
  ret.prev!.next = ret;
  if (ret.next) ret.next.prev = ret;
  call.prev!.next = call;
  if (call.next) call.next.prev = call;
}

function pendingAt(head: Entry): number[] {
  const pending: number[] = [];
  for (let e = head.next; e !== undefined && e.kind === "call"; e = e.next) pending.push(e.op);
  return pending;
}

function distinct<S, I, O>(model: Model<S, I, O>, states: S[]): S[] {
  if (states.length < 2) return states;
  const byKey = new Map<string, S>();
  for (const s of states) byKey.set(model.key(s), s);
  return [...byKey.values()];
}

function setBit(bits: Uint32Array, i: number): void {
  bits[i >>> 5]! |= 1 << (i & 31);
}

function clearBit(bits: Uint32Array, i: number): void {
  bits[i >>> 5]! &= ~(1 << (i & 31));
}

function bitsKey(bits: Uint32Array): string {
  return Buffer.from(bits.buffer, bits.byteOffset, bits.byteLength).toString("latin1");
}

import type { ConnectError } from "@connectrpc/connect";
import type { ReadLoan } from "../http2/read-loan.js";
import { headerRevision, leadingHeaderRevision } from "../grpc/header-revision.js";

/**
 * A unary answer from etcd: its message whole, or, for a large one, an
 * ArrivingAnswer whose bytes are still coming. Features that look inside
 * call wholeAnswer(); those that only pass it on leave it as it is, and the
 * native lane relays it to the client as it arrives.
 */
export type Answer = Uint8Array | ArrivingAnswer;

/** Where a relayed answer's bytes go, as they arrive. */
export interface AnswerSink {
  /** The next bytes of the message; under a `loan`, views that are valid only as the loan says. */
  piece(bytes: Buffer, loan: ReadLoan | undefined): void;
  /** The message is complete and etcd's status was OK (undefined), or the call failed. */
  end(error: ConnectError | undefined): void;
}

/** What an arriving answer tells its call. */
export interface AnswerHooks {
  /** Nobody wants the answer: cancel the call. */
  cancel(): void;
  /** `bytes` of it were passed on to a sink (the client's queue holds them now). */
  delivered(bytes: number): void;
}

type State =
  /** Nobody has asked for the bytes yet: they are copied as they come. */
  | { kind: "unclaimed"; pieces: Buffer[]; outcome: Outcome | undefined }
  /** Someone wants the message whole: it is assembled in one buffer. */
  | { kind: "joining"; whole: Buffer; have: number; resolve(b: Buffer): void; reject(e: ConnectError): void }
  /** The bytes go to a sink as they come. */
  | { kind: "relaying"; sink: AnswerSink }
  | { kind: "over" };

/** How the call ended: OK, or its error. */
type Outcome = { error: ConnectError | undefined };

/**
 * A message that is still arriving: its length and first bytes are known,
 * the rest comes from etcd. Whoever takes it either joins it (whole) or
 * relays it (relay), once; discard() gives it up and cancels the call.
 */
export class ArrivingAnswer {
  private state: State = { kind: "unclaimed", pieces: [], outcome: undefined };

  constructor(
    /** The message's length, as its gRPC prefix announced it. */
    readonly length: number,
    /** Its first bytes (a copy): enough for the response header. */
    readonly head: Buffer,
    private readonly hooks: AnswerHooks,
  ) {}

  /** The whole message, once it has arrived; etcd's error if the call failed. */
  whole(): Promise<Buffer> {
    const state = this.state;
    if (state.kind !== "unclaimed") return Promise.reject(new Error("an arriving answer was taken twice"));
    if (state.outcome?.error) return (this.become({ kind: "over" }), Promise.reject(state.outcome.error));
    return new Promise((resolve, reject) => {
      const whole = Buffer.allocUnsafe(this.length);
      let have = 0;
      for (const piece of state.pieces) have += piece.copy(whole, have);
      if (state.outcome) {
        this.become({ kind: "over" });
        resolve(whole);
      } else this.become({ kind: "joining", whole, have, resolve, reject });
    });
  }

  /** Sends the message to `sink` as it arrives: what came already, then each piece. */
  relay(sink: AnswerSink): void {
    const state = this.state;
    if (state.kind !== "unclaimed") throw new Error("an arriving answer was taken twice");
    let bytes = 0;
    for (const piece of state.pieces) {
      sink.piece(piece, undefined);
      bytes += piece.length;
    }
    this.hooks.delivered(bytes);
    if (state.outcome) {
      this.become({ kind: "over" });
      sink.end(state.outcome.error);
    } else this.become({ kind: "relaying", sink });
  }

  /** Nobody will take it: the call is cancelled. */
  discard(): void {
    if (this.state.kind === "over") return;
    this.become({ kind: "over" });
    this.hooks.cancel();
  }

  // ---- from the call ------------------------------------------------------

  /** More of the message (never past its length): a view, under `loan` when it is one of a reused read. */
  arrived(bytes: Buffer, loan: ReadLoan | undefined): void {
    const state = this.state;
    switch (state.kind) {
      case "unclaimed":
        state.pieces.push(loan ? Buffer.from(bytes) : bytes);
        return;
      case "joining":
        state.have += bytes.copy(state.whole, state.have);
        return;
      case "relaying":
        state.sink.piece(bytes, loan);
        return this.hooks.delivered(bytes.length);
      case "over":
        return;
    }
  }

  /** The call ended: OK once the whole message came (undefined), or its error. */
  ended(error: ConnectError | undefined): void {
    const state = this.state;
    switch (state.kind) {
      case "unclaimed":
        state.outcome = { error };
        if (error) state.pieces = [];
        return;
      case "joining":
        this.become({ kind: "over" });
        return error ? state.reject(error) : state.resolve(state.whole);
      case "relaying":
        this.become({ kind: "over" });
        return state.sink.end(error);
      case "over":
        return;
    }
  }

  private become(next: State): void {
    this.state = next;
  }
}

/** The answer's message whole (joining an arriving one). */
export function wholeAnswer(answer: Answer): Promise<Uint8Array> {
  return answer instanceof ArrivingAnswer ? answer.whole() : Promise.resolve(answer);
}

/** The revision in the answer's response header (0 when it has none). */
export function answerRevision(answer: Answer): bigint {
  return answer instanceof ArrivingAnswer ? leadingHeaderRevision(answer.head) : headerRevision(answer);
}

/**
 * One answer for `count` takers, each free to join, relay or discard its
 * own copy. A whole message is the same bytes for all (nobody writes into
 * an answer). An arriving one is relayed to every copy as its bytes come,
 * unpaced; the call is cancelled only once every copy is discarded.
 * `done` is called once, when the answer is all handed over or given up.
 */
export function shareAnswer(answer: Answer, count: number, done: () => void = () => {}): Answer[] {
  if (!(answer instanceof ArrivingAnswer)) {
    done();
    return Array.from({ length: count }, () => answer);
  }
  let kept = count;
  let over = false;
  const finish = () => {
    if (over) return;
    over = true;
    done();
  };
  const hooks: AnswerHooks = {
    cancel: () => {
      if (--kept > 0) return;
      answer.discard();
      finish();
    },
    delivered: () => {},
  };
  const copies = Array.from({ length: count }, () => new ArrivingAnswer(answer.length, answer.head, hooks));
  answer.relay({
    piece: (bytes, loan) => {
      for (const copy of copies) copy.arrived(bytes, loan);
    },
    end: (error) => {
      for (const copy of copies) copy.ended(error);
      finish();
    },
  });
  return copies;
}

// A unary answer read from etcd, relayed or joined, with the upstream's read
// buffer overwritten after every read, as the real connection reuses it.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Code, ConnectError } from "@connectrpc/connect";
import { ReadLoan, type Borrower } from "../../src/http2/read-loan.js";
import { frame, FrameError } from "../../src/grpc/wire.js";
import { ArrivingAnswer, type AnswerSink } from "../../src/upstream/answer.js";
import { UnaryAnswerReader } from "../../src/upstream/unary-answer-reader.js";

/** One socket read's worth of the body, and how it is split into DATA frames. */
interface Read {
  bytes: number;
  frames: number[];
}

/** A sink that keeps the views it is lent until their read is done, as a client stream does, then copies them. */
class HoldingSink implements AnswerSink, Borrower {
  readonly pieces: Buffer[] = [];
  ended: { error: ConnectError | undefined } | undefined;
  piece(bytes: Buffer, loan: ReadLoan | undefined): void {
    if (loan?.covers(bytes) && !loan.borrow(this)) bytes = Buffer.from(bytes);
    this.pieces.push(bytes);
  }
  end(error: ConnectError | undefined): void {
    this.ended = { error };
  }
  release(loan: ReadLoan): boolean {
    for (let i = 0; i < this.pieces.length; i++)
      if (loan.covers(this.pieces[i]!)) this.pieces[i] = Buffer.from(this.pieces[i]!);
    return true;
  }
}

/**
 * Feeds `body` to a reader read by read through one reused buffer, which is
 * scribbled over once each read is done; `take` is called once the answer
 * is handed out, before the next read (as a promise's consumer would).
 */
function deliver(
  body: Buffer,
  reads: Read[],
  reader: UnaryAnswerReader,
  take: (answer: ArrivingAnswer) => void,
  takeAfterRead = 0,
): ArrivingAnswer | undefined {
  const reused = Buffer.alloc(body.length + 1);
  let at = 0;
  let handedOut: ArrivingAnswer | undefined;
  let readsSinceHandOut = -1;
  let taken = false;
  for (let r = 0; at < body.length; r++) {
    const { bytes, frames } = reads[r % reads.length]!;
    const n = Math.min(bytes, body.length - at);
    body.copy(reused, 0, at, at + n);
    const loan = new ReadLoan(reused.buffer);
    let off = 0;
    for (let f = 0; off < n; f++) {
      const size = Math.min(frames[f % frames.length]!, n - off);
      const answer = reader.push(reused.subarray(off, off + size), loan);
      if (answer) {
        assert.equal(handedOut, undefined, "handed out once");
        handedOut = answer;
      }
      off += size;
    }
    at += n;
    assert.ok(loan.settle(), "the holding sink always lets go");
    reused.fill(0xee);
    if (handedOut && !taken && ++readsSinceHandOut >= takeAfterRead) {
      taken = true;
      take(handedOut);
    }
  }
  if (handedOut && !taken) take(handedOut);
  return handedOut;
}

/** Hooks that count what they hear. */
function hooks() {
  const heard = { cancelled: 0, delivered: 0 };
  return {
    heard,
    cancel: () => void heard.cancelled++,
    delivered: (bytes: number) => void (heard.delivered += bytes),
  };
}

const arbitraryReads = fc.array(
  fc.record({
    bytes: fc.integer({ min: 1, max: 700 }),
    frames: fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 4 }),
  }),
  { minLength: 1, maxLength: 5 },
);

describe("UnaryAnswerReader and ArrivingAnswer", () => {
  it("relays or joins every answer byte for byte, however it is read and whenever it is taken", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 0, maxLength: 3000 }),
        arbitraryReads,
        fc.integer({ min: 1, max: 2000 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 4 }),
        async (message, reads, relayFrom, relaying, takeAfterRead) => {
          const h = hooks();
          const reader = new UnaryAnswerReader(1 << 20, relayFrom, h);
          const sink = new HoldingSink();
          let joined: Promise<Buffer> | undefined;
          const answer = deliver(
            frame(message),
            reads,
            reader,
            (a) => (relaying ? a.relay(sink) : (joined = a.whole())),
            takeAfterRead,
          );
          const result = reader.finish(undefined);
          if (message.length < relayFrom) {
            assert.equal(answer, undefined, "a small answer is assembled");
            assert.deepEqual(result, Buffer.from(message));
            return;
          }
          assert.ok(answer instanceof ArrivingAnswer);
          assert.equal(result, undefined, "the arriving answer hears the outcome itself");
          assert.equal(answer.length, message.length);
          assert.deepEqual(answer.head, Buffer.from(message.subarray(0, answer.head.length)));
          assert.equal(h.heard.cancelled, 0);
          assert.equal(h.heard.delivered, relaying ? message.length : 0, "what was passed on is told");
          if (relaying) {
            assert.deepEqual(sink.ended, { error: undefined });
            assert.deepEqual(Buffer.concat(sink.pieces), Buffer.from(message));
          } else {
            assert.deepEqual(await joined!, Buffer.from(message));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("hands a relayed answer out once its head is in, before the rest", () => {
    const message = Buffer.alloc(5000, 1);
    const reader = new UnaryAnswerReader(1 << 20, 4096, hooks());
    const body = frame(message);
    assert.equal(reader.push(body.subarray(0, 600), undefined), undefined, "head not in yet");
    const answer = reader.push(body.subarray(600, 2000), undefined);
    assert.ok(answer instanceof ArrivingAnswer);
    assert.equal(answer.head.length, 1024);
    assert.equal(reader.push(body.subarray(2000), undefined), undefined);
  });

  it("an answer that fails midway fails whoever took it; one that ends short is an error", async () => {
    const message = Buffer.alloc(5000, 2);
    const body = frame(message).subarray(0, 3000);
    const lost = new ConnectError("transport is closing", Code.Unavailable);

    const relayed = new UnaryAnswerReader(1 << 20, 1000, hooks());
    const sink = new HoldingSink();
    relayed.push(body, undefined)!.relay(sink);
    assert.equal(relayed.finish(lost), undefined);
    assert.deepEqual(sink.ended, { error: lost });

    const joining = new UnaryAnswerReader(1 << 20, 1000, hooks());
    const whole = joining.push(body, undefined)!.whole();
    joining.finish(undefined);
    await assert.rejects(
      whole,
      (e: ConnectError) => e.code === Code.Internal && /ended inside its message/.test(e.message),
    );

    const untaken = new UnaryAnswerReader(1 << 20, 1000, hooks());
    const answer = untaken.push(body, undefined)!;
    untaken.finish(lost);
    await assert.rejects(answer.whole(), (e) => e === lost, "taken after it failed");
  });

  it("a small answer is returned whole; no message, a compressed one, or one over the limit is refused", () => {
    const small = new UnaryAnswerReader(100, 50, hooks());
    small.push(frame(Buffer.from("hi")), undefined);
    assert.deepEqual(small.finish(undefined), Buffer.from("hi"));

    const none = new UnaryAnswerReader(100, 50, hooks());
    const missing = none.finish(undefined);
    assert.ok(missing instanceof ConnectError && missing.code === Code.Internal);

    const compressed = frame(Buffer.from("hi"));
    compressed[0] = 1;
    assert.throws(
      () => new UnaryAnswerReader(100, 50, hooks()).push(compressed, undefined),
      (e: FrameError) => e.grpcCode === Code.Unimplemented,
    );
    assert.throws(
      () => new UnaryAnswerReader(100, 50, hooks()).push(frame(Buffer.alloc(101)), undefined),
      (e: FrameError) => e.grpcCode === Code.ResourceExhausted && /larger than max \(101 vs\. 100\)/.test(e.message),
    );
  });

  it("discard cancels the call, and whatever still arrives is dropped", () => {
    const h = hooks();
    const reader = new UnaryAnswerReader(1 << 20, 10, h);
    const body = frame(Buffer.alloc(2000, 3));
    const answer = reader.push(body.subarray(0, 1500), undefined)!;
    answer.discard();
    answer.discard();
    assert.equal(h.heard.cancelled, 1);
    reader.push(body.subarray(1500), undefined);
    assert.equal(reader.finish(undefined), undefined);
    assert.throws(() => answer.relay(new HoldingSink()), /taken twice/);
  });
});

describe("ReadLoan", () => {
  it("asks every borrower to let go once the read is done, and lends nothing after", () => {
    const memory = new ArrayBuffer(8);
    const loan = new ReadLoan(memory);
    const asked: string[] = [];
    const keeps: Borrower = { release: () => (asked.push("keeps"), false) };
    const copies: Borrower = { release: () => (asked.push("copies"), true) };
    assert.ok(loan.covers(new Uint8Array(memory, 2, 3)));
    assert.ok(!loan.covers(new Uint8Array(8)));
    assert.ok(loan.borrow(copies));
    assert.ok(loan.borrow(keeps));
    assert.ok(loan.borrow(copies), "a borrower registers once");
    assert.equal(loan.settle(), false, "one borrower kept the buffer");
    assert.deepEqual(asked, ["copies", "keeps"]);
    assert.equal(loan.borrow(copies), false, "a settled loan lends nothing: the caller copies");
  });
});

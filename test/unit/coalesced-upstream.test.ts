// Identical Ranges share calls to etcd, and never one sent before they
// arrived: against a fake etcd whose calls answer only when the test says,
// in any order the test picks.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Code, ConnectError } from "@connectrpc/connect";
import type { DescMethodUnary } from "@bufbuild/protobuf";
import type { CallContext } from "../../src/call-context.js";
import { CoalescedUpstream } from "../../src/coalescing/coalesced-upstream.js";
import { KV } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import type { RequestFrame } from "../../src/grpc/request-frame.js";
import { ArrivingAnswer, wholeAnswer, type Answer, type AnswerSink } from "../../src/upstream/answer.js";
import { UpstreamBase } from "../../src/upstream/upstream.js";

/** A call the fake etcd holds until the test answers it. */
interface HeldCall {
  method: DescMethodUnary;
  request: string;
  ctx: CallContext;
  /** The test's clock when the call was sent. */
  sentAt: number;
  answer(bytes: Answer): void;
  fail(err: Error): void;
}

class HoldingEtcd extends UpstreamBase {
  readonly calls: HeldCall[] = [];
  clock = 0;
  unaryBytes(method: DescMethodUnary, requestFrame: RequestFrame, ctx: CallContext): Promise<Answer> {
    return new Promise((resolve, reject) =>
      this.calls.push({
        method,
        request: Buffer.from(requestFrame as Buffer).toString(),
        ctx,
        sentAt: this.clock,
        answer: resolve,
        fail: reject,
      }),
    );
  }
  serverStreamBytes(): AsyncIterable<Buffer> {
    throw new Error("not in this test");
  }
  bidiStreamBytes(): AsyncIterable<Buffer> {
    throw new Error("not in this test");
  }
  unaryOnLeaderBytes(): Promise<Answer> {
    throw new Error("not in this test");
  }
  unaryOnEndpointBytes(): Promise<Answer> {
    throw new Error("not in this test");
  }
  endpoints() {
    return [];
  }
  statusOfEach(): Promise<never[]> {
    return Promise.resolve([]);
  }
  close(): void {}
}

const context = (headers: Record<string, string> = {}, deadline?: number) => {
  const controller = new AbortController();
  const ctx: CallContext = { forwardHeaders: headers, deadline, signal: controller.signal };
  return { ctx, cancel: () => controller.abort(new ConnectError("context canceled", Code.Canceled)) };
};
const range = (name: string) => Buffer.from(name);
const settle = () => new Promise((resolve) => setImmediate(resolve));
const text = async (answer: Promise<Answer>) => Buffer.from(await wholeAnswer(await answer)).toString();

function setUp() {
  const etcd = new HoldingEtcd();
  let shared = 0;
  const upstream = new CoalescedUpstream(etcd, (riders) => (shared += riders));
  const call = (request: string, ctx = context().ctx) =>
    upstream.unaryBytes(KV.method.range, range(request), ctx, () => true);
  return { etcd, upstream, call, shared: () => shared };
}

describe("coalesced Ranges", () => {
  it("a Range that comes while the same one is out waits, then shares one call with all who came meanwhile", async () => {
    const { etcd, call, shared } = setUp();
    const first = call("r");
    const riders = [call("r"), call("r"), call("r")];
    await settle();
    assert.equal(etcd.calls.length, 1, "nothing joins a call already sent");
    etcd.calls[0]!.answer(Buffer.from("at 5"));
    assert.equal(await text(first), "at 5");
    await settle();
    assert.equal(etcd.calls.length, 2, "the riders go in one call");
    etcd.calls[1]!.answer(Buffer.from("at 6"));
    assert.deepEqual(await Promise.all(riders.map(text)), ["at 6", "at 6", "at 6"]);
    assert.equal(shared(), 2);
    // Nothing is out any more: the next one goes at once.
    const later = call("r");
    await settle();
    assert.equal(etcd.calls.length, 3);
    etcd.calls[2]!.answer(Buffer.from("at 7"));
    assert.equal(await text(later), "at 7");
  });

  it("shares nothing between different requests, callers, or methods other than Range", async () => {
    const { etcd, upstream, call } = setUp();
    void call("a");
    void call("b");
    void call("a", context({ token: "alice" }).ctx);
    void call("a", context({ token: "bob" }).ctx);
    void call("a", context({ hasleader: "true" }).ctx);
    void upstream.unaryBytes(KV.method.put, range("a"), context().ctx, () => false);
    void upstream.unaryBytes(KV.method.put, range("a"), context().ctx, () => false);
    await settle();
    assert.equal(etcd.calls.length, 7);
  });

  it("a rider alone goes with its own context; riders together with their headers, the latest deadline and no pacing", async () => {
    const { etcd, call } = setUp();
    void call("r", context({ token: "t" }).ctx);
    void call("r", context({ token: "t" }, 1000).ctx);
    void call("r", context({ token: "t" }, 5000).ctx);
    void call("r", context({ token: "t" }, 3000).ctx);
    etcd.calls[0]!.answer(Buffer.from("x"));
    await settle();
    const together = etcd.calls[1]!.ctx;
    assert.deepEqual(together.forwardHeaders, { token: "t" });
    assert.equal(together.deadline, 5000);
    assert.equal(together.answers, undefined);
    const alone = context({ token: "t" }, 1000).ctx;
    void call("r", alone);
    etcd.calls[1]!.answer(Buffer.from("y"));
    await settle();
    assert.equal(etcd.calls[2]!.ctx, alone, "a lone rider keeps its own context (its pacing, its deadline)");
  });

  it("a rider that leaves before its call is sent is not waited for; a shared call is cancelled once all its riders left", async () => {
    const { etcd, call } = setUp();
    void call("r");
    const a = context();
    const b = context();
    const leaving = call("r", a.ctx);
    a.cancel();
    await assert.rejects(leaving, { code: Code.Canceled });
    etcd.calls[0]!.answer(Buffer.from("x"));
    await settle();
    assert.equal(etcd.calls.length, 1, "nobody was left to send for");

    void call("r");
    const c = context();
    const ridingB = call("r", b.ctx);
    const ridingC = call("r", c.ctx);
    etcd.calls[1]!.answer(Buffer.from("x"));
    await settle();
    const shared = etcd.calls[2]!;
    b.cancel();
    await assert.rejects(ridingB, { code: Code.Canceled });
    assert.equal(shared.ctx.signal.aborted, false, "one rider still waits");
    c.cancel();
    await assert.rejects(ridingC, { code: Code.Canceled });
    assert.equal(shared.ctx.signal.aborted, true);
  });

  it("a failed shared call fails every rider with etcd's error, and the next ones go on", async () => {
    const { etcd, call } = setUp();
    void call("r");
    const riders = [call("r"), call("r")];
    etcd.calls[0]!.answer(Buffer.from("x"));
    await settle();
    etcd.calls[1]!.fail(new ConnectError("etcdserver: request timed out", Code.Unavailable));
    for (const r of riders) await assert.rejects(r, { code: Code.Unavailable });
    const next = call("r");
    await settle();
    etcd.calls[2]!.answer(Buffer.from("ok"));
    assert.equal(await text(next), "ok");
  });

  it("a large answer still arriving reaches every rider whole, relayed or joined; etcd is cancelled only when all discard it", async () => {
    const { etcd, call } = setUp();
    void call("r");
    const riders = [call("r"), call("r"), call("r")];
    etcd.calls[0]!.answer(Buffer.from("x"));
    await settle();
    let cancelled = 0;
    const body = Buffer.from("0123456789abcdef");
    const arriving = new ArrivingAnswer(body.length, body.subarray(0, 4), {
      cancel: () => cancelled++,
      delivered: () => {},
    });
    arriving.arrived(body.subarray(0, 6), undefined);
    etcd.calls[1]!.answer(arriving);
    const [relayed, joined, discarded] = (await Promise.all(riders)) as ArrivingAnswer[];
    const pieces: Buffer[] = [];
    let ended = false;
    const sink: AnswerSink = { piece: (b) => void pieces.push(Buffer.from(b)), end: () => void (ended = true) };
    relayed!.relay(sink);
    const whole = joined!.whole();
    arriving.arrived(body.subarray(6), undefined);
    arriving.ended(undefined);
    assert.equal(Buffer.concat(pieces).toString(), body.toString());
    assert.ok(ended);
    assert.equal(Buffer.from(await whole).toString(), body.toString());
    discarded!.discard();
    assert.equal(cancelled, 0, "the others took theirs");

    // All three discard: etcd's call is cancelled.
    void call("q");
    const more = [call("q"), call("q")];
    etcd.calls[2]!.answer(Buffer.from("x"));
    await settle();
    const stillComing = new ArrivingAnswer(100, Buffer.alloc(4), { cancel: () => cancelled++, delivered: () => {} });
    etcd.calls[3]!.answer(stillComing);
    for (const copy of (await Promise.all(more)) as ArrivingAnswer[]) copy.discard();
    assert.equal(cancelled, 1);
  });

  it("a rider that left before a large answer came has its copy given up, so etcd's call ends once the rest discard theirs", async () => {
    const { etcd, call } = setUp();
    void call("r");
    const leaving = context();
    const gone = call("r", leaving.ctx);
    const staying = [call("r"), call("r")];
    etcd.calls[0]!.answer(Buffer.from("x"));
    await settle();
    leaving.cancel();
    await assert.rejects(gone, { code: Code.Canceled });
    let cancelled = 0;
    etcd.calls[1]!.answer(new ArrivingAnswer(100, Buffer.alloc(4), { cancel: () => cancelled++, delivered: () => {} }));
    for (const copy of (await Promise.all(staying)) as ArrivingAnswer[]) copy.discard();
    assert.equal(cancelled, 1);
  });

  it("a client not reading its answers rides nothing: its Range goes alone, paced; riders' room is given back once the answer is handed over", async () => {
    const { etcd, call } = setUp();
    /** A gate that counts what it holds, and admits ahead only when told. */
    const gate = (roomy: boolean) => {
      const g = {
        held: 0,
        admit: () => true,
        admitAhead: (bytes: number) => roomy && ((g.held += bytes), true),
        settle: (bytes: number) => void (g.held -= bytes),
        whenOpen: () => true,
      };
      return g;
    };
    const reading = [gate(true), gate(true)];
    const stalled = gate(false);
    const withGate = (g: ReturnType<typeof gate>): CallContext => ({ ...context().ctx, answers: g });
    void call("r");
    const riders = [call("r", withGate(reading[0]!)), call("r", withGate(reading[1]!)), call("r", withGate(stalled))];
    etcd.calls[0]!.answer(Buffer.from("x"));
    await settle();
    assert.equal(etcd.calls.length, 3, "one shared call, and the stalled client's own");
    const own = etcd.calls.find((c) => c.ctx.answers === stalled)!;
    const shared = etcd.calls.find((c) => c !== own && c !== etcd.calls[0])!;
    assert.ok(
      reading.every((g) => g.held > 0),
      "the riders' room is held while the answer comes",
    );
    const arriving = new ArrivingAnswer(8, Buffer.alloc(4), { cancel: () => {}, delivered: () => {} });
    shared.answer(arriving);
    own.answer(Buffer.from("own"));
    const [a, b, c] = await Promise.all(riders);
    assert.equal(Buffer.from(c as Uint8Array).toString(), "own");
    const whole = Promise.all([(a as ArrivingAnswer).whole(), (b as ArrivingAnswer).whole()]);
    assert.ok(reading.every((g) => g.held > 0));
    arriving.arrived(Buffer.from("12345678"), undefined);
    arriving.ended(undefined);
    assert.deepEqual(
      (await whole).map((w) => w.toString()),
      ["12345678", "12345678"],
    );
    assert.deepEqual(
      reading.map((g) => g.held),
      [0, 0],
      "every rider's room was given back",
    );
  });

  it("in any schedule, every Range is answered by a call sent after it came, at most one call per request is out, and every call is needed", async () => {
    type Step = { kind: "arrive"; request: number } | { kind: "answer"; which: number };
    const step: fc.Arbitrary<Step> = fc.oneof(
      fc.record({ kind: fc.constant("arrive" as const), request: fc.nat(2) }),
      fc.record({ kind: fc.constant("answer" as const), which: fc.nat(10) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 60 }), async (steps) => {
        const { etcd, call } = setUp();
        const arrivals: Array<{ request: string; at: number; answer: Promise<string> }> = [];
        const answered = new Set<HeldCall>();
        const out = () => etcd.calls.filter((c) => !answered.has(c));
        const answer = (c: HeldCall) => {
          answered.add(c);
          c.answer(Buffer.from(`${c.request}@${c.sentAt}`));
        };
        for (const s of [...steps, ...Array.from({ length: 40 }, () => ({ kind: "answer", which: 0 }) as Step)]) {
          etcd.clock++;
          if (s.kind === "arrive") {
            const request = `r${s.request}`;
            arrivals.push({ request, at: etcd.clock, answer: text(call(request)) });
          } else {
            const pending = out();
            if (pending.length) answer(pending[s.which % pending.length]!);
          }
          await settle();
          const outRequests = out().map((c) => c.request);
          assert.equal(new Set(outRequests).size, outRequests.length, "two calls for one request were out at once");
        }
        assert.equal(out().length, 0);
        for (const a of arrivals) {
          const [request, sentAt] = (await a.answer).split("@");
          assert.equal(request, a.request);
          assert.ok(Number(sentAt) >= a.at, `a Range that came at ${a.at} was answered by a call sent at ${sentAt}`);
        }
        assert.ok(etcd.calls.length <= arrivals.length, "a call went out for nobody");
      }),
      { numRuns: 200 },
    );
  });
});

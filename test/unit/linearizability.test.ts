// The robustness suite's linearizability checker, checked itself: histories
// made by running the model sequentially and then smearing each operation's
// interval around its moment always pass; the same histories with one
// answer falsified (a stale read, a lost write, a wrong revision) always
// fail, and the checker names the operation it could not place.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { checkLinearizable, type Operation } from "../robustness/linearizability.js";
import { apply, etcdModel, type EtcdRequest, type EtcdResponse, type StoreState } from "../robustness/etcd-model.js";

type Op = Operation<EtcdRequest, EtcdResponse>;

const key = fc.constantFrom("a", "b", "c");
const request: fc.Arbitrary<EtcdRequest> = fc.oneof(
  fc.record({ type: fc.constant("range" as const), key }),
  fc.constant<EtcdRequest>({ type: "range", key: "a", end: "z" }),
  fc.record({ type: fc.constant("put" as const), key, value: fc.constantFrom("1", "2", "3") }),
  fc.record({ type: fc.constant("put" as const), key, value: fc.constant("leased"), lease: fc.constantFrom(7, 8) }),
  fc.record({ type: fc.constant("delete" as const), key }),
  fc.record({
    type: fc.constant("txn" as const),
    key,
    modRevision: fc.integer({ min: 0, max: 6 }),
    value: fc.constant("cas"),
  }),
  fc.record({ type: fc.constant("grant" as const), lease: fc.constantFrom(7, 8) }),
  fc.record({ type: fc.constant("revoke" as const), lease: fc.constantFrom(7, 8) }),
);

/** A sequential run of the model: each request with its true answer and the state it saw. */
function run(requests: EtcdRequest[]): Array<{ request: EtcdRequest; response: EtcdResponse; before: StoreState }> {
  let state = etcdModel.init();
  return requests.map((r) => {
    const [next, response] = apply(state, r);
    const step = { request: r, response, before: state };
    state = next;
    return step;
  });
}

const SPACING = 10;

/**
 * Operation i took effect at SPACING * i; its interval spreads around that
 * moment by the widths given, so neighbours overlap and may be reordered by
 * the checker. Operations in `lost` never got an answer.
 */
function history(
  steps: ReturnType<typeof run>,
  widths: Array<[number, number]>,
  lost: ReadonlySet<number> = new Set(),
): Op[] {
  return steps.map((s, i) => {
    const [before, after] = widths[i % widths.length]!;
    const moment = SPACING * i;
    return {
      client: i % 4,
      input: s.request,
      call: moment - before,
      return: lost.has(i) ? Infinity : moment + after,
      output: lost.has(i) ? undefined : s.response,
    };
  });
}

const widths = fc.array(fc.tuple(fc.integer({ min: 0, max: 25 }), fc.integer({ min: 0, max: 25 })), {
  minLength: 1,
  maxLength: 8,
});

/** Makes operation `j` touch no other: everything else ends before it starts, or starts after it ends. */
function isolate(ops: Op[], j: number): Op[] {
  const moment = SPACING * j;
  return ops.map((op, i) => {
    if (i === j) return { ...op, call: moment - 1, return: moment + 1 };
    if (i < j) return { ...op, call: Math.min(op.call, moment - 2), return: Math.min(op.return, moment - 2) };
    return { ...op, call: Math.max(op.call, moment + 2), return: Math.max(op.return, moment + 2) };
  });
}

describe("the linearizability checker", () => {
  it("passes every history the sequential model produces, however its intervals overlap", () => {
    fc.assert(
      fc.property(fc.array(request, { minLength: 1, maxLength: 40 }), widths, (requests, w) => {
        const verdict = checkLinearizable(etcdModel, history(run(requests), w), 10_000);
        assert.equal(verdict.linearizable, true, JSON.stringify(verdict));
      }),
      { numRuns: 300 },
    );
  });

  it("passes when writes never got an answer: each may have happened or not", () => {
    fc.assert(
      fc.property(
        fc.array(request, { minLength: 1, maxLength: 30 }),
        widths,
        fc.array(fc.nat(29), { maxLength: 5 }),
        (requests, w, lostIndexes) => {
          const steps = run(requests);
          // A lost request that did not happen must not have been seen by anyone: only
          // writes nobody read after are dropped here; the others took effect.
          const lost = new Set(lostIndexes.filter((i) => i < steps.length && steps[i]!.request.type !== "range"));
          const verdict = checkLinearizable(etcdModel, history(steps, w, lost), 10_000);
          assert.equal(verdict.linearizable, true, JSON.stringify(verdict));
        },
      ),
      { numRuns: 300 },
    );
  });

  it("a lost write that nobody saw may never have happened", () => {
    const steps = run([
      { type: "put", key: "a", value: "1" },
      { type: "range", key: "a" },
    ]);
    const ops = history(steps, [[0, 0]]);
    // The put's answer never came, and the read after it found no key: the put did not happen.
    ops[0] = { ...ops[0]!, output: undefined, return: Infinity };
    ops[1] = { ...ops[1]!, output: { type: "range", revision: 1, kvs: [] } };
    assert.equal(checkLinearizable(etcdModel, ops).linearizable, true);
  });

  const faults: Array<[string, (s: ReturnType<typeof run>, j: number) => EtcdResponse | undefined]> = [
    [
      "a stale read (the key as it was before the last write to it)",
      (steps, j) => {
        const r = steps[j]!;
        if (r.request.type !== "range") return undefined;
        // The state before the most recent earlier write that changed what this read returns.
        for (let i = j - 1; i >= 0; i--) {
          const [, stale] = apply(steps[i]!.before, r.request);
          if (
            JSON.stringify((stale as { kvs: unknown }).kvs) !== JSON.stringify((r.response as { kvs: unknown }).kvs)
          ) {
            return stale;
          }
        }
        return undefined;
      },
    ],
    [
      "a lost write (acknowledged, then missing from a later read)",
      (steps, j) => {
        const r = steps[j]!;
        if (r.request.type !== "range" || r.response.type !== "range" || r.response.kvs.length === 0) return undefined;
        return { ...r.response, kvs: r.response.kvs.slice(1) };
      },
    ],
    [
      "a write answered with a revision it did not get",
      (steps, j) => {
        const r = steps[j]!;
        if (r.response.type !== "put") return undefined;
        return { ...r.response, revision: r.response.revision + 1 };
      },
    ],
    [
      "a compare-and-swap that claims the other outcome",
      (steps, j) => {
        const r = steps[j]!;
        if (r.response.type !== "txn") return undefined;
        return { ...r.response, succeeded: !r.response.succeeded };
      },
    ],
  ];

  for (const [name, plant] of faults) {
    it(`fails, naming the operation, on ${name}`, () => {
      let planted = 0;
      fc.assert(
        fc.property(fc.array(request, { minLength: 2, maxLength: 30 }), widths, fc.nat(), (requests, w, pick) => {
          const steps = run(requests);
          const j = pick % steps.length;
          const wrong = plant(steps, j);
          fc.pre(wrong !== undefined);
          planted++;
          const ops = isolate(history(steps, w), j);
          ops[j] = { ...ops[j]!, output: wrong };
          const verdict = checkLinearizable(etcdModel, ops, 10_000);
          assert.equal(verdict.linearizable, false, `planted at ${j}: ${JSON.stringify(wrong)}`);
          if (verdict.linearizable === false) assert.equal(verdict.stuck[0], j, JSON.stringify(verdict));
        }),
        { numRuns: 200 },
      );
      assert.ok(planted > 20, `only ${planted} histories took the fault`);
    });
  }

  it("decides a history of 2,000 operations from 8 clients well within its budget", () => {
    const requests = fc.sample(request, { numRuns: 2000, seed: 42 });
    const verdict = checkLinearizable(
      etcdModel,
      history(run(requests), [
        [15, 15],
        [5, 30],
        [30, 5],
      ]),
      30_000,
    );
    assert.equal(verdict.linearizable, true);
  });
});

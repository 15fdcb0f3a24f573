// The robustness suite's other checks, checked themselves: the model with
// other writers' revisions and with reads whose revision may lag (leasing),
// serializable reads against the revision they claim, unanswered writes
// settled from the truth, and a watch ended by a compaction.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { apply, emptyStore, eventsBetween, storeModel, type EtcdRequest } from "../robustness/etcd-model.js";
import { settleUnanswered } from "../robustness/history-patch.js";
import { checkLinearizable } from "../robustness/linearizability.js";
import { checkSerializableReads, type SerializableRead } from "../robustness/serializable-reads.js";
import { foreseenFailure, type Recorded } from "../robustness/traffic.js";
import { validateWatch, type TrueHistory } from "../robustness/watch-validation.js";
import type { RunReport } from "../robustness/runner.js";
import { problems } from "../robustness/suite.js";
import { padValue, unpadValue } from "../robustness/padding.js";

const key = fc.constantFrom("a", "b", "c");
const write: fc.Arbitrary<EtcdRequest> = fc.oneof(
  fc.record({ type: fc.constant("put" as const), key, value: fc.string({ minLength: 1, maxLength: 3 }) }),
  fc.record({ type: fc.constant("delete" as const), key }),
);
const request: fc.Arbitrary<EtcdRequest> = fc.oneof(write, fc.record({ type: fc.constant("range" as const), key }));

/**
 * Runs requests in order, one at a time, with other writers taking the
 * revisions in `foreign`; returns the history (each operation alone in
 * time) and the truth of the run's own keys.
 */
function sequential(requests: EtcdRequest[], foreign: ReadonlySet<number> = new Set()) {
  const after = (r: number) => {
    let next = r + 1;
    while (foreign.has(next)) next++;
    return next;
  };
  let state = emptyStore();
  const truth = new Map<number, ReturnType<typeof eventsBetween>>();
  const ops: Recorded[] = requests.map((input, i) => {
    const [next, output] = apply(state, input, after);
    const events = eventsBetween(state, next);
    if (events.length > 0) truth.set(next.revision, events);
    state = next;
    return { client: i % 3, input, call: 10 * i, return: 10 * i + 5, output };
  });
  return { ops, truth: truth as TrueHistory, last: state.revision };
}

describe("the model with other writers", () => {
  it("passes a history whose writes skipped the revisions other writers took", () => {
    fc.assert(
      fc.property(
        fc.array(request, { minLength: 1, maxLength: 30 }),
        fc.uniqueArray(fc.integer({ min: 2, max: 40 })),
        (rs, f) => {
          const foreign = new Set(f);
          const { ops } = sequential(rs, foreign);
          assert.equal(checkLinearizable(storeModel(emptyStore(), foreign), ops).linearizable, true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("fails it when it does not know of them", () => {
    const { ops } = sequential([{ type: "put", key: "a", value: "1" }], new Set([2]));
    assert.deepEqual(ops[0]!.output, { type: "put", revision: 3 });
    assert.equal(checkLinearizable(storeModel(emptyStore()), ops).linearizable, false);
  });

  it("lets a read's revision fall between its own and the next write's, not before, and not after", () => {
    const foreign = new Set([3, 4]);
    const { ops } = sequential(
      [
        { type: "put", key: "a", value: "1" },
        { type: "range", key: "a" },
        { type: "put", key: "a", value: "2" },
      ],
      foreign,
    );
    const withRevision = (revision: number) =>
      ops.map((op, i) =>
        i === 1 ? { ...op, output: { ...(op.output as { type: "range" }), revision } as never } : op,
      );
    const verdict = (revision: number, readsMayLag = false) =>
      checkLinearizable(storeModel(emptyStore(), foreign, { readsMayLag }), withRevision(revision)).linearizable;
    assert.deepEqual(
      [2, 3, 4].map((r) => verdict(r)),
      [true, true, true],
    );
    assert.equal(verdict(5), false, "the next write took 5");
    assert.equal(verdict(1), false, "the put before it took 2");
    assert.equal(
      verdict(1, true),
      true,
      "a lagging read keeps its keys current, and its revision is checked elsewhere",
    );
  });

  it("still fails a stale read when reads may lag", () => {
    const { ops } = sequential([
      { type: "put", key: "a", value: "1" },
      { type: "put", key: "a", value: "2" },
      { type: "range", key: "a" },
    ]);
    const stale = ops.map((op, i) =>
      i === 2
        ? {
            ...op,
            output: {
              type: "range" as const,
              revision: 2,
              kvs: [{ key: "a", value: "1", createRevision: 2, modRevision: 2, version: 1, lease: 0 }],
            },
          }
        : op,
    );
    assert.equal(
      checkLinearizable(storeModel(emptyStore(), new Set(), { readsMayLag: true }), stale).linearizable,
      false,
    );
  });
});

describe("serializable reads against the revision they claim", () => {
  /** A read of `key` at `revision`, as the store truly held it. */
  function trueRead(truth: TrueHistory, k: string, revision: number, client = 0): SerializableRead {
    let kv: { value: string; modRevision: number } | undefined;
    for (const [r, events] of [...truth].sort(([a], [b]) => a - b)) {
      if (r > revision) break;
      for (const e of events) if (e.key === k) kv = e.type === "PUT" ? { value: e.value, modRevision: r } : undefined;
    }
    const kvs = kv
      ? [{ key: k, value: kv.value, modRevision: kv.modRevision, createRevision: 0, version: 0, lease: 0 }]
      : [];
    return { client, key: k, call: 1000, return: 1001, revision, kvs };
  }

  it("passes reads at any past revision that return what the store held then, and counts the stale ones", () => {
    fc.assert(
      fc.property(
        fc.array(write, { minLength: 1, maxLength: 20 }),
        fc.array(fc.tuple(key, fc.nat()), { maxLength: 10 }),
        (ws, picks) => {
          const { ops, truth, last } = sequential(ws);
          const reads = picks.map(([k, n]) => trueRead(truth, k, 1 + (n % last)));
          const report = checkSerializableReads(reads, truth, ops, last);
          assert.deepEqual(report.untrue, []);
          assert.equal(report.stale, reads.filter((r) => r.revision < last).length);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("fails a read whose value is not the one at its revision, or whose revision had not happened", () => {
    const { ops, truth, last } = sequential([
      { type: "put", key: "a", value: "1" },
      { type: "put", key: "a", value: "2" },
    ]);
    const atTwo = trueRead(truth, "a", 2);
    const wrong = { ...atTwo, kvs: [{ ...atTwo.kvs[0]!, value: "2" }] };
    const future = { ...trueRead(truth, "a", last), revision: last + 1 };
    const report = checkSerializableReads([atTwo, wrong, future], truth, ops, last);
    assert.equal(report.untrue.length, 2, JSON.stringify(report.untrue));
    assert.match(report.untrue[0]!.detail, /read \[a=2@2\] at 2, the store held \[a=1@2\]/);
    assert.match(report.untrue[1]!.detail, /past 3/);
  });

  it("counts a read that goes back behind a Range answer already seen", () => {
    const { ops, truth, last } = sequential([
      { type: "put", key: "a", value: "1" },
      { type: "range", key: "a" },
      { type: "put", key: "a", value: "2" },
    ]);
    const late = { ...trueRead(truth, "a", 2), call: 100, return: 101 };
    const report = checkSerializableReads([late], truth, ops, last);
    assert.equal(report.backwards, 0, "the range answered at 2");
    assert.equal(report.stale, 1, "the put of 3 was acknowledged before");
  });
});

describe("unanswered writes settled from the truth", () => {
  const unanswered = (op: Recorded): Recorded => ({ ...op, output: undefined, return: Infinity });
  const lost = (input: Recorded["input"]): Recorded => ({
    client: 9,
    input,
    call: 0,
    return: Infinity,
    output: undefined,
  });

  it("gives a put the truth shows its revision, and leaves out one it never shows", () => {
    const { ops, truth } = sequential([
      { type: "put", key: "a", value: "1" },
      { type: "put", key: "b", value: "2" },
    ]);
    const never = lost({ type: "put", key: "a", value: "never" });
    const settled = settleUnanswered([unanswered(ops[0]!), ops[1]!, never], truth);
    assert.deepEqual(
      settled.map((op) => op.output),
      [
        { type: "put", revision: 2 },
        { type: "put", revision: 3 },
      ],
    );
    assert.equal(checkLinearizable(storeModel(emptyStore()), settled).linearizable, true);
  });

  it("leaves out a delete that deleted nothing and a grant nobody used; settles the one delete of a deletion", () => {
    const { ops, truth } = sequential([
      { type: "put", key: "a", value: "1" },
      { type: "delete", key: "a" },
      { type: "delete", key: "b" },
    ]);
    const grant = lost({ type: "grant", lease: 5 });
    const settled = settleUnanswered([ops[0]!, unanswered(ops[1]!), unanswered(ops[2]!), grant], truth);
    assert.deepEqual(
      settled.map((op) => op.output),
      [
        { type: "put", revision: 2 },
        { type: "delete", revision: 3, deleted: 1 },
      ],
    );
  });

  it("leaves a delete open when a revoke without an answer may have made the deletion", () => {
    const { ops, truth } = sequential([
      { type: "put", key: "a", value: "1" },
      { type: "delete", key: "a" },
    ]);
    const revoke = lost({ type: "revoke", lease: 5 });
    const settled = settleUnanswered([ops[0]!, unanswered(ops[1]!), revoke], truth);
    assert.equal(settled[1]!.output, undefined);
    assert.equal(settled.length, 3);
  });
});

describe("a watch ended by a compaction", () => {
  const truth: TrueHistory = new Map([
    [2, [{ type: "PUT", key: "a", value: "1", modRevision: 2, prevValue: undefined }]],
    [3, [{ type: "PUT", key: "a", value: "2", modRevision: 3, prevValue: "1" }]],
  ]);
  const request = { key: "a", startRevision: 2 };

  it("passes when the watch asked from before the compaction", () => {
    const responses = [
      { kind: "events" as const, events: [{ type: "PUT" as const, key: "a", value: "1", modRevision: 2 }] },
      { kind: "compacted" as const, revision: 4, requested: 3 },
    ];
    assert.deepEqual(validateWatch(request, responses, truth), []);
  });

  it("fails when the compaction did not reach where it asked from, or something came after", () => {
    const early = [{ kind: "compacted" as const, revision: 2, requested: 2 }];
    assert.deepEqual(
      validateWatch(request, early, truth).map((v) => v.rule),
      ["compacted"],
    );
    const after = [
      { kind: "compacted" as const, revision: 3, requested: 2 },
      { kind: "progress" as const, revision: 3 },
    ];
    assert.deepEqual(
      validateWatch(request, after, truth).map((v) => v.detail),
      ["responses after the cancel"],
    );
  });
});

describe("failed requests in the traffic", () => {
  it("count as done-nothing only when the model foresees the refusal; etcd's 'raft proposal dropped' stays open", () => {
    // A leader move under Kubernetes-like traffic through --namespace got UNKNOWN "raft proposal dropped"
    // for a few writes; recorded as definite errors, the model could not explain them (seed 1332855382).
    assert.equal(foreseenFailure(5), true, "NOT_FOUND: requested lease not found");
    assert.equal(foreseenFailure(9), true, "FAILED_PRECONDITION: lease already exists");
    for (const code of [1, 2, 4, 13, 14]) assert.equal(foreseenFailure(code), false, `code ${code}`);
  });
});

describe("what etcd itself does", () => {
  const report = (rule: "bookmarkable" | "ordered"): RunReport => ({
    targets: [],
    traffic: "kubernetes",
    seed: 1,
    operations: 100,
    unanswered: 0,
    watchEvents: 100,
    progressNotifications: 1,
    linearizable: true,
    watchViolations: [{ rule, watch: "live", revision: 5, detail: "progress at 7 came before the events of 5" }],
    serializableReads: 0,
    untrueReads: [],
    staleReads: 0,
    backwardReads: 0,
    slowWatchCompacted: false,
  });
  const proxy = { mode: "plain", addresses: [], namespace: "", ordersReads: false, readsMayLag: false } as never;

  it("excuses a progress answer ahead of owed events only on an etcd with issue 15220, and nothing else", () => {
    assert.deepEqual(problems(report("bookmarkable"), proxy, "3.4.23"), []);
    assert.deepEqual(problems(report("bookmarkable"), proxy, "3.5.7"), []);
    assert.equal(problems(report("bookmarkable"), proxy, "3.4.25").length, 1);
    assert.equal(problems(report("bookmarkable"), proxy, "3.5.30").length, 1);
    assert.equal(problems(report("ordered"), proxy, "3.4.23").length, 1);
  });
});

describe("what etcd itself does under the compaction fault", () => {
  const report = (violation: { revision: number; detail: string }, compactedUpTo?: number): RunReport => ({
    targets: [],
    traffic: "etcd",
    seed: 1,
    operations: 100,
    unanswered: 0,
    watchEvents: 100,
    progressNotifications: 0,
    linearizable: true,
    watchViolations: [{ rule: "prev_kv", watch: "live", ...violation }],
    serializableReads: 0,
    untrueReads: [],
    staleReads: 0,
    backwardReads: 0,
    slowWatchCompacted: false,
    compactedUpTo,
  });
  const proxy = { mode: "plain", addresses: [], namespace: "", ordersReads: false, readsMayLag: false } as never;

  it("excuses a prev_kv etcd left out because the revision before the event was compacted", () => {
    assert.deepEqual(
      problems(report({ revision: 90, detail: "k1: prev_kv undefined, was 7-12" }, 95), proxy, "3.4.23"),
      [],
    );
  });

  it("does not excuse a prev_kv left out above the compaction, nor a wrong one, nor any without the fault", () => {
    assert.equal(
      problems(report({ revision: 99, detail: "k1: prev_kv undefined, was 7-12" }, 95), proxy, "3.5.30").length,
      1,
    );
    assert.equal(
      problems(report({ revision: 90, detail: "k1: prev_kv 3-4, was 7-12" }, 95), proxy, "3.5.30").length,
      1,
    );
    assert.equal(
      problems(report({ revision: 90, detail: "k1: prev_kv undefined, was 7-12" }), proxy, "3.5.30").length,
      1,
    );
  });
});

describe("padded values (--value-bytes)", () => {
  it("read back bare when intact, and as a value nobody wrote when a byte is lost, changed or borrowed", () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[0-9]{1,3}-[0-9]{1,5}$/),
        fc.stringMatching(/^[0-9]{1,3}-[0-9]{1,5}$/),
        fc.integer({ min: 64, max: 30_000 }),
        fc.nat(),
        (bare, other, bytes, at) => {
          const padded = padValue(bare, bytes);
          assert.equal(Buffer.byteLength(padded), bytes);
          assert.equal(unpadValue(padded), bare);
          const i = at % bytes;
          const changed = padded.slice(0, i) + (padded[i] === "x" ? "y" : "x") + padded.slice(i + 1);
          assert.notEqual(unpadValue(changed), bare, "a changed byte");
          assert.notEqual(unpadValue(padded.slice(0, i)), bare, "cut short");
          if (other !== bare) {
            const mixed = padded.slice(0, i) + padValue(other, bytes).slice(i);
            if (mixed !== padded) assert.notEqual(unpadValue(mixed), bare, "bytes of another value");
          }
        },
      ),
    );
    assert.equal(padValue("1-2", 4), "1-2", "too short to pad: bare");
    assert.equal(unpadValue("1-2"), "1-2");
  });
});

// The robustness suite's watch validation, checked itself: a watch that
// delivers the store's true history, in any grouping into responses and with
// progress notifications where etcd may send them, passes; one planted fault
// (two events swapped, one missing or repeated, a revision split, a progress
// notification ahead of its events, a wrong prev_kv) fails on its rule.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { apply, etcdModel, eventsBetween, type EtcdRequest } from "../robustness/etcd-model.js";
import {
  trueHistory,
  validateWatch,
  type TrueHistory,
  type WatchRequestShape,
  type WatchResponseShape,
  type WatchRule,
  type WatchedEvent,
} from "../robustness/watch-validation.js";

const key = fc.constantFrom("a", "b", "c", "d");
const write: fc.Arbitrary<EtcdRequest> = fc.oneof(
  fc.record({ type: fc.constant("put" as const), key, value: fc.constantFrom("1", "2", "3") }),
  fc.record({ type: fc.constant("put" as const), key, value: fc.constant("leased"), lease: fc.constant(7) }),
  fc.record({ type: fc.constant("delete" as const), key }),
  fc.constant<EtcdRequest>({ type: "grant", lease: 7 }),
  fc.constant<EtcdRequest>({ type: "revoke", lease: 7 }),
);

/** The true history of a sequential run of writes. */
function truthOf(requests: EtcdRequest[]): { truth: TrueHistory; head: number } {
  let state = etcdModel.init();
  const truth = new Map<number, ReturnType<typeof eventsBetween>>();
  for (const r of requests) {
    const [next] = apply(state, r);
    const events = eventsBetween(state, next);
    if (events.length > 0) truth.set(next.revision, events);
    state = next;
  }
  return { truth, head: state.revision };
}

interface Delivery {
  request: WatchRequestShape;
  responses: WatchResponseShape[];
}

/** A correct delivery: every wanted revision whole, grouped by `cuts`, with progress where `progress` says. */
function deliver(
  truth: TrueHistory,
  head: number,
  request: WatchRequestShape,
  cuts: boolean[],
  progress: boolean[],
): Delivery {
  const inRange = (k: string) => (request.end === undefined ? k === request.key : k >= request.key && k < request.end);
  const responses: WatchResponseShape[] = [{ kind: "created", revision: 1 }];
  let pending: WatchedEvent[] = [];
  let i = 0;
  for (let r = 2; r <= head; r++) {
    const events = (truth.get(r) ?? []).filter((e) => inRange(e.key));
    pending.push(...events.map((e) => ({ ...e, prevValue: request.prevKv ? e.prevValue : undefined })));
    const cut = cuts[i % cuts.length]!;
    const tell = progress[i % progress.length]!;
    i++;
    if (pending.length > 0 && (cut || r === head)) {
      responses.push({ kind: "events", events: pending });
      pending = [];
    }
    // etcd may tell progress once everything up to r has gone out.
    if (tell && pending.length === 0) responses.push({ kind: "progress", revision: r });
  }
  return { request, responses };
}

interface Scenario {
  writes: EtcdRequest[];
  cuts: boolean[];
  progress: boolean[];
  prevKv: boolean;
  single: boolean;
}

const scenario: fc.Arbitrary<Scenario> = fc.record({
  writes: fc.array(write, { minLength: 3, maxLength: 40 }),
  cuts: fc.array(fc.boolean(), { minLength: 1, maxLength: 6 }),
  progress: fc.array(fc.boolean(), { minLength: 1, maxLength: 6 }),
  prevKv: fc.boolean(),
  single: fc.boolean(),
});

function setUp(s: Scenario): { truth: TrueHistory; delivery: Delivery } {
  const { truth, head } = truthOf(s.writes);
  const request: WatchRequestShape = s.single
    ? { key: "b", startRevision: 0, prevKv: s.prevKv }
    : { key: "a", end: "z", startRevision: 0, prevKv: s.prevKv };
  return { truth, delivery: deliver(truth, head, request, s.cuts, s.progress) };
}

type Plant = (responses: WatchResponseShape[]) => { responses: WatchResponseShape[]; revision: number } | undefined;

const eventResponses = (responses: WatchResponseShape[]) =>
  responses.flatMap((r, index) => (r.kind === "events" ? [{ index, events: r.events }] : []));

const faults: Array<[WatchRule, string, Plant]> = [
  [
    "ordered",
    "two revisions swapped within a response",
    (responses) => {
      for (const { index, events } of eventResponses(responses)) {
        const at = events.findIndex((e, i) => i > 0 && e.modRevision !== events[i - 1]!.modRevision);
        if (at < 1) continue;
        const swapped = [...events];
        [swapped[at - 1], swapped[at]] = [swapped[at]!, swapped[at - 1]!];
        const out = [...responses];
        out[index] = { kind: "events", events: swapped };
        return { responses: out, revision: events[at - 1]!.modRevision };
      }
      return undefined;
    },
  ],
  [
    "reliable",
    "a revision missing, with later events delivered",
    (responses) => {
      const all = eventResponses(responses);
      for (const { index, events } of all.slice(0, -1)) {
        const revision = events[0]!.modRevision;
        const out = [...responses];
        const rest = events.filter((e) => e.modRevision !== revision);
        out[index] = { kind: "events", events: rest };
        if (rest.length === 0) out.splice(index, 1);
        return { responses: out, revision };
      }
      return undefined;
    },
  ],
  [
    "unique",
    "an event repeated in the next response",
    (responses) => {
      const all = eventResponses(responses);
      if (all.length < 2) return undefined;
      const [first, second] = [all[0]!, all[1]!];
      const again = first.events[first.events.length - 1]!;
      const out = [...responses];
      out[second.index] = { kind: "events", events: [again, ...second.events] };
      return { responses: out, revision: again.modRevision };
    },
  ],
  [
    "atomic",
    "a revision split across two responses",
    (responses) => {
      for (const { index, events } of eventResponses(responses)) {
        const at = events.findIndex((e, i) => i > 0 && e.modRevision === events[i - 1]!.modRevision);
        if (at < 1) continue;
        const out = [...responses];
        out.splice(
          index,
          1,
          { kind: "events", events: events.slice(0, at) },
          { kind: "events", events: events.slice(at) },
        );
        return { responses: out, revision: events[at]!.modRevision };
      }
      return undefined;
    },
  ],
  [
    "bookmarkable",
    "a progress notification ahead of the events it vouches for",
    (responses) => {
      const all = eventResponses(responses);
      const target = all[all.length - 1];
      if (!target) return undefined;
      const revision = target.events[0]!.modRevision;
      const out = [...responses];
      out.splice(target.index, 0, { kind: "progress", revision });
      return { responses: out, revision };
    },
  ],
  [
    "prev_kv",
    "a wrong prev_kv",
    (responses) => {
      for (const { index, events } of eventResponses(responses)) {
        const at = events.findIndex((e) => e.prevValue !== undefined);
        if (at < 0) continue;
        const out = [...responses];
        const changed = [...events];
        changed[at] = { ...events[at]!, prevValue: `${events[at]!.prevValue}!` };
        out[index] = { kind: "events", events: changed };
        return { responses: out, revision: events[at]!.modRevision };
      }
      return undefined;
    },
  ],
];

describe("watch validation", () => {
  it("passes every faithful delivery, however grouped, with progress where etcd may send it", () => {
    fc.assert(
      fc.property(scenario, (s) => {
        const { truth, delivery } = setUp(s);
        assert.deepEqual(validateWatch(delivery.request, delivery.responses, truth), []);
      }),
      { numRuns: 500 },
    );
  });

  for (const [rule, name, plant] of faults) {
    it(`fails on ${name}, by the rule "${rule}", at its revision`, () => {
      let planted = 0;
      fc.assert(
        fc.property(scenario, (s) => {
          const { truth, delivery } = setUp({ ...s, prevKv: rule === "prev_kv" ? true : s.prevKv });
          const fault = plant(delivery.responses);
          fc.pre(fault !== undefined);
          planted++;
          const violations = validateWatch(delivery.request, fault.responses, truth);
          assert.ok(
            violations.some((v) => v.rule === rule && v.revision === fault.revision),
            `${rule} at ${fault.revision}: ${JSON.stringify(violations)}`,
          );
        }),
        { numRuns: 300 },
      );
      assert.ok(planted > 30, `only ${planted} deliveries took the fault`);
    });
  }

  it("filters: a PUT to a watch that filters PUTs is a violation", () => {
    const { truth, head } = truthOf([{ type: "put", key: "a", value: "1" }]);
    const request: WatchRequestShape = { key: "a", startRevision: 0, noPut: true };
    const honest = deliver(truth, head, request, [true], [false]).responses.map((r) =>
      r.kind === "events" ? { ...r, events: r.events.filter((e) => e.type !== "PUT") } : r,
    );
    assert.deepEqual(validateWatch(request, honest, truth), []);
    const leaked = deliver(truth, head, { key: "a", startRevision: 0 }, [true], [false]).responses;
    assert.ok(validateWatch(request, leaked, truth).some((v) => v.rule === "filter"));
  });

  it("the truth: a prev_kv etcd left out of the truth watch is what the key's previous event there says", () => {
    // Found by a soak with 70 KB values: etcd sent the truth watch events after a compaction
    // passed the revisions before them, without prev_kv; the proxy's watches had it.
    const put = (key: string, value: string, modRevision: number, prevValue?: string): WatchedEvent => ({
      type: "PUT",
      key: `s/${key}`,
      value,
      modRevision,
      prevValue,
    });
    const { truth, foreign } = trueHistory(
      [
        { kind: "created", revision: 1 },
        { kind: "events", events: [put("k", "1", 2), put("j", "x", 3)] },
        { kind: "events", events: [{ type: "DELETE", key: "s/k", value: "", modRevision: 4, prevValue: "1" }] },
        { kind: "events", events: [put("k", "2", 5), put("other", "o", 6), put("k", "3", 7), put("j", "y", 8, "x")] },
      ],
      "s/",
    );
    assert.deepEqual([...foreign], []);
    const prevAt = (revision: number) => truth.get(revision)![0]!.prevValue;
    assert.equal(prevAt(2), undefined, "nothing before the first event");
    assert.equal(prevAt(5), undefined, "deleted before");
    assert.equal(prevAt(7), "2", "filled from the key's previous event");
    assert.equal(prevAt(8), "x", "etcd's own, when it sent one");
    const request: WatchRequestShape = { key: "", end: "\u{10ffff}", startRevision: 2, prevKv: true };
    const delivered: WatchResponseShape[] = [
      { kind: "events", events: [...truth.values()].flat().map((e) => ({ ...e })) },
    ];
    assert.deepEqual(validateWatch(request, delivered, truth), []);
  });
});

// The replica's Range against a model written line by line from etcd's
// apply step (applierV3backend.Range): for random keys and requests, an
// answer from memory is the model's, and only sorts etcd cannot be known to
// order are sent away.
import { create, fromBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  RangeRequestSchema,
  RangeRequest_SortOrder as SortOrder,
  RangeRequest_SortTarget as SortTarget,
  RangeResponseSchema,
  ResponseHeaderSchema,
  type RangeRequest,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { KeyValueSchema, type KeyValue } from "../../src/gen/etcd/api/mvccpb/kv_pb.js";
import { answerRange } from "../../src/replica/range-answer.js";
import { ReplicaStore } from "../../src/replica/replica-store.js";

const b = (s: string) => Buffer.from(s, "latin1");
const s = (u: Uint8Array) => Buffer.from(u).toString("latin1");
const header = create(ResponseHeaderSchema, { clusterId: 7n, memberId: 9n, raftTerm: 3n, revision: 100n });

/** etcd's Range over `all` (sorted by key), as its applier computes it. */
function model(all: KeyValue[], r: RangeRequest): { kvs: KeyValue[]; more: boolean; count: bigint } {
  const key = s(r.key);
  const end = s(r.rangeEnd);
  const inRange = all.filter((kv) => {
    const k = s(kv.key);
    if (end === "") return k === key;
    if (end === "\0") return k >= key;
    return k >= key && k < end;
  });
  if (r.countOnly) return { kvs: [], more: false, count: BigInt(inRange.length) };
  let limit = Number(r.limit);
  const filters = r.minModRevision || r.maxModRevision || r.minCreateRevision || r.maxCreateRevision;
  if (r.sortOrder !== SortOrder.NONE || filters) limit = 0;
  if (limit > 0) limit += 1;
  let kvs = limit > 0 ? inRange.slice(0, limit) : [...inRange];
  if (r.maxModRevision) kvs = kvs.filter((kv) => !(kv.modRevision > r.maxModRevision));
  if (r.minModRevision) kvs = kvs.filter((kv) => !(kv.modRevision < r.minModRevision));
  if (r.maxCreateRevision) kvs = kvs.filter((kv) => !(kv.createRevision > r.maxCreateRevision));
  if (r.minCreateRevision) kvs = kvs.filter((kv) => !(kv.createRevision < r.minCreateRevision));
  let order = r.sortOrder;
  if (r.sortTarget !== SortTarget.KEY && order === SortOrder.NONE) order = SortOrder.ASCEND;
  if (order !== SortOrder.NONE) {
    const value = (kv: KeyValue): bigint | string =>
      r.sortTarget === SortTarget.VERSION
        ? kv.version
        : r.sortTarget === SortTarget.CREATE
          ? kv.createRevision
          : r.sortTarget === SortTarget.MOD
            ? kv.modRevision
            : r.sortTarget === SortTarget.VALUE
              ? s(kv.value)
              : s(kv.key);
    // An insertion sort, as Go's sort.Sort runs on 12 elements or fewer.
    const less = (a: KeyValue, c: KeyValue) => (order === SortOrder.ASCEND ? value(a) < value(c) : value(c) < value(a));
    for (let i = 1; i < kvs.length; i++)
      for (let j = i; j > 0 && less(kvs[j]!, kvs[j - 1]!); j--) [kvs[j - 1], kvs[j]] = [kvs[j]!, kvs[j - 1]!];
  }
  let more = false;
  if (r.limit > 0n && kvs.length > Number(r.limit)) {
    kvs = kvs.slice(0, Number(r.limit));
    more = true;
  }
  if (r.keysOnly) kvs = kvs.map((kv) => ({ ...kv, value: new Uint8Array(0) }));
  return { kvs, more, count: BigInt(inRange.length) };
}

const letters = fc.constantFrom("a", "b", "c", "d", "\0", "\xff");
const keyArb = fc.array(letters, { minLength: 1, maxLength: 3 }).map((l) => l.join(""));
const storeArb = fc.uniqueArray(
  fc.record({
    key: keyArb,
    value: fc.constantFrom("", "x", "y", "zz"),
    create: fc.integer({ min: 2, max: 40 }),
    bump: fc.integer({ min: 0, max: 30 }),
    version: fc.integer({ min: 1, max: 4 }),
    lease: fc.constantFrom(0, 0, 5),
  }),
  { selector: (r) => r.key, maxLength: 30 },
);
const revisionArb = fc.constantFrom(0, 0, 5, 20, 41);
const requestArb = fc.record({
  key: keyArb,
  end: fc.oneof(fc.constant(""), fc.constant("\0"), keyArb),
  limit: fc.constantFrom(0, 0, 1, 2, 5, 40),
  sortOrder: fc.constantFrom(0, 0, 1, 2),
  sortTarget: fc.constantFrom(0, 0, 1, 2, 3, 4),
  keysOnly: fc.boolean(),
  countOnly: fc.constantFrom(false, false, false, true),
  minMod: revisionArb,
  maxMod: revisionArb,
  minCreate: revisionArb,
  maxCreate: revisionArb,
});

describe("answerRange", () => {
  it("answers as etcd's apply step does, or sends the request away only for sorts etcd orders unpredictably", () => {
    fc.assert(
      fc.property(storeArb, requestArb, (rows, q) => {
        const store = new ReplicaStore();
        const kvs = rows.map((row) =>
          create(KeyValueSchema, {
            key: b(row.key),
            value: b(row.value),
            createRevision: BigInt(row.create),
            modRevision: BigInt(row.create + row.bump),
            version: BigInt(row.version),
            lease: BigInt(row.lease),
          }),
        );
        for (const kv of kvs) store.put(kv);
        const sorted = [...kvs].sort((x, y) => (s(x.key) < s(y.key) ? -1 : 1));
        const request = create(RangeRequestSchema, {
          key: b(q.key),
          rangeEnd: b(q.end),
          limit: BigInt(q.limit),
          sortOrder: q.sortOrder,
          sortTarget: q.sortTarget,
          keysOnly: q.keysOnly,
          countOnly: q.countOnly,
          minModRevision: BigInt(q.minMod),
          maxModRevision: BigInt(q.maxMod),
          minCreateRevision: BigInt(q.minCreate),
          maxCreateRevision: BigInt(q.maxCreate),
        });
        const answer = answerRange(store.span(request.key, request.rangeEnd), request, header);
        const expected = model(sorted, request);
        if (answer.kind === "unanswerable") {
          assert.notEqual(request.sortTarget, SortTarget.KEY, answer.reason);
          return;
        }
        const got = fromBinary(RangeResponseSchema, answer.bytes);
        assert.deepEqual(got.header, header);
        assert.equal(got.more, expected.more);
        assert.equal(got.count, expected.count);
        assert.deepEqual(
          got.kvs.map((kv) => [s(kv.key), s(kv.value), kv.createRevision, kv.modRevision, kv.version, kv.lease]),
          expected.kvs.map((kv) => [s(kv.key), s(kv.value), kv.createRevision, kv.modRevision, kv.version, kv.lease]),
        );
      }),
      { numRuns: 3000 },
    );
  });

  it("keeps etcd's bytes: each KV in the answer is the KeyValue as etcd encodes it", () => {
    const store = new ReplicaStore();
    const kv = create(KeyValueSchema, { key: b("k"), value: b("v"), createRevision: 2n, modRevision: 3n, version: 2n });
    store.put(kv);
    const request = create(RangeRequestSchema, { key: b("k") });
    const answer = answerRange(store.span(request.key, request.rangeEnd), request, header);
    assert.equal(answer.kind, "answer");
    const got = fromBinary(RangeResponseSchema, (answer as { bytes: Uint8Array }).bytes);
    assert.equal(got.count, 1n);
    assert.deepEqual(got.kvs[0], kv);
  });

  it("forgets deleted keys and replaces updated ones", () => {
    const store = new ReplicaStore();
    store.put(create(KeyValueSchema, { key: b("a"), value: b("1") }));
    store.put(create(KeyValueSchema, { key: b("b"), value: b("2") }));
    store.put(create(KeyValueSchema, { key: b("a"), value: b("3") }));
    store.delete(b("b"));
    store.delete(b("nothing"));
    assert.deepEqual(
      store.all().map((e) => [e.id, s(e.kv.value)]),
      [["a", "3"]],
    );
    assert.ok(store.bytes > 0);
    store.delete(b("a"));
    assert.equal(store.bytes, 0);
  });
});

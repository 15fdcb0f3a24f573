import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { keyInterval, overlaps } from "../../src/util/key-range.js";
import { RangeCache } from "../../src/cache/range-cache.js";
import { headerRevision, leadingHeaderRevision } from "../../src/grpc/header-revision.js";
import { create, toBinary } from "@bufbuild/protobuf";
import { RangeResponseSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";

const b = (s: string) => Buffer.from(s, "latin1");
const NONE = new Uint8Array(0);
const one = (k: string) => keyInterval(b(k), NONE);
const range = (k: string, end: string) => keyInterval(b(k), b(end));
const response = (s: string) => b(s);

describe("key intervals", () => {
  it("read etcd's conventions: one key, [key, end), and \\0 as the end of the keyspace", () => {
    assert.ok(overlaps(one("a"), range("a", "b")));
    assert.ok(!overlaps(one("b"), range("a", "b")));
    assert.ok(overlaps(one("zzz"), range("a", "\0")), "from-key reaches every later key");
    assert.ok(overlaps(range("\0", "\0"), one("k")), "the whole keyspace holds every key");
    assert.ok(!overlaps(one("a"), range("b", "\0")));
    assert.ok(!overlaps(one("a"), one("a\0")), "a and a\\0 are different keys");
  });
});

describe("range cache", () => {
  const limits = { maxBytes: 1 << 20, maxEntries: 100, ttlMs: 1000 };

  it("serves a fill until its TTL, then forgets it", () => {
    const c = new RangeCache(limits);
    c.fill("id", one("k"), response("v"), 1n, c.startFill(), 0);
    assert.equal(c.lookup("id", 999)?.toString(), "v");
    assert.equal(c.lookup("id", 1001), undefined);
    assert.equal(c.stats.entries, 0);
  });

  it("invalidates single keys, ranges, from-key and whole-keyspace entries that overlap a write", () => {
    const c = new RangeCache(limits);
    const fill = (id: string, i: ReturnType<typeof one>) => c.fill(id, i, response(id), 1n, c.startFill(), 0);
    fill("k", one("k"));
    fill("other", one("other"));
    fill("prefix", range("k", "l"));
    fill("fromkey", range("j", "\0"));
    fill("all", range("\0", "\0"));
    c.invalidate(one("k"));
    assert.deepEqual(
      ["k", "other", "prefix", "fromkey", "all"].filter((id) => c.lookup(id, 1)),
      ["other"],
    );
    fill("k2", one("k2"));
    c.invalidate(range("a", "\0")); // a from-key delete
    assert.equal(c.lookup("k2", 1), undefined);
    assert.ok(c.lookup("other", 1) === undefined, "other lies after a, so it goes too");
  });

  it("drops a fill that raced an overlapping invalidation, keeps one that did not", () => {
    const c = new RangeCache(limits);
    const started = c.startFill();
    c.invalidate(one("k"));
    c.fill("k", one("k"), response("old"), 1n, started, 0);
    assert.equal(c.lookup("k", 1), undefined, "the old value stays out");
    const started2 = c.startFill();
    c.invalidate(one("x"));
    c.fill("k", one("k"), response("new"), 1n, started2, 0);
    assert.equal(c.lookup("k", 1)?.toString(), "new");
  });

  it("evicts least recently used entries within its entry and byte budgets", () => {
    const c = new RangeCache({ maxBytes: 1 << 20, maxEntries: 3, ttlMs: 1000 });
    for (const k of ["a", "b", "c"]) c.fill(k, one(k), response(k), 1n, c.startFill(), 0);
    c.lookup("a", 1); // a becomes most recent
    c.fill("d", one("d"), response("d"), 1n, c.startFill(), 0);
    assert.deepEqual(
      ["a", "b", "c", "d"].filter((k) => c.lookup(k, 2)),
      ["a", "c", "d"],
    );

    const small = new RangeCache({ maxBytes: 2000, maxEntries: 1000, ttlMs: 1000 });
    for (let i = 0; i < 50; i++) small.fill(`k${i}`, one(`k${i}`), Buffer.alloc(100), 1n, small.startFill(), 0);
    assert.ok(small.stats.bytes <= 2000);
    assert.ok(small.stats.entries < 50);
  });

  it("a million distinct ranges leave it no bigger than its budget, index included", () => {
    const c = new RangeCache({ maxBytes: 1 << 20, maxEntries: 1000, ttlMs: 60_000 });
    for (let i = 0; i < 1_000_000; i++) {
      const k = `key/${i}`;
      const interval = i % 10 === 0 ? range(k, `${k}0`) : one(k);
      c.fill(k, interval, response("v"), 1n, c.startFill(), 0);
      if (i % 1000 === 0) c.invalidate(one(`key/${i - 1}`));
    }
    assert.ok(c.stats.entries <= 1000);
    const internals = c as unknown as { byKey: Map<string, unknown>; ranges: Set<unknown>; recent: unknown[] };
    assert.ok(internals.byKey.size + internals.ranges.size === c.stats.entries, "the index holds only live entries");
    assert.ok(internals.recent.length <= 1024);
  });

  it("sweeps expired entries out of the index", () => {
    const c = new RangeCache(limits);
    for (let i = 0; i < 10; i++) c.fill(`k${i}`, one(`k${i}`), response("v"), 1n, c.startFill(), 0);
    c.sweep(5000);
    assert.equal(c.stats.entries, 0);
    assert.equal(c.stats.bytes, 0);
  });

  it("drops entries read before the invalidation watch started (they may have missed writes)", () => {
    const c = new RangeCache(limits);
    c.fill("old", one("old"), response("v"), 5n, c.startFill(), 0);
    c.fill("new", one("new"), response("v"), 9n, c.startFill(), 0);
    c.dropOlderThan(9n);
    assert.deepEqual(
      ["old", "new"].filter((id) => c.lookup(id, 1)),
      ["new"],
    );
  });
});

describe("header revision", () => {
  it("is read from an encoded response without decoding its keys", () => {
    const r = create(RangeResponseSchema, {
      header: { clusterId: 2n ** 63n, memberId: 7n, revision: 123456789n, raftTerm: 4n },
      kvs: [{ key: Buffer.from("k"), value: Buffer.alloc(1000, "v"), modRevision: 5n }],
      count: 1n,
    });
    assert.equal(headerRevision(toBinary(RangeResponseSchema, r)), 123456789n);
    assert.equal(headerRevision(new Uint8Array(0)), 0n);
  });
  it("is read from the first kilobyte of an answer still arriving, where the whole-message reader finds none", () => {
    const r = create(RangeResponseSchema, {
      header: { clusterId: 2n ** 63n, memberId: 7n, revision: 987654321n, raftTerm: 4n },
      kvs: Array.from({ length: 50 }, (_, i) => ({ key: Buffer.from(`k${i}`), value: Buffer.alloc(4000, "v") })),
      count: 50n,
    });
    const head = toBinary(RangeResponseSchema, r).subarray(0, 1024);
    assert.equal(leadingHeaderRevision(head), 987654321n);
    assert.equal(headerRevision(head), 0n, "the cut-off key-value is not a well-formed message");
    assert.equal(leadingHeaderRevision(head.subarray(0, 5)), 0n, "a header cut short");
  });
});

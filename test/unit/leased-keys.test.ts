import { create } from "@bufbuild/protobuf";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  RangeRequestSchema,
  RangeResponseSchema,
  ResponseHeaderSchema,
} from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { KeyValueSchema } from "../../src/gen/etcd/api/mvccpb/kv_pb.js";
import { filtered, LeasedKeys, REACQUIRE_BACKOFF_MS } from "../../src/leasing/leased-keys.js";

const bytes = (s: string) => new Uint8Array(Buffer.from(s));
const header = (revision: number) => create(ResponseHeaderSchema, { revision: BigInt(revision) });
const answerOf = (key: string, value: string | undefined, revision: number) =>
  create(RangeResponseSchema, {
    header: header(revision),
    kvs:
      value === undefined
        ? []
        : [
            create(KeyValueSchema, {
              key: bytes(key),
              value: bytes(value),
              createRevision: 2n,
              modRevision: BigInt(revision),
              version: 1n,
            }),
          ],
    count: value === undefined ? 0n : 1n,
  });
const request = (key: string, extra: Record<string, unknown> = {}) =>
  create(RangeRequestSchema, { key: bytes(key), ...extra });

describe("leased keys", () => {
  it("answers an owned key with etcd's view of it, and nothing for others", async () => {
    const keys = new LeasedKeys();
    keys.own(bytes("a"), answerOf("a", "1", 5), 5n);
    const held = await keys.answer(request("a"));
    assert.equal(Buffer.from(held!.kvs[0]!.value).toString(), "1");
    assert.equal(await keys.answer(request("b")), undefined);
  });

  it("keeps the owner's own put and delete current: value, versions, revisions", async () => {
    const keys = new LeasedKeys();
    keys.own(bytes("a"), answerOf("a", "1", 5), 5n);
    keys.put(bytes("a"), bytes("2"), header(7));
    let kv = (await keys.answer(request("a")))!.kvs[0]!;
    assert.deepEqual([kv.createRevision, kv.modRevision, kv.version], [2n, 7n, 2n]);
    // An older answer never overwrites a newer one.
    keys.put(bytes("a"), bytes("old"), header(6));
    assert.equal(Buffer.from((await keys.answer(request("a")))!.kvs[0]!.value).toString(), "2");
    keys.deleted(bytes("a"), header(8));
    assert.deepEqual((await keys.answer(request("a")))!.kvs, []);
    keys.put(bytes("a"), bytes("3"), header(9));
    kv = (await keys.answer(request("a")))!.kvs[0]!;
    assert.deepEqual([kv.createRevision, kv.modRevision, kv.version], [9n, 9n, 1n]);
  });

  it("holds readers of a key while the owner writes it", async () => {
    const keys = new LeasedKeys();
    keys.own(bytes("a"), answerOf("a", "1", 5), 5n);
    let finish!: () => void;
    const writing = keys.writing([bytes("a")], async () => {
      await new Promise<void>((r) => (finish = r));
      keys.put(bytes("a"), bytes("2"), header(6));
    });
    const read = keys.answer(request("a"));
    finish();
    await writing;
    assert.equal(Buffer.from((await read)!.kvs[0]!.value).toString(), "2");
  });

  it("does not take back a key within the backoff, nor own one etcd took back after the acquisition", () => {
    const keys = new LeasedKeys();
    keys.own(bytes("a"), answerOf("a", "1", 5), 5n);
    keys.giveUp(bytes("a"), 9n, 1_000);
    assert.equal(keys.mayAcquire(bytes("a"), 1_000 + REACQUIRE_BACKOFF_MS - 1), false);
    keys.own(bytes("a"), answerOf("a", "1", 8), 8n); // an acquisition older than the revoke
    assert.equal(keys.owns(bytes("a")), false);
    keys.own(bytes("a"), answerOf("a", "1", 10), 10n);
    assert.equal(keys.owns(bytes("a")), true);
    assert.equal(keys.mayAcquire(bytes("a"), 1_000 + REACQUIRE_BACKOFF_MS), true);
  });

  it("lists owned keys within a range by etcd's byte order", () => {
    const keys = new LeasedKeys();
    for (const k of ["a", "b/1", "b/2", "c", "\xff"]) keys.own(bytes(k), answerOf(k, "x", 5), 5n);
    const names = (ks: Uint8Array[]) => ks.map((k) => Buffer.from(k).toString()).sort();
    assert.deepEqual(names(keys.ownedIn(bytes("b/"), bytes("b0"))), ["b/1", "b/2"]);
    assert.deepEqual(names(keys.ownedIn(bytes("c"), new Uint8Array())), ["c"]);
    assert.equal(keys.ownedIn(bytes("b"), Uint8Array.of(0)).length, 4);
  });

  it("filters as etcd does: keys-only, count-only, revision bounds keep the count", () => {
    const answer = answerOf("a", "1", 5);
    assert.deepEqual(filtered(answer, request("a", { keysOnly: true })).kvs[0]!.value, new Uint8Array());
    const countOnly = filtered(answer, request("a", { countOnly: true }));
    assert.deepEqual([countOnly.kvs.length, countOnly.count], [0, 1n]);
    assert.equal(filtered(answer, request("a", { minModRevision: 6n })).kvs.length, 0);
    assert.equal(filtered(answer, request("a", { maxModRevision: 4n })).kvs.length, 0);
    assert.equal(filtered(answer, request("a", { minCreateRevision: 3n })).kvs.length, 0);
    assert.equal(filtered(answer, request("a", { maxCreateRevision: 2n })).kvs.length, 1);
  });
});

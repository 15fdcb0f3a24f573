// Group commit for revision checks: every read gets the answer of a check
// sent after it arrived; reads that arrive while a check is out share the
// next one; batches do not mix.
import { create } from "@bufbuild/protobuf";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ResponseHeaderSchema, type ResponseHeader } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.js";
import { FreshnessBarrier } from "../../src/replica/freshness-barrier.js";

/** A fake etcd whose revision the test moves, answering checks when told. */
function fakeChecks() {
  let revision = 10n;
  const pending: Array<{ sentAt: bigint; answer(): void }> = [];
  return {
    write: () => revision++,
    check: () =>
      new Promise<ResponseHeader>((resolve) => {
        const sentAt = revision;
        pending.push({ sentAt, answer: () => resolve(create(ResponseHeaderSchema, { revision })) });
      }),
    answerAll: () => {
      for (const p of pending.splice(0)) p.answer();
    },
    get sent() {
      return pending.length;
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));

describe("FreshnessBarrier", () => {
  it("one check serves the reads that came before it; later reads wait for the next", async () => {
    const etcd = fakeChecks();
    const barrier = new FreshnessBarrier();
    const first = [barrier.current("a", etcd.check), barrier.current("a", etcd.check)];
    await tick();
    assert.equal(etcd.sent, 1, "reads of one turn of the event loop share one check");
    // A write acknowledged now, then a read: it must not get the check that was sent before it.
    etcd.write();
    const later = barrier.current("a", etcd.check);
    await tick();
    assert.equal(etcd.sent, 1, "no second check while one is out");
    etcd.answerAll();
    const answered = await Promise.all(first);
    assert.deepEqual(
      answered.map((h) => h.revision),
      [11n, 11n],
    );
    await tick();
    assert.equal(etcd.sent, 1, "the waiting read's check went out after the first came back");
    etcd.answerAll();
    assert.ok((await later).revision >= 11n);
  });

  it("batches by key, and a failed check fails only its own reads", async () => {
    const barrier = new FreshnessBarrier();
    let calls = 0;
    const failing = () => {
      calls++;
      return Promise.reject(new Error("permission denied"));
    };
    const fine = () => {
      calls++;
      return Promise.resolve(create(ResponseHeaderSchema, { revision: 5n }));
    };
    const denied = barrier.current("user-a", failing);
    const allowed = barrier.current("user-b", fine);
    await assert.rejects(denied, /permission denied/);
    assert.equal((await allowed).revision, 5n);
    assert.equal(calls, 2);
    // Nothing left over: the next read sends a new check.
    assert.equal((await barrier.current("user-b", fine)).revision, 5n);
    assert.equal(calls, 3);
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AsyncQueue } from "../../src/util/async-queue.js";

async function drain<T>(queue: AsyncIterable<T>): Promise<{ items: T[]; error?: unknown }> {
  const items: T[] = [];
  try {
    for await (const item of queue) items.push(item);
    return { items };
  } catch (error) {
    return { items, error };
  }
}

describe("AsyncQueue", () => {
  it("hands over items pushed before and while the consumer waits, then ends", async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    const consumed = drain(q);
    await Promise.resolve();
    q.push(2);
    setTimeout(() => {
      q.push(3);
      q.end();
      q.push(4); // after the end: ignored
    }, 5);
    assert.deepEqual(await consumed, { items: [1, 2, 3] });
  });

  it("delivers what is queued before a failure, then throws it", async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    q.push(2);
    q.fail(new Error("boom"));
    const { items, error } = await drain(q);
    assert.deepEqual(items, [1, 2]);
    assert.equal((error as Error).message, "boom");
  });

  it("tracks the weight of what is not yet taken, and tells its hooks", async () => {
    let taken = 0;
    let finished = 0;
    const q = new AsyncQueue<string>({ taken: () => taken++, finished: () => finished++ });
    q.push("a", 10);
    q.push("b", 5);
    assert.equal(q.weight, 15);
    const it = q[Symbol.asyncIterator]();
    assert.deepEqual(await it.next(), { done: false, value: "a" });
    assert.equal(q.weight, 5);
    assert.equal(taken, 0, "taken once the consumer comes back for more");
    assert.deepEqual(await it.next(), { done: false, value: "b" });
    assert.equal(taken, 1);
    await it.return!();
    await it.return!();
    assert.equal(finished, 1, "finished once, when the consumer leaves");
    assert.deepEqual(await it.next(), { done: true, value: undefined });
  });

  it("says whether an item is still waiting, and lets its weight grow until it is taken", async () => {
    const q = new AsyncQueue<string>();
    const a = q.push("a", 10);
    const b = q.push("b", 5);
    assert.ok(q.holds(a) && q.holds(b));
    q.addWeight(b, 7);
    assert.equal(q.weight, 22);
    const it = q[Symbol.asyncIterator]();
    await it.next();
    assert.ok(!q.holds(a), "taken");
    assert.ok(q.holds(b));
    q.addWeight(b, 1);
    assert.equal(q.weight, 13);
    await it.next();
    assert.ok(!q.holds(b));
    assert.equal(q.weight, 0);
    assert.ok(!q.holds(q.push("c") + 1), "not pushed yet");
    q.end();
    assert.equal(q.push("d"), -1, "an ended queue takes nothing");
  });

  it("lets the producer replace a waiting item, and see each item as it is taken", async () => {
    const seen: string[] = [];
    const q = new AsyncQueue<string>({ taking: (item) => seen.push(item) });
    const a = q.push("a", 3);
    q.push("b");
    q.replace(a, "a2");
    assert.equal(q.weight, 3, "the weight stays with the place");
    const it = q[Symbol.asyncIterator]();
    assert.deepEqual(await it.next(), { done: false, value: "a2" });
    assert.deepEqual(seen, ["a2"]);
    await it.next();
    assert.deepEqual(seen, ["a2", "b"]);
  });

  it("with wakeLater, a waiting consumer comes a macrotask later, when all pushed meanwhile is still queued", async () => {
    const q = new AsyncQueue<string>({ wakeLater: true });
    const it = q[Symbol.asyncIterator]();
    const first = it.next();
    const a = q.push("a");
    await Promise.resolve();
    await Promise.resolve();
    assert.ok(q.holds(a), "not taken within the producer's macrotask");
    q.push("b");
    assert.deepEqual(await first, { done: false, value: "a" });
    assert.deepEqual(await it.next(), { done: false, value: "b" }, "what is queued is taken at once");
  });

  it("keeps taking in O(1) as a long queue drains", async () => {
    const q = new AsyncQueue<number>();
    for (let i = 0; i < 5000; i++) q.push(i);
    q.end();
    const { items } = await drain(q);
    assert.equal(items.length, 5000);
    assert.equal(items[4999], 4999);
  });
});

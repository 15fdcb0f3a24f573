import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EndpointPool, normalizeEndpoint } from "../../src/upstream/endpoint-pool.js";

function pool(n: number, start = 0) {
  let now = 1000;
  const p = new EndpointPool(
    Array.from({ length: n }, (_, i) => ({ url: `e${i}`, client: i })),
    { backoffMinMs: 100, backoffMaxMs: 1000, now: () => now, random: () => start / n },
  );
  return { p, advance: (ms: number) => (now += ms) };
}

describe("EndpointPool", () => {
  it("sync keeps the endpoints still listed (client, health, current), adds new ones and returns those that left", () => {
    const { p } = pool(3, 1);
    p.markFailed(p.endpoints[2]!);
    const kept = p.endpoints[2]!;
    let made = 0;
    const removed = p.sync(["e1", "e2", "e9"], () => 100 + made++);
    assert.deepEqual(
      removed.map((e) => e.url),
      ["e0"],
    );
    assert.deepEqual(
      p.endpoints.map((e) => [e.url, e.client]),
      [
        ["e1", 1],
        ["e2", 2],
        ["e9", 100],
      ],
    );
    assert.equal(p.current.url, "e1", "the current endpoint stays current");
    assert.equal(p.endpoints[1], kept, "a kept endpoint keeps its health");
    assert.ok(!p.isUp(kept));
  });

  it("sync moves off a current endpoint that left, to one that is up; an empty list changes nothing", () => {
    const { p } = pool(2, 0);
    p.sync(["e1", "e5"], () => 5);
    assert.equal(p.current.url, "e1");
    p.markFailed(p.current);
    assert.equal(p.current.url, "e5");
    assert.deepEqual(
      p.sync([], () => 0),
      [],
    );
    assert.deepEqual(
      p.endpoints.map((e) => e.url),
      ["e1", "e5"],
    );
    p.sync(["e7", "e1"], () => 7);
    assert.equal(p.current.url, "e7", "e1 is still backing off");
  });

  it("starts on the randomly chosen endpoint and stays there", () => {
    const { p } = pool(3, 2);
    assert.equal(p.current.url, "e2");
    assert.equal(p.pick()!.url, "e2");
  });

  it("moves off a failed endpoint to the next one", () => {
    const { p } = pool(3, 0);
    p.markFailed(p.current);
    assert.equal(p.current.url, "e1");
    assert.equal(p.pick()!.url, "e1");
  });

  it("skips endpoints the call already tried", () => {
    const { p } = pool(3, 0);
    const tried = new Set([p.endpoints[0]!, p.endpoints[1]!]);
    assert.equal(p.pick(tried)!.url, "e2");
    tried.add(p.endpoints[2]!);
    assert.equal(p.pick(tried), undefined);
  });

  it("when all are down, offers the one that comes back first", () => {
    const { p, advance } = pool(2, 0);
    p.markFailed(p.endpoints[0]!); // down 100 ms
    p.markFailed(p.endpoints[1]!);
    p.markFailed(p.endpoints[1]!); // down 200 ms
    assert.equal(p.pick()!.url, "e0");
    advance(150);
    assert.ok(p.isUp(p.endpoints[0]!));
    assert.ok(!p.isUp(p.endpoints[1]!));
  });

  it("backs off exponentially up to the cap", () => {
    const { p, advance } = pool(1);
    const e = p.endpoints[0]!;
    for (let i = 0; i < 10; i++) p.markFailed(e);
    advance(999);
    assert.ok(!p.isUp(e));
    advance(1);
    assert.ok(p.isUp(e));
  });

  it("a success clears the failure and makes a working endpoint current", () => {
    const { p } = pool(2, 0);
    p.markFailed(p.endpoints[0]!);
    p.markFailed(p.endpoints[1]!);
    p.markHealthy(p.endpoints[0]!);
    assert.equal(p.current.url, "e0");
    assert.equal(p.endpoints[0]!.failures, 0);
    assert.ok(p.isUp(p.endpoints[0]!));
  });
});

describe("normalizeEndpoint", () => {
  it("adds http:// like etcd does, keeps https://", () => {
    assert.equal(normalizeEndpoint("127.0.0.1:2379"), "http://127.0.0.1:2379");
    assert.equal(normalizeEndpoint(" https://etcd.example:2379/ "), "https://etcd.example:2379");
    assert.equal(normalizeEndpoint("[::1]:2379"), "http://[::1]:2379");
  });
});

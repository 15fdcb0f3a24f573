// Lease keep-alive coalescing against a fake etcd: every renewal is answered
// with etcd's own answer for its lease, renewals of a lease in flight at once
// become one upstream renewal, each caller identity gets a stream of its own,
// a stream lost with its endpoint is reopened and its renewals sent again,
// and etcd's own error reaches every waiting client.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Code, ConnectError } from "@connectrpc/connect";
import { KeepAliveCoalescer } from "../../src/keepalive/keepalive-coalescer.js";
import { createMetrics } from "../../src/metrics.js";
import { upstreamFailure } from "../../src/upstream/errors.js";
import { FakeEtcd } from "./fake-etcd.js";

function setUp() {
  const etcd = new FakeEtcd();
  for (const [id, ttl] of [
    [1n, 10n],
    [2n, 20n],
    [3n, 30n],
  ] as const)
    etcd.leases.set(id, ttl);
  return { etcd, coalescer: new KeepAliveCoalescer(etcd, createMetrics().lease) };
}

describe("lease keep-alive coalescing", () => {
  it("answers every renewal with etcd's answer for its lease, one upstream renewal per lease in flight", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom(1n, 2n, 3n, 4n), { minLength: 1, maxLength: 40 }), async (ids) => {
        const { etcd, coalescer } = setUp();
        try {
          const answers = await Promise.all(ids.map((id) => coalescer.renewOnce(id, {})));
          answers.forEach((a, i) => {
            assert.equal(a.ID, ids[i]);
            assert.equal(a.TTL, etcd.leases.get(ids[i]!) ?? 0n, "an unknown lease answers TTL 0, as etcd does");
          });
          assert.equal(etcd.renewals, new Set(ids).size, "sent all at once, each lease is renewed once");
          assert.equal(etcd.keepAliveStreams.length, 1);
        } finally {
          coalescer.close();
        }
      }),
      { numRuns: 100 },
    );
  });

  it("keeps each caller identity on a stream of its own", async () => {
    const { etcd, coalescer } = setUp();
    try {
      await Promise.all([
        coalescer.renewOnce(1n, {}),
        coalescer.renewOnce(1n, { token: "alice" }),
        coalescer.renewOnce(1n, { token: "bob" }),
      ]);
      assert.deepEqual(etcd.keepAliveStreams.map((h) => h["token"]).sort(), ["alice", "bob", undefined]);
      assert.equal(etcd.renewals, 3, "nobody's renewal rides another identity's stream");
    } finally {
      coalescer.close();
    }
  });

  it("sends the renewals of a stream lost with its endpoint again on a new one", async () => {
    const { etcd, coalescer } = setUp();
    try {
      etcd.breakKeepAlive = { after: 0, error: upstreamFailure("connection-lost", "connection lost") };
      const answers = await Promise.all([coalescer.renewOnce(1n, {}), coalescer.renewOnce(2n, {})]);
      assert.deepEqual(
        answers.map((a) => a.TTL),
        [10n, 20n],
      );
      assert.equal(etcd.keepAliveStreams.length, 2);
    } finally {
      coalescer.close();
    }
  });

  it("fails every waiting renewal with etcd's own error", async () => {
    const { etcd, coalescer } = setUp();
    try {
      etcd.breakKeepAlive = { after: 0, error: new ConnectError("etcdserver: no leader", Code.Unavailable) };
      const results = await Promise.allSettled([coalescer.renewOnce(1n, {}), coalescer.renewOnce(1n, {})]);
      for (const r of results) {
        assert.equal(r.status, "rejected");
        assert.match(String((r as PromiseRejectedResult).reason), /no leader/);
      }
      assert.equal(etcd.keepAliveStreams.length, 1, "etcd's refusal is not retried");
    } finally {
      coalescer.close();
    }
  });
});

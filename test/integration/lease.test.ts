// Lease keep-alive coalescing against real etcd: N client streams become one
// upstream stream, answers are prompt and exact, and leases expire on time.
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { openStreams } from "../helpers/etcd.js";
import { loseQuorum, memberInUse, useProxy } from "../helpers/fixture.js";
import { EtcdGrpcClient } from "../helpers/grpc-client.js";
import { proxyMetric } from "../helpers/metrics.js";

type Answer = { ID: string; TTL: string };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A client LeaseKeepAlive stream whose answers can be awaited one by one. */
function keepAliveStream(client: EtcdGrpcClient, metadata = new grpc.Metadata()) {
  const call = client.stream("Lease", "LeaseKeepAlive", metadata);
  const answers: Answer[] = [];
  let wake: (() => void) | undefined;
  let status: { code: number; details: string } | undefined;
  call.on("data", (a: Answer) => {
    answers.push(a);
    wake?.();
  });
  const ended = new Promise<{ code: number; details: string }>((resolve) => {
    call.on("status", (s) => {
      status = { code: s.code, details: s.details };
      wake?.();
      resolve(status);
    });
  });
  call.on("error", () => {});
  return {
    send: (id: string) => call.write({ ID: id }),
    halfClose: () => call.end(),
    cancel: () => call.cancel(),
    ended,
    async next(timeoutMs = 10_000): Promise<Answer> {
      const until = Date.now() + timeoutMs;
      while (answers.length === 0) {
        if (status) throw new Error(`stream ended: ${status.code} ${status.details}`);
        if (Date.now() > until) throw new Error("no keep-alive answer in time");
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 50);
        });
      }
      return answers.shift()!;
    },
  };
}

async function grant(client: EtcdGrpcClient, ttl: number, count = 1): Promise<string[]> {
  const ids: string[] = [];
  while (ids.length < count) {
    const batch = Math.min(100, count - ids.length);
    ids.push(
      ...(await Promise.all(
        Array.from({ length: batch }, async () => String((await client.unary("Lease", "LeaseGrant", { TTL: ttl })).ID)),
      )),
    );
  }
  return ids;
}

describe("lease keep-alive coalescing, single member", () => {
  const f = useProxy(1);

  it("1000 clients, each with its own lease, cost etcd one keep-alive stream", async () => {
    const etcdUrl = f.etcd.members[0]!.clientUrl;
    const baseline = await openStreams(etcdUrl, "LeaseKeepAlive");
    const ids = await grant(f.direct, 60, 1000);
    const clients = Array.from({ length: 10 }, () => new EtcdGrpcClient(f.proxy.address));
    const streams = ids.map((_, i) => keepAliveStream(clients[i % clients.length]!));
    try {
      ids.forEach((id, i) => streams[i]!.send(id));
      const answers = await Promise.all(streams.map((s) => s.next()));
      answers.forEach((a, i) => {
        assert.equal(a.ID, ids[i]);
        assert.ok(Number(a.TTL) > 0 && Number(a.TTL) <= 60);
      });
      assert.equal(await openStreams(etcdUrl, "LeaseKeepAlive"), baseline + 1, "etcd sees one keep-alive stream");
      assert.equal(await proxyMetric(f.proxy.address, "etcd_grpc_proxy_lease_keepalive_client_streams"), 1000);
      assert.equal(await proxyMetric(f.proxy.address, "etcd_grpc_proxy_lease_keepalive_upstream_streams"), 1);
    } finally {
      streams.forEach((s) => s.cancel());
      clients.forEach((c) => c.close());
    }
  });

  it("closes the upstream keep-alive stream once no client renews for a while, and opens one again when needed", async () => {
    const etcdUrl = f.etcd.members[0]!.clientUrl;
    const [id] = await grant(f.direct, 60);
    const stream = keepAliveStream(f.client);
    try {
      stream.send(id!);
      assert.equal((await stream.next()).ID, id);
      assert.ok((await openStreams(etcdUrl, "LeaseKeepAlive")) >= 1);
    } finally {
      stream.cancel();
    }
    // The client left; after the idle time (10 s) the proxy's stream to etcd goes too.
    const until = Date.now() + 15_000;
    while ((await openStreams(etcdUrl, "LeaseKeepAlive")) > 0) {
      assert.ok(Date.now() < until, "the upstream keep-alive stream stayed open with no client");
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(await proxyMetric(f.proxy.address, "etcd_grpc_proxy_lease_keepalive_upstream_streams"), 0);
    const again = keepAliveStream(f.client);
    try {
      again.send(id!);
      assert.equal((await again.next()).ID, id);
    } finally {
      again.cancel();
    }
  });

  it("a burst of keep-alives for one lease shares renewals, and every one is answered", async () => {
    const [id] = await grant(f.direct, 60);
    const before = await proxyMetric(f.proxy.address, "etcd_grpc_proxy_lease_renewals_sent_total");
    const stream = keepAliveStream(f.client);
    try {
      for (let i = 0; i < 200; i++) stream.send(id!);
      for (let i = 0; i < 200; i++) assert.equal((await stream.next()).ID, id);
      const renewals = (await proxyMetric(f.proxy.address, "etcd_grpc_proxy_lease_renewals_sent_total")) - before;
      assert.ok(renewals >= 1 && renewals < 200, `${renewals} renewals for 200 keep-alives`);
    } finally {
      stream.cancel();
    }
  });

  it("an unknown lease answers TTL 0, as etcd does", async () => {
    const viaProxy = keepAliveStream(f.client);
    const viaEtcd = keepAliveStream(f.direct);
    try {
      viaProxy.send("987654321");
      viaEtcd.send("987654321");
      const [p, d] = await Promise.all([viaProxy.next(), viaEtcd.next()]);
      assert.deepEqual({ ID: p.ID, TTL: p.TTL }, { ID: "987654321", TTL: "0" });
      assert.deepEqual({ ID: p.ID, TTL: p.TTL }, { ID: d.ID, TTL: d.TTL });
    } finally {
      viaProxy.cancel();
      viaEtcd.cancel();
    }
  });

  it("a lease expires TTL after its last keep-alive, as it would direct (TTL 3 s, within 1 s)", async () => {
    const timeToExpiry = async (keepAliveVia: EtcdGrpcClient, key: string) => {
      const [id] = await grant(f.direct, 3);
      await f.direct.unary("KV", "Put", { key: Buffer.from(key), value: Buffer.from("v"), lease: id });
      const stream = keepAliveStream(keepAliveVia);
      stream.send(id!);
      await stream.next();
      const last = Date.now();
      // The stream stays open: the proxy must not keep renewing on its own.
      try {
        for (;;) {
          const res = await f.direct.unary("KV", "Range", { key: Buffer.from(key) });
          if ((res.kvs as unknown[]).length === 0) return (Date.now() - last) / 1000;
          assert.ok(Date.now() - last < 15_000, "the key never expired");
          await sleep(100);
        }
      } finally {
        stream.cancel();
      }
    };
    const [viaProxy, direct] = await Promise.all([
      timeToExpiry(f.client, "lease/expiry/proxy"),
      timeToExpiry(f.direct, "lease/expiry/direct"),
    ]);
    assert.ok(Math.abs(viaProxy - direct) <= 1, `expired after ${viaProxy} s through the proxy, ${direct} s direct`);
  });

  it("after a half-close, pending answers arrive and the stream ends OK", async () => {
    const [id] = await grant(f.direct, 60);
    const stream = keepAliveStream(f.client);
    stream.send(id!);
    stream.halfClose();
    assert.equal((await stream.next()).ID, id);
    assert.equal((await stream.ended).code, grpc.status.OK);
  });

  it("the other lease RPCs keep etcd's answers", async () => {
    const [id] = await grant(f.client, 60);
    const ttl = (await f.client.unary("Lease", "LeaseTimeToLive", { ID: id, keys: true })) as { grantedTTL: string };
    assert.equal(ttl.grantedTTL, "60");
    const leases = (await f.client.unary("Lease", "LeaseLeases", {})) as { leases: Array<{ ID: string }> };
    assert.ok(leases.leases.some((l) => l.ID === id));
    await f.client.unary("Lease", "LeaseRevoke", { ID: id });
    const gone = (await f.client.unary("Lease", "LeaseTimeToLive", { ID: id })) as { TTL: string };
    assert.equal(gone.TTL, "-1", "etcd's TimeToLive answer for a revoked lease");
  });
});

describe("lease keep-alive coalescing, 3 members", () => {
  const f = useProxy(3);

  it("killing the member that carries the shared stream expires no lease", async () => {
    const [id] = await grant(f.direct, 4);
    await f.direct.unary("KV", "Put", { key: Buffer.from("lease/failover"), value: Buffer.from("v"), lease: id });
    const stream = keepAliveStream(f.client);
    try {
      stream.send(id!);
      await stream.next();
      const victim = memberInUse(f.proxy, f.etcd);
      await f.etcd.kill(victim);
      // Keep the lease alive every second for longer than its TTL.
      for (let i = 0; i < 6; i++) {
        await sleep(1000);
        stream.send(id!);
        const answer = await stream.next();
        assert.equal(answer.ID, id);
        assert.ok(Number(answer.TTL) > 0, `keep-alive ${i} answered TTL ${answer.TTL}`);
      }
      const survivor = new EtcdGrpcClient(f.etcd.members.find((m) => m !== victim)!.endpoint);
      const res = await survivor.unary("KV", "Range", { key: Buffer.from("lease/failover") });
      survivor.close();
      assert.equal((res.kvs as unknown[]).length, 1, "the leased key is still there");
      await f.etcd.restart(victim);
    } finally {
      stream.cancel();
    }
  });
});

describe("lease keep-alive when the cluster has no leader", () => {
  const f = useProxy(3);

  it("a client that requires a leader gets etcd's 'no leader' error", async () => {
    const [id] = await grant(f.direct, 60);
    await loseQuorum(f.etcd);
    const requireLeader = new grpc.Metadata();
    requireLeader.set("hasleader", "true");
    const stream = keepAliveStream(f.client, requireLeader);
    stream.send(id!);
    assert.deepEqual(await stream.ended, { code: grpc.status.UNAVAILABLE, details: "etcdserver: no leader" });
  });
});

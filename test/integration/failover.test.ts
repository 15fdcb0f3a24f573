// Failover between --endpoints, hidden from clients, against real etcd
// clusters whose members are killed with SIGKILL.
//
// Lane-independent: npm test runs it in the fast lane only, since
// failover is upstream's.
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { startEtcd, type EtcdMember } from "../helpers/etcd.js";
import { memberInUse, useProxy } from "../helpers/fixture.js";
import { ctl } from "../helpers/etcdctl.js";
import { EtcdGrpcClient, outcome } from "../helpers/grpc-client.js";
import { freePort } from "../helpers/ports.js";
import { startTestProxy } from "../helpers/proxy.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function statusOf(m: EtcdMember): Promise<{ leader: string; header: { member_id: string } }> {
  const c = new EtcdGrpcClient(m.endpoint);
  try {
    return (await c.unary("Maintenance", "Status", {})) as { leader: string; header: { member_id: string } };
  } finally {
    c.close();
  }
}

describe("3-member cluster", () => {
  const f = useProxy(3);

  it("every get succeeds while the member in use is killed", async () => {
    await f.client.unary("KV", "Put", { key: Buffer.from("fo/k"), value: Buffer.from("v") });
    const victim = memberInUse(f.proxy, f.etcd);
    let ok = 0;
    const failures: string[] = [];
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        try {
          const res = await f.client.unary("KV", "Range", { key: Buffer.from("fo/k") });
          assert.equal((res.kvs as Array<{ value: Buffer }>)[0]!.value.toString(), "v");
          ok++;
        } catch (e) {
          failures.push(String(e));
        }
      }
    })();
    await sleep(500);
    await f.etcd.kill(victim);
    const okAtKill = ok;
    await sleep(2500);
    stop = true;
    await loop;
    assert.deepEqual(failures, []);
    assert.ok(okAtKill > 0 && ok > okAtKill, `gets before the kill: ${okAtKill}, in total: ${ok}`);
    assert.notEqual(memberInUse(f.proxy, f.etcd), victim, "the proxy moved to another member");

    // etcdctl keeps working too, and writes go through.
    assert.equal(await ctl(f.proxy.address, ["put", "fo/after", "yes"]), "OK\n");
    assert.equal(await ctl(f.proxy.address, ["get", "fo/after", "--print-value-only"]), "yes\n");
    await f.etcd.restart(victim);
  });

  it("a write whose endpoint is down before sending is retried on another member", async () => {
    // Kill a follower: when the leader dies, etcd itself times out writes in
    // flight ("request timed out, possibly due to previous leader failure"),
    // and those must not be repeated.
    let victim = memberInUse(f.proxy, f.etcd);
    const { leader, header } = await statusOf(victim);
    if (leader === header.member_id) {
      const others = await Promise.all(f.etcd.members.filter((m) => m !== victim).map(statusOf));
      await f.client.unary("Maintenance", "MoveLeader", { targetID: others[0]!.header.member_id });
      victim = memberInUse(f.proxy, f.etcd);
    }
    await f.etcd.kill(victim);
    try {
      // The proxy has not noticed yet: its first attempt hits a dead port.
      const r = await outcome(f.client.unary("KV", "Put", { key: Buffer.from("fo/w"), value: Buffer.from("1") }));
      assert.deepEqual(r, { code: 0, details: "" });
      const survivor = f.etcd.members.find((m) => m !== victim)!;
      assert.equal(await ctl(survivor.endpoint, ["get", "fo/w", "--print-value-only"]), "1\n");
    } finally {
      await f.etcd.restart(victim);
    }
  });

  it("MoveLeader is routed to the leader, wherever the proxy points", async () => {
    const { leader } = await statusOf(f.etcd.members[0]!);
    const ids = await Promise.all(f.etcd.members.map(async (m) => (await statusOf(m)).header.member_id));
    const target = ids.find((id) => id !== leader)!;
    await f.client.unary("Maintenance", "MoveLeader", { targetID: target });
    assert.equal((await statusOf(f.etcd.members[0]!)).leader, target);
  });
});

describe("no etcd reachable", () => {
  it("the proxy starts anyway, reports it, and serves as soon as etcd is back", async () => {
    const etcd = await startEtcd(1);
    const member = etcd.members[0]!;
    await etcd.kill(member);
    const proxy = await startTestProxy(etcd.endpoints);
    const client = new EtcdGrpcClient(proxy.address);
    try {
      assert.equal((await fetch(`http://${proxy.address}/livez`)).status, 200);
      const health = await fetch(`http://${proxy.address}/health`);
      assert.equal(health.status, 503);
      const body = (await health.json()) as { health: string; reason: string };
      assert.equal(body.health, "false");
      assert.match(body.reason, /^GET ERROR:.*ECONNREFUSED/);
      assert.equal((await fetch(`http://${proxy.address}/readyz`)).status, 503);
      const self = await fetch(`http://${proxy.address}/proxy/health`);
      assert.equal(self.status, 503);
      assert.match(((await self.json()) as { reason: string }).reason, /^GET ERROR:/);

      const down = await outcome(client.unary("KV", "Range", { key: Buffer.from("x") }, undefined, 1000));
      assert.ok([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED].includes(down.code), JSON.stringify(down));

      // A call made while etcd is down succeeds once etcd returns within its deadline.
      const pending = client.unary(
        "KV",
        "Put",
        { key: Buffer.from("back"), value: Buffer.from("up") },
        undefined,
        15_000,
      );
      await sleep(300);
      await etcd.restart(member);
      await pending;
      assert.equal((await fetch(`http://${proxy.address}/health`)).status, 200);
      assert.equal((await fetch(`http://${proxy.address}/readyz`)).status, 200);
      assert.deepEqual(await (await fetch(`http://${proxy.address}/proxy/health`)).json(), {
        health: "true",
        reason: "",
      });
    } finally {
      client.close();
      await proxy.close();
      await etcd.stop();
    }
  });

  it("with nothing listening, a call without a deadline ends Unavailable with the cause, not a hang", async () => {
    const proxy = await startTestProxy(`127.0.0.1:${await freePort()}`);
    const client = new EtcdGrpcClient(proxy.address);
    try {
      // It waits for an endpoint during the retry window (5 s), then gives up.
      const r = await outcome(client.unary("KV", "Range", { key: Buffer.from("x") }, undefined, Infinity));
      assert.equal(r.code, grpc.status.UNAVAILABLE);
      assert.match(r.details, /ECONNREFUSED/);
      // With a deadline, the call waits for an endpoint until the deadline, as gRPC's wait-for-ready does,
      // not for the 5 s retry window. Whether the client's timer or the proxy's answer (the last endpoint's
      // failure, at the same deadline) comes first is a race on a loaded machine: either ends it.
      const started = Date.now();
      const withDeadline = await outcome(client.unary("KV", "Range", { key: Buffer.from("x") }, undefined, 300));
      assert.ok(
        [grpc.status.DEADLINE_EXCEEDED, grpc.status.UNAVAILABLE].includes(withDeadline.code),
        JSON.stringify(withDeadline),
      );
      assert.ok(Date.now() - started < 3000, "ended at its deadline, not after the retry window");
    } finally {
      client.close();
      await proxy.close();
    }
  });
});

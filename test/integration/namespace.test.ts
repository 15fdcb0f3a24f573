// --namespace: through the proxy, clients own a keyspace of their own; in
// etcd, everything lives under the prefix, and nothing escapes it.
//
// Lane-independent: npm test runs it in the fast lane only, since
// the namespace is a decorator above the lanes.
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ctl, spawnCtl } from "../helpers/etcdctl.js";
import { useProxy } from "../helpers/fixture.js";
import { outcome } from "../helpers/grpc-client.js";
import { WatchStream } from "../helpers/watch.js";

type Plain = Record<string, any>;
const NS = "my-prefix/";
const keys = (r: Plain) => (r.kvs as Plain[]).map((kv) => (kv.key as Buffer).toString("latin1"));

describe("--namespace", () => {
  const f = useProxy(1, {
    proxyArgs: [`--namespace=${NS}`],
    // Neighbours outside the namespace, before and after it in key order.
    setup: async (f) => {
      for (const key of ["my-prefix", "my-prefiw/x", "my-prefix0", "other/secret", "\xff\xff"]) {
        await f.direct.unary("KV", "Put", { key: Buffer.from(key, "latin1"), value: Buffer.from("outside") });
      }
    },
  });

  it("runs the documented example verbatim", async () => {
    const proxy = f.proxy.address;
    const etcd = f.etcd.members[0]!.endpoint;
    assert.equal(await ctl(proxy, ["put", "my-key", "abc"]), "OK\n");
    assert.equal(await ctl(proxy, ["get", "my-key"]), "my-key\nabc\n");
    assert.equal(await ctl(etcd, ["get", "my-prefix/my-key"]), "my-prefix/my-key\nabc\n");
  });

  it("whole-keyspace, from-key and \\xff reads see only the namespace", async () => {
    await f.client.unary("KV", "Put", { key: Buffer.from([0xff]), value: Buffer.from("inside") });
    const all = await f.client.unary("KV", "Range", { key: Buffer.from([0]), range_end: Buffer.from([0]) });
    assert.ok(!keys(all).some((k) => k.includes("outside") || k.startsWith("other") || k === "my-prefix"));
    assert.deepEqual(keys(all).sort(), ["my-key", "\xff"].sort());
    const fromKey = await f.client.unary("KV", "Range", { key: Buffer.from("a"), range_end: Buffer.from([0]) });
    assert.deepEqual(keys(fromKey), ["my-key", "\xff"]);
    const high = await f.client.unary("KV", "Range", {
      key: Buffer.from("\xff", "latin1"),
      range_end: Buffer.from("\xff\xff\xff", "latin1"),
    });
    assert.deepEqual(keys(high), ["\xff"]);
  });

  it("prev_kv, DeleteRange and Txn (compares, nested ops) stay inside and come back without the prefix", async () => {
    const put = (await f.client.unary("KV", "Put", {
      key: Buffer.from("t/k"),
      value: Buffer.from("2"),
      prev_kv: true,
    })) as Plain;
    assert.equal(put.prev_kv, null);
    const again = (await f.client.unary("KV", "Put", {
      key: Buffer.from("t/k"),
      value: Buffer.from("3"),
      prev_kv: true,
    })) as Plain;
    assert.equal((again.prev_kv.key as Buffer).toString(), "t/k");

    // A compare on "other/secret" sees the namespace's (missing) key, not etcd's.
    const txn = (await f.client.unary("KV", "Txn", {
      compare: [{ key: Buffer.from("other/secret"), target: "VERSION", result: "EQUAL", version: "0" }],
      success: [
        { request_put: { key: Buffer.from("t/from-txn"), value: Buffer.from("v") } },
        { request_txn: { success: [{ request_range: { key: Buffer.from("t/"), range_end: Buffer.from("t0") } }] } },
      ],
    })) as Plain;
    assert.equal(txn.succeeded, true);
    const nested = txn.responses[1].response_txn.responses[0].response_range;
    assert.deepEqual(keys(nested), ["t/from-txn", "t/k"]);

    const del = (await f.client.unary("KV", "DeleteRange", {
      key: Buffer.from([0]),
      range_end: Buffer.from([0]),
      prev_kv: true,
    })) as Plain;
    assert.ok((del.prev_kvs as Plain[]).every((kv) => !(kv.key as Buffer).toString("latin1").startsWith(NS)));
    const outside = await f.direct.unary("KV", "Range", { key: Buffer.from("other/secret") });
    assert.equal(keys(outside).length, 1, "a whole-keyspace delete through the proxy leaves the rest of etcd alone");
    const etcdView = await f.direct.unary("KV", "Range", {
      key: Buffer.from(NS),
      range_end: Buffer.from("my-prefix0"),
    });
    assert.deepEqual(keys(etcdView), []);
  });

  it("an empty key gets etcd's error and reaches nothing", async () => {
    for (const [method, request] of [
      ["Range", { key: Buffer.alloc(0) }],
      ["Put", { key: Buffer.alloc(0), value: Buffer.from("v") }],
      ["DeleteRange", { key: Buffer.alloc(0) }],
    ] as const) {
      const direct = await outcome(f.direct.unary("KV", method, request));
      const proxied = await outcome(f.client.unary("KV", method, request));
      assert.deepEqual(proxied, direct, method);
      assert.equal(proxied.code, grpc.status.INVALID_ARGUMENT);
    }
  });

  it("an inverted range reads nothing (as in etcd), and a key too large with the prefix gets etcd's error", async () => {
    const inverted = { key: Buffer.from("z"), range_end: Buffer.from("a") };
    assert.deepEqual(
      keys((await f.client.unary("KV", "Range", inverted)) as Plain),
      keys((await f.direct.unary("KV", "Range", inverted)) as Plain),
    );
    // etcd's request limit (1.5 MiB) counts the prefix too; the proxy refuses before sending.
    const big = { key: Buffer.alloc(1572864 - 20, "k"), value: Buffer.from("v") };
    const r = await outcome(f.client.unary("KV", "Put", big));
    assert.deepEqual(r, { code: grpc.status.INVALID_ARGUMENT, details: "etcdserver: request is too large" });
  });

  it("watches see the namespace's events, with keys and prev_kv stripped", async () => {
    const s = new WatchStream(f.client);
    s.create({ key: "w/", range_end: "w0", prev_kv: true });
    await s.next();
    await f.client.unary("KV", "Put", { key: Buffer.from("w/a"), value: Buffer.from("1") });
    await f.client.unary("KV", "Put", { key: Buffer.from("w/a"), value: Buffer.from("2") });
    await f.direct.unary("KV", "Put", { key: Buffer.from("w/a"), value: Buffer.from("not mine") });
    const [first, second] = await s.until((r) => r.flatMap((x) => x.events).length === 2);
    const events = [first!, second!].flatMap((r) => r.events);
    assert.deepEqual(
      events.map((e) => [e.kv!.key.toString(), e.kv!.value.toString(), e.prev_kv?.key.toString() ?? null]),
      [
        ["w/a", "1", null],
        ["w/a", "2", "w/a"],
      ],
    );
    s.close();
  });

  it("lease TimeToLive lists only the namespace's keys", async () => {
    const lease = (await f.client.unary("Lease", "LeaseGrant", { TTL: 60 })) as Plain;
    await f.client.unary("KV", "Put", { key: Buffer.from("leased"), value: Buffer.from("v"), lease: lease.ID });
    await f.direct.unary("KV", "Put", { key: Buffer.from("raw-leased"), value: Buffer.from("v"), lease: lease.ID });
    const ttl = (await f.client.unary("Lease", "LeaseTimeToLive", { ID: lease.ID, keys: true })) as Plain;
    assert.deepEqual(
      (ttl.keys as Buffer[]).map((k) => k.toString()),
      ["leased"],
    );
  });

  it("etcdctl lock and elect work inside the namespace (etcd's proxy lets them escape)", async () => {
    const proxy = f.proxy.address;
    const locker = spawnCtl(proxy, ["lock", "mylock"]);
    try {
      await locker.waitFor(/^mylock\//m);
      const r = await f.direct.unary("KV", "Range", {
        key: Buffer.from(`${NS}mylock/`),
        range_end: Buffer.from(`${NS}mylock0`),
      });
      assert.equal(keys(r).length, 1, "the lock key lives under the namespace");
      const escaped = await f.direct.unary("KV", "Range", {
        key: Buffer.from("mylock/"),
        range_end: Buffer.from("mylock0"),
      });
      assert.deepEqual(keys(escaped), [], "nothing outside the namespace");
    } finally {
      await locker.kill();
    }
    const elector = spawnCtl(proxy, ["elect", "myelection", "candidate-1"]);
    try {
      await elector.waitFor("myelection/");
      // The Election service sees the leader inside the namespace too.
      const leader = (await f.client.unary("v3electionpb.Election", "Leader", {
        name: Buffer.from("myelection"),
      })) as Plain;
      assert.equal((leader.kv.value as Buffer).toString(), "candidate-1");
      assert.match((leader.kv.key as Buffer).toString(), /^myelection\//);
      const r = await f.direct.unary("KV", "Range", {
        key: Buffer.from(`${NS}myelection/`),
        range_end: Buffer.from(`${NS}myelection0`),
      });
      assert.equal(keys(r).length, 1);
    } finally {
      await elector.kill();
    }
  });
});

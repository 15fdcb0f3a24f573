// --experimental-leasing-prefix: etcd's leasing protocol (client/v3/leasing).
// A proxy that read a key owns it and answers linearizable reads of it
// itself; a write through any leasing client (another proxy of ours, etcd's
// own proxy) takes the ownership away first, so every reader sees it.
//
// Lane-independent: npm test runs it in the fast lane only, since
// leasing is a decorator above the lanes.
import { spawn, type ChildProcess } from "node:child_process";
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { RunningProxy } from "../../src/main.js";
import { startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { ctl } from "../helpers/etcdctl.js";
import { EtcdGrpcClient, login, outcome } from "../helpers/grpc-client.js";
import { proxyMetric } from "../helpers/metrics.js";
import { freePort } from "../helpers/ports.js";
import { startTestProxy } from "../helpers/proxy.js";

type Plain = Record<string, any>;
const PREFIX = "/leasing/";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const get = async (client: EtcdGrpcClient, key: string): Promise<string | undefined> => {
  const r = (await client.unary("KV", "Range", { key: Buffer.from(key) })) as Plain;
  return r.kvs[0]?.value.toString();
};
const put = (client: EtcdGrpcClient, key: string, value: string) =>
  client.unary("KV", "Put", { key: Buffer.from(key), value: Buffer.from(value) }) as Promise<Plain>;

/** The ownership record of `key`, straight from etcd (under --namespace `namespace`). */
async function record(direct: EtcdGrpcClient, key: string, namespace = ""): Promise<Plain | undefined> {
  const r = (await direct.unary("KV", "Range", { key: Buffer.from(namespace + PREFIX + key) })) as Plain;
  return r.kvs[0];
}

/** Waits until `check` holds (leasing's hand-offs go through etcd watches). */
async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`never: ${what}`);
    await sleep(50);
  }
}

/** `etcd grpc-proxy start` of the etcd under test, with leasing. */
async function startGoProxy(endpoints: string): Promise<{ address: string; child: ChildProcess }> {
  const address = `127.0.0.1:${await freePort()}`;
  const child = spawn(
    "etcd",
    [
      "grpc-proxy",
      "start",
      `--endpoints=${endpoints}`,
      `--listen-addr=${address}`,
      `--advertise-client-url=${address}`,
      `--experimental-leasing-prefix=${PREFIX}`,
    ],
    { stdio: "ignore" },
  );
  const until = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`etcd grpc-proxy exited with ${child.exitCode}`);
    const up = await fetch(`http://${address}/health`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (up) return { address, child };
    if (Date.now() > until) throw new Error("etcd grpc-proxy did not start");
    await sleep(100);
  }
}

describe("leasing, two proxies with the same prefix", () => {
  let etcd: EtcdCluster;
  let a: RunningProxy;
  let b: RunningProxy;
  let viaA: EtcdGrpcClient;
  let viaB: EtcdGrpcClient;
  let direct: EtcdGrpcClient;
  before(async () => {
    etcd = await startEtcd(1);
    a = await startTestProxy(etcd.endpoints, [`--experimental-leasing-prefix=${PREFIX}`]);
    b = await startTestProxy(etcd.endpoints, [`--experimental-leasing-prefix=${PREFIX}`]);
    viaA = new EtcdGrpcClient(a.address);
    viaB = new EtcdGrpcClient(b.address);
    direct = new EtcdGrpcClient(etcd.members[0]!.endpoint);
  });
  after(async () => {
    viaA?.close();
    viaB?.close();
    direct?.close();
    await a?.close();
    await b?.close();
    await etcd?.stop();
  });

  /** Reads `key` through A until A owns it (its first reads start its session). */
  async function ownThroughA(key: string): Promise<void> {
    await eventually(async () => {
      await get(viaA, key);
      return (await record(direct, key)) !== undefined;
    }, `proxy A owns ${key}`);
  }

  it("a read takes ownership, and the owner answers linearizable reads itself", async () => {
    await put(direct, "k1", "v1");
    await ownThroughA("k1");
    const owned = (await record(direct, "k1"))!;
    assert.equal(owned.value.toString(), "", "etcd's record layout: an empty value on the owner's lease");
    assert.notEqual(owned.lease, "0");
    // A write that bypasses every leasing client is not seen by the owner:
    // the proof that the answer is the proxy's own (and the documented limit).
    await put(direct, "k1", "bypassed");
    const local = await proxyMetric(a.address, "etcd_grpc_proxy_leasing_local_reads_total");
    assert.equal(await get(viaA, "k1"), "v1");
    assert.equal(await get(viaB, "k1"), "bypassed");
    assert.equal(await proxyMetric(a.address, "etcd_grpc_proxy_leasing_local_reads_total"), local + 1);
    assert.ok((await proxyMetric(a.address, "etcd_grpc_proxy_leasing_owned_keys")) >= 1);
  });

  it("a write through the other proxy revokes ownership first, and every reader sees it", async () => {
    await put(direct, "k2", "v1");
    await ownThroughA("k2");
    assert.equal(await get(viaA, "k2"), "v1");
    const revoked = await proxyMetric(a.address, "etcd_grpc_proxy_leasing_revoked_total");
    const written = await put(viaB, "k2", "v2");
    assert.ok(Number(written.header.revision) > 0);
    // B's write went through once A gave the key up and deleted its record.
    assert.equal(await record(direct, "k2"), undefined);
    assert.equal(await get(viaA, "k2"), "v2");
    assert.equal(await get(viaB, "k2"), "v2");
    assert.equal(await proxyMetric(a.address, "etcd_grpc_proxy_leasing_revoked_total"), revoked + 1);
  });

  it("the owner's own writes keep its answers current, and reach the other proxy", async () => {
    await put(direct, "k3", "v1");
    await ownThroughA("k3");
    await put(viaA, "k3", "v2");
    assert.equal(await get(viaA, "k3"), "v2");
    assert.ok(await record(direct, "k3"), "A still owns k3 after writing it");
    const full = (await viaA.unary("KV", "Range", { key: Buffer.from("k3") })) as Plain;
    const truth = (await direct.unary("KV", "Range", { key: Buffer.from("k3") })) as Plain;
    assert.deepEqual(
      { ...full.kvs[0], lease: undefined },
      { ...truth.kvs[0], lease: undefined },
      "the held key is etcd's: value, versions, revisions",
    );
    assert.equal(await get(viaB, "k3"), "v2");
    await viaA.unary("KV", "DeleteRange", { key: Buffer.from("k3") });
    assert.equal(await get(viaA, "k3"), undefined);
    assert.equal(await get(viaB, "k3"), undefined);
  });

  it("deletes, range deletes and Txns through the other proxy reach the owner", async () => {
    await put(direct, "r/1", "x");
    await put(direct, "r/2", "y");
    await put(direct, "t", "1");
    await ownThroughA("r/1");
    await ownThroughA("r/2");
    await ownThroughA("t");

    await viaB.unary("KV", "DeleteRange", { key: Buffer.from("r/1") });
    assert.equal(await get(viaA, "r/1"), undefined);

    await viaB.unary("KV", "DeleteRange", { key: Buffer.from("r/"), range_end: Buffer.from("r0") });
    assert.equal(await get(viaA, "r/2"), undefined);

    // To the end of the keyspace ("\0"): every record from the key on is guarded.
    await put(direct, "z/1", "x");
    await ownThroughA("z/1");
    await viaB.unary("KV", "DeleteRange", { key: Buffer.from("z/"), range_end: Buffer.from([0]) });
    assert.equal(await get(viaA, "z/1"), undefined);

    const txn = (await viaB.unary("KV", "Txn", {
      compare: [{ key: Buffer.from("t"), target: "VALUE", result: "EQUAL", value: Buffer.from("1") }],
      success: [{ request_put: { key: Buffer.from("t"), value: Buffer.from("2") } }],
      failure: [],
    })) as Plain;
    assert.equal(txn.succeeded, true);
    assert.equal(await get(viaA, "t"), "2");
  });

  it("a key with a lease is never owned (it may expire without a write)", async () => {
    const lease = (await direct.unary("Lease", "LeaseGrant", { TTL: 60 })) as Plain;
    await direct.unary("KV", "Put", { key: Buffer.from("leased"), value: Buffer.from("x"), lease: lease.ID });
    for (let i = 0; i < 3; i++) assert.equal(await get(viaA, "leased"), "x");
    assert.equal(await record(direct, "leased"), undefined);
    await direct.unary("Lease", "LeaseRevoke", { ID: lease.ID });
    assert.equal(await get(viaA, "leased"), undefined);
  });

  it("under concurrent writers through both proxies, no read misses a write acknowledged before it began", async () => {
    const keys = ["c/0", "c/1", "c/2"];
    for (const k of keys) await put(direct, k, "0");
    for (const k of keys) await ownThroughA(k);
    // Every write acknowledged so far, per key, by revision.
    const acked = new Map(keys.map((k) => [k, 0]));
    const stale: string[] = [];
    let reads = 0;
    const until = Date.now() + 3_000;
    // A writes as fast as it can (its own writes keep what it holds current);
    // B now and then (each takes the key away from A, who takes it back later).
    const writer = async (client: EtcdGrpcClient, name: string, pauseMs: number) => {
      for (let i = 0; Date.now() < until; i++) {
        const key = keys[i % keys.length]!;
        const r = await put(client, key, `${name}${i}`);
        acked.set(key, Math.max(acked.get(key)!, Number(r.header.revision)));
        if (pauseMs) await sleep(pauseMs);
      }
    };
    const reader = async (client: EtcdGrpcClient, name: string) => {
      for (let i = 0; Date.now() < until; i++) {
        const key = keys[i % keys.length]!;
        const floor = acked.get(key)!;
        const r = (await client.unary("KV", "Range", { key: Buffer.from(key) })) as Plain;
        reads++;
        const seen = Number(r.kvs[0].mod_revision);
        if (seen < floor) stale.push(`${name} read ${key} at ${seen} after ${floor} was acknowledged`);
      }
    };
    await Promise.all([
      writer(viaA, "a", 0),
      writer(viaB, "b", 700),
      reader(viaA, "A"),
      reader(viaA, "A'"),
      reader(viaB, "B"),
    ]);
    assert.deepEqual(stale.slice(0, 5), []);
    assert.ok(reads > 20, `only ${reads} reads`);
  });

  it("an owner whose session lease is revoked stops answering from what it held", async () => {
    await put(direct, "k5", "v1");
    await ownThroughA("k5");
    const owned = (await record(direct, "k5"))!;
    await direct.unary("Lease", "LeaseRevoke", { ID: owned.lease });
    await put(direct, "k5", "v2");
    await eventually(async () => (await get(viaA, "k5")) === "v2", "A reads etcd again");
  });

  it("records live inside --namespace, as with etcd's proxy", async () => {
    const d = await startTestProxy(etcd.endpoints, ["--namespace=/ns/", `--experimental-leasing-prefix=${PREFIX}`]);
    const viaD = new EtcdGrpcClient(d.address);
    try {
      await put(direct, "/ns/k6", "v1");
      await eventually(async () => {
        await get(viaD, "k6");
        return (await record(direct, "k6", "/ns/")) !== undefined;
      }, "proxy D owns k6");
      assert.equal(await get(viaD, "k6"), "v1");
    } finally {
      viaD.close();
      await d.close();
    }
  });

  it("a proxy that shuts down gives up every key it owns", async () => {
    const c = await startTestProxy(etcd.endpoints, [`--experimental-leasing-prefix=${PREFIX}`]);
    const viaC = new EtcdGrpcClient(c.address);
    try {
      await put(direct, "k4", "v1");
      await eventually(async () => {
        await get(viaC, "k4");
        return (await record(direct, "k4")) !== undefined;
      }, "proxy C owns k4");
    } finally {
      viaC.close();
      await c.close();
    }
    assert.equal(await record(direct, "k4"), undefined, "C's records went with its session's lease");
    const t0 = Date.now();
    await put(viaB, "k4", "v2");
    assert.ok(Date.now() - t0 < 2_000, "no writer waits for a proxy that left");
  });
});

describe("leasing with etcd's own proxy (grpc-proxy --experimental-leasing-prefix)", () => {
  let etcd: EtcdCluster;
  let ours: RunningProxy;
  let go: { address: string; child: ChildProcess };
  let viaOurs: EtcdGrpcClient;
  let viaGo: EtcdGrpcClient;
  let direct: EtcdGrpcClient;
  before(async () => {
    etcd = await startEtcd(1);
    ours = await startTestProxy(etcd.endpoints, [`--experimental-leasing-prefix=${PREFIX}`]);
    go = await startGoProxy(etcd.endpoints);
    viaOurs = new EtcdGrpcClient(ours.address);
    viaGo = new EtcdGrpcClient(go.address);
    direct = new EtcdGrpcClient(etcd.members[0]!.endpoint);
  });
  after(async () => {
    viaOurs?.close();
    viaGo?.close();
    direct?.close();
    go?.child.kill();
    await ours?.close();
    await etcd?.stop();
  });

  it("a write through etcd's proxy takes a key from ours", async () => {
    await put(direct, "g1", "v1");
    await eventually(async () => {
      await get(viaOurs, "g1");
      return (await record(direct, "g1")) !== undefined;
    }, "our proxy owns g1");
    await put(viaGo, "g1", "v2");
    assert.equal(await get(viaOurs, "g1"), "v2");
  });

  it("a write through ours takes a key from etcd's proxy", async () => {
    await put(direct, "g2", "v1");
    await eventually(async () => {
      await get(viaGo, "g2");
      return (await record(direct, "g2")) !== undefined;
    }, "etcd's proxy owns g2");
    // etcd's proxy answers from what it owns: a bypassing write stays unseen there.
    await put(direct, "g2", "bypassed");
    assert.equal(await get(viaGo, "g2"), "v1");
    await put(viaOurs, "g2", "v3");
    assert.equal(await get(viaGo, "g2"), "v3");
    assert.equal(await get(viaOurs, "g2"), "v3");
  });
});

describe("leasing on a cluster with auth on", () => {
  let etcd: EtcdCluster;
  let proxy: RunningProxy;
  let via: EtcdGrpcClient;
  let root: EtcdGrpcClient;
  before(async () => {
    etcd = await startEtcd(1);
    const at = etcd.members[0]!.endpoint;
    await ctl(at, ["user", "add", "root", "--new-user-password=rootpw"]);
    // The proxy's own user holds the session; alice may write her keys and their records, bob only his keys.
    for (const [user, prefixes] of [
      ["leaser", [PREFIX]],
      ["alice", ["a/", `${PREFIX}a/`]],
      ["bob", ["b/"]],
    ] as const) {
      await ctl(at, ["role", "add", `${user}-role`]);
      for (const p of prefixes) await ctl(at, ["role", "grant-permission", `${user}-role`, "readwrite", p, "--prefix"]);
      await ctl(at, ["user", "add", user, `--new-user-password=${user}pw`]);
      await ctl(at, ["user", "grant-role", user, `${user}-role`]);
    }
    await ctl(at, ["auth", "enable"]);
    proxy = await startTestProxy(etcd.endpoints, [`--experimental-leasing-prefix=${PREFIX}`, "--user=leaser:leaserpw"]);
    via = new EtcdGrpcClient(proxy.address);
    root = new EtcdGrpcClient(at);
  });
  after(async () => {
    via?.close();
    root?.close();
    await proxy?.close();
    await etcd?.stop();
  });

  it("a caller with a token is never answered from owned keys, and takes no ownership", async () => {
    const rootMd = await login(root, "root", "rootpw");
    const alice = await login(via, "alice", "alicepw");
    await root.unary("KV", "Put", { key: Buffer.from("a/k"), value: Buffer.from("v1") }, rootMd);
    for (let i = 0; i < 3; i++) {
      const r = (await via.unary("KV", "Range", { key: Buffer.from("a/k") }, alice)) as Plain;
      assert.equal(r.kvs[0].value.toString(), "v1");
    }
    const records = (await root.unary("KV", "Range", { key: Buffer.from(`${PREFIX}a/k`) }, rootMd)) as Plain;
    assert.deepEqual(records.kvs, []);
    assert.equal(await proxyMetric(proxy.address, "etcd_grpc_proxy_leasing_local_reads_total"), 0);
  });

  it("writes follow the protocol as the caller: etcd checks the caller's rights on the key and on its record", async () => {
    const alice = await login(via, "alice", "alicepw");
    const bob = await login(via, "bob", "bobpw");
    const write = (md: typeof alice, key: string) =>
      outcome(via.unary("KV", "Put", { key: Buffer.from(key), value: Buffer.from("x") }, md));
    assert.deepEqual(await write(alice, "a/k2"), { code: 0, details: "" }, "alice may write a/ and its records");
    const denied = { code: 7, details: "etcdserver: permission denied" };
    assert.deepEqual(await write(bob, "a/k2"), denied);
    // bob may write b/ straight to etcd, but not the records a leasing proxy guards on.
    assert.deepEqual(await write(bob, "b/k"), denied);
  });
});

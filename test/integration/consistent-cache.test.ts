// --consistent-cache-prefix against real etcd: every Range option answered
// from the replica equals etcd's own answer at the same revision, reads see
// writes made through the proxy and straight to etcd, and what the replica
// cannot answer the same way goes to etcd.
//
// Runs in every pass (both etcd lines, both lanes): the answer is built in
// memory and reaches each lane as bytes.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ETCD_ORDERS_PROGRESS, ETCD_VERSION } from "../helpers/etcd.js";
import { useProxy } from "../helpers/fixture.js";
import type { EtcdGrpcClient } from "../helpers/grpc-client.js";
import { proxyMetric } from "../helpers/metrics.js";
import { eventually } from "../helpers/watch.js";

type Plain = Record<string, any>;

const b = (s: string) => Buffer.from(s);
const put = (client: EtcdGrpcClient, key: string, value: string) =>
  client.unary("KV", "Put", { key: b(key), value: b(value) }) as Promise<Plain>;
const range = (client: EtcdGrpcClient, request: Plain) => client.unary("KV", "Range", request) as Promise<Plain>;
const answers = (address: string) => proxyMetric(address, "etcd_grpc_proxy_consistent_cache_answers_total");

/** What must be equal: the KVs as etcd encodes them, `more`, `count`, and the revision answered at. */
const shape = (r: Plain) => ({ revision: r.header.revision, kvs: r.kvs, more: r.more, count: r.count });

describe(`consistent cache (etcd ${ETCD_VERSION})`, () => {
  const f = useProxy(1, {
    proxyArgs: ["--consistent-cache-prefix=cc/", "--consistent-cache-prefix=other/"],
    setup: async (f) => {
      // Keys with different versions, create and mod revisions, a deleted one, and neighbours outside the prefix.
      for (let i = 0; i < 30; i++) await put(f.direct, `cc/k${String(i).padStart(2, "0")}`, `v${(i * 7) % 30}`);
      for (let i = 0; i < 30; i += 3) await put(f.direct, `cc/k${String(i).padStart(2, "0")}`, `w${i}`);
      await put(f.direct, "cc/k05", "again");
      const deleted = (await f.direct.unary("KV", "DeleteRange", { key: b("cc/k07") })) as Plain;
      await put(f.direct, "cb", "before");
      await put(f.direct, "cd", "after");
      const applied = () =>
        proxyMetric(f.proxy.address, "etcd_grpc_proxy_consistent_cache_revision", { prefix: "cc/" });
      // Its last event: the writes after it are outside the prefix, and progress answers bring the
      // replica to etcd's revision. Where etcd's progress answers cannot be trusted, only events can:
      // the last write is then the prefix's own.
      let last = Number(deleted.header.revision);
      if (!ETCD_ORDERS_PROGRESS) last = Number((await put(f.direct, "cc/zz", "last")).header.revision);
      await eventually(async () => (await applied()) >= last, "the replica to apply the setup");
    },
  });

  it("answers every Range option from memory exactly as etcd does", async () => {
    const revs = (await range(f.direct, { key: b("cc/k10") })).kvs[0];
    const mod = Number(revs.mod_revision);
    const created = Number(revs.create_revision);
    const requests: Plain[] = [
      { key: b("cc/k03") },
      { key: b("cc/k07") },
      { key: b("cc/"), range_end: b("cc0") },
      { key: b("cc/k1"), range_end: b("cc/k2") },
      { key: b("cc/k1"), range_end: b("cc/k1") },
      { key: b("cc/"), range_end: b("cc0"), limit: 5 },
      { key: b("cc/"), range_end: b("cc0"), limit: 29 },
      { key: b("cc/"), range_end: b("cc0"), limit: 500 },
      { key: b("cc/"), range_end: b("cc0"), keys_only: true },
      { key: b("cc/"), range_end: b("cc0"), count_only: true },
      { key: b("cc/"), range_end: b("cc0"), count_only: true, limit: 3 },
      { key: b("cc/"), range_end: b("cc0"), sort_order: "DESCEND" },
      { key: b("cc/"), range_end: b("cc0"), sort_order: "DESCEND", limit: 4 },
      { key: b("cc/"), range_end: b("cc0"), sort_order: "ASCEND", sort_target: "KEY", limit: 4 },
      { key: b("cc/"), range_end: b("cc0"), sort_target: "MOD", sort_order: "DESCEND", limit: 6 },
      { key: b("cc/"), range_end: b("cc0"), sort_target: "CREATE", limit: 6 },
      { key: b("cc/k0"), range_end: b("cc/k1"), sort_target: "VALUE", sort_order: "DESCEND" },
      { key: b("cc/k0"), range_end: b("cc/k1"), sort_target: "VERSION" },
      { key: b("cc/"), range_end: b("cc0"), sort_target: "VERSION", limit: 3 },
      { key: b("cc/"), range_end: b("cc0"), min_mod_revision: mod },
      { key: b("cc/"), range_end: b("cc0"), max_mod_revision: mod, limit: 4 },
      { key: b("cc/"), range_end: b("cc0"), min_create_revision: created, max_create_revision: created + 5 },
      { key: b("cc/"), range_end: b("cc0"), min_create_revision: created, sort_order: "DESCEND", limit: 2 },
      { key: b("cc/"), range_end: b("cc0"), min_mod_revision: mod, keys_only: true, limit: 2 },
    ];
    for (const serializable of [false, true]) {
      for (const request of requests) {
        const before = await answers(f.proxy.address);
        const proxied = await range(f.client, { ...request, serializable });
        const direct = await range(f.direct, { ...request, serializable });
        assert.deepEqual(shape(proxied), shape(direct), JSON.stringify({ ...request, serializable }));
        assert.equal(await answers(f.proxy.address), before + 1, `from memory: ${JSON.stringify(request)}`);
      }
    }
  });

  it("sends etcd what it cannot answer the same way, and what lies outside its prefixes", async () => {
    const before = await answers(f.proxy.address);
    const requests: Plain[] = [
      // More than 12 keys with equal versions: etcd's sort order among them is its own.
      { key: b("cc/"), range_end: b("cc0"), sort_target: "VERSION" },
      // A past revision, a range across the prefix's edge, and keys outside it.
      { key: b("cc/k01"), revision: 3 },
      { key: b("cb"), range_end: b("cc/k05") },
      { key: b("cc/"), range_end: b("\0") },
      { key: b("cd") },
    ];
    for (const request of requests) {
      assert.deepEqual(shape(await range(f.client, request)), shape(await range(f.direct, request)));
    }
    assert.equal(await answers(f.proxy.address), before, "none of them from memory");
    assert.ok(
      (await proxyMetric(f.proxy.address, "etcd_grpc_proxy_consistent_cache_fallbacks_total", {
        reason: "equal sort values etcd orders unpredictably",
      })) >= 1,
    );
  });

  it("reads see every write acknowledged before them: through the proxy, straight to etcd, and deletes", async () => {
    for (let i = 0; i < 40; i++) {
      const via = i % 2 === 0 ? f.client : f.direct;
      await put(via, "cc/ryw", `n${i}`);
      const seen = await range(f.client, { key: b("cc/ryw") });
      assert.equal(seen.kvs[0]?.value.toString(), `n${i}`, `write ${i} through ${i % 2 === 0 ? "the proxy" : "etcd"}`);
      // A write elsewhere moves etcd's revision without an event for the replica: progress brings it along.
      await put(f.direct, "elsewhere", `${i}`);
      const after = await range(f.client, { key: b("cc/ryw") });
      const direct = await range(f.direct, { key: b("cc/ryw") });
      assert.deepEqual(shape(after), shape(direct));
    }
    await f.direct.unary("KV", "DeleteRange", { key: b("cc/ryw") });
    assert.equal((await range(f.client, { key: b("cc/ryw") })).kvs.length, 0);
  });

  it(`after a write outside the prefix, ${ETCD_ORDERS_PROGRESS ? "answers from memory once etcd's progress answer vouches for it" : "sends the read to etcd: this etcd's progress answers can overtake its events"}`, async () => {
    await put(f.direct, "cc/quiet", "1");
    await eventually(async () => {
      const before = await answers(f.proxy.address);
      await range(f.client, { key: b("cc/quiet") });
      return (await answers(f.proxy.address)) > before;
    }, "a read from memory after the prefix's own write");
    await put(f.direct, "elsewhere", "moves etcd's revision");
    const before = await answers(f.proxy.address);
    const read = await range(f.client, { key: b("cc/quiet") });
    assert.deepEqual(shape(read), shape(await range(f.direct, { key: b("cc/quiet") })));
    assert.equal(await answers(f.proxy.address), before + (ETCD_ORDERS_PROGRESS ? 1 : 0));
  });

  it("batches concurrent reads of one range into few checks", async () => {
    const checks = () => proxyMetric(f.proxy.address, "etcd_grpc_proxy_consistent_cache_checks_total");
    const before = await checks();
    const reads = await Promise.all(
      Array.from({ length: 50 }, () => range(f.client, { key: b("cc/"), range_end: b("cc0") })),
    );
    const sent = (await checks()) - before;
    assert.ok(sent >= 1 && sent < 50, `50 concurrent reads sent ${sent} checks`);
    for (const r of reads) assert.equal(r.count, reads[0]!.count);
  });

  it("an empty prefix's replica answers with nothing, at the current revision", async () => {
    const proxied = await range(f.client, { key: b("other/"), range_end: b("other0") });
    const direct = await range(f.direct, { key: b("other/"), range_end: b("other0") });
    assert.deepEqual(shape(proxied), shape(direct));
    assert.equal(proxied.kvs.length, 0);
  });
});

describe(`consistent cache under --namespace, with leasing (etcd ${ETCD_VERSION})`, () => {
  const f = useProxy(1, {
    proxyArgs: ["--namespace=ns/", "--consistent-cache-prefix=cc/", "--experimental-leasing-prefix=leases/"],
    setup: async (f) => {
      await put(f.direct, "ns/cc/a", "1");
      // Outside the namespace: the client's cc/ must not see it.
      await put(f.direct, "cc/a", "not the client's");
      await eventually(
        async () =>
          (await proxyMetric(f.proxy.address, "etcd_grpc_proxy_consistent_cache_keys", { prefix: "cc/" })) === 1,
        "the replica of the client's cc/",
      );
    },
  });

  it("the prefix is the client's, and reads agree with etcd and with leasing's owned keys", async () => {
    const list = { key: b("cc/"), range_end: b("cc0") };
    const inEtcd = { key: b("ns/cc/"), range_end: b("ns/cc0") };
    const values = (r: Plain) => (r.kvs as Plain[]).map((kv) => `${kv.key}=${kv.value}`);
    for (let i = 0; i < 10; i++) {
      // A single-key read lets leasing own the key; then writes through the proxy and straight to etcd.
      await range(f.client, { key: b("cc/a") });
      await put(f.client, "cc/a", `proxy${i}`);
      assert.deepEqual(values(await range(f.client, list)), [`cc/a=proxy${i}`]);
      assert.equal((await range(f.client, { key: b("cc/a") })).kvs[0].value.toString(), `proxy${i}`);
      // A write that bypasses leasing reaches the replica; leasing's owner does not see it, as documented.
      await put(f.direct, "ns/cc/a", `etcd${i}`);
      assert.deepEqual(values(await range(f.client, list)), [`cc/a=etcd${i}`]);
      const direct = await range(f.direct, inEtcd);
      assert.deepEqual(
        (await range(f.client, list)).kvs.map((kv: Plain) => kv.mod_revision),
        direct.kvs.map((kv: Plain) => kv.mod_revision),
      );
    }
    assert.ok((await answers(f.proxy.address)) > 0, "the prefix reads came from memory");
  });
});

describe(`consistent cache over its byte budget (etcd ${ETCD_VERSION})`, () => {
  const f = useProxy(1, {
    // 20 keys of 500 B under big/ do not fit 4,000 bytes; small/ alone would.
    proxyArgs: ["--consistent-cache-prefix=big/", "--consistent-cache-max-bytes=4000"],
    setup: async (f) => {
      for (let i = 0; i < 20; i++) await put(f.direct, `big/${i}`, "x".repeat(500));
    },
  });

  it("holds none of a prefix that does not fit, and sends its reads to etcd", async () => {
    const reloads = () =>
      proxyMetric(f.proxy.address, "etcd_grpc_proxy_consistent_cache_reloads_total", { prefix: "big/" });
    await eventually(async () => (await reloads()) >= 1, "the replica to give up on its prefix");
    assert.equal(await proxyMetric(f.proxy.address, "etcd_grpc_proxy_consistent_cache_keys", { prefix: "big/" }), 0);
    const list = { key: b("big/"), range_end: b("big0") };
    assert.deepEqual(shape(await range(f.client, list)), shape(await range(f.direct, list)));
    assert.equal(await answers(f.proxy.address), 0, "nothing from memory");
    assert.ok(
      (await proxyMetric(f.proxy.address, "etcd_grpc_proxy_consistent_cache_fallbacks_total", {
        reason: "not loaded",
      })) >= 1,
    );
  });
});

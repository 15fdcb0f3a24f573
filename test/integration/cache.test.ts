// The range cache against real etcd: what it serves and to whom, how writes
// by any route empty it, compaction, auth, and turning it off.
//
// Lane-independent: npm test runs it in the fast lane only, since
// the range cache is a decorator above the lanes.
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ctl } from "../helpers/etcdctl.js";
import { useProxy } from "../helpers/fixture.js";
import { login, outcome, type EtcdGrpcClient } from "../helpers/grpc-client.js";
import { proxyMetric } from "../helpers/metrics.js";
import { eventually } from "../helpers/watch.js";

type Plain = Record<string, any>;

const get = (client: EtcdGrpcClient, key: string, extra: Plain = {}, md?: grpc.Metadata) =>
  client.unary("KV", "Range", { key: Buffer.from(key), serializable: true, ...extra }, md) as Promise<Plain>;
const values = (r: Plain) => (r.kvs as Plain[]).map((kv) => (kv.value as Buffer).toString());
const put = (client: EtcdGrpcClient, key: string, value: string) =>
  client.unary("KV", "Put", { key: Buffer.from(key), value: Buffer.from(value) }) as Promise<Plain>;

describe("range cache", () => {
  // A long TTL: whatever empties the cache here is an invalidation, not expiry.
  const f = useProxy(1, { proxyArgs: ["--cache-ttl=1h"] });

  it("answers serializable reads from the cache, with etcd's header of the read it saved", async () => {
    await put(f.client, "c/k", "v1");
    const hits = await proxyMetric(f.proxy.address, "etcd_grpc_proxy_cache_hits_total");
    const first = await get(f.client, "c/k");
    const second = await get(f.client, "c/k");
    assert.deepEqual(values(second), ["v1"]);
    assert.deepEqual(second.header, first.header, "a cached answer keeps the header of the read it came from");
    assert.equal(await proxyMetric(f.proxy.address, "etcd_grpc_proxy_cache_hits_total"), hits + 1);
    await get(f.client, "c/k", { serializable: false });
    assert.equal(
      await proxyMetric(f.proxy.address, "etcd_grpc_proxy_cache_hits_total"),
      hits + 1,
      "linearizable reads go to etcd",
    );
  });

  it("every field of the request is part of the key", async () => {
    await put(f.client, "c/f/1", "a");
    await put(f.client, "c/f/2", "b");
    const all = await get(f.client, "c/f/", { range_end: Buffer.from("c/f0") });
    const limited = await get(f.client, "c/f/", { range_end: Buffer.from("c/f0"), limit: 1 });
    const counted = await get(f.client, "c/f/", { range_end: Buffer.from("c/f0"), count_only: true });
    const keysOnly = await get(f.client, "c/f/", { range_end: Buffer.from("c/f0"), keys_only: true });
    assert.deepEqual(values(all), ["a", "b"]);
    assert.deepEqual(values(limited), ["a"]);
    assert.equal(counted.count, "2");
    assert.equal((counted.kvs as Plain[]).length, 0);
    assert.deepEqual(values(keysOnly), ["", ""]);
  });

  it("a write through the proxy is visible to the next read: Put, DeleteRange, Txn and nested Txn", async () => {
    await put(f.client, "c/ryw", "1");
    await get(f.client, "c/ryw");
    await put(f.client, "c/ryw", "2");
    assert.deepEqual(values(await get(f.client, "c/ryw")), ["2"]);

    await f.client.unary("KV", "DeleteRange", { key: Buffer.from("c/ryw") });
    assert.deepEqual(values(await get(f.client, "c/ryw")), []);

    await get(f.client, "c/ryw");
    await f.client.unary("KV", "Txn", {
      success: [{ request_put: { key: Buffer.from("c/ryw"), value: Buffer.from("txn") } }],
    });
    assert.deepEqual(values(await get(f.client, "c/ryw")), ["txn"]);

    await f.client.unary("KV", "Txn", {
      success: [
        { request_txn: { success: [{ request_put: { key: Buffer.from("c/ryw"), value: Buffer.from("nested") } }] } },
      ],
    });
    assert.deepEqual(values(await get(f.client, "c/ryw")), ["nested"]);
  });

  it("from-key and whole-keyspace reads are invalidated too", async () => {
    await put(f.client, "c/z/1", "a");
    const fromKey = { range_end: Buffer.from([0]) };
    assert.deepEqual(values(await get(f.client, "c/z/", fromKey)), ["a"]);
    await put(f.client, "c/z/2", "b");
    assert.deepEqual(values(await get(f.client, "c/z/", fromKey)), ["a", "b"]);
    const whole = await get(f.client, "\0", fromKey);
    await f.client.unary("KV", "DeleteRange", { key: Buffer.from("c/z/"), range_end: Buffer.from([0]) });
    assert.deepEqual(values(await get(f.client, "c/z/", fromKey)), []);
    const wholeAfter = await get(f.client, "\0", fromKey);
    assert.ok(Number(wholeAfter.count) < Number(whole.count), "the whole-keyspace read saw the delete");
  });

  it("writes by other routes reach the cache through its watch", async () => {
    await put(f.client, "c/ext", "before");
    assert.deepEqual(values(await get(f.client, "c/ext")), ["before"]);
    const seen = await proxyMetric(f.proxy.address, "etcd_grpc_proxy_cache_watch_invalidations_total");
    await put(f.direct, "c/ext", "after");
    await eventually(
      async () => values(await get(f.client, "c/ext"))[0] === "after",
      "the direct write through the proxy",
    );
    assert.ok((await proxyMetric(f.proxy.address, "etcd_grpc_proxy_cache_watch_invalidations_total")) > seen);

    // Lease expiry is another route: its deletes arrive the same way.
    const lease = (await f.direct.unary("Lease", "LeaseGrant", { TTL: 1 })) as Plain;
    await f.direct.unary("KV", "Put", { key: Buffer.from("c/leased"), value: Buffer.from("v"), lease: lease.ID });
    assert.deepEqual(values(await get(f.client, "c/leased")), ["v"]);
    await eventually(async () => values(await get(f.client, "c/leased")).length === 0, "the lease's key to go", 10_000);
  });

  it("after a compaction, old revisions get etcd's error and the cache keeps working", async () => {
    const first = await put(f.client, "c/compact", "1");
    const last = await put(f.client, "c/compact", "2");
    await f.client.unary("KV", "Compact", { revision: last.header.revision });
    const old = await outcome(get(f.client, "c/compact", { revision: first.header.revision }));
    assert.deepEqual(old, {
      code: grpc.status.OUT_OF_RANGE,
      details: "etcdserver: mvcc: required revision has been compacted",
    });
    const hits = await proxyMetric(f.proxy.address, "etcd_grpc_proxy_cache_hits_total");
    await get(f.client, "c/compact");
    assert.deepEqual(values(await get(f.client, "c/compact")), ["2"]);
    assert.equal(await proxyMetric(f.proxy.address, "etcd_grpc_proxy_cache_hits_total"), hits + 1);
  });

  it("a Txn with an empty operation gets etcd's InvalidArgument, and the proxy keeps serving", async () => {
    const r = await outcome(f.client.unary("KV", "Txn", { success: [{}] }));
    assert.equal(r.code, grpc.status.INVALID_ARGUMENT);
    assert.deepEqual(values(await get(f.client, "c/ryw")), ["nested"]);
  });

  it("exports its size", async () => {
    assert.ok((await proxyMetric(f.proxy.address, "etcd_grpc_proxy_cache_keys_total")) > 0);
    assert.ok((await proxyMetric(f.proxy.address, "etcd_grpc_proxy_cache_bytes")) > 0);
  });
});

describe("range cache under auth", () => {
  const f = useProxy(1, {
    proxyArgs: ["--cache-ttl=1h"],
    setup: async (f) => {
      const via = f.etcd.members[0]!.endpoint;
      await ctl(via, ["user", "add", "root", "--new-user-password=rootpw"]);
      await ctl(via, ["role", "add", "reader"]);
      await ctl(via, ["role", "grant-permission", "reader", "read", "open/", "--prefix"]);
      await ctl(via, ["user", "add", "alice", "--new-user-password=alicepw"]);
      await ctl(via, ["user", "grant-role", "alice", "reader"]);
      await ctl(via, ["put", "secret", "topsecret"]);
      await ctl(via, ["put", "open/doc", "public"]);
      await ctl(via, ["auth", "enable"]);
    },
  });

  it("nobody reads from the cache what etcd would deny them", async () => {
    const root = await login(f.client, "root", "rootpw");
    const alice = await login(f.client, "alice", "alicepw");
    assert.deepEqual(values(await get(f.client, "secret", {}, root)), ["topsecret"]);
    assert.deepEqual(values(await get(f.client, "secret", {}, root)), ["topsecret"], "root's read is cached for root");
    for (const [who, md] of [
      ["alice", alice],
      ["anonymous", undefined],
    ] as const) {
      const direct = await outcome(
        f.direct.unary("KV", "Range", { key: Buffer.from("secret"), serializable: true }, md),
      );
      const proxied = await outcome(get(f.client, "secret", {}, md));
      assert.notEqual(proxied.code, 0, `${who} is refused`);
      assert.deepEqual(proxied, direct, `${who} gets etcd's own refusal`);
    }
  });

  it("a permission revoked through the proxy is no longer served from the cache", async () => {
    const root = await login(f.client, "root", "rootpw");
    const alice = await login(f.client, "alice", "alicepw");
    assert.deepEqual(values(await get(f.client, "open/doc", {}, alice)), ["public"]);
    assert.deepEqual(values(await get(f.client, "open/doc", {}, alice)), ["public"]);
    await f.client.unary(
      "Auth",
      "RoleRevokePermission",
      { role: "reader", key: Buffer.from("open/"), range_end: Buffer.from("open0") },
      root,
    );
    const after = await outcome(get(f.client, "open/doc", {}, alice));
    assert.equal(after.code, grpc.status.PERMISSION_DENIED);
  });
});

describe("range cache turned off", () => {
  const f = useProxy(1, { proxyArgs: ["--cache-max-bytes=0"] });

  it("serves every read from etcd", async () => {
    await put(f.client, "off/k", "1");
    await get(f.client, "off/k");
    await put(f.direct, "off/k", "2");
    assert.deepEqual(values(await get(f.client, "off/k")), ["2"]);
    assert.equal(await proxyMetric(f.proxy.address, "etcd_grpc_proxy_cache_hits_total"), 0);
    assert.equal(await proxyMetric(f.proxy.address, "etcd_grpc_proxy_cache_keys_total"), 0);
  });
});

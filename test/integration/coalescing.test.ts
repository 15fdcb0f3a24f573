// Identical Ranges share calls to etcd (--coalesce-ranges, on by default):
// etcd serves fewer of them, every client still gets etcd's answer, large
// ones relayed whole, and a read never misses a write acknowledged before it.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { callsStarted } from "../helpers/etcd.js";
import { useProxy } from "../helpers/fixture.js";
import { EtcdGrpcClient, UNLIMITED } from "../helpers/grpc-client.js";
import { proxyMetric } from "../helpers/metrics.js";
import { startTestProxy } from "../helpers/proxy.js";

const KEYS = 100;
const VALUE = "v".repeat(2000); // 100 × 2 KB: a 200 KB answer, relayed as it arrives
const CLIENTS = 8;
const COALESCED = "etcd_grpc_proxy_coalesced_ranges_total";

type Kv = { key: Buffer; value: Buffer; mod_revision: string };
const prefixRange = { key: Buffer.from("co/"), range_end: Buffer.from("co0") };
const summary = (r: Record<string, unknown>) =>
  (r.kvs as Kv[]).map((kv) => `${kv.key.toString()}=${kv.value.length}@${kv.mod_revision}`).join(",");

describe("identical Ranges share calls to etcd", () => {
  const f = useProxy(1);
  let clients: EtcdGrpcClient[];

  before(async () => {
    for (let i = 0; i < KEYS; i += 25)
      await Promise.all(
        Array.from({ length: 25 }, (_, j) =>
          f.direct.unary("KV", "Put", { key: Buffer.from(`co/${String(i + j).padStart(3, "0")}`), value: VALUE }),
        ),
      );
    // One connection each, as separate clients would have.
    clients = Array.from({ length: CLIENTS }, () => new EtcdGrpcClient(f.proxy.address, undefined, UNLIMITED));
  });
  after(() => clients?.forEach((c) => c.close()));

  it("many clients' Ranges at once cost etcd fewer calls, and each client gets etcd's answer whole", async () => {
    const expected = summary(await f.direct.unary("KV", "Range", prefixRange));
    const etcdUrl = f.etcd.members[0]!.clientUrl;
    const before = {
      calls: await callsStarted(etcdUrl, "Range"),
      shared: await proxyMetric(f.proxy.address, COALESCED),
    };
    const rounds = 5;
    for (let round = 0; round < rounds; round++) {
      const answers = await Promise.all(clients.map((c) => c.unary("KV", "Range", prefixRange)));
      for (const answer of answers) assert.equal(summary(answer), expected);
    }
    const calls = (await callsStarted(etcdUrl, "Range")) - before.calls;
    const shared = (await proxyMetric(f.proxy.address, COALESCED)) - before.shared;
    assert.ok(shared > 0, "no Range shared a call");
    assert.equal(calls + shared, rounds * CLIENTS, `${calls} calls reached etcd and ${shared} Ranges shared one`);
  });

  it("a Range sent after a write was acknowledged sees it, while identical Ranges keep coming", async () => {
    const before = await proxyMetric(f.proxy.address, COALESCED);
    const key = Buffer.from("co-ryw");
    let reading = true;
    const readers = clients.slice(1).map(async (c) => {
      while (reading) await c.unary("KV", "Range", { key });
    });
    try {
      for (let i = 0; i < 40; i++) {
        await clients[0]!.unary("KV", "Put", { key, value: Buffer.from(String(i)) });
        const answer = await clients[0]!.unary("KV", "Range", { key });
        assert.equal(((answer.kvs as Kv[])[0]?.value ?? Buffer.alloc(0)).toString(), String(i));
      }
    } finally {
      reading = false;
      await Promise.all(readers);
    }
    assert.ok((await proxyMetric(f.proxy.address, COALESCED)) > before, "the readers never shared a call");
  });

  it("--coalesce-ranges=false sends every Range to etcd", async () => {
    const proxy = await startTestProxy(f.etcd.endpoints, ["--coalesce-ranges=false"]);
    const own = Array.from({ length: 4 }, () => new EtcdGrpcClient(proxy.address, undefined, UNLIMITED));
    try {
      const etcdUrl = f.etcd.members[0]!.clientUrl;
      const calls = await callsStarted(etcdUrl, "Range");
      for (let round = 0; round < 3; round++) await Promise.all(own.map((c) => c.unary("KV", "Range", prefixRange)));
      assert.equal((await callsStarted(etcdUrl, "Range")) - calls, 12);
      assert.equal(await proxyMetric(proxy.address, COALESCED), 0);
    } finally {
      own.forEach((c) => c.close());
      await proxy.close();
    }
  });
});

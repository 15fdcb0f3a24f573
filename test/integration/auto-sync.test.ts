// --endpoints-auto-sync-interval: the proxy refreshes its endpoints from the
// cluster's members, as clientv3's autoSync does. Started with one member of
// three, it learns the others; a member added to the cluster becomes an
// endpoint, and one removed leaves, while a get loop through the proxy never
// fails.
//
// Lane-independent: npm test runs it in the fast lane only, since
// the endpoint list is upstream's.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { RunningProxy } from "../../src/main.js";
import { ETCD_VERSION, startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { EtcdGrpcClient } from "../helpers/grpc-client.js";
import { startTestProxy } from "../helpers/proxy.js";
import { eventually } from "../helpers/watch.js";

describe(`--endpoints-auto-sync-interval (etcd ${ETCD_VERSION})`, () => {
  let etcd: EtcdCluster;
  let proxy: RunningProxy;
  let client: EtcdGrpcClient;
  const endpoints = () =>
    proxy.upstream
      .endpoints()
      .map((e) => e.url)
      .sort();
  const urls = (names: string[]) =>
    etcd.members
      .filter((m) => names.includes(m.name))
      .map((m) => m.clientUrl)
      .sort();

  before(async () => {
    etcd = await startEtcd(3);
    proxy = await startTestProxy(etcd.members[0]!.endpoint, ["--endpoints-auto-sync-interval=500ms"]);
    client = new EtcdGrpcClient(proxy.address);
  });
  after(async () => {
    client?.close();
    await proxy?.close();
    await etcd?.stop();
  });

  it("learns every member from the one it was given", async () => {
    assert.deepEqual(endpoints(), urls(["m0"]));
    await eventually(() => endpoints().join() === urls(["m0", "m1", "m2"]).join(), "all three members", 5000);
  });

  it("takes in an added member and lets a removed one go, while gets through the proxy all succeed", async () => {
    await client.unary("KV", "Put", { key: Buffer.from("sync"), value: Buffer.from("v") });
    let gets = 0;
    const failures: unknown[] = [];
    let running = true;
    const loop = (async () => {
      while (running) {
        try {
          await client.unary("KV", "Range", { key: Buffer.from("sync") });
          gets++;
        } catch (err) {
          failures.push(err);
        }
      }
    })();
    try {
      const added = await etcd.add();
      // Liveness bounds, not timings: a new member publishes its client URL only once it has started and
      // joined, which on a loaded 2-core machine has taken more than 5 s (etcd 3.4.23, CI).
      await eventually(() => endpoints().includes(added.clientUrl), "the added member as an endpoint", 20_000);
      // Remove the member the proxy started on (and perhaps is using).
      await etcd.remove(etcd.members[0]!);
      await eventually(
        () => endpoints().join() === urls(["m1", "m2", added.name]).join(),
        "the removed member to leave",
        20_000,
      );
      const before = gets;
      await eventually(() => gets > before + 20, "gets after the change", 20_000);
    } finally {
      running = false;
      await loop;
    }
    assert.deepEqual(failures, []);
    assert.ok(gets > 20, `${gets} gets`);
  });
});

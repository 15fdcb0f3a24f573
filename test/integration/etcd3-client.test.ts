// The `etcd3` npm client, unchanged, through the proxy: KV, transactions,
// watches, leases with keep-alive, locks, elections, and its error classes.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import {
  Etcd3,
  EtcdLeaseInvalidError,
  EtcdLockFailedError,
  EtcdRoleNotFoundError,
  EtcdUserExistsError,
  isRecoverableError,
} from "etcd3";
import { useProxy } from "../helpers/fixture.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("the etcd3 npm client through the proxy", () => {
  let client: Etcd3;
  const f = useProxy(1, {
    setup: ({ proxy }) => {
      client = new Etcd3({ hosts: `http://${proxy.address}` });
    },
  });
  after(() => client?.close());

  it("puts, gets, lists by prefix, deletes", async () => {
    await client.put("etcd3/a").value("1");
    await client.put("etcd3/b").value("2");
    assert.equal(await client.get("etcd3/a").string(), "1");
    assert.deepEqual(await client.getAll().prefix("etcd3/").strings(), { "etcd3/a": "1", "etcd3/b": "2" });
    await client.delete().key("etcd3/a");
    assert.equal(await client.get("etcd3/a").string(), null);
  });

  it("runs an if/else transaction", async () => {
    await client.put("etcd3/tx").value("old");
    const res = await client
      .if("etcd3/tx", "Value", "==", "old")
      .then(client.put("etcd3/tx").value("new"))
      .else(client.put("etcd3/tx").value("other"))
      .commit();
    assert.equal(res.succeeded, true);
    assert.equal(await client.get("etcd3/tx").string(), "new");
  });

  it("watches a key and sees puts made directly on etcd", async () => {
    const watcher = await client.watch().key("etcd3/watched").create();
    try {
      const seen = new Promise<string>((resolve) => watcher.on("put", (kv) => resolve(kv.value.toString())));
      await f.direct.unary("KV", "Put", { key: Buffer.from("etcd3/watched"), value: Buffer.from("from-etcd") });
      assert.equal(await seen, "from-etcd");
    } finally {
      await watcher.cancel();
    }
  });

  it("keeps a lease alive through the coalesced stream, then revokes it", async () => {
    const lease = client.lease(2, { autoKeepAlive: true });
    try {
      await lease.put("etcd3/leased").value("v");
      const keptAlive = new Promise<void>((resolve) => lease.once("keepaliveSucceeded", () => resolve()));
      await keptAlive;
      await sleep(2500); // longer than the TTL: only keep-alives keep the key
      assert.equal(await client.get("etcd3/leased").string(), "v");
    } finally {
      await lease.revoke();
    }
    assert.equal(await client.get("etcd3/leased").string(), null);
  });

  it("a revoked lease is reported as invalid, with etcd's error", async () => {
    const lease = client.lease(60, { autoKeepAlive: false });
    await lease.grant();
    await lease.revoke();
    await assert.rejects(async () => {
      await lease.put("etcd3/gone").value("v");
    }, EtcdLeaseInvalidError);
  });

  it("takes a lock, and a second taker waits for it", async () => {
    const first = client.lock("etcd3-lock");
    await first.acquire();
    await assert.rejects(client.lock("etcd3-lock").ttl(5).acquire(), EtcdLockFailedError);
    await first.release();
    const second = client.lock("etcd3-lock");
    await second.acquire();
    await second.release();
  });

  it("campaigns in an election and observes the leader", async () => {
    const election = client.election("etcd3-election");
    const campaign = election.campaign("candidate-1");
    await new Promise<void>((resolve, reject) => {
      campaign.on("elected", () => resolve());
      campaign.on("error", reject);
    });
    assert.equal(await election.leader(), "candidate-1");
    await campaign.resign();
  });

  it("errors map to etcd3's classes, which it matches by etcd's message text", async () => {
    await client.user("etcd3-user").create("pw");
    await assert.rejects(() => client.user("etcd3-user").create("pw"), EtcdUserExistsError);
    await assert.rejects(() => client.role("no-such-role").permissions(), EtcdRoleNotFoundError);
    // The class etcd3 picks for a future revision must be the same as direct.
    const futureRead = (c: Etcd3) =>
      c
        .get("etcd3/a")
        .revision(1_000_000)
        .string()
        .then(
          () => undefined,
          (e: Error) => e,
        );
    const direct = new Etcd3({ hosts: `http://${f.etcd.endpoints}` });
    const viaEtcd = await futureRead(direct);
    direct.close();
    const future = await futureRead(client);
    assert.ok(future && viaEtcd);
    assert.equal(future.constructor, viaEtcd.constructor);
    assert.equal(future.message, viaEtcd.message);
    assert.match(future.message, /etcdserver: mvcc: required revision is a future revision/);
    assert.equal(isRecoverableError(future), false);
  });
});

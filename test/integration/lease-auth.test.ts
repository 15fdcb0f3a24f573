// Lease keep-alives on a cluster with auth on. etcd 3.5.28 and later check
// the caller of every renewal (a user, allowed to put the lease's keys);
// earlier etcd checks none. Through the proxy, each client must get exactly
// what etcd answers that client direct, with keep-alives from several
// identities in flight at once: none rides another's upstream stream.
import type * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ETCD_VERSION } from "../helpers/etcd.js";
import { ctl, spawnCtl } from "../helpers/etcdctl.js";
import { useProxy } from "../helpers/fixture.js";
import { EtcdGrpcClient, login, type GrpcError } from "../helpers/grpc-client.js";

/** What one keep-alive request got: a TTL, or etcd's error. */
type Answer = { ttl: string } | { error: string; code: number };

/** Opens a LeaseKeepAlive stream with `metadata`; each `renew` sends one request and waits for its answer. */
function keepAliveStream(client: EtcdGrpcClient, metadata: grpc.Metadata) {
  const call = client.stream("Lease", "LeaseKeepAlive", metadata);
  const waiting: Array<(a: Answer) => void> = [];
  let ended: Answer | undefined;
  call.on("data", (d: { TTL: string }) => waiting.shift()?.({ ttl: d.TTL }));
  call.on("error", (e: GrpcError) => {
    ended = { error: e.details, code: e.code };
    for (const w of waiting.splice(0)) w(ended);
  });
  return {
    renew(id: string): Promise<Answer> {
      if (ended) return Promise.resolve(ended);
      return new Promise((resolve) => {
        waiting.push(resolve);
        call.write({ ID: id });
      });
    },
    close: () => call.cancel(),
  };
}

describe(`lease keep-alive with auth on (etcd ${ETCD_VERSION})`, () => {
  const leases: Record<string, string> = {};
  const f = useProxy(1, {
    setup: async (f) => {
      const via = f.etcd.members[0]!.endpoint;
      await ctl(via, ["user", "add", "root", "--new-user-password=rootpw"]);
      for (const [user, prefix] of [
        ["alice", "a/"],
        ["bob", "b/"],
      ]) {
        await ctl(via, ["role", "add", `${user}-role`]);
        await ctl(via, ["role", "grant-permission", `${user}-role`, "readwrite", prefix!, "--prefix"]);
        await ctl(via, ["user", "add", user!, `--new-user-password=${user}pw`]);
        await ctl(via, ["user", "grant-role", user!, `${user}-role`]);
      }
      await ctl(via, ["auth", "enable"]);
      // Each user's lease holds a key of theirs; the root's holds none.
      for (const [user, key] of [
        ["alice", "a/k"],
        ["bob", "b/k"],
        ["root", ""],
      ]) {
        const md = await login(f.direct, user!, `${user}pw`);
        const { ID } = (await f.direct.unary("Lease", "LeaseGrant", { TTL: 60 }, md)) as { ID: string };
        if (key) await f.direct.unary("KV", "Put", { key: Buffer.from(key), value: Buffer.from("v"), lease: ID }, md);
        leases[user!] = ID;
      }
    },
  });

  /** Renews `lease` as `user` (undefined: anonymous), through `client`, on a stream of its own. */
  async function renewAs(client: EtcdGrpcClient, user: string | undefined, lease: string): Promise<Answer> {
    const md = user ? await login(client, user, `${user}pw`) : new (await import("@grpc/grpc-js")).Metadata();
    const stream = keepAliveStream(client, md);
    try {
      return await stream.renew(lease);
    } finally {
      stream.close();
    }
  }

  it("two users and an anonymous client renewing at once each get etcd's own answer", async () => {
    const cases: Array<[string | undefined, string]> = [
      ["alice", "alice"],
      ["bob", "bob"],
      [undefined, "root"], // anonymous: allowed by etcd before 3.5.28, refused after
      ["bob", "alice"], // another user's lease: etcd 3.5.28+ refuses bob alice's key
      [undefined, "alice"],
      ["alice", "root"],
    ];
    const direct = await Promise.all(cases.map(([user, owner]) => renewAs(f.direct, user, leases[owner]!)));
    // All at once through the proxy, twice over, so renewals of the same lease coalesce too.
    const proxied = await Promise.all(
      [...cases, ...cases].map(([user, owner]) => renewAs(f.client, user, leases[owner]!)),
    );
    assert.deepEqual(proxied, [...direct, ...direct]);
    // Each user renews a lease of their own, on every etcd.
    assert.ok("ttl" in direct[0]! && "ttl" in direct[1]!, JSON.stringify(direct));
  });

  it("a user whose token is invalidated gets etcd's error on its stream only; the others go on", async () => {
    const alice = keepAliveStream(f.client, await login(f.client, "alice", "alicepw"));
    const aliceDirect = keepAliveStream(f.direct, await login(f.direct, "alice", "alicepw"));
    const bob = keepAliveStream(f.client, await login(f.client, "bob", "bobpw"));
    const anonymous = keepAliveStream(f.client, new (await import("@grpc/grpc-js")).Metadata());
    const anonymousDirect = keepAliveStream(f.direct, new (await import("@grpc/grpc-js")).Metadata());
    try {
      assert.ok("ttl" in (await alice.renew(leases["alice"]!)));
      // Changing the password invalidates alice's tokens.
      await ctl(
        f.proxy.address,
        ["--user=root:rootpw", "user", "passwd", "alice", "--interactive=false"],
        "alicepw2\n",
      );
      const [viaProxy, direct] = [await alice.renew(leases["alice"]!), await aliceDirect.renew(leases["alice"]!)];
      assert.deepEqual(viaProxy, direct);
      assert.deepEqual(await bob.renew(leases["bob"]!), { ttl: "60" });
      assert.deepEqual(await anonymous.renew(leases["root"]!), await anonymousDirect.renew(leases["root"]!));
      assert.deepEqual(await bob.renew(leases["bob"]!), { ttl: "60" }, "bob's stream is still open");
    } finally {
      for (const s of [alice, aliceDirect, bob, anonymous, anonymousDirect]) s.close();
      await ctl(f.proxy.address, ["--user=root:rootpw", "user", "passwd", "alice", "--interactive=false"], "alicepw\n");
    }
  });

  it("etcdctl lock and elect work with --user", async () => {
    const via = f.proxy.address;
    assert.equal(await ctl(via, ["--user=alice:alicepw", "lock", "a/lock", "echo", "holding"]), "holding\n");
    const campaign = spawnCtl(via, ["--user=alice:alicepw", "elect", "a/election", "proposal-1"]);
    const observer = spawnCtl(via, ["--user=alice:alicepw", "elect", "--listen", "a/election"]);
    try {
      await campaign.waitFor("proposal-1");
      await observer.waitFor("proposal-1");
      // The campaign's lease stays alive past its TTL's first renewals.
      const keepAlive = spawnCtl(via, ["--user=bob:bobpw", "lease", "keep-alive", BigInt(leases["bob"]!).toString(16)]);
      try {
        await keepAlive.waitFor(/keepalived with TTL\(60\)/);
      } finally {
        await keepAlive.kill();
      }
    } finally {
      await campaign.kill();
      await observer.kill();
    }
  });
});

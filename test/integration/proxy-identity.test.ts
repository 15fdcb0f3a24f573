// --user: on a cluster with auth on, the proxy's own calls (registration,
// the cache's invalidation watch, health) carry its own identity, and no
// client gains anything from it.
//
// Lane-independent: npm test runs it in the fast lane only, since
// the proxy's own calls are upstream's.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ctl } from "../helpers/etcdctl.js";
import { useProxy } from "../helpers/fixture.js";
import { login, outcome } from "../helpers/grpc-client.js";
import { eventually } from "../helpers/watch.js";

describe("the proxy's own identity under auth", () => {
  const f = useProxy(1, {
    proxyArgs: ["--user=proxy:proxypw", "--resolver-prefix=reg", "--resolver-ttl=30", "--cache-ttl=1h"],
    setup: async (f) => {
      const via = f.etcd.members[0]!.endpoint;
      await ctl(via, ["user", "add", "root", "--new-user-password=rootpw"]);
      await ctl(via, ["user", "add", "proxy", "--new-user-password=proxypw"]);
      await ctl(via, ["user", "grant-role", "proxy", "root"]);
      await ctl(via, ["put", "secret", "s"]);
      await ctl(via, ["auth", "enable"]);
    },
  });

  it("registers itself and lists itself, though etcd refuses anonymous writes", async () => {
    const root = ["--user=root:rootpw"];
    await eventually(
      async () =>
        (await ctl(f.etcd.members[0]!.endpoint, [...root, "get", `reg/${f.proxy.address}`, "--print-value-only"])) !==
        "",
      "the registration record",
    );
    // etcd 3.5.28 and later list members only to authenticated callers: ask as a user.
    const members = (await f.client.unary("Cluster", "MemberList", {}, await login(f.client, "root", "rootpw"))) as {
      members: Array<{ clientURLs: string[] }>;
    };
    assert.deepEqual(
      members.members.flatMap((m) => m.clientURLs),
      [`http://${f.proxy.address}`],
    );
  });

  it("its cache watch sees writes made elsewhere", async () => {
    const root = await login(f.client, "root", "rootpw");
    await f.client.unary("KV", "Put", { key: Buffer.from("ext"), value: Buffer.from("1") }, root);
    const read = async () =>
      (
        (await f.client.unary("KV", "Range", { key: Buffer.from("ext"), serializable: true }, root)) as any
      ).kvs[0].value.toString();
    assert.equal(await read(), "1");
    assert.equal(await read(), "1");
    await ctl(f.etcd.members[0]!.endpoint, ["--user=root:rootpw", "put", "ext", "2"]);
    await eventually(async () => (await read()) === "2", "the write made elsewhere, with a one-hour cache TTL");
  });

  it("health checks pass as the proxy, and clients still get only what etcd gives them", async () => {
    const health = (await (await fetch(`http://${f.proxy.address}/health`)).json()) as { health: string };
    assert.equal(health.health, "true");
    const self = (await (await fetch(`http://${f.proxy.address}/proxy/health`)).json()) as { health: string };
    assert.equal(self.health, "true");
    const anonymous = await outcome(f.client.unary("KV", "Range", { key: Buffer.from("secret") }));
    const direct = await outcome(f.direct.unary("KV", "Range", { key: Buffer.from("secret") }));
    assert.notEqual(anonymous.code, 0);
    assert.deepEqual(anonymous, direct);
  });
});

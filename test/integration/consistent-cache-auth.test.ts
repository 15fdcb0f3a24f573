// The consistent cache on a cluster with auth on: the replica loads as the
// proxy's own user, but a caller gets from memory only what etcd would give
// that caller, and a permission revoked straight in etcd takes effect at the
// next read.
//
// Lane-independent: npm test runs it in the fast lane only, since the
// replica is a decorator above the lanes.
import type * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ETCD_VERSION } from "../helpers/etcd.js";
import { ctl } from "../helpers/etcdctl.js";
import { useProxy } from "../helpers/fixture.js";
import { login, outcome, type EtcdGrpcClient } from "../helpers/grpc-client.js";
import { proxyMetric } from "../helpers/metrics.js";
import { eventually } from "../helpers/watch.js";

type Plain = Record<string, any>;
const b = (s: string) => Buffer.from(s);
const range = (client: EtcdGrpcClient, request: Plain, md?: grpc.Metadata) =>
  client.unary("KV", "Range", request, md) as Promise<Plain>;

describe(`consistent cache with auth on (etcd ${ETCD_VERSION})`, () => {
  const f = useProxy(1, {
    proxyArgs: ["--consistent-cache-prefix=cc/", "--user=root:rootpw"],
    setup: async (f) => {
      const via = f.etcd.members[0]!.endpoint;
      await ctl(via, ["put", "cc/a/1", "one"]);
      await ctl(via, ["put", "cc/b/1", "secret"]);
      await ctl(via, ["user", "add", "root", "--new-user-password=rootpw"]);
      await ctl(via, ["role", "add", "reader-a"]);
      await ctl(via, ["role", "grant-permission", "reader-a", "read", "cc/a/", "--prefix"]);
      await ctl(via, ["user", "add", "alice", "--new-user-password=alicepw"]);
      await ctl(via, ["user", "grant-role", "alice", "reader-a"]);
      await ctl(via, ["auth", "enable"]);
      // The replica could not load before the proxy's user existed; it retries, and loads as root.
      await eventually(
        async () =>
          (await proxyMetric(f.proxy.address, "etcd_grpc_proxy_consistent_cache_keys", { prefix: "cc/" })) === 2,
        "the replica to load as the proxy's user",
        20_000,
      );
    },
  });
  const answers = () => proxyMetric(f.proxy.address, "etcd_grpc_proxy_consistent_cache_answers_total");

  it("a caller reads from memory what it may read, and gets etcd's refusal for what it may not", async () => {
    const alice = await login(f.direct, "alice", "alicepw");
    const before = await answers();
    const mine = { key: b("cc/a/"), range_end: b("cc/a0") };
    const proxied = await range(f.client, mine, alice);
    const direct = await range(f.direct, mine, alice);
    assert.deepEqual(proxied.kvs, direct.kvs);
    assert.equal(proxied.kvs[0].value.toString(), "one");
    assert.equal(await answers(), before + 1, "from memory");

    for (const notMine of [{ key: b("cc/"), range_end: b("cc0") }, { key: b("cc/b/1") }]) {
      const refused = await outcome(range(f.client, notMine, alice));
      assert.notEqual(refused.code, 0, "refused");
      assert.deepEqual(refused, await outcome(range(f.direct, notMine, alice)), "in etcd's words");
    }
    const anonymous = await outcome(range(f.client, mine));
    assert.notEqual(anonymous.code, 0);
    assert.deepEqual(anonymous, await outcome(range(f.direct, mine)), "no token, no keys");
    assert.equal(await answers(), before + 1, "nothing refused came from memory");
  });

  it("a permission revoked straight in etcd takes effect at the next read", async () => {
    const alice = await login(f.direct, "alice", "alicepw");
    const mine = { key: b("cc/a/1") };
    assert.equal((await range(f.client, mine, alice)).kvs.length, 1);
    await ctl(f.etcd.members[0]!.endpoint, [
      "--user=root:rootpw",
      "role",
      "revoke-permission",
      "reader-a",
      "cc/a/",
      "--prefix",
    ]);
    const after = await outcome(range(f.client, mine, alice));
    assert.notEqual(after.code, 0);
    assert.deepEqual(after, await outcome(range(f.direct, mine, alice)));
  });
});

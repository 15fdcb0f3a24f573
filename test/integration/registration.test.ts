// --resolver-prefix: proxies register themselves, and MemberList (etcdctl
// member list, clientv3's Sync, the etcd3 client) lists every one of them.
//
// Lane-independent: npm test runs it in the fast lane only, since
// registration is upstream's.
import assert from "node:assert/strict";
import { hostname } from "node:os";
import { after, before, describe, it } from "node:test";
import { Etcd3 } from "etcd3";
import { startCli } from "../helpers/cli.js";
import { startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { ctl } from "../helpers/etcdctl.js";
import { EtcdGrpcClient } from "../helpers/grpc-client.js";
import { eventually } from "../helpers/watch.js";

type Proxy = Awaited<ReturnType<typeof startCli>>;
const PREFIX = "___grpc_proxy_endpoint";

/** The client addresses MemberList gives through `address`. */
async function listed(address: string): Promise<string[]> {
  const client = new EtcdGrpcClient(address);
  try {
    const r = (await client.unary("Cluster", "MemberList", {})) as { members: Array<{ clientURLs: string[] }> };
    // MemberList gives client URLs; registration records hold bare addresses.
    return r.members.flatMap((m) => m.clientURLs.map((u) => u.replace(/^http:\/\//, ""))).sort();
  } finally {
    client.close();
  }
}

describe("proxy registration", () => {
  let etcd: EtcdCluster;
  const proxies: Proxy[] = [];
  before(async () => {
    etcd = await startEtcd(1);
  });
  after(async () => {
    for (const p of proxies) if (p.child.exitCode === null) p.child.kill("SIGKILL");
    await etcd?.stop();
  });

  const start = async (ttl: number, extra: string[] = []) => {
    const p = await startCli(etcd.endpoints, [`--resolver-prefix=${PREFIX}`, `--resolver-ttl=${ttl}`, ...extra]);
    proxies.push(p);
    return p;
  };

  it("writes etcd's record under <prefix>/<advertise address>, bound to a lease of the TTL", async () => {
    const p = await start(60);
    const key = `${PREFIX}/${p.address}`;
    await eventually(
      async () => (await ctl(etcd.members[0]!.endpoint, ["get", key, "--print-value-only"])) !== "",
      "the record",
    );
    const value = await ctl(etcd.members[0]!.endpoint, ["get", key, "--print-value-only"]);
    assert.equal(value, `{"Op":0,"Addr":"${p.address}","Metadata":"{\\"name\\":\\"${hostname()}\\"}"}\n`);
    const direct = new EtcdGrpcClient(etcd.members[0]!.endpoint);
    try {
      const read = (await direct.unary("KV", "Range", { key: Buffer.from(key) })) as { kvs: Array<{ lease: string }> };
      const ttl = (await direct.unary("Lease", "LeaseTimeToLive", { ID: read.kvs[0]!.lease })) as {
        grantedTTL: string;
      };
      assert.equal(ttl.grantedTTL, "60");
    } finally {
      direct.close();
    }
    p.child.kill("SIGTERM");
    await p.exited;
  });

  it("every proxy lists every registered proxy; kill -9 leaves after the TTL, a clean stop at once", async () => {
    const a = await start(60);
    const b = await start(2);
    const both = [a.address, b.address].sort();
    await eventually(async () => (await listed(a.address)).join() === both.join(), "a to list both");
    await eventually(async () => (await listed(b.address)).join() === both.join(), "b to list both");

    // etcdctl, and the etcd3 npm client's member list, see the same.
    const table = await ctl(a.address, ["member", "list"]);
    // One member: both proxies are its client URLs.
    for (const addr of both) assert.match(table, new RegExp(`[ ,]http://${addr.replace(/\./g, "\\.")}[,\\s]`));
    const etcd3 = new Etcd3({ hosts: b.address });
    try {
      const members = await etcd3.cluster.memberList({});
      assert.deepEqual(
        members.members.flatMap((m) => m.clientURLs).sort(),
        both.map((a) => `http://${a}`),
      );
    } finally {
      etcd3.close();
    }

    b.child.kill("SIGKILL");
    await b.exited;
    await eventually(async () => (await listed(a.address)).join() === a.address, "the killed proxy to expire", 15_000);

    // A clean stop takes the record with it, long before its 60 s TTL.
    const c = await start(60);
    await eventually(async () => (await listed(c.address)).length === 2, "c to see a");
    a.child.kill("SIGTERM");
    assert.equal(await a.exited, 0);
    await eventually(async () => (await listed(c.address)).join() === c.address, "a's record to go at once", 5000);
  });

  it("under --namespace the record is namespaced too", async () => {
    const p = await start(60, ["--namespace=ns/"]);
    await eventually(
      async () =>
        (await ctl(etcd.members[0]!.endpoint, ["get", `ns/${PREFIX}/${p.address}`, "--print-value-only"])) !== "",
      "the namespaced record",
    );
    assert.deepEqual(await listed(p.address), [p.address]);
  });
});

// MemberList through proxies in front of a 3-member cluster: etcd's real
// members (IDs, names, peer URLs, learner flags), with the proxies' URLs as
// the client URLs, each proxy once in the whole list. Clients that sync
// their endpoints (clientv3's Sync, etcdctl --cluster, the etcd3 client)
// find exactly the proxies; tools that cross-check member IDs still work.
//
// Lane-independent: npm test runs it in the fast lane only, since
// the member list is made above the lanes.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Etcd3 } from "etcd3";
import { startCli } from "../helpers/cli.js";
import { ETCD_VERSION, startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { ctl, etcdctl } from "../helpers/etcdctl.js";
import { EtcdGrpcClient } from "../helpers/grpc-client.js";
import { eventually } from "../helpers/watch.js";

type Proxy = Awaited<ReturnType<typeof startCli>>;
interface Member {
  ID: string;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}

async function memberList(address: string): Promise<{ header: { member_id: string }; members: Member[] }> {
  const client = new EtcdGrpcClient(address);
  try {
    return (await client.unary("Cluster", "MemberList", {})) as never;
  } finally {
    client.close();
  }
}

describe(`MemberList through two registered proxies, 3 members (etcd ${ETCD_VERSION})`, () => {
  let etcd: EtcdCluster;
  const proxies: Proxy[] = [];
  let urls: string[] = [];
  before(async () => {
    etcd = await startEtcd(3);
    for (let i = 0; i < 2; i++)
      proxies.push(await startCli(etcd.endpoints, ["--resolver-prefix=ecp", "--resolver-ttl=5"]));
    urls = proxies.map((p) => `http://${p.address}`).sort();
    for (const p of proxies) {
      await eventually(
        async () =>
          (await memberList(p.address)).members
            .flatMap((m) => m.clientURLs)
            .sort()
            .join() === urls.join(),
        `${p.address} to list both proxies`,
      );
    }
  });
  after(async () => {
    for (const p of proxies) if (p.child.exitCode === null) p.child.kill("SIGKILL");
    await etcd?.stop();
  });

  it("lists etcd's members, each proxy URL once, with its scheme", async () => {
    const direct = await memberList(etcd.members[0]!.endpoint);
    for (const p of proxies) {
      const viaProxy = await memberList(p.address);
      assert.equal(viaProxy.members.length, 3, "the cluster's member count");
      const strip = (ms: Member[]) => ms.map(({ clientURLs: _, ...rest }) => rest);
      assert.deepEqual(strip(viaProxy.members), strip(direct.members));
      assert.deepEqual(viaProxy.members.flatMap((m) => m.clientURLs).sort(), urls);
    }
  });

  it("Status's leader and member ID are among the members listed", async () => {
    const client = new EtcdGrpcClient(proxies[0]!.address);
    try {
      const status = (await client.unary("Maintenance", "Status", {})) as {
        leader: string;
        header: { member_id: string };
      };
      const ids = (await memberList(proxies[0]!.address)).members.map((m) => m.ID);
      assert.ok(ids.includes(status.leader), `leader ${status.leader} in ${ids.join()}`);
      assert.ok(ids.includes(status.header.member_id));
    } finally {
      client.close();
    }
  });

  it("etcdctl --cluster (clientv3's member-list discovery) and the etcd3 client find exactly the proxies", async () => {
    // etcdctl 3.4 prints the health lines on stderr, 3.5 on stdout.
    const run = await etcdctl(proxies[0]!.address, ["endpoint", "health", "--cluster"]);
    assert.equal(run.code, 0, run.stderr);
    const out = run.stdout + run.stderr;
    const healthy = [...out.matchAll(/^(\S+) is healthy/gm)].map((m) => m[1]).sort();
    assert.deepEqual(healthy, urls);
    const table = await ctl(proxies[1]!.address, ["member", "list"]);
    assert.equal(table.trim().split("\n").length, 3);
    const etcd3 = new Etcd3({ hosts: proxies[1]!.address });
    try {
      const members = await etcd3.cluster.memberList({});
      assert.deepEqual(members.members.flatMap((m) => m.clientURLs).sort(), urls);
    } finally {
      etcd3.close();
    }
  });

  it("a learner, which clients do not sync from, carries no proxy URL", async () => {
    const client = new EtcdGrpcClient(proxies[0]!.address);
    try {
      // etcd takes members only once every member has been connected a while (strict reconfig check).
      let added: { member: { ID: string } } | undefined;
      await eventually(
        async () => {
          added = (await client
            .unary("Cluster", "MemberAdd", { peerURLs: ["http://127.0.0.1:1"], isLearner: true })
            .catch(() => undefined)) as typeof added;
          return added !== undefined;
        },
        "etcd to take a learner",
        15_000,
      );
      try {
        const list = await memberList(proxies[0]!.address);
        assert.equal(list.members.length, 4);
        const learner = list.members.find((m) => m.ID === added!.member.ID)!;
        assert.equal(learner.isLearner, true);
        assert.deepEqual(learner.clientURLs, []);
        assert.deepEqual(list.members.flatMap((m) => m.clientURLs).sort(), urls);
      } finally {
        await client.unary("Cluster", "MemberRemove", { ID: added!.member.ID });
      }
    } finally {
      client.close();
    }
  });
});

describe("MemberList with --advertise-client-url=''", () => {
  let etcd: EtcdCluster;
  let proxy: Proxy;
  before(async () => {
    etcd = await startEtcd(1);
    proxy = await startCli(etcd.endpoints, ["--advertise-client-url="]);
  });
  after(async () => {
    proxy?.child.kill("SIGKILL");
    await etcd?.stop();
  });

  it("is etcd's own answer, unchanged", async () => {
    const [viaProxy, direct] = [await memberList(proxy.address), await memberList(etcd.members[0]!.endpoint)];
    assert.deepEqual(viaProxy.members, direct.members);
    assert.deepEqual(viaProxy.members[0]!.clientURLs, [etcd.members[0]!.clientUrl]);
  });
});

// The RPCs etcdctl does not reach on its own (its `lock` and `elect` use
// client-side recipes), and the metadata the proxy must carry to etcd.
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ETCD_LINE, ETCD_VERSION, startEtcd } from "../helpers/etcd.js";
import { ctl } from "../helpers/etcdctl.js";
import { loseQuorum, useProxy } from "../helpers/fixture.js";
import { EtcdGrpcClient, outcome } from "../helpers/grpc-client.js";
import { startTestProxy } from "../helpers/proxy.js";

type Plain = Record<string, unknown>;
const ELECTION = "v3electionpb.Election";
const LOCK = "v3lockpb.Lock";

describe("single member", () => {
  const f = useProxy(1);

  it("Election: Campaign, Leader, Proclaim, Observe and Resign", async () => {
    const lease = (await f.client.unary("Lease", "LeaseGrant", { TTL: 60 })).ID;
    const name = Buffer.from("svc-election");
    const observed: string[] = [];
    const observer = f.client.client(ELECTION) as unknown as { Observe(req: Plain): grpc.ClientReadableStream<Plain> };
    const stream = observer.Observe({ name });
    stream.on("data", (r: Plain) => observed.push((r.kv as { value: Buffer }).value.toString()));
    stream.on("error", () => {});

    const { leader } = (await f.client.unary(ELECTION, "Campaign", { name, lease, value: Buffer.from("first") })) as {
      leader: Plain;
    };
    assert.equal((leader.name as Buffer).toString(), "svc-election");
    const current = await f.client.unary(ELECTION, "Leader", { name });
    assert.equal((current.kv as { value: Buffer }).value.toString(), "first");

    await f.client.unary(ELECTION, "Proclaim", { leader, value: Buffer.from("second") });
    const after = await f.direct.unary(ELECTION, "Leader", { name });
    assert.equal((after.kv as { value: Buffer }).value.toString(), "second");

    const until = Date.now() + 5000;
    while (!observed.includes("second") && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(observed.slice(-2), ["first", "second"]);
    stream.cancel();

    await f.client.unary(ELECTION, "Resign", { leader });
    const none = await outcome(f.client.unary(ELECTION, "Leader", { name }));
    assert.deepEqual(none, { code: grpc.status.UNKNOWN, details: "election: no leader" });
  });

  it("Lock: a second Lock waits until Unlock", async () => {
    const lease1 = (await f.client.unary("Lease", "LeaseGrant", { TTL: 60 })).ID;
    const lease2 = (await f.client.unary("Lease", "LeaseGrant", { TTL: 60 })).ID;
    const name = Buffer.from("svc-lock");
    const first = (await f.client.unary(LOCK, "Lock", { name, lease: lease1 })) as { key: Buffer };
    assert.ok(first.key.toString().startsWith("svc-lock/"));

    let secondGotIt = false;
    const second = f.client.unary(LOCK, "Lock", { name, lease: lease2 }).then((r) => {
      secondGotIt = true;
      return r as { key: Buffer };
    });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(secondGotIt, false, "the lock is held");
    await f.client.unary(LOCK, "Unlock", { key: first.key });
    const got = await second;
    assert.ok(got.key.toString().startsWith("svc-lock/"));
    assert.notEqual(got.key.toString(), first.key.toString());
  });

  it("Cluster: MemberAdd, MemberUpdate, MemberPromote and MemberRemove of a learner", async () => {
    const added = (await f.client.unary("Cluster", "MemberAdd", {
      peerURLs: ["http://127.0.0.1:1"],
      isLearner: true,
    })) as {
      member: { ID: string; isLearner: boolean };
    };
    assert.equal(added.member.isLearner, true);
    await f.client.unary("Cluster", "MemberUpdate", { ID: added.member.ID, peerURLs: ["http://127.0.0.1:2"] });
    const list = (await f.direct.unary("Cluster", "MemberList", {})) as {
      members: Array<{ ID: string; peerURLs: string[] }>;
    };
    assert.deepEqual(list.members.find((m) => m.ID === added.member.ID)?.peerURLs, ["http://127.0.0.1:2"]);
    // A learner that never started cannot catch up: etcd refuses, and says why.
    const promote = await outcome(f.client.unary("Cluster", "MemberPromote", { ID: added.member.ID }));
    const promoteDirect = await outcome(f.direct.unary("Cluster", "MemberPromote", { ID: added.member.ID }));
    assert.notEqual(promote.code, grpc.status.OK);
    assert.deepEqual(promote, promoteDirect);
    await f.client.unary("Cluster", "MemberRemove", { ID: added.member.ID });
    const after = (await f.direct.unary("Cluster", "MemberList", {})) as { members: Array<{ ID: string }> };
    assert.equal(after.members.length, 1);
  });

  it("Maintenance: Hash, Status and Downgrade give etcd's answers", async () => {
    assert.ok((await f.client.unary("Maintenance", "Hash", {})).hash !== undefined);
    const status = (await f.client.unary("Maintenance", "Status", {})) as { version: string };
    assert.equal(status.version, ETCD_VERSION);
    // etcd 3.4 does not implement Downgrade, 3.5 validates it: the proxy passes either on.
    const downgrade = await outcome(f.client.unary("Maintenance", "Downgrade", { action: 0, version: "3.4" }));
    assert.deepEqual(
      downgrade,
      await outcome(f.direct.unary("Maintenance", "Downgrade", { action: 0, version: "3.4" })),
    );
    if (ETCD_LINE === "3.4") assert.equal(downgrade.code, grpc.status.UNIMPLEMENTED);
  });

  it("client-api-version reaches etcd (its per-version request metric counts us)", async () => {
    const metric = async () => {
      const text = await (await fetch(`${f.etcd.members[0]!.clientUrl}/metrics`)).text();
      const line = text
        .split("\n")
        .find((l) => l.startsWith('etcd_server_client_requests_total{client_api_version="9.9",type="unary"}'));
      return line ? Number(line.split(" ").pop()) : 0;
    };
    const before = await metric();
    const md = new grpc.Metadata();
    md.set("client-api-version", "9.9");
    await f.client.unary("KV", "Range", { key: Buffer.from("x") }, md);
    assert.equal(await metric(), before + 1);
  });

  it("etcdctl's default calls count under etcdctl's own client_api_version at etcd", async () => {
    await ctl(f.proxy.address, ["get", "x"]);
    const text = await (await fetch(`${f.etcd.members[0]!.clientUrl}/metrics`)).text();
    const line = ETCD_LINE.replace(".", "\\.");
    assert.match(
      text,
      new RegExp(`etcd_server_client_requests_total\\{client_api_version="${line}",type="unary"\\} [1-9]`),
    );
  });
});

describe("hasleader on a cluster without a leader", () => {
  it("a watch that requires a leader fails with etcd's 'no leader'; one that does not is created", async () => {
    const etcd = await startEtcd(3);
    const proxy = await startTestProxy(etcd.members[2]!.endpoint);
    const client = new EtcdGrpcClient(proxy.address);
    try {
      await loseQuorum(etcd);

      const openWatch = (metadata: grpc.Metadata) =>
        new Promise<Plain>((resolve, reject) => {
          const call = client.stream("Watch", "Watch", metadata);
          call.on("data", (r: Plain) => {
            resolve(r);
            call.cancel();
          });
          call.on("error", (e) => reject(e));
          call.write({ create_request: { key: Buffer.from("hl") } });
        });

      const required = new grpc.Metadata();
      required.set("hasleader", "true");
      const refused = await outcome(openWatch(required));
      assert.deepEqual(refused, { code: grpc.status.UNAVAILABLE, details: "etcdserver: no leader" });

      const created = await openWatch(new grpc.Metadata());
      assert.equal(created.created, true);
    } finally {
      client.close();
      await proxy.close();
      await etcd.stop();
    }
  });
});

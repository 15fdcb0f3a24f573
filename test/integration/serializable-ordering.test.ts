// --experimental-serializable-ordering: a serializable read through the proxy
// never goes back in revision, even when the only member left lags behind
// what the proxy has already answered, as etcd's ordering client promises.
// The lag is made by pausing one member (SIGSTOP) while the others take
// more writes than the sockets toward it can buffer, then killing the others
// and letting it resume: alone, without quorum, it answers serializable
// reads from its old store.
//
// Lane-independent: npm test runs it in the fast lane only, since
// ordering is a decorator above the lanes.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { RunningProxy } from "../../src/main.js";
import { ETCD_VERSION, startEtcd, type EtcdCluster } from "../helpers/etcd.js";
import { EtcdGrpcClient, outcome } from "../helpers/grpc-client.js";
import { startTestProxy } from "../helpers/proxy.js";

describe(`--experimental-serializable-ordering (etcd ${ETCD_VERSION})`, () => {
  let etcd: EtcdCluster;
  let ordered: RunningProxy;
  let plain: RunningProxy;
  const clients: EtcdGrpcClient[] = [];
  before(async () => {
    etcd = await startEtcd(3);
    ordered = await startTestProxy(etcd.endpoints, ["--experimental-serializable-ordering"]);
    plain = await startTestProxy(etcd.endpoints);
  });
  after(async () => {
    for (const c of clients) c.close();
    await ordered?.close();
    await plain?.close();
    await etcd?.stop();
  });

  /** A serializable read of `key` through `proxy`: the store revision it was answered at, or its error. */
  async function read(proxy: RunningProxy, key: string) {
    const client = new EtcdGrpcClient(proxy.address);
    clients.push(client);
    let revision: number | undefined;
    const result = await outcome(
      client
        .unary("KV", "Range", { key: Buffer.from(key), serializable: true }, undefined, 8000)
        .then((r) => (revision = Number((r as { header: { revision: string } }).header.revision))),
    );
    return revision !== undefined ? { revision } : result;
  }

  it("refuses to answer from a member behind what it already answered, where the plain proxy goes back", async () => {
    // The member to pause must not be the leader, or the others could not take writes.
    const statuses = await Promise.all(
      etcd.members.map(async (m) => {
        const c = new EtcdGrpcClient(m.endpoint);
        clients.push(c);
        return (await c.unary("Maintenance", "Status", {})) as { leader: string; header: { member_id: string } };
      }),
    );
    const lagging = etcd.members[statuses.findIndex((st) => st.leader !== st.header.member_id)]!;
    const others = etcd.members.filter((m) => m !== lagging);
    const direct = new EtcdGrpcClient(others[0]!.endpoint);
    clients.push(direct);
    lagging.process!.kill("SIGSTOP");
    const big = Buffer.alloc(1 << 20, 1);
    for (let i = 0; i < 40; i++) await direct.unary("KV", "Put", { key: Buffer.from(`o/${i}`), value: big });
    // Both proxies answer at the latest revision, from a member that has it.
    const seen = { ordered: await read(ordered, "o/a"), plain: await read(plain, "o/b") };
    assert.ok("revision" in seen.ordered && "revision" in seen.plain, JSON.stringify(seen));
    const latest = Math.min(seen.ordered.revision, seen.plain.revision);
    // Now only the lagging member is left, with its old store and no leader.
    for (const m of others) await etcd.kill(m);
    lagging.process!.kill("SIGCONT");
    const alone = new EtcdGrpcClient(lagging.endpoint);
    clients.push(alone);
    const behind = (await alone.unary("KV", "Range", {
      key: Buffer.from("o/0"),
      serializable: true,
      keys_only: true,
    })) as {
      header: { revision: string };
    };
    assert.ok(
      Number(behind.header.revision) < latest,
      `the paused member is behind: ${behind.header.revision} < ${latest}`,
    );

    const plainAnswer = await read(plain, "o/c");
    assert.ok(
      "revision" in plainAnswer && plainAnswer.revision < latest,
      `the plain proxy went back: ${JSON.stringify(plainAnswer)}`,
    );
    const orderedAnswer = await read(ordered, "o/d");
    assert.deepEqual(orderedAnswer, {
      code: 2,
      details: "etcdclient: no cluster members have a revision higher than the previously received revision",
    });

    // Once a member that has caught up is back, ordered reads are served again.
    await etcd.restart(others[0]!);
    await etcd.restart(others[1]!);
    let after: Awaited<ReturnType<typeof read>> | undefined;
    for (let i = 0; i < 50; i++) {
      after = await read(ordered, `o/e${i}`);
      if ("revision" in after) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(after && "revision" in after && after.revision >= seen.ordered.revision, JSON.stringify(after));
  });
});

// An operator's day with a full database, in chromium, on a 3-member
// cluster with a small quota: the Cluster page shows each member's raft
// indexes and its database against the quota read from the member; writes
// fill it until etcd raises NOSPACE; the page compacts, defragments one
// member at a time (only that member shrinks), disarms the alarms, and
// moves the leader.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SCREENSHOTS, useDialogs, usePage } from "../helpers/browser.js";
import { leaderMember, useProxy } from "../helpers/fixture.js";
import { EtcdGrpcClient, outcome } from "../helpers/grpc-client.js";

type Plain = Record<string, any>;

const QUOTA = 4 * 1024 * 1024;

describe("the dashboard's cluster and maintenance pages on a full database", () => {
  const f = useProxy(3, { etcdArgs: [`--quota-backend-bytes=${QUOTA}`] });
  const page = usePage();
  const asked = useDialogs(page);

  const status = async (endpoint: string) => {
    const probe = new EtcdGrpcClient(endpoint);
    try {
      return (await probe.unary("Maintenance", "Status", {})) as Plain;
    } finally {
      probe.close();
    }
  };
  const rowOf = (url: string) => page.locator(`#endpoint-table tr[data-endpoint="${url}"]`);

  it("shows raft indexes and each member's database against the quota it reads from the member", async () => {
    await page.goto(`http://${f.proxy.address}/`);
    await page.click("#tabs button[data-tab=cluster]");
    for (const m of f.etcd.members) {
      const row = rowOf(m.clientUrl);
      await row.locator("td.db", { hasText: "of 4.00 MiB" }).waitFor();
      const s = await status(m.endpoint);
      const index = Number(await row.locator("td.raft-index").textContent());
      assert.ok(index > 0 && index <= Number(s.raftIndex), `raft index ${index}, etcd ${s.raftIndex}`);
      assert.match((await row.locator("td.raft-applied").textContent())!, /^\d+|– \(etcd 3\.4\)$/);
    }
  });

  it("compacts, defragments members one at a time and disarms NOSPACE once the database is full", async () => {
    const big = Buffer.alloc(256 * 1024, 7);
    let refused = "";
    for (let i = 0; i < 64 && !refused; i++) {
      const put = await outcome(f.direct.unary("KV", "Put", { key: Buffer.from(`full/${i % 4}`), value: big }));
      refused = put.details ?? "";
    }
    assert.equal(refused, "etcdserver: mvcc: database space exceeded");

    await page.click("#cluster-refresh");
    await page.locator("#cluster-info dd", { hasText: "NOSPACE" }).first().waitFor();
    await page.screenshot({ path: `${SCREENSHOTS}/15-cluster-full.png`, fullPage: true });

    await page.click("#tabs button[data-tab=maintenance]");
    await page.locator("#compact-info", { hasText: "current revision" }).waitFor();
    await page
      .locator("#compact input[name=revision]")
      .fill(String((await status(f.etcd.members[0]!.endpoint)).header.revision));
    await page.click("#compact input[name=physical]");
    await page.click("#compact button[type=submit]");
    await page.locator("#compact-info", { hasText: "compacted up to" }).waitFor();

    await page.click("#tabs button[data-tab=cluster]");
    const [first, ...others] = f.etcd.members;
    const sizeBefore = await Promise.all(f.etcd.members.map(async (m) => Number((await status(m.endpoint)).dbSize)));
    await rowOf(first!.clientUrl)
      .getByRole("button", { name: `Defragment ${first!.clientUrl}` })
      .click();
    assert.match(asked.at(-1)!, new RegExp(`^Defragment the member at ${first!.clientUrl.replace(/[.]/g, "\\.")}\\?`));
    await waitFor(async () => Number((await status(first!.endpoint)).dbSize) < sizeBefore[0]! / 2);
    for (const [i, m] of others.entries()) {
      assert.equal(Number((await status(m.endpoint)).dbSize), sizeBefore[i + 1], "only the chosen member shrank");
    }
    for (const m of others) {
      await rowOf(m.clientUrl)
        .getByRole("button", { name: `Defragment ${m.clientUrl}` })
        .click();
      await waitFor(async () => Number((await status(m.endpoint)).dbSize) < QUOTA / 2);
    }

    await page.click("#tabs button[data-tab=maintenance]");
    const disarmButtons = page.getByRole("button", { name: /^Disarm NOSPACE on / });
    while ((await disarmButtons.count()) > 0) {
      // The list is drawn anew after each disarm: a button counted a moment ago may be gone; look again.
      await disarmButtons
        .first()
        .click({ timeout: 5_000 })
        .catch(() => {});
      await page.waitForTimeout(200);
    }
    await page.locator("#alarm-list li", { hasText: "none" }).waitFor();
    assert.match(asked.at(-1)!, /^Disarm NOSPACE on member [0-9a-f]+\?/);
    const alarms = (await f.direct.unary("Maintenance", "Alarm", { action: "GET" })) as Plain;
    assert.deepEqual(alarms.alarms, []);
    const put = await outcome(
      f.direct.unary("KV", "Put", { key: Buffer.from("full/after"), value: Buffer.from("ok") }),
    );
    assert.equal(put.code, 0, put.details);
  });

  it("moves the leader to a member picked on the page", async () => {
    const leader = await leaderMember(f.etcd);
    const target = f.etcd.members.find((m) => m !== leader)!;
    const { members } = (await f.direct.unary("Cluster", "MemberList", {})) as Plain;
    const targetId = BigInt(members.find((m: Plain) => m.clientURLs.includes(target.clientUrl)).ID).toString(16);
    await page.click("#tabs button[data-tab=maintenance]");
    await page.locator(`#member-table tr[data-member="${targetId}"]`).waitFor();
    await page.getByRole("button", { name: `Make member ${targetId} the leader` }).click();
    await waitFor(async () => (await leaderMember(f.etcd)) === target);
    assert.equal(asked.at(-1), `Move leadership to member ${targetId}?`);
  });
});

async function waitFor(condition: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 200));
  }
}

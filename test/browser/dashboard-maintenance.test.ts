// Maintenance in the dashboard, in chromium: compaction with the current and
// compacted revisions, a snapshot download checked against etcd's own
// SHA-256 trailer, and a learner member added and removed, each after a
// confirmation that says what it does.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { SCREENSHOTS, useDialogs, usePage } from "../helpers/browser.js";
import { useProxy } from "../helpers/fixture.js";
import { outcome } from "../helpers/grpc-client.js";

type Plain = Record<string, any>;

describe("the dashboard's maintenance page", () => {
  const f = useProxy(1);
  const page = usePage();
  const asked = useDialogs(page, (message) =>
    message.startsWith("Peer URLs of member") ? "http://127.0.0.1:2" : true,
  );

  const put = (i: number) =>
    f.direct.unary("KV", "Put", { key: Buffer.from("m/k"), value: Buffer.from(`${i}`) }) as Promise<Plain>;

  it("compacts up to a revision it shows, after saying what compaction does", async () => {
    for (let i = 0; i < 5; i++) await put(i);
    const current = Number((await put(5)).header.revision);
    await page.goto(`http://${f.proxy.address}/`);
    await page.click("#tabs button[data-tab=maintenance]");
    await page.locator("#compact-info", { hasText: `current revision ${current}, nothing compacted yet` }).waitFor();
    await page.fill("#compact input[name=revision]", String(current - 2));
    await page.click("#compact button[type=submit]");
    await page.locator("#compact-info", { hasText: `compacted up to ${current - 2}` }).waitFor();
    assert.match(asked.at(-1)!, new RegExp(`^Compact up to revision ${current - 2}\\?`));
    const old = await outcome(f.direct.unary("KV", "Range", { key: Buffer.from("m/k"), revision: current - 3 }));
    assert.equal(old.details, "etcdserver: mvcc: required revision has been compacted");
  });

  it("downloads a snapshot that etcd's own checksum vouches for", async () => {
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#snapshot")]);
    const data = await readFile(await download.path());
    await page.locator("#snapshot-state", { hasText: `downloaded ${data.length} bytes` }).waitFor();
    assert.ok(data.length > 4096, `${data.length} bytes`);
    // etcd appends the SHA-256 of the database to the snapshot stream.
    const body = data.subarray(0, data.length - 32);
    assert.deepEqual(createHash("sha256").update(body).digest(), data.subarray(data.length - 32));
  });

  it("adds a learner, shows it, changes its peer URLs, and removes it", async () => {
    await page.fill("#member-add input[name=peer]", "http://127.0.0.1:1");
    await page.click("#member-add button[type=submit]");
    const learnerRow = page.locator("#member-table tbody tr", { hasText: "http://127.0.0.1:1" });
    await learnerRow.locator("td", { hasText: "learner" }).waitFor();
    assert.match(asked.at(-1)!, /^Add a learner at http:\/\/127\.0\.0\.1:1\?/);
    const listed = (await f.direct.unary("Cluster", "MemberList", {})) as Plain;
    assert.equal(listed.members.filter((m: Plain) => m.isLearner).length, 1);
    await page.screenshot({ path: `${SCREENSHOTS}/13-maintenance.png`, fullPage: true });
    // Its peer URLs changed from the page (a prompt with the current ones), after a warning:
    // etcd's MemberUpdate drops the learner flag.
    await learnerRow.getByRole("button", { name: /^Change the peer URLs of / }).click();
    const moved = page.locator("#member-table tbody tr", { hasText: "http://127.0.0.1:2" });
    await moved.waitFor();
    assert.match(asked.at(-2)!, /^Member [0-9a-f]+ is a learner, and etcd's MemberUpdate does not keep that/);
    assert.match(asked.at(-1)!, /^Peer URLs of member [0-9a-f]+, comma separated$/);
    const updated = (await f.direct.unary("Cluster", "MemberList", {})) as Plain;
    const unstarted = updated.members.find((m: Plain) => !m.name);
    assert.deepEqual(unstarted.peerURLs, ["http://127.0.0.1:2"]);
    await moved.getByRole("button", { name: /^Remove member/ }).click();
    await moved.waitFor({ state: "detached" });
    assert.match(asked.at(-1)!, /^Remove member [0-9a-f]+ \(unstarted\)\?/);
    const after = (await f.direct.unary("Cluster", "MemberList", {})) as Plain;
    assert.equal(after.members.length, 1);
  });

  it("promotes a learner once it has caught up", async () => {
    const learner = await f.etcd.add({ learner: true });
    const { members } = (await f.direct.unary("Cluster", "MemberList", {})) as Plain;
    const id = BigInt(
      members.find((m: Plain) => m.name === learner.name || m.clientURLs.includes(learner.clientUrl)).ID,
    ).toString(16);
    await page.click("#tabs button[data-tab=cluster]");
    await page.click("#tabs button[data-tab=maintenance]");
    const row = page.locator(`#member-table tr[data-member="${id}"]`);
    await row.locator("td", { hasText: "learner" }).waitFor();
    // etcd promotes a learner only once its log is in step with the leader's; until then the page shows etcd's refusal.
    for (let attempt = 0; ; attempt++) {
      await row.getByRole("button", { name: `Promote member ${id}` }).click();
      const outcome = await Promise.race([
        row
          .locator("td", { hasText: "voter" })
          .waitFor({ timeout: 2000 })
          .then(() => "promoted"),
        page
          .locator("#error", { hasText: "in sync with leader" })
          .waitFor({ timeout: 2000 })
          .then(() => "not yet"),
      ]).catch(() => "no answer");
      if (outcome === "promoted") break;
      assert.ok(attempt < 20, `not promoted: ${outcome}`);
      await page.evaluate('document.querySelector("#error").hidden = true');
      await page.waitForTimeout(500);
    }
    assert.equal(asked.at(-1), `Promote learner ${id} to a voting member?`);
    const after = (await f.direct.unary("Cluster", "MemberList", {})) as Plain;
    assert.equal(after.members.find((m: Plain) => BigInt(m.ID).toString(16) === id).isLearner, false);
  });
});

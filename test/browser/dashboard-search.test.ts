// Finding keys on 100k keys, in chromium: a search by substring scans
// pages of keys only and lists what matches, and the prefix box completes
// key paths a segment at a time.
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { SCREENSHOTS, usePage } from "../helpers/browser.js";
import { useProxy } from "../helpers/fixture.js";
import { eventually } from "../helpers/watch.js";

const GROUPS = 100;
const PER_GROUP = 1000;
const NEEDLES = ["big/g13/a-needle-1", "big/g57/needle-2", "big/g99/x/NEEDLE"];

describe("the dashboard's key search on 100k keys", () => {
  const f = useProxy(1);
  const page = usePage();
  const keyName = (g: number, k: number) => `big/g${String(g).padStart(2, "0")}/k${String(k).padStart(5, "0")}`;

  before(async () => {
    const all: string[] = [...NEEDLES];
    for (let g = 0; g < GROUPS; g++) for (let k = 0; k < PER_GROUP; k++) all.push(keyName(g, k));
    // Txns of 128 puts (etcd's limit), 16 at a time.
    const batches: string[][] = [];
    for (let i = 0; i < all.length; i += 128) batches.push(all.slice(i, i + 128));
    const put = (key: string) => ({ request_put: { key: Buffer.from(key), value: Buffer.from("v") } });
    const workers = Array.from({ length: 16 }, async () => {
      for (let batch = batches.pop(); batch; batch = batches.pop()) {
        await f.direct.unary("KV", "Txn", { success: batch.map(put) });
      }
    });
    await Promise.all(workers);
  });

  it("finds every key containing a substring, case-insensitive, across all pages", async (t) => {
    await page.goto(`http://${f.proxy.address}/`);
    await page.fill("#search input[name=contains]", "Needle");
    await page.click("#search button[type=submit]");
    const done = page.locator("#search-state", { hasText: /among \d+ \(/ });
    await done.waitFor({ timeout: 60_000 });
    const state = (await done.textContent())!;
    assert.match(state, new RegExp(`^3 keys contain "Needle" among ${GROUPS * PER_GROUP + NEEDLES.length} \\(`));
    assert.deepEqual(await page.locator("#search-results li").allTextContents(), [...NEEDLES].sort());
    t.diagnostic(`search: ${state}`);

    // Many matches: all counted, the first 200 listed, in key order.
    await page.fill("#search input[name=contains]", "k00777");
    await page.click("#search button[type=submit]");
    await page.locator("#search-state", { hasText: /^100 keys contain "k00777" among \d+ \(/ }).waitFor();
    const listed = await page.locator("#search-results li").allTextContents();
    assert.equal(listed.length, 100);
    assert.equal(listed[0], keyName(0, 777));
    await page.screenshot({ path: `${SCREENSHOTS}/22-search.png`, fullPage: true });

    // A result opens in the editor.
    await page.locator("#search-results li", { hasText: keyName(5, 777) }).click();
    await page.locator("#editor-key", { hasText: keyName(5, 777) }).waitFor();
  });

  it("searches within the prefix in the browse box", async () => {
    await page.fill("#browse input[name=prefix]", "big/g57/");
    await page.fill("#search input[name=contains]", "needle");
    await page.click("#search button[type=submit]");
    await page.locator("#search-state", { hasText: /^1 keys contain "needle" among 1001 under big\/g57\// }).waitFor();
    assert.deepEqual(await page.locator("#search-results li").allTextContents(), ["big/g57/needle-2"]);
  });

  it("completes key paths a segment at a time", async () => {
    const options = () => page.locator("#paths option").evaluateAll((o) => o.map((e) => e.getAttribute("value")!));
    const box = page.locator("#browse input[name=prefix]");
    await box.fill("");
    await box.pressSequentially("big/g0");
    await eventually(async () => (await options()).length === 10, "ten suggestions");
    assert.deepEqual(
      await options(),
      Array.from({ length: 10 }, (_, i) => `big/g0${i}/`),
    );
    // Deeper: leaves are offered whole; at most 20 suggestions.
    await box.pressSequentially("4/k0001");
    await eventually(async () => (await options())[0] === "big/g04/k00010", "the leaves of big/g04/");
    assert.deepEqual(
      await options(),
      Array.from({ length: 10 }, (_, i) => `big/g04/k0001${i}`),
    );
    await box.fill("big/");
    await box.dispatchEvent("input");
    await eventually(async () => (await options())[0] === "big/g00/", "the segments of big/");
    assert.equal((await options()).length, 20);
  });
});

// Export and import in the dashboard, in chromium: 10k keys (one of them
// not UTF-8) exported to a file, deleted, imported after a dry run, and
// compared with what was there.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { SCREENSHOTS, usePage } from "../helpers/browser.js";
import { useProxy } from "../helpers/fixture.js";

const KEYS = 10_000;
type Plain = Record<string, any>;

describe("the dashboard's export and import", () => {
  const f = useProxy(1, {
    setup: async (f) => {
      for (let batch = 0; batch < KEYS / 100; batch++) {
        const success = Array.from({ length: 100 }, (_, i) => {
          const n = batch * 100 + i;
          // One binary value, to go through base64.
          const value = n === 42 ? Buffer.from([0xff, 0x00, 0xfe]) : Buffer.from(`value ${n}`);
          return { request_put: { key: Buffer.from(`imp/${String(n).padStart(5, "0")}`), value } };
        });
        await f.direct.unary("KV", "Txn", { success });
      }
    },
  });
  const page = usePage();

  /** Every key and value under imp/, straight from etcd. */
  const snapshot = async () => {
    const r = (await f.direct.unary("KV", "Range", {
      key: Buffer.from("imp/"),
      range_end: Buffer.from("imp0"),
    })) as Plain;
    return (r.kvs as Plain[]).map((kv) => [kv.key.toString("hex"), kv.value.toString("hex")]);
  };

  it("exports a prefix, and imports it back after a dry run, byte for byte", async () => {
    const before = await snapshot();
    assert.equal(before.length, KEYS);
    await page.goto(`http://${f.proxy.address}/`);
    await page.fill("#browse input[name=prefix]", "imp/");
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export")]);
    const path = await download.path();
    await page.locator("#transfer-state", { hasText: `exported ${KEYS} keys at revision` }).waitFor();
    const file = JSON.parse(await readFile(path, "utf8")) as Plain;
    assert.equal(file.keys.length, KEYS);
    assert.deepEqual(file.keys[42], { key: "imp/00042", value: "/wD+", valueEncoding: "base64" });

    await f.direct.unary("KV", "DeleteRange", { key: Buffer.from("imp/"), range_end: Buffer.from("imp0") });
    await f.direct.unary("KV", "Put", { key: Buffer.from("imp/00001"), value: Buffer.from("changed") });
    await page.setInputFiles("#import-file", {
      name: download.suggestedFilename(),
      mimeType: "application/json",
      buffer: await readFile(path),
    });
    await page
      .locator("#transfer-state", {
        hasText: `dry run: ${KEYS} keys in ${download.suggestedFilename()}: ${KEYS - 1} new, 1 would change, 0 unchanged`,
      })
      .waitFor();
    assert.equal((await snapshot()).length, 1, "the dry run wrote nothing");
    await page.click("#import-run");
    await page.locator("#transfer-state", { hasText: `imported ${KEYS} keys` }).waitFor({ timeout: 60_000 });
    assert.equal(await page.getAttribute("#import-progress", "max"), String(KEYS));
    assert.equal(await page.evaluate<number>("document.querySelector('#import-progress').value"), KEYS);
    await page.screenshot({ path: `${SCREENSHOTS}/10-import.png`, fullPage: true });
    assert.deepEqual(await snapshot(), before);
  });
});

// Text from etcd that tries to reorder what the dashboard shows: bidi
// controls in a key, a value and a user name are shown written out
// (`\u202E`), never obeyed, while the key is still opened and saved as it is.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SCREENSHOTS, usePage, waitForEditorText } from "../helpers/browser.js";
import { useProxy } from "../helpers/fixture.js";

const RLO = "\u202E";

describe("bidi controls in the dashboard", () => {
  const f = useProxy(1);
  const page = usePage();

  it("a key, its value and a user name show their controls as \\u202E and the like", async () => {
    const key = `bidi/rtl-${RLO}gnp.exe`;
    await f.direct.unary("KV", "Put", { key: Buffer.from(key), value: Buffer.from(`a${RLO}b\u2066c`) });
    await f.direct.unary("Auth", "UserAdd", { name: `eve${RLO}`, password: "pw" });

    await page.goto(`http://${f.proxy.address}/`);
    await page.fill("#browse input[name=prefix]", "bidi/");
    await page.click("#browse button[type=submit]");
    const leaf = page.locator(".leaf", { hasText: "gnp.exe" });
    assert.equal(await leaf.textContent(), "rtl-\\u202Egnp.exe");
    assert.equal(await leaf.getAttribute("data-key"), key, "the key itself is kept as etcd has it");

    await leaf.click();
    await page.locator("#editor-key", { hasText: "bidi/" }).waitFor();
    assert.equal(await page.textContent("#editor-key"), "bidi/rtl-\\u202Egnp.exe");
    await waitForEditorText(page, "a\\u202Eb\\u2066c");
    assert.deepEqual(await page.locator("#value .cm-specialChar").allTextContents(), ["\\u202E", "\\u2066"]);
    await page.screenshot({ path: `${SCREENSHOTS}/bidi-key.png` });

    await page.click("#tabs button[data-tab=auth]");
    const user = page.locator("#user-table tr").filter({ hasText: "eve" }).locator("td").first();
    assert.equal(await user.textContent(), "eve\\u202E");
  });

  it("saving the value keeps its controls: only the display is written out", async () => {
    await page.click("#tabs button[data-tab=keys]");
    await page.click("#save");
    await page.locator("#editor-status", { hasText: "saved at revision" }).waitFor();
    const r = (await f.direct.unary("KV", "Range", { key: Buffer.from(`bidi/rtl-${RLO}gnp.exe`) })) as {
      kvs: Array<{ value: Buffer }>;
    };
    assert.equal(r.kvs[0]!.value.toString(), `a${RLO}b\u2066c`);
  });
});

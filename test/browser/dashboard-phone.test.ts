// The dashboard on a phone-sized screen and from the keyboard, in
// chromium: every page fits the width (tables scroll inside their box),
// every input has a name a screen reader can say, and the tabs and the
// editor are reached and used without a mouse.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SCREENSHOTS, usePage, waitForEditorText } from "../helpers/browser.js";
import { useProxy } from "../helpers/fixture.js";

const PHONE_WIDTH = 390;
const TABS = ["keys", "watch", "leases", "cluster", "proxy", "auth", "maintenance"];

describe("the dashboard on a phone and from the keyboard", () => {
  const f = useProxy(1);
  const page = usePage({ viewport: { width: PHONE_WIDTH, height: 844 }, isMobile: true, hasTouch: true });

  it("fits every page to a phone's width", async () => {
    await f.direct.unary("KV", "Put", {
      key: Buffer.from("phone/a/very/long/key/name/that/goes/on"),
      value: Buffer.from("{}"),
    });
    await page.goto(`http://${f.proxy.address}/`);
    for (const tab of TABS) {
      await page.click(`#tabs button[data-tab=${tab}]`);
      await page.waitForTimeout(400); // the page's first data
      // A phone lays the page out wider than the screen and zooms out when it does not fit: measure against the screen.
      const overflow = (await page.evaluate<number>("document.documentElement.scrollWidth")) - PHONE_WIDTH;
      assert.ok(overflow <= 0, `the ${tab} page is ${overflow} px wider than the screen`);
      if (tab === "keys" || tab === "cluster" || tab === "proxy") {
        await page.screenshot({ path: `${SCREENSHOTS}/23-phone-${tab}.png`, fullPage: true });
      }
    }
  });

  it("names every input, select and text area", async () => {
    const unnamed = await page.evaluate<string[]>(`
      [...document.querySelectorAll("input, select, textarea")]
        .filter((e) => e.type !== "hidden")
        .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label") && !e.title)
        .map((e) => e.outerHTML.slice(0, 80))
    `);
    assert.deepEqual(unnamed, []);
  });

  it("reaches the tabs and edits a key from the keyboard alone", async () => {
    await page.goto(`http://${f.proxy.address}/`);
    // Tab to the Cluster tab's button and open it with Enter.
    for (let i = 0; i < 30; i++) {
      await page.keyboard.press("Tab");
      if ((await page.evaluate<string | undefined>("document.activeElement?.dataset?.tab")) === "cluster") break;
    }
    await page.keyboard.press("Enter");
    await page.locator("#cluster").waitFor();
    assert.ok(await page.locator("#keys").isHidden());
    // Back to Keys; the tree's keys are links the keyboard reaches.
    await page.click("#tabs button[data-tab=keys]");
    await f.direct.unary("KV", "Put", { key: Buffer.from("phone/k"), value: Buffer.from("{}") });
    const leaf = page.locator('.leaf[data-key="phone/k"]');
    await page.locator("#browse input[name=prefix]").fill("phone/");
    await page.keyboard.press("Enter");
    await leaf.waitFor();
    await leaf.focus();
    await page.keyboard.press("Enter");
    await waitForEditorText(page, "{}");
    // Into the editor with the keyboard, type, and save with the keyboard.
    await page.locator("#value .cm-content").focus();
    await page.keyboard.press("Control+a");
    await page.keyboard.insertText('{"typed": true}');
    await waitForEditorText(page, '{"typed": true}');
    await page.locator("#save").focus();
    await page.keyboard.press("Enter");
    await page.locator("#editor-status", { hasText: "saved at revision" }).waitFor();
    const r = (await f.direct.unary("KV", "Range", {
      key: Buffer.from("phone/k"),
    })) as {
      kvs: Array<{ value: Buffer }>;
    };
    assert.equal(Buffer.from(r.kvs[0]!.value).toString(), '{"typed":true}', "kept one line, as it was stored");
  });
});

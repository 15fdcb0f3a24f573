// The dashboard's look, in chromium: light and dark themes (the system's
// choice by default, or the page's theme button, remembered), and no
// stretched buttons.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Page } from "playwright-core";
import { SCREENSHOTS, usePage } from "../helpers/browser.js";
import { useProxy } from "../helpers/fixture.js";

/** The page background's luminance, 0 (black) to 1 (white). */
async function backgroundLuminance(page: Page): Promise<number> {
  const rgb = await page.evaluate<string>("getComputedStyle(document.documentElement).backgroundColor");
  const [r, g, b] = rgb.match(/\d+/g)!.map(Number) as [number, number, number];
  return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
}

describe("the dashboard's themes and layout", () => {
  const f = useProxy(1);
  const page = usePage({ viewport: { width: 1280, height: 720 } });

  it("follows the system's colour scheme, and the theme button overrides it across reloads", async () => {
    await page.emulateMedia({ colorScheme: "light" });
    await page.goto(`http://${f.proxy.address}/`);
    assert.equal(await page.textContent("#theme"), "theme: system");
    assert.ok((await backgroundLuminance(page)) > 0.8, "light by default on a light system");
    await page.emulateMedia({ colorScheme: "dark" });
    assert.ok((await backgroundLuminance(page)) < 0.2, "dark on a dark system");
    await page.click("#tabs button[data-tab=cluster]");
    await page.click("#cluster-refresh");
    await page.locator("#cluster-info table").first().waitFor();
    await page.screenshot({ path: `${SCREENSHOTS}/8-dark-cluster.png`, fullPage: true });

    await page.click("#theme"); // system -> light
    assert.equal(await page.textContent("#theme"), "theme: light");
    assert.ok((await backgroundLuminance(page)) > 0.8, "light chosen on a dark system");
    await page.click("#theme"); // light -> dark
    await page.emulateMedia({ colorScheme: "light" });
    assert.ok((await backgroundLuminance(page)) < 0.2, "dark chosen on a light system");
    await page.reload();
    assert.equal(await page.textContent("#theme"), "theme: dark", "the choice is remembered");
    assert.ok((await backgroundLuminance(page)) < 0.2);
    await page.click("#theme"); // dark -> system
    assert.ok((await backgroundLuminance(page)) > 0.8);
  });

  it("keeps buttons their own height beside tall content (the Cluster page's Refresh)", async () => {
    await page.goto(`http://${f.proxy.address}/`);
    await page.click("#tabs button[data-tab=cluster]");
    await page.click("#cluster-refresh");
    await page.locator("#cluster-info table").first().waitFor();
    const info = (await page.locator("#cluster-info").boundingBox())!;
    const button = (await page.locator("#cluster-refresh").boundingBox())!;
    assert.ok(info.height > 100, `the cluster table is tall (${info.height} px)`);
    assert.ok(button.height < 40, `the Refresh button is ${button.height} px high`);
  });
});

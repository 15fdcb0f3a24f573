import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { after, before } from "node:test";
import { chromium, type Browser, type BrowserContextOptions, type Page } from "playwright-core";

/** Where browser tests keep their screenshots (git-ignored). */
export const SCREENSHOTS = "test-results/dashboard";

/** Debian's chromium, headless, as the browser tests drive it; `args` adds command-line switches. */
export function launchChromium(args: string[] = []): Promise<Browser> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", ...args],
  });
}

/**
 * A chromium page for the current suite: opened before its tests (after
 * the hooks registered earlier), closed after them. The returned object
 * stands for the page once it is open. The dashboard runs under a strict
 * Content-Security-Policy, and the suite fails if the page broke it.
 */
export function usePage(options: BrowserContextOptions = {}): Page {
  let browser: Browser | undefined;
  let page: Page | undefined;
  const violations: string[] = [];
  before(async () => {
    browser = await launchChromium();
    const context = await browser.newContext({
      viewport: { width: 1280, height: 800 },
      acceptDownloads: true,
      ...options,
    });
    // Each violation is told by the page itself, with what broke the policy and where.
    // One kind is chromium's, not the page's: typing over highlighted text in the editor, its editing engine
    // tries to carry the old text's colour into a style attribute; it is refused and CodeMirror redraws anyway.
    await context.addInitScript(`document.addEventListener("securitypolicyviolation", (e) => {
      const target = e.target instanceof Element ? e.target : undefined;
      const typingStyle = e.violatedDirective === "style-src-attr" && /^color: [^;]+;$/.test(e.sample) &&
        target !== undefined && target.closest(".cm-content") !== null;
      if (typingStyle) return;
      const where = target ? target.outerHTML.slice(0, 160) : String(e.target);
      console.error("CSP violation: " + e.violatedDirective + " by " + JSON.stringify(e.sample) + " in " + where);
    })`);
    page = await context.newPage();
    page.on("console", (message) => {
      if (message.text().startsWith("CSP violation:")) violations.push(message.text());
    });
  });
  after(async () => {
    await browser?.close();
    assert.deepEqual(violations, [], "the dashboard broke its Content-Security-Policy");
  });
  return new Proxy({} as Page, {
    get(_target, property) {
      if (!page) throw new Error("the page opens in the suite's before hook");
      const value = Reflect.get(page, property, page) as unknown;
      return typeof value === "function" ? value.bind(page) : value;
    },
  });
}

/** The text of the CodeMirror editor inside `selector`, line by line as it shows it. */
export async function editorText(page: Page, selector = "#value"): Promise<string> {
  const lines = await page.locator(`${selector} .cm-content .cm-line`).allTextContents();
  return lines.join("\n");
}

/** Waits until the editor inside `selector` shows `expected`, and says what it showed if it never does. */
export async function waitForEditorText(page: Page, expected: string, selector = "#value"): Promise<void> {
  const end = Date.now() + 10_000;
  let shown = "";
  while ((shown = await editorText(page, selector)) !== expected) {
    if (Date.now() > end) throw new Error(`the editor shows ${JSON.stringify(shown)}, not ${JSON.stringify(expected)}`);
    await page.waitForTimeout(50);
  }
}

/** Replaces the text of the editor inside `selector` as a user would: select all, then type. */
export async function typeInEditor(page: Page, text: string, selector = "#value"): Promise<void> {
  await page.click(`${selector} .cm-content`);
  await page.keyboard.press("Control+a");
  await page.keyboard.insertText(text);
}

/**
 * Answers every dialog the suite's page raises (confirm, prompt, alert) as
 * `reply` says at that moment: true accepts, false dismisses, a string is
 * typed into a prompt and accepted. Returns the messages asked, in order.
 * Call after usePage, in the same suite.
 */
export function useDialogs(page: Page, reply: (message: string) => boolean | string = () => true): string[] {
  const asked: string[] = [];
  before(() => {
    page.on("dialog", (dialog) => {
      asked.push(dialog.message());
      const answer = reply(dialog.message());
      void (answer === false ? dialog.dismiss() : dialog.accept(answer === true ? undefined : answer));
    });
  });
  return asked;
}

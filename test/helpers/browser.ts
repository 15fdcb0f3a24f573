import { mkdirSync } from "node:fs";
import { after, before } from "node:test";
import { chromium, type Browser, type BrowserContextOptions, type Page } from "playwright-core";

/** Where browser tests keep their screenshots (git-ignored). */
export const SCREENSHOTS = "test-results/dashboard";

/** Debian's chromium, headless, as the browser tests drive it. */
export function launchChromium(): Promise<Browser> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}

/**
 * A chromium page for the current suite: opened before its tests (after
 * the hooks registered earlier), closed after them. The returned object
 * stands for the page once it is open.
 */
export function usePage(options: BrowserContextOptions = {}): Page {
  let browser: Browser | undefined;
  let page: Page | undefined;
  before(async () => {
    browser = await launchChromium();
    const context = await browser.newContext({
      viewport: { width: 1280, height: 800 },
      acceptDownloads: true,
      ...options,
    });
    page = await context.newPage();
  });
  after(async () => {
    await browser?.close();
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

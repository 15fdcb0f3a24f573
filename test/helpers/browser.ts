import { mkdirSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";

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

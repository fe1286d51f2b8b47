// Headless Chromium for the browser tests: Debian's `chromium` (see
// tools.ts: skipped with a notice without it, required in CI), driven by
// puppeteer-core, which downloads no browser of its own.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { toolPath } from "./tools.js";

export function launchChromium(): Promise<Browser> {
  return puppeteer.launch({
    executablePath: toolPath("chromium"),
    headless: true,
    // root in CI has no user namespace for the sandbox; the pages are our own
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    userDataDir: mkdtempSync(join(tmpdir(), "pagemill-chromium-")),
  });
}

/**
 * What goes wrong in `page` as it runs, as lines to assert empty: console
 * errors, uncaught page errors and failed requests.
 */
export function pageProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on("console", (msg) => msg.type() === "error" && problems.push(`console: ${msg.text()}`));
  page.on("pageerror", (err) => problems.push(`page: ${String(err)}`));
  page.on("requestfailed", (req) => problems.push(`request failed: ${req.url()}`));
  return problems;
}

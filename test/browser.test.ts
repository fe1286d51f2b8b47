// The codecs in a browser: pagemill/browser loads as a plain ES module, and
// examples/browser, run in headless Chromium (Debian's `chromium`, driven by
// puppeteer-core), counts a shipped image exactly as `pagemill scan` and
// `pagemill pack --codec lz4` do in Node.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Server } from "node:http";
import type { Browser } from "puppeteer-core";
import { serveDirectory } from "../src/cli/serve.js";
import type { SurveyReport } from "../src/codecs/survey.js";
import { launchChromium, pageProblems } from "./helpers/chromium.js";
import { withoutTools } from "./helpers/tools.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const IMAGE = "data/redis-image.img.gz";

function cliJson(args: string[]): Record<string, unknown> {
  return JSON.parse(execFileSync(process.execPath, [join(ROOT, "dist/cli/bin.js"), ...args, "--json"], { encoding: "utf8" })) as Record<string, unknown>;
}

/** Every module specifier dist/browser.js reaches by static import: relative ones only, or a browser could not load it. */
function staticImports(entry: string, seen = new Set<string>()): string[] {
  if (seen.has(entry)) return [];
  seen.add(entry);
  const text = readFileSync(entry, "utf8");
  const outside: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']|^\s*import\s*["']([^"']+)["']/gm)) {
    const spec = (m[1] ?? m[2])!;
    if (spec.startsWith(".")) outside.push(...staticImports(resolve(dirname(entry), spec), seen));
    else outside.push(`${spec} (from ${entry.slice(ROOT.length)})`);
  }
  return outside;
}

describe("pagemill/browser", () => {
  it("is an exports subpath whose modules import only each other", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { exports: Record<string, { import: string }> };
    const entry = join(ROOT, pkg.exports["./browser"]!.import);
    expect(staticImports(entry)).toEqual([]);
    // and the main entry is not: it needs Node (this is what the subpath is for)
    expect(staticImports(join(ROOT, "dist/index.js")).some((s) => s.startsWith("node:"))).toBe(true);
  });

  it("exports nothing the main entry lacks: each of its names is the main entry's own", async () => {
    const browser = (await import("../src/browser.js")) as Record<string, unknown>;
    const main = (await import("../src/index.js")) as Record<string, unknown>;
    for (const name of Object.keys(browser)) expect(main[name], name).toBe(browser[name]);
  });
});

describe("pagemill serve", () => {
  it("serves files under its root with their types and nothing outside it", async () => {
    const { server, origin } = await serveDirectory(join(ROOT, "examples"), 0);
    try {
      const page = await fetch(`${origin}/browser/`);
      expect(page.status).toBe(200);
      expect(page.headers.get("content-type")).toMatch(/^text\/html/);
      expect((await fetch(`${origin}/browser/main.js`)).headers.get("content-type")).toMatch(/^text\/javascript/);
      for (const path of ["/..%2fpackage.json", "/browser/..%2f..%2fpackage.json"]) expect((await fetch(`${origin}${path}`)).status).toBe(403);
      expect((await fetch(`${origin}/browser/none.js`)).status).toBe(404);
      expect((await fetch(`${origin}/browser/`, { method: "POST" })).status).toBe(405);
    } finally {
      server.close();
    }
  });
});

describe.skipIf(withoutTools("chromium"))("examples/browser in headless Chromium", () => {
  let server: Server;
  let origin: string;
  let browser: Browser;

  beforeAll(async () => {
    ({ server, origin } = await serveDirectory(ROOT, 0));
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    server?.close();
  });

  it("counts a shipped image as scan and pack do in Node, with no console error or failed request", async () => {
    const page = await browser.newPage();
    const problems = pageProblems(page);
    page.on("response", (res) => res.status() >= 400 && problems.push(`HTTP ${res.status()}: ${res.url()}`));
    await page.goto(`${origin}/examples/browser/?image=../../${IMAGE}`);
    await page.waitForSelector("body[data-state=done], body[data-state=error]", { timeout: 60_000 });
    const status = await page.$eval("#status", (el) => el.textContent);
    expect(problems, status ?? "").toEqual([]);
    const survey = (await page.evaluate("window.pagemillSurvey")) as SurveyReport;

    const scan = cliJson(["scan", join(ROOT, IMAGE)]);
    const out = join(mkdtempSync(join(tmpdir(), "pagemill-browser-")), "image.pmf");
    const pack = cliJson(["pack", join(ROOT, IMAGE), "-o", out, "--codec", "lz4"]) as { bytesByEncoding: Record<string, number>; pagesByEncoding: Record<string, number> };
    expect({ pages: survey.pages, zeroPages: survey.zeroPages, duplicatePages: survey.duplicatePages }).toEqual({
      pages: scan.pages,
      zeroPages: scan.zeroPages,
      duplicatePages: scan.duplicatePages,
    });
    expect(survey.zeroPages).toBeGreaterThan(0);
    expect(survey.duplicatePages).toBeGreaterThan(0);
    // pack sends zero pages as ZERO (no payload) and the rest through LZ4, RAW where it cannot shrink a page
    const lz4 = survey.codecs.find((c) => c.codec === "lz4")!;
    const { zero: _zero, ...payloadBytes } = pack.bytesByEncoding;
    expect(lz4.pages).toBe(survey.pages - survey.zeroPages);
    expect(lz4.bytes).toBe(Object.values(payloadBytes).reduce((a, b) => a + b, 0));
    // the table shows every codec, each having shrunk the non-zero pages of this image
    const rows = await page.$$eval("#codecs tbody tr", (trs) => trs.map((tr) => (tr as HTMLElement).dataset.codec));
    expect(rows).toEqual(["lz4", "wkdm", "mecom"]);
    for (const c of survey.codecs) expect(c.bytes).toBeLessThan(c.pages * survey.pageSize);
    await page.close();
  });

  it("a file picked in the page, plain and with a short last page, is counted as scan counts it", async () => {
    const image = gunzipSync(readFileSync(join(ROOT, IMAGE))).subarray(0, 1500 * 4096 + 100);
    const file = join(mkdtempSync(join(tmpdir(), "pagemill-browser-")), "part.img");
    writeFileSync(file, image);
    const page = await browser.newPage();
    await page.goto(`${origin}/examples/browser/`);
    await page.waitForSelector("body[data-state=ready]");
    const input = await page.$("input#file");
    await input!.uploadFile(file);
    await page.waitForSelector("body[data-state=done]", { timeout: 60_000 });
    const survey = (await page.evaluate("window.pagemillSurvey")) as SurveyReport;
    const scan = cliJson(["scan", file]);
    expect([survey.pages, survey.zeroPages, survey.duplicatePages]).toEqual([scan.pages, scan.zeroPages, scan.duplicatePages]);
    expect(survey.pages).toBe(1501);
    expect(await page.$eval("#status", (el) => el.textContent)).toMatch(/^part\.img: 1501 pages of 4096 B/);
    await page.close();
  });

  it("shows a clear error for a file it cannot read instead of failing silently", async () => {
    const page = await browser.newPage();
    await page.goto(`${origin}/examples/browser/?image=../../data/no-such-image.img`);
    await page.waitForSelector("body[data-state=error]", { timeout: 30_000 });
    expect(await page.$eval("#status", (el) => el.textContent)).toMatch(/no-such-image\.img: HTTP 404/);
    await page.close();
  });
});

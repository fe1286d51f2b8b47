// compare --report: the HTML file opened in headless Chromium (Debian's
// `chromium`, driven by puppeteer-core): it loads with nothing fetched, no
// console error, every chart drawn at a non-zero size, and a screenshot that
// is not blank.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Browser, Page } from "puppeteer-core";
import { UsageError } from "../src/cli/args.js";
import { COMPARE_CODECS, compare, compareMethods, run } from "../src/cli/compare.js";
import { simulationSetup } from "../src/cli/migrate.js";
import { compareReport } from "../src/cli/report.js";
import type { StrategyName } from "../src/engine/metrics.js";
import { commandOutput } from "./helpers/migrate.js";
import { launchChromium, pageProblems } from "./helpers/chromium.js";
import { withoutTools } from "./helpers/tools.js";

const dir = mkdtempSync(join(tmpdir(), "pagemill-report-"));

describe("pagemill compare --report", () => {
  it("refuses an output that is a directory or the trace itself, before running", async () => {
    await expect(run(["--report", dir])).rejects.toThrow(/is a directory/);
    const trace = join(dir, "copy.ptrace.gz");
    writeFileSync(trace, readFileSync(new URL("../data/redis-sample.ptrace.gz", import.meta.url)));
    await expect(run(["--trace", trace, "--report", trace])).rejects.toThrow(/is the input/);
    await expect(run(["--report", ""])).rejects.toThrow(UsageError);
  });

  it("inlines everything: no script, style or image is fetched from elsewhere", async () => {
    const out = join(dir, "inline.html");
    await commandOutput(run, ["--workload", "hot-cold", "--pages", "512", "--codecs", "raw", "--report", out]);
    const html = readFileSync(out, "utf8");
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+rel="stylesheet"|<img /);
    expect(html).toMatch(/uPlot/);
  });
});

describe.skipIf(withoutTools("chromium"))("the report in headless Chromium", () => {
  let browser: Browser;

  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => browser?.close());

  /** Opens `file`, failing on any console error, page error or request other than the file itself. */
  async function open(file: string): Promise<{ page: Page; problems: string[] }> {
    const page = await browser.newPage();
    await page.setViewport({ width: 1200, height: 1500 });
    const url = pathToFileURL(file).href;
    const problems = pageProblems(page);
    page.on("request", (req) => req.url() !== url && !req.url().startsWith("data:") && problems.push(`fetched: ${req.url()}`));
    await page.goto(url);
    await page.waitForSelector("body[data-state=done]", { timeout: 30_000 });
    return { page, problems };
  }

  // npm start migrates the bundled disk with the memory; the same run without the disk is checked too.
  const start = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).scripts.start as string;
  const startArgs = start.split(" ").slice(3);
  const withoutDisk = startArgs.filter((arg, i) => arg !== "--disk" && startArgs[i - 1] !== "--disk");
  it.each([
    ["npm start's report on the bundled trace and disk", startArgs],
    ["the report on the bundled trace alone", withoutDisk],
  ])("%s: every section charted, nothing fetched, no error, not blank", async (_name, args) => {
    expect(startArgs).toContain("--disk");
    const out = join(dir, "pagemill-report.html");
    expect(args.slice(0, 1).concat(args.slice(-2))).toEqual(["--trace", "--report", "pagemill-report.html"]);
    await commandOutput(run, [...args.slice(0, -1), out]);
    const { page, problems } = await open(out);
    const charts = await page.$$eval(".chart", (boxes) =>
      boxes.map((box) => {
        const canvas = box.querySelector("canvas");
        const context = canvas?.getContext("2d");
        const pixels = canvas && context ? context.getImageData(0, 0, canvas.width, canvas.height).data : new Uint8ClampedArray();
        let drawn = 0;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i]! > 0) drawn++;
        return { section: box.parentElement!.id, title: box.querySelector(".u-title")?.textContent ?? "", width: canvas?.width ?? 0, height: canvas?.height ?? 0, drawn };
      }),
    );
    for (const section of ["timelines", "bytes-per-round", "dirty-per-round", "encodings", "predictions"]) {
      const least = section === "timelines" || section === "encodings" ? COMPARE_CODECS.length : section === "predictions" ? 2 : 1;
      expect(charts.filter((c) => c.section === section).length, section).toBeGreaterThanOrEqual(least);
    }
    for (const c of charts) {
      expect(c.title, c.section).not.toBe("");
      expect(c.width * c.height, c.title).toBeGreaterThan(0);
      expect(c.drawn, c.title).toBeGreaterThan(1000);
    }
    // every row of the comparison in the table, the best of each column marked
    // every method (fractional too: a trace) × codec
    expect(await page.$$eval("#results tr", (trs) => trs.length)).toBe(1 + (compareMethods().length + 1) * COMPARE_CODECS.length);
    expect(await page.$$eval("#results td.best", (tds) => tds.length)).toBeGreaterThanOrEqual(5);
    // predicted T and D with their error on the rows the predictor models (raw, no auto-converge: pre-copy, post-copy, hybrid, Ada-copy, fractional), with the disk trace too
    const predicted = await page.$$eval("#results td", (tds) => tds.filter((td) => /^[\d.]+ m?s [+−]\d+\.\d%$/.test(td.textContent ?? "")).length);
    expect(predicted).toBe(2 * 5);
    expect(await page.$eval("#summary", (el) => el.textContent)).toMatch(/40\.0 Mbit\/s, RTT 5\.0 ms/);
    // the link and the trace as inspect reads it
    const setup = Object.fromEntries(await page.$$eval("#setup tr", (trs) => trs.map((tr) => [tr.cells[0]!.textContent, tr.cells[1]!.textContent])));
    expect(setup).toMatchObject({ link: expect.stringMatching(/^40\.0 Mbit\/s, RTT 5\.0 ms/), memory: "3072 pages of 4096 B (12.00 MiB)", epochs: expect.stringMatching(/^20 of 300 ms/) });
    expect(setup["plain pre-copy here"]).toMatch(/\w/);
    // the screenshot is a PNG with more than a few colours in it
    const png = Buffer.from(await page.screenshot({ type: "png" }));
    expect(png.subarray(1, 4).toString()).toBe("PNG");
    const colours = await page.evaluate(async (base64: string) => {
      const bitmap = await createImageBitmap(await (await fetch(`data:image/png;base64,${base64}`)).blob());
      const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
      const context = canvas.getContext("2d")!;
      context.drawImage(bitmap, 0, 0);
      const pixels = new Uint32Array(context.getImageData(0, 0, bitmap.width, bitmap.height).data.buffer);
      return new Set(pixels).size;
    }, png.toString("base64"));
    expect(colours).toBeGreaterThan(50);
    expect(problems).toEqual([]);
    await page.close();
  });

  it("a failed row shows its reason in the report's table", async () => {
    const setup = simulationSetup({ workload: "idle", pages: "256" });
    const rows = await compare(setup, [{ label: "teleport", strategy: "teleport" as StrategyName, options: {} }, ...compareMethods()], ["raw"]);
    const out = join(dir, "failed.html");
    writeFileSync(out, compareReport(rows, { guest: setup.guest.describe, link: setup.link, downtimeLimit: 0.3, wallSeconds: 1 }));
    const { page, problems } = await open(out);
    expect(await page.$eval("#results td.failed", (td) => td.textContent)).toMatch(/failed: unknown strategy 'teleport'/);
    expect(problems).toEqual([]);
    await page.close();
  });
});

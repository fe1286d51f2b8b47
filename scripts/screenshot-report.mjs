// Screenshots an HTML report (pagemill compare --report) with the system's
// Chromium: node scripts/screenshot-report.mjs REPORT.html OUT.png [HEIGHT]
// The top HEIGHT pixels (default 1500) of a 1200-pixel-wide window.
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";
import puppeteer from "puppeteer-core";

const [report, out, height = "1500"] = process.argv.slice(2);
if (!report || !out) {
  console.error("usage: node scripts/screenshot-report.mjs REPORT.html OUT.png [HEIGHT]");
  process.exit(2);
}
const browser = await puppeteer.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true, args: ["--no-sandbox", "--disable-gpu"] });
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1200, height: Number(height) });
  await page.goto(pathToFileURL(resolve(report)).href);
  await page.waitForSelector("body[data-state=done]", { timeout: 30_000 });
  await page.screenshot({ path: out, type: "png" });
} finally {
  await browser.close();
}

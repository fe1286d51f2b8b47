import { describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { pagemill } from "./helpers/migrate.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

describe("pagemill scan", () => {
  const dir = mkdtempSync(join(tmpdir(), "pagemill-scan-"));
  // 10 pages: 0, 3 and 9 non-zero; a 100-byte tail makes an 11th, padded page.
  const image = new Uint8Array(10 * 4096 + 100);
  image[0 * 4096 + 5] = 1;
  image[3 * 4096 + 4095] = 2;
  image[9 * 4096] = 3;
  const plain = join(dir, "image.bin");
  const gz = join(dir, "image.bin.gz");
  writeFileSync(plain, image);
  writeFileSync(gz, gzipSync(image));

  it("counts zero pages of a plain and a gzip image the same", async () => {
    for (const file of [plain, gz]) {
      const { code, out } = await pagemill(["scan", file, "--json"]);
      expect(code).toBe(0);
      const report = JSON.parse(out);
      expect(report.pages).toBe(11);
      expect(report.zeroPages).toBe(8);
      expect(report.paddedBytes).toBe(3996);
      expect(report.bytes).toBe(image.length);
    }
  });

  it("honours --page-size", async () => {
    const { out } = await pagemill(["scan", plain, "--page-size", "8k", "--json"]);
    const report = JSON.parse(out);
    expect(report.pages).toBe(6);
    expect(report.zeroPages).toBe(3); // pages 0-1, 2-3 and 8-9 hold the marks
  });

  it("gives clear errors for a missing file and wrong arguments", async () => {
    let r = await pagemill(["scan", join(dir, "missing.bin")]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cannot read .*missing\.bin: no such file/);
    r = await pagemill(["scan"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/missing FILE/);
    r = await pagemill(["scan", plain, "--page-size", "3000"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--page-size must be a power of two/);
    r = await pagemill(["scan", plain, "--bogus"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/bogus/);
    r = await pagemill(["nosuchcommand"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown command 'nosuchcommand'/);
    r = await pagemill(["scan", dir]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/not a regular file/);
  });

  it("runs as the built bin on the bundled image (npm start)", () => {
    const out = execFileSync(process.execPath, [join(ROOT, "dist/cli/bin.js"), "scan", join(ROOT, "data/redis-image.img.gz"), "--json"], {
      encoding: "utf8",
    });
    const report = JSON.parse(out);
    expect(report.pages).toBe(4096);
    expect(report.zeroPages).toBeGreaterThan(0);
    const bad = spawnSync(process.execPath, [join(ROOT, "dist/cli/bin.js"), "scan"], { encoding: "utf8" });
    expect(bad.status).toBe(2);
  });
});

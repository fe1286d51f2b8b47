import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { hex32, hex64, toHex, xxh3, xxh32, xxh64 } from "../src/index.js";
import { md5 } from "../src/hash/md5.js";
import { pagemill } from "./helpers/migrate.js";
import { randomBytes } from "./helpers/random.js";
import { withoutTools } from "./helpers/tools.js";

const dir = mkdtempSync(join(tmpdir(), "pagemill-hash-"));
// 5 whole pages and a 300-byte tail (a sixth page, zero-padded for its page digest).
const image = randomBytes(5 * 4096 + 300, 42);
image.fill(0, 4096, 8192);
const plain = join(dir, "image.bin");
const gz = join(dir, "image.bin.gz");
writeFileSync(plain, image);
writeFileSync(gz, gzipSync(image));

const PAGE_DIGEST = {
  md5: (p: Uint8Array) => toHex(md5(p)),
  xxh32: (p: Uint8Array) => hex32(xxh32(p)),
  xxh64: (p: Uint8Array) => hex64(xxh64(p)),
  xxh3: (p: Uint8Array) => hex64(xxh3(p)),
};
const TOOL: Record<keyof typeof PAGE_DIGEST, [string, string[]]> = {
  md5: ["md5sum", []],
  xxh32: ["xxhsum", ["-H0"]],
  xxh64: ["xxhsum", ["-H1"]],
  xxh3: ["xxhsum", ["-H3"]],
};

function paddedPage(k: number, pageSize: number): Uint8Array {
  const page = new Uint8Array(pageSize);
  page.set(image.subarray(k * pageSize, (k + 1) * pageSize));
  return page;
}

describe("pagemill hash", () => {
  it.skipIf(withoutTools("md5sum", "xxhsum"))("prints every page's digest and the whole file's as md5sum/xxhsum do, plain and gzip", async () => {
    for (const algo of ["md5", "xxh32", "xxh64", "xxh3"] as const) {
      const [tool, flags] = TOOL[algo];
      const reference = execFileSync(tool, [...flags, plain], { encoding: "utf8" }).match(/[0-9a-f]{8,32}(?=\s|$)/g)!.pop();
      for (const file of [plain, gz]) {
        const { code, out } = await pagemill(["hash", file, "--algo", algo, "--json", "--whole"]);
        expect(code).toBe(0);
        const report = JSON.parse(out);
        expect(report).toMatchObject({ algo, pageSize: 4096, pages: 6, bytes: image.length, paddedBytes: 4096 - 300 });
        expect(report.digests).toEqual(Array.from({ length: 6 }, (_, k) => PAGE_DIGEST[algo](paddedPage(k, 4096))));
        expect(report.whole, `${algo} ${file}`).toBe(reference);
      }
    }
  });

  it("prints 'PAGE DIGEST' lines and a 'DIGEST  FILE' line, honouring --page-size", async () => {
    const { code, out } = await pagemill(["hash", plain, "--algo", "xxh64", "--page-size", "8k", "--whole"]);
    expect(code).toBe(0);
    const lines = out.trim().split("\n");
    expect(lines).toHaveLength(4);
    for (let k = 0; k < 3; k++) expect(lines[k]).toBe(`${k} ${hex64(xxh64(paddedPage(k, 8192)))}`);
    expect(lines[3]).toBe(`${hex64(xxh64(image))}  ${plain}`);
  });

  it("names what is wrong with its arguments", async () => {
    let r = await pagemill(["hash", plain]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/missing --algo/);
    r = await pagemill(["hash", plain, "--algo", "sha1"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--algo must be md5, xxh32, xxh64 or xxh3, got 'sha1'/);
    r = await pagemill(["hash", plain, "--algo", "md5", "--page-size", "100"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--page-size/);
    r = await pagemill(["hash", join(dir, "nope.bin"), "--algo", "md5"]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/no such file/);
  });
});

describe("pagemill scan: duplicate pages", () => {
  it("counts non-zero pages that repeat earlier content and the bytes dedup would save", async () => {
    const a = randomBytes(4096, 1);
    const b = randomBytes(4096, 2);
    const zero = new Uint8Array(4096);
    const pages = [a, zero, a, b, a, zero, b, randomBytes(4096, 3)];
    const file = join(dir, "dups.bin");
    const bytes = new Uint8Array(pages.length * 4096);
    pages.forEach((p, k) => bytes.set(p, k * 4096));
    writeFileSync(file, bytes);
    const { code, out } = await pagemill(["scan", file, "--json"]);
    expect(code).toBe(0);
    const report = JSON.parse(out);
    expect(report.zeroPages).toBe(2);
    expect(report.duplicatePages).toBe(3);
    expect(report.dedupSavedBytes).toBe(3 * 4096);
    const text = await pagemill(["scan", file]);
    expect(text.out).toMatch(/duplicates\s+3 non-zero pages repeat earlier content; dedup would save 12\.0 KiB/);
  });
});

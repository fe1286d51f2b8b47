import { describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Md5, PageBatch, PagemillError, md5, md5Batch, toHex } from "../src/index.js";
import { wasm } from "../src/wasm/module.js";
import { SHARED, TRACE_NAMES, sharedTraceImagePages } from "./helpers/traces.js";
import { md5BatchHex, nodeMd5, splitHex } from "./helpers/md5.js";
import { withoutTools } from "./helpers/tools.js";

const FUZZ = process.env.PAGEMILL_FUZZ ? 20 : 1;
const PAGE_SIZES = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];

describe("md5", () => {
  it("gives the RFC 1321 appendix A.5 digests", () => {
    const suite: [string, string][] = [
      ["", "d41d8cd98f00b204e9800998ecf8427e"],
      ["a", "0cc175b9c0f1b6a831c399e269772661"],
      ["abc", "900150983cd24fb0d6963f7d28e17f72"],
      ["message digest", "f96b697d7cb7938d525a2f31aaf161d0"],
      ["abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"],
      ["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"],
      ["1234567890".repeat(8), "57edf4a22be3c955ac49da2e2107b67a"],
    ];
    for (const [text, hex] of suite) {
      const digest = md5(new TextEncoder().encode(text));
      expect(digest).toBeInstanceOf(Uint8Array);
      expect(digest.length).toBe(16);
      expect(toHex(digest), JSON.stringify(text)).toBe(hex);
    }
  });

  it("matches the golden digests of the shared vector pages, batched and one by one", () => {
    const golden = JSON.parse(readFileSync(`${SHARED}vectors/hashes.json`, "utf8")) as {
      pageSize: number;
      vectors: { page: number; md5: string }[];
    };
    const pages = new Uint8Array(readFileSync(`${SHARED}vectors/pages.bin`));
    const { pageSize } = golden;
    const count = pages.length / pageSize;
    expect(golden.vectors.length).toBe(count);
    const batched = md5BatchHex(pages, pageSize, count);
    for (const v of golden.vectors) {
      const page = pages.subarray(v.page * pageSize, (v.page + 1) * pageSize);
      expect(batched[v.page], `page ${v.page} batched`).toBe(v.md5);
      expect(toHex(md5(page)), `page ${v.page} alone`).toBe(v.md5);
    }
  });

  it("agrees with node:crypto on random buffers of every length 0..300", () => {
    for (let round = 0; round < FUZZ; round++) {
      for (let len = 0; len <= 300; len++) {
        const data = randomBytes(len);
        expect(toHex(md5(data)), `length ${len}`).toBe(nodeMd5(data));
      }
    }
  });

  it("agrees with node:crypto on random pages of every page size, in the lanes and the scalar path", () => {
    for (const size of PAGE_SIZES) {
      // 9 pages: eight in the SIMD lanes, one on the scalar path.
      const count = 9;
      const pages = randomBytes(size * count);
      const expected = Array.from({ length: count }, (_, k) => nodeMd5(pages.subarray(k * size, (k + 1) * size)));
      expect(md5BatchHex(pages, size, count), `page size ${size}`).toEqual(expected);
    }
  });

  it("gives the same digests for every batch size as for one page at a time", () => {
    const size = 4096;
    const pages = randomBytes(size * 70);
    const alone = Array.from({ length: 70 }, (_, k) => toHex(md5(pages.subarray(k * size, (k + 1) * size))));
    for (const count of [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 63, 64, 70]) {
      expect(md5BatchHex(pages, size, count), `batch of ${count}`).toEqual(alone.slice(0, count));
    }
  });

  it("hashes messages of any length in the kernel's lanes, including tails that need two padding blocks", () => {
    const { kernels, heap } = wasm();
    for (let len = 0; len <= 200; len++) {
      const count = 1 + (len % 10); // scalar alone, partly filled lanes, full lanes plus 1 or 2
      const data = randomBytes(len * count);
      const pagesPtr = heap.alloc(data.length);
      const digestsPtr = heap.alloc(16 * count);
      heap.bytes().set(data, pagesPtr);
      expect(kernels.md5Batch(pagesPtr, len, count, digestsPtr)).toBe(count);
      const got = splitHex(heap.bytes().slice(digestsPtr, digestsPtr + 16 * count), count);
      const expected = Array.from({ length: count }, (_, k) => nodeMd5(data.subarray(k * len, (k + 1) * len)));
      expect(got, `length ${len}`).toEqual(expected);
      heap.release(pagesPtr);
      heap.release(digestsPtr);
    }
  });

  it("streams buffers larger than its copy chunk, with several hashers in progress at once", () => {
    const big = randomBytes(3 * (1 << 20) + 12345);
    const other = randomBytes(1 << 20);
    const first = new Md5();
    const second = new Md5();
    for (let at = 0; at < big.length; at += 1_000_003) {
      first.update(big.subarray(at, at + 1_000_003));
      second.update(other.subarray(at % other.length, (at % other.length) + 4097));
    }
    first.update(new Uint8Array(0));
    expect(toHex(first.digest())).toBe(nodeMd5(big));
    expect(toHex(md5(big))).toBe(nodeMd5(big));
    const secondInput = Buffer.concat(
      Array.from({ length: Math.ceil(big.length / 1_000_003) }, (_, i) => {
        const at = (i * 1_000_003) % other.length;
        return other.subarray(at, at + 4097);
      }),
    );
    expect(toHex(second.digest())).toBe(nodeMd5(secondInput));
  });

  it.skipIf(withoutTools("md5sum"))("agrees with md5sum (coreutils) on a file", () => {
    const dir = mkdtempSync(join(tmpdir(), "pagemill-md5-"));
    try {
      const path = join(dir, "image.bin");
      const data = new Uint8Array(2 * (1 << 20) + 777);
      data.set(randomBytes(1 << 20), 4096); // zero head and tail around random data
      writeFileSync(path, data);
      const printed = execFileSync("md5sum", [path], { encoding: "utf8" }).split(/\s+/)[0];
      const hasher = new Md5();
      for (let at = 0; at < data.length; at += 65536) hasher.update(data.subarray(at, at + 65536));
      expect(toHex(hasher.digest())).toBe(printed);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("agrees with node:crypto on the pages of the shared traces' images", async () => {
    for (const name of TRACE_NAMES) {
      const { pageSize, pages, count } = await sharedTraceImagePages(name, 1500);
      const expected = Array.from({ length: count }, (_, k) => nodeMd5(pages.subarray(k * pageSize, (k + 1) * pageSize)));
      expect(md5BatchHex(pages, pageSize, count), name).toEqual(expected);
    }
  });

  it("writes into a caller's array and returns it", () => {
    const batch = new PageBatch(6, 1024).set(randomBytes(6 * 1024));
    const out = new Uint8Array(200).fill(0xee);
    expect(md5Batch(batch, out)).toBe(out);
    expect(splitHex(out, 6)).toEqual(Array.from({ length: 6 }, (_, k) => nodeMd5(batch.page(k))));
    expect(out.subarray(96).every((b) => b === 0xee)).toBe(true);
    batch.dispose();
  });

  it("hashes views of pagemill's own memory in place", () => {
    const batch = new PageBatch(5, 2048).set(randomBytes(5 * 2048));
    for (let k = 0; k < 5; k++) expect(toHex(md5(batch.page(k))), `slot ${k}`).toBe(nodeMd5(Buffer.from(batch.page(k))));
    const hasher = new Md5();
    hasher.update(batch.page(0).subarray(0, 100)).update(randomBytes(0)).update(batch.page(0).subarray(100));
    expect(toHex(hasher.digest())).toBe(nodeMd5(Buffer.from(batch.page(0))));
    batch.dispose();
  });

  it("returns no digests for an empty batch", () => {
    const batch = new PageBatch(4, 4096);
    expect(batch.count).toBe(0);
    expect(md5Batch(batch).length).toBe(0);
    const out = new Uint8Array(16).fill(7);
    expect(md5Batch(batch, out)).toBe(out);
    expect(out.every((b) => b === 7)).toBe(true);
    batch.dispose();
  });

  it("rejects bad arguments with typed errors naming them", () => {
    expect(() => md5("abc" as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => md5(new ArrayBuffer(4) as unknown as Uint8Array)).toThrow(/data must be a Uint8Array/);
    expect(() => new Md5().update([1, 2, 3] as unknown as Uint8Array)).toThrow(/chunk must be a Uint8Array/);
    expect(() => md5Batch({ ptr: 0, pageSize: 4096, count: 1 } as unknown as PageBatch)).toThrow(/batch must be a PageBatch/);
    const batch = new PageBatch(3, 512).set(new Uint8Array(3 * 512));
    expect(() => md5Batch(batch, new Uint8Array(47))).toThrow(RangeError);
    expect(() => md5Batch(batch, new Uint8Array(47))).toThrow(/out has 47 bytes, needs 48/);
    expect(() => md5Batch(batch, [] as unknown as Uint8Array)).toThrow(/out must be a Uint8Array/);
    const { heap } = wasm();
    const inMemory = heap.alloc(64);
    expect(() => md5Batch(batch, heap.bytes().subarray(inMemory, inMemory + 64))).toThrow(/view of pagemill's WebAssembly memory/);
    heap.release(inMemory);
    batch.dispose();
  });

  it("refuses to be used after digest()", () => {
    const hasher = new Md5().update(new Uint8Array([1, 2, 3]));
    expect(toHex(hasher.digest())).toBe(nodeMd5(new Uint8Array([1, 2, 3])));
    expect(() => hasher.digest()).toThrow(PagemillError);
    expect(() => hasher.update(new Uint8Array(1))).toThrow(/after digest/);
  });
});

import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { PageBatch, isZeroPage, scanZeroPages } from "../src/index.js";
import { sharedTraceImagePages } from "./helpers/traces.js";

const PAGE_SIZES = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];

function referenceIsZero(page: Uint8Array): boolean {
  for (let i = 0; i < page.length; i++) if (page[i] !== 0) return false;
  return true;
}

describe("zero-page detection", () => {
  it("finds an all-zero page at every supported page size", () => {
    for (const size of PAGE_SIZES) expect(isZeroPage(new Uint8Array(size))).toBe(true);
  });

  it("sees one non-zero byte at every offset of a 4 KiB page", () => {
    const batch = new PageBatch(4096, 4096);
    const pages = new Uint8Array(4096 * 4096);
    for (let off = 0; off < 4096; off++) pages[off * 4096 + off] = 1 + (off % 255);
    const scan = scanZeroPages(batch.set(pages));
    expect(scan.zeroCount).toBe(0);
    expect(scan.flags.every((f) => f === 0)).toBe(true);
    batch.dispose();
  });

  it("sees one non-zero byte at the first, middle and last offsets of every page size", () => {
    for (const size of PAGE_SIZES) {
      for (const off of [0, 1, 7, 8, 15, 16, 127, 128, size / 2, size - 9, size - 8, size - 1]) {
        const page = new Uint8Array(size);
        page[off] = 0x80;
        expect(isZeroPage(page), `size ${size} offset ${off}`).toBe(false);
      }
    }
  });

  it("agrees with a plain loop on random batches of any size", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...PAGE_SIZES),
        fc.array(fc.option(fc.nat(), { nil: undefined }), { minLength: 0, maxLength: 40 }),
        (size, marks) => {
          const pages = new Uint8Array(size * marks.length);
          marks.forEach((m, k) => {
            if (m !== undefined) pages[k * size + (m % size)] = 1 + (m % 255);
          });
          const batch = new PageBatch(Math.max(1, marks.length), size);
          try {
            const scan = scanZeroPages(batch.set(pages));
            const expected = marks.map((_, k) => (referenceIsZero(pages.subarray(k * size, (k + 1) * size)) ? 1 : 0));
            expect(Array.from(scan.flags)).toEqual(expected);
            expect(scan.zeroCount).toBe(expected.reduce((a: number, b) => a + b, 0));
          } finally {
            batch.dispose();
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("agrees with a plain loop on the pages of the shared traces' images", async () => {
    const { pageSize, pages, count } = await sharedTraceImagePages("redis", 4000);
    const batch = new PageBatch(count, pageSize);
    const scan = scanZeroPages(batch.set(pages));
    let expected = 0;
    for (let k = 0; k < count; k++) {
      const zero = referenceIsZero(pages.subarray(k * pageSize, (k + 1) * pageSize));
      expect(scan.flags[k]).toBe(zero ? 1 : 0);
      expected += zero ? 1 : 0;
    }
    expect(scan.zeroCount).toBe(expected);
    expect(expected).toBeGreaterThan(0);
    expect(expected).toBeLessThan(count);
    batch.dispose();
  });

  it("rejects a page that is not a supported size", () => {
    expect(() => isZeroPage(new Uint8Array(4095))).toThrow(/page.byteLength/);
    expect(() => isZeroPage(new Uint8Array(256))).toThrow(RangeError);
  });
});

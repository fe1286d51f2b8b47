import { describe, expect, it } from "vitest";
import { PageBatch, scanZeroPages } from "../src/index.js";
import { wasm } from "../src/wasm/module.js";

describe("PageBatch", () => {
  it("loads pages by index, runs and out of order, and stores them back", () => {
    const ps = 512;
    const source = new Uint8Array(ps * 10);
    for (let p = 0; p < 10; p++) source.fill(p + 1, p * ps, (p + 1) * ps);
    const batch = new PageBatch(6, ps);
    const indices = [3, 4, 5, 0, 9, 2];
    batch.load(source, indices);
    expect(batch.count).toBe(6);
    indices.forEach((p, k) => expect(batch.page(k).every((b) => b === p + 1)).toBe(true));
    const dest = new Uint8Array(ps * 10);
    batch.store(dest, indices);
    for (const p of indices) expect(dest.subarray(p * ps, (p + 1) * ps)).toEqual(source.subarray(p * ps, (p + 1) * ps));
    batch.dispose();
  });

  it("keeps its contents and gives fresh views when memory grows between batches", () => {
    const { heap } = wasm();
    const first = new PageBatch(8, 4096);
    const pages = new Uint8Array(8 * 4096).map((_, i) => (i * 7 + 3) & 0xff);
    first.set(pages);
    const before = first.bytes();
    const bufferBefore = heap.bytes().buffer;
    // Allocate well past the current memory to force a grow.
    const big = new PageBatch(Math.ceil((heap.memoryBytes * 2) / 65536), 65536);
    expect(heap.bytes().buffer).not.toBe(bufferBefore);
    expect(before.byteLength).toBe(0); // the old view detached: exactly what must never be reused
    expect(first.bytes()).toEqual(pages);
    // Kernels see the same data after the grow.
    first.page(5).fill(0);
    const scan = scanZeroPages(first);
    expect(Array.from(scan.flags)).toEqual([0, 0, 0, 0, 0, 1, 0, 0]);
    big.dispose();
    first.dispose();
  });

  it("reuses released memory instead of growing forever", () => {
    const { heap } = wasm();
    const size = heap.memoryBytes;
    for (let i = 0; i < 50; i++) new PageBatch(64, 4096).dispose();
    expect(heap.memoryBytes).toBeLessThanOrEqual(size + 64 * 4096 + 65536);
  });

  it("names the argument on bad input", () => {
    expect(() => new PageBatch(4, 3000)).toThrow(/pageSize must be a power of two/);
    expect(() => new PageBatch(4, 256)).toThrow(RangeError);
    expect(() => new PageBatch(0)).toThrow(/capacity must be/);
    const batch = new PageBatch(4, 4096);
    const src = new Uint8Array(4096 * 3);
    expect(() => batch.load(src, [0, 3])).toThrow(/indices\[1\] = 3 is not a page of source/);
    expect(() => batch.load(src, [-1])).toThrow(/indices\[0\]/);
    expect(() => batch.load(src, [0, 1, 2, 0, 1])).toThrow(/indices.length/);
    expect(() => batch.load(new Uint8Array(100), [0])).toThrow(/not a page of source/);
    expect(() => batch.set(new Uint8Array(4095))).toThrow(/not a multiple of pageSize/);
    expect(() => batch.set(new Uint8Array(4096 * 5))).toThrow(RangeError);
    expect(() => batch.page(4)).toThrow(/k must be/);
    expect(() => batch.load("nope" as unknown as Uint8Array, [0])).toThrow(TypeError);
    batch.dispose();
  });
});

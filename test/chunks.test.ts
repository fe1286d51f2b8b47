import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { ChunkedPages, MemoryLimitError, checkFitsInMemory, memoryLimit } from "../src/index.js";
import { fillZero, readLocated } from "../src/guest/pages.js";
import { mixedPages } from "./helpers/frames.js";
import { sharedAvailable, sharedTraceImagePages } from "./helpers/traces.js";

const PS = 4096;

/** Every page of the store, back to back, read one by one; checked against one readRange of all. */
function contents(store: ChunkedPages): Uint8Array {
  const out = new Uint8Array(store.pageCount * store.pageSize);
  for (let i = 0; i < store.pageCount; i++) out.set(store.page(i), i * store.pageSize);
  const ranged = new Uint8Array(out.byteLength + 3 * store.pageSize).fill(7);
  store.readRange(0, store.pageCount, ranged, store.pageSize);
  expect(same(ranged.subarray(store.pageSize, store.pageSize + out.byteLength), out)).toBe(true);
  return out;
}

/** Byte equality without vitest's element-by-element diff (the memories here are MiBs). */
function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

/** Bytes of the chunks `store` must hold: each with a possibly non-zero page, the last one cut to the store's end. */
function held(store: ChunkedPages, perChunk: number): number {
  let bytes = 0;
  for (let first = 0; first < store.pageCount; first += perChunk) {
    const pages = Math.min(perChunk, store.pageCount - first);
    if (Array.from({ length: pages }, (_, k) => first + k).some((p) => !store.isZero(p))) bytes += pages * store.pageSize;
  }
  return bytes;
}

function isZeroPage(bytes: Uint8Array, page: number, pageSize: number): boolean {
  return bytes.subarray(page * pageSize, (page + 1) * pageSize).every((b) => b === 0);
}

describe("ChunkedPages", () => {
  it.skipIf(!sharedAvailable())("holds a real guest image page for page, allocating only chunks with non-zero pages", async () => {
    const image = await sharedTraceImagePages("redis", 4096);
    const store = new ChunkedPages(image.count, image.pageSize, 16);
    for (let i = 0; i < image.count; i++) store.write(i, image.pages, i * image.pageSize);
    expect(same(contents(store), image.pages)).toBe(true);
    let zeroChunks = 0;
    for (let c = 0; c * 16 < image.count; c++) {
      const pages = Array.from({ length: Math.min(16, image.count - c * 16) }, (_, k) => c * 16 + k);
      if (pages.every((p) => isZeroPage(image.pages, p, image.pageSize))) zeroChunks++;
    }
    expect(zeroChunks).toBeGreaterThan(0); // the image has whole zero chunks: they must cost nothing
    expect(store.chunks).toBe(Math.ceil(image.count / 16) - zeroChunks);
    for (let i = 0; i < image.count; i++) expect(store.isZero(i)).toBe(isZeroPage(image.pages, i, image.pageSize));
  });

  it("a guest of 2^32 pages costs its bits, not its size, and reads zero everywhere", () => {
    const store = new ChunkedPages(2 ** 32, PS, 256);
    const last = 2 ** 32 - 1;
    const out = new Uint8Array(PS).fill(9);
    store.readRange(last, 1, out, 0);
    expect(out.every((b) => b === 0)).toBe(true);
    store.page(last).fill(1); // a new zero page: writing to it changes nothing
    expect(store.page(last).every((b) => b === 0)).toBe(true);
    expect(store.chunks).toBe(0);
    const page = mixedPages(PS, 4, 3).subarray(3 * PS, 4 * PS); // random bytes
    store.write(last, page);
    store.write(2 ** 31, page);
    expect(store.chunks).toBe(2);
    expect(store.heldBytes).toBe(2 * 256 * PS);
    expect(store.isZero(last)).toBe(false);
    expect(store.isZero(last - 1)).toBe(true);
    expect(same(store.page(last), page)).toBe(true);
    expect(ChunkedPages.overheadBytes(2 ** 32)).toBeLessThan(2 ** 30);
    // By default a page per chunk (only non-zero pages held), coarser where the table would pass 2^24 chunks.
    expect([new ChunkedPages(2 ** 20).pagesPerChunk, new ChunkedPages(2 ** 24).pagesPerChunk, store.pagesPerChunk]).toEqual([1, 1, 256]);
    expect(new ChunkedPages(2 ** 32).pagesPerChunk).toBe(256);
  });

  it("matches a flat memory under any sequence of writes, zero writes and in-place changes (property)", () => {
    const pageCount = 40;
    const pool = mixedPages(PS, 10, 7);
    const op = fc.oneof(
      fc.record({ kind: fc.constant("write" as const), page: fc.nat({ max: pageCount - 1 }), content: fc.nat({ max: 9 }) }),
      fc.record({ kind: fc.constant("zero" as const), page: fc.nat({ max: pageCount - 1 }) }),
      fc.record({ kind: fc.constant("poke" as const), page: fc.nat({ max: pageCount - 1 }), at: fc.nat({ max: PS - 1 }), value: fc.nat({ max: 255 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 120 }), fc.constantFrom(1, 3, 8, 64), (ops, perChunk) => {
        const store = new ChunkedPages(pageCount, PS, perChunk);
        const flat = new Uint8Array(pageCount * PS);
        for (const o of ops) {
          if (o.kind === "write") {
            store.write(o.page, pool, o.content * PS);
            flat.set(pool.subarray(o.content * PS, (o.content + 1) * PS), o.page * PS);
          } else if (o.kind === "zero") {
            store.zero(o.page);
            flat.fill(0, o.page * PS, (o.page + 1) * PS);
          } else {
            store.writable(o.page)[o.at] = o.value;
            flat[o.page * PS + o.at] = o.value;
          }
        }
        expect(same(contents(store), flat)).toBe(true);
        // A zero bit is never wrong; a page only written with zeros keeps it.
        for (let i = 0; i < pageCount; i++) if (store.isZero(i)) expect(isZeroPage(flat, i, PS)).toBe(true);
        // Only chunks with a possibly non-zero page are held.
        let needed = 0;
        for (let c = 0; c * perChunk < pageCount; c++) {
          const pages = Array.from({ length: Math.min(perChunk, pageCount - c * perChunk) }, (_, k) => c * perChunk + k);
          if (pages.some((p) => !store.isZero(p))) needed++;
          expect(store.page(c * perChunk).buffer === store.page(c * perChunk).buffer) // views of one chunk, or a new zero page each time.toBe(pages.some((p) => !store.isZero(p)));
        }
        expect(store.chunks).toBe(needed);
        expect(store.heldBytes).toBe(held(store, perChunk));
      }),
    );
  });

  it("locates pages in its shared slabs: read there, they are what readRange gives (property)", () => {
    const pageCount = 48;
    const pool = mixedPages(PS, 10, 3);
    fc.assert(
      fc.property(
        fc.array(fc.record({ page: fc.nat({ max: pageCount - 1 }), content: fc.nat({ max: 10 }) }), { maxLength: 80 }),
        fc.uniqueArray(fc.nat({ max: pageCount - 1 }), { maxLength: 40 }),
        fc.constantFrom(1, 3, 16),
        (writes, wanted, perChunk) => {
          const store = new ChunkedPages(pageCount, PS, perChunk);
          for (const w of writes) {
            if (w.content === 10) store.zero(w.page);
            else store.write(w.page, pool, w.content * PS);
          }
          const indices = wanted.sort((a, b) => a - b);
          const located = store.locate(indices);
          for (const memory of located.buffers) expect(memory).toBeInstanceOf(SharedArrayBuffer);
          const got = new Uint8Array((indices.length + 1) * PS).fill(9);
          readLocated(located, PS, got, PS);
          for (let k = 0; k < indices.length; k++) {
            const page = new Uint8Array(PS);
            store.readRange(indices[k]!, 1, page, 0);
            expect(Buffer.compare(got.subarray((k + 1) * PS, (k + 2) * PS), page)).toBe(0);
          }
          expect(got.subarray(0, PS).every((b) => b === 9)).toBe(true); // nothing written before `at`
        },
      ),
    );
  });

  it("works where there is no SharedArrayBuffer (a browser page not cross-origin isolated), refusing only to locate pages", () => {
    const shared = globalThis.SharedArrayBuffer;
    const global = globalThis as { SharedArrayBuffer?: unknown };
    delete global.SharedArrayBuffer;
    try {
      const store = new ChunkedPages(16, PS);
      const content = mixedPages(PS, 2, 4).subarray(PS, 2 * PS);
      store.write(3, content);
      store.zero(3);
      store.write(5, content);
      const page = new Uint8Array(2 * PS).fill(1);
      store.readRange(4, 2, page, 0);
      expect(page.subarray(0, PS).every((b) => b === 0)).toBe(true);
      expect(Buffer.compare(page.subarray(PS), content)).toBe(0);
      expect(() => store.locate([5])).toThrow(/no SharedArrayBuffer/);
    } finally {
      global.SharedArrayBuffer = shared;
    }
  });

  it("fillZero zeros exactly its range, in shared memory and in private memory", () => {
    for (const bytes of [new Uint8Array(new SharedArrayBuffer(3 * PS + 100)), new Uint8Array(3 * PS + 100)]) {
      bytes.fill(5);
      fillZero(bytes, 17, 2 * PS + 60);
      expect(bytes.subarray(0, 17).every((b) => b === 5)).toBe(true);
      expect(bytes.subarray(17, 2 * PS + 60).every((b) => b === 0)).toBe(true);
      expect(bytes.subarray(2 * PS + 60).every((b) => b === 5)).toBe(true);
    }
  });

  it("prefault maps every slab up front, contents zero; pages written later land in them; a deadline stops it early", () => {
    const store = new ChunkedPages(3000, 4096);
    expect(store.mappedBytes).toBe(0);
    expect(store.prefault()).toBe(store.mappedBytes);
    // 3000 pages in 4 MiB slabs of 1024: three slabs.
    expect(store.mappedBytes).toBe(3 * 1024 * 4096);
    for (let p = 0; p < 3000; p += 7) expect(store.isZero(p) && store.page(p).every((b) => b === 0)).toBe(true);
    for (let p = 0; p < 3000; p += 3) store.write(p, new Uint8Array(4096).fill((p % 250) + 1));
    expect(store.mappedBytes).toBe(3 * 1024 * 4096);
    for (let p = 0; p < 3000; p += 3) expect(store.page(p)[4095]).toBe((p % 250) + 1);
    expect(store.prefault()).toBe(0);
    const late = new ChunkedPages(3000, 4096);
    expect(late.prefault(performance.now() - 1)).toBe(0);
    expect(late.mappedBytes).toBe(0);
  });

  it("frees a chunk when its last non-zero page is written with zeros", () => {
    const store = new ChunkedPages(8, PS, 4);
    const page = mixedPages(PS, 2, 1).subarray(PS, 2 * PS);
    store.write(1, page);
    store.write(2, page);
    expect(store.chunks).toBe(1);
    store.write(1, new Uint8Array(PS));
    expect(store.chunks).toBe(1);
    store.zero(2);
    expect(store.chunks).toBe(0);
    expect(store.page(2).buffer).not.toBe(store.page(2).buffer); // a new zero page each time: no chunk
  });

  it("refuses bad input with a clear error", () => {
    expect(() => new ChunkedPages(-1)).toThrow(/pageCount/);
    expect(() => new ChunkedPages(2 ** 32 + 1)).toThrow(/pageCount/);
    expect(() => new ChunkedPages(10, 1000)).toThrow(/pageSize/);
    expect(() => new ChunkedPages(10, PS, 0)).toThrow(/pagesPerChunk/);
    const store = new ChunkedPages(10, PS);
    expect(() => store.write(10, new Uint8Array(PS))).toThrow(/page 10 is outside the store \(0\.\.9\)/);
    expect(() => store.write(1.5, new Uint8Array(PS))).toThrow(/outside/);
    expect(() => store.write(0, new Uint8Array(PS - 1))).toThrow(/from/);
    expect(() => store.write(0, new Uint8Array(PS), 1)).toThrow(/from/);
    expect(() => store.readRange(0, 1, new Uint8Array(PS), 1)).toThrow(/at/);
    expect(() => store.readRange(5, 6, new Uint8Array(6 * PS), 0)).toThrow(/count/);
    expect(() => store.write(0, [1, 2] as unknown as Uint8Array)).toThrow(/content/);
    expect(store.chunks).toBe(0);
  });
});

describe("checkFitsInMemory", () => {
  it("refuses a size above the limit naming the estimate and the limit", () => {
    expect(() => checkFitsInMemory("a 64 GiB guest", 64 * 2 ** 30, 12 * 2 ** 30)).toThrow(MemoryLimitError);
    expect(() => checkFitsInMemory("a 64 GiB guest", 64 * 2 ** 30, 12 * 2 ** 30)).toThrow(
      "a 64 GiB guest needs an estimated 64.00 GiB of memory, more than the limit of 12.00 GiB on this machine",
    );
    expect(() => checkFitsInMemory("x", Number.NaN, 1)).toThrow(MemoryLimitError);
    checkFitsInMemory("8 GiB populated", 8 * 2 ** 30, 12 * 2 ** 30);
  });

  it("takes its default limit from PAGEMILL_MEMORY_LIMIT, else three quarters of the machine", () => {
    const saved = process.env.PAGEMILL_MEMORY_LIMIT;
    try {
      process.env.PAGEMILL_MEMORY_LIMIT = String(2 ** 20);
      expect(memoryLimit()).toBe(2 ** 20);
      expect(() => checkFitsInMemory("two MiB", 2 ** 21)).toThrow(/limit of 1\.0 MiB/);
      process.env.PAGEMILL_MEMORY_LIMIT = "lots";
      expect(() => memoryLimit()).toThrow(/PAGEMILL_MEMORY_LIMIT must be a positive whole number of bytes, got "lots"/);
      delete process.env.PAGEMILL_MEMORY_LIMIT;
      expect(memoryLimit()).toBeGreaterThan(0);
    } finally {
      if (saved === undefined) delete process.env.PAGEMILL_MEMORY_LIMIT;
      else process.env.PAGEMILL_MEMORY_LIMIT = saved;
    }
  });
});

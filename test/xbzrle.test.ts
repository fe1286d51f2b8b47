import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { CodecError, PageBatch, XbzrleCache, XbzrleCodec, xbzrleDecode, xbzrleEncode } from "../src/index.js";
import { Encoding, type EncodedBatch } from "../src/codecs/codec.js";
import { wasm } from "../src/wasm/module.js";
import { referenceDecode, referenceEncode } from "./reference/xbzrle.js";
import { SHARED } from "./helpers/traces.js";
import { readTraceEpochs } from "./helpers/trace-epochs.js";
import { makePair, pairSpecArb } from "./helpers/xbzrle-pairs.js";

const FUZZ = Boolean(process.env.PAGEMILL_FUZZ);
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");
const fromHex = (text: string): Uint8Array => new Uint8Array(Buffer.from(text.replace(/\s+/g, ""), "hex"));

interface Vector {
  pair: number;
  kind: string;
  ret: number;
  hex: string;
}
const golden = JSON.parse(readFileSync(`${SHARED}vectors/xbzrle.json`, "utf8")) as { pageSize: number; vectors: Vector[] };
const pairs = new Uint8Array(readFileSync(`${SHARED}vectors/pairs.bin`));
const PS = golden.pageSize;
const oldOf = (pair: number): Uint8Array => pairs.slice(pair * 2 * PS, pair * 2 * PS + PS);
const newOf = (pair: number): Uint8Array => pairs.slice(pair * 2 * PS + PS, (pair + 1) * 2 * PS);

function expectCodecError(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(CodecError);
    expect((error as CodecError).code).toBe(code);
    return;
  }
  throw new Error(`expected a CodecError (${code})`);
}

describe("xbzrle golden vectors (QEMU xbzrle_encode_buffer, slen = dlen = 4096)", () => {
  it("encodes every pair of xbzrle.json to QEMU's exact return value and bytes", () => {
    expect(golden.vectors.length).toBe(pairs.length / (2 * PS));
    for (const v of golden.vectors) {
      const out = new Uint8Array(PS);
      const ret = xbzrleEncode(oldOf(v.pair), newOf(v.pair), out);
      expect(ret, `pair ${v.pair} (${v.kind})`).toBe(v.ret);
      if (ret > 0) expect(hex(out.subarray(0, ret)), `pair ${v.pair} (${v.kind})`).toBe(v.hex);
    }
  });

  it("decodes every golden delta back to the new page", () => {
    for (const v of golden.vectors.filter((v) => v.ret >= 0)) {
      const page = oldOf(v.pair);
      const end = xbzrleDecode(fromHex(v.hex), page);
      expect(hex(page), `pair ${v.pair}`).toBe(hex(newOf(v.pair)));
      const reference = referenceDecode(fromHex(v.hex), oldOf(v.pair));
      expect(reference.ok && reference.end).toBe(end);
    }
  });

  it("gives the README's known answers", () => {
    const zero = new Uint8Array(4096);
    const out = new Uint8Array(4096);
    const last = zero.slice();
    last[4095] = 1;
    expect(xbzrleEncode(zero, last, out)).toBe(4);
    expect(hex(out.subarray(0, 4))).toBe("ff1f0101");
    const first = zero.slice();
    first[0] = 0xaa;
    expect(xbzrleEncode(zero, first, out)).toBe(3);
    expect(hex(out.subarray(0, 3))).toBe("0001aa");
    const everyOther = zero.slice();
    for (let i = 0; i < 4096; i += 2) everyOther[i] = 1;
    expect(xbzrleEncode(zero, everyOther, out)).toBe(-1);
    expect(xbzrleEncode(zero, zero.slice(), out)).toBe(0);
    const page = zero.slice();
    expect(xbzrleDecode(fromHex("ff1f0101"), page)).toBe(4096);
    expect(page[4095]).toBe(1);
  });

  it("gives -1 for a run longer than 0x3fff (pages over 16 KiB), which QEMU's lengths cannot carry", () => {
    const zero = new Uint8Array(32768);
    const out = new Uint8Array(32768);
    const edge = zero.slice();
    edge[0x3fff] = 9;
    expect(xbzrleEncode(zero, edge, out)).toBe(4);
    expect(hex(out.subarray(0, 4))).toBe("ff7f0109");
    const past = zero.slice();
    past[0x4000] = 9;
    expect(xbzrleEncode(zero, past, out)).toBe(-1);
    expect(referenceEncode(zero, past, out)).toBe(-1);
  });

  it("the batch codec sends the golden deltas for cached pages", () => {
    const codec = new XbzrleCodec({ cacheSize: 1 << 20 });
    const n = golden.vectors.length;
    const batch = new PageBatch(n, PS);
    try {
      const indices = golden.vectors.map((v) => v.pair);
      for (const v of golden.vectors) codec.cache.put(v.pair, oldOf(v.pair));
      const news = new Uint8Array(n * PS);
      golden.vectors.forEach((v, k) => news.set(newOf(v.pair), k * PS));
      const encoded = codec.encodeBatch(batch.set(news), indices);
      golden.vectors.forEach((v, k) => {
        const payload = encoded.data.subarray(encoded.offsets[k], encoded.offsets[k]! + encoded.lengths[k]!);
        if (v.ret < 0) {
          expect(encoded.encodings[k]).toBe(Encoding.RAW);
          expect(hex(payload)).toBe(hex(newOf(v.pair)));
        } else {
          expect(encoded.encodings[k]).toBe(Encoding.XBZRLE);
          expect(hex(payload), `pair ${v.pair}`).toBe(v.hex);
        }
        expect(hex(codec.cache.get(v.pair)!)).toBe(hex(newOf(v.pair)));
      });
      const overflows = golden.vectors.filter((v) => v.ret < 0).length;
      const deltaBytes = golden.vectors.reduce((a, v) => a + Math.max(0, v.ret), 0);
      expect(codec.counters).toMatchObject({ pages: n, cacheMiss: 0, overflow: overflows, bytes: deltaBytes + overflows * PS });
    } finally {
      batch.dispose();
      codec.dispose();
    }
  });
});

describe("xbzrle against the plain TypeScript reference", () => {
  it("equal pages: 0 with 2 or more bytes of out, -1 with fewer (QEMU checks room for a run header first)", () => {
    const page = new Uint8Array(4096).fill(3);
    for (const room of [0, 1, 2, 3, 4096]) {
      expect(xbzrleEncode(page, page, new Uint8Array(room)), `out of ${room} B`).toBe(room < 2 ? -1 : 0);
      expect(referenceEncode(page, page, new Uint8Array(room)), `reference, out of ${room} B`).toBe(room < 2 ? -1 : 0);
    }
  });

  it("encodes random old/new pairs to the reference's bytes, at any capacity", () => {
    fc.assert(
      fc.property(pairSpecArb(), fc.option(fc.nat({ max: 3 * 65536 }), { nil: undefined }), (spec, capacity) => {
        const { oldPage, newPage } = makePair(spec);
        const dlen = capacity === undefined ? spec.pageSize : capacity % (2 * spec.pageSize + 8);
        const expected = new Uint8Array(dlen);
        const ret = referenceEncode(oldPage, newPage, expected);
        const out = new Uint8Array(dlen);
        expect(xbzrleEncode(oldPage, newPage, out)).toBe(ret);
        if (ret > 0) {
          expect(hex(out.subarray(0, ret))).toBe(hex(expected.subarray(0, ret)));
          const page = oldPage.slice();
          expect(xbzrleDecode(out.subarray(0, ret), page)).toBe((referenceDecode(out.subarray(0, ret), oldPage.slice()) as { end: number }).end);
          expect(hex(page)).toBe(hex(newPage));
        }
      }),
      { numRuns: FUZZ ? 20000 : 600 },
    );
  });

  it("encodes and decodes batches of every size like the reference, cached or not", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(512, 4096),
        fc.array(fc.tuple(pairSpecArb(fc.constant(512)), fc.boolean()), { minLength: 0, maxLength: 40 }),
        (ps, items) => {
          const codec = new XbzrleCodec({ pageSize: ps, cacheSize: 64 * ps });
          const n = items.length;
          const batch = new PageBatch(Math.max(1, n), ps);
          const destination = new PageBatch(Math.max(1, n), ps);
          try {
            const olds = new Uint8Array(n * ps);
            const news = new Uint8Array(n * ps);
            const indices = items.map((_, k) => 7 * k + 3);
            items.forEach(([spec, cached], k) => {
              const { oldPage, newPage } = makePair({ ...spec, pageSize: ps });
              olds.set(oldPage, k * ps);
              news.set(newPage, k * ps);
              if (cached) codec.cache.put(indices[k]!, oldPage);
            });
            const encoded = codec.encodeBatch(batch.set(news), indices);
            expect(encoded.count).toBe(n);
            let overflow = 0;
            items.forEach(([, cached], k) => {
              const payload = encoded.data.subarray(encoded.offsets[k], encoded.offsets[k]! + encoded.lengths[k]!);
              const expected = new Uint8Array(ps);
              const ret = cached ? referenceEncode(olds.subarray(k * ps, (k + 1) * ps), news.subarray(k * ps, (k + 1) * ps), expected) : -1;
              if (ret < 0) {
                expect(encoded.encodings[k]).toBe(Encoding.RAW);
                expect(hex(payload)).toBe(hex(news.subarray(k * ps, (k + 1) * ps)));
                if (cached) overflow++;
              } else {
                expect(encoded.encodings[k]).toBe(Encoding.XBZRLE);
                expect(hex(payload)).toBe(hex(expected.subarray(0, ret)));
              }
              expect(hex(codec.cache.get(indices[k]!)!)).toBe(hex(news.subarray(k * ps, (k + 1) * ps)));
            });
            const hits = items.filter(([, cached]) => cached).length;
            expect(codec.counters).toMatchObject({ pages: hits, cacheMiss: n - hits, overflow });
            // The destination holds the old pages; decoding brings it to the new ones.
            destination.set(olds);
            codec.decodeBatch(encoded, destination, indices);
            expect(destination.count).toBe(n);
            expect(hex(destination.bytes())).toBe(hex(news));
          } finally {
            batch.dispose();
            destination.dispose();
            codec.dispose();
          }
        },
      ),
      { numRuns: FUZZ ? 3000 : 120 },
    );
  });
});

describe("xbzrle on real trace epochs", () => {
  for (const [name, epochCount, cacheSize] of [
    ["node-gc", 3, undefined],
    ["redis", 2, 32 << 20],
  ] as const) {
    it(`migrates ${name}'s image and first ${epochCount} epochs through the codec, equal to the reference`, async () => {
      const trace = await readTraceEpochs(name, epochCount);
      const { pageSize: ps, pageCount, image } = trace;
      const source = image.slice();
      const destination = new Uint8Array(pageCount * ps);
      const codec = new XbzrleCodec({ pageSize: ps, ...(cacheSize ? { cacheSize } : {}) });
      const receiver = new XbzrleCodec({ pageSize: ps, cacheSize: ps });
      const BATCH = 256;
      const batch = new PageBatch(BATCH, ps);
      const landing = new PageBatch(BATCH, ps);
      let deltas = 0;
      let lookups = 0;
      const send = (pages: ArrayLike<number>, checkAgainst?: Uint8Array): void => {
        for (let first = 0; first < pages.length; first += BATCH) {
          const indices = Array.from({ length: Math.min(BATCH, pages.length - first) }, (_, i) => pages[first + i]!);
          lookups += indices.length;
          const encoded: EncodedBatch = codec.encodeBatch(batch.load(source, indices), indices);
          indices.forEach((p, k) => {
            if (encoded.encodings[k] !== Encoding.XBZRLE) return;
            deltas++;
            // The delta is the reference's, against what was sent before.
            const expected = new Uint8Array(ps);
            const ret = referenceEncode(checkAgainst!.subarray(p * ps, (p + 1) * ps), source.subarray(p * ps, (p + 1) * ps), expected);
            expect(hex(encoded.data.subarray(encoded.offsets[k], encoded.offsets[k]! + encoded.lengths[k]!))).toBe(hex(expected.subarray(0, Math.max(0, ret))));
          });
          receiver.decodeBatch(encoded, landing.load(destination, indices), indices);
          landing.store(destination, indices);
        }
      };
      try {
        send(Array.from({ length: pageCount }, (_, p) => p));
        expect(Buffer.compare(destination, source)).toBe(0);
        expect(deltas).toBe(0);
        for (const epoch of trace.epochs) {
          const before = source.slice();
          epoch.pages.forEach((p, i) => {
            for (let b = 0; b < ps; b++) source[p * ps + b] ^= epoch.deltas[i * ps + b]!;
          });
          send(epoch.pages, before);
          expect(Buffer.compare(destination, source), `epoch ${epoch.epoch}`).toBe(0);
        }
        const counters = codec.counters;
        expect(deltas).toBeGreaterThan(0);
        expect(counters.pages + counters.cacheMiss).toBe(lookups);
        expect(counters.cacheMissRate).toBeCloseTo(counters.cacheMiss / lookups, 12);
        expect(counters.encodingRate).toBeCloseTo((counters.pages * ps) / counters.bytes, 12);
        if (name === "node-gc") {
          // 14988 pages fit the default 64 MiB cache (4 ways, 4096 sets): only the image missed.
          expect(counters.cacheMiss).toBe(pageCount);
          expect(counters.encodingRate).toBeGreaterThan(1);
        }
      } finally {
        batch.dispose();
        landing.dispose();
        codec.dispose();
        receiver.dispose();
      }
    });
  }
});

describe("XbzrleCache", () => {
  const page = (fill: number, ps = 512): Uint8Array => new Uint8Array(ps).fill(fill);

  it("sizes itself in bytes and never takes more than asked", () => {
    const before = wasm().heap.allocatedBytes;
    const cache = new XbzrleCache({ pageSize: 512, cacheSize: 10 * 512 + 100, ways: 4 });
    expect(cache.slots).toBe(8);
    expect(cache.sets).toBe(2);
    expect(cache.cacheSize).toBe(8 * 512);
    cache.put(1, page(1));
    expect(wasm().heap.allocatedBytes - before).toBeLessThanOrEqual(10 * 512 + 100);
    cache.dispose();
    expect(wasm().heap.allocatedBytes).toBe(before);
    const byDefault = new XbzrleCache();
    expect(byDefault.cacheSize).toBe(64 * 1024 * 1024);
    expect(byDefault.ways).toBe(4);
    byDefault.dispose();
  });

  it("evicts the least recently used page of a set", () => {
    const cache = new XbzrleCache({ pageSize: 512, cacheSize: 4 * 512, ways: 2 }); // 2 sets of 2
    try {
      cache.put(0, page(10));
      cache.put(2, page(12)); // set 0 is full: pages 0 and 2
      cache.put(1, page(11)); // set 1
      expect(cache.has(0) && cache.has(2) && cache.has(1)).toBe(true);
      cache.put(0, page(20)); // 0 used again: 2 is now the least recently used
      cache.put(4, page(14)); // evicts 2
      expect(cache.has(2)).toBe(false);
      expect(cache.get(0)![0]).toBe(20);
      expect(cache.get(4)![0]).toBe(14);
      expect(cache.get(1)![0]).toBe(11);
      expect(cache.pages).toBe(3);
      cache.clear();
      expect(cache.pages).toBe(0);
      expect(cache.get(0)).toBeUndefined();
    } finally {
      cache.dispose();
    }
  });

  it("direct-mapped (1 way) behaves like QEMU's: colliding pages evict each other", () => {
    const codec = new XbzrleCodec({ pageSize: 512, cacheSize: 4 * 512, ways: 1 });
    const batch = new PageBatch(1, 512);
    try {
      const send = (p: number, content: Uint8Array): number => codec.encodeBatch(batch.set(content), [p]).encodings[0]!;
      expect(send(1, page(1))).toBe(Encoding.RAW); // miss
      expect(send(1, page(1))).toBe(Encoding.XBZRLE); // hit, unchanged
      expect(send(5, page(5))).toBe(Encoding.RAW); // 5 mod 4 = 1: evicts page 1
      expect(send(1, page(1))).toBe(Encoding.RAW);
      expect(codec.counters).toMatchObject({ cacheMiss: 3, pages: 1, bytes: 0, encodingRate: 0, cacheSize: 2048 });
    } finally {
      batch.dispose();
      codec.dispose();
    }
  });

  it("counts hits, misses, overflows and bytes in QEMU's terms", () => {
    const codec = new XbzrleCodec({ pageSize: 4096, cacheSize: 1 << 20 });
    const batch = new PageBatch(3, 4096);
    try {
      const olds = new Uint8Array(3 * 4096);
      codec.encodeBatch(batch.set(olds), [10, 11, 12]); // 3 misses
      const news = olds.slice();
      news[5] = 1; // page 10: zero run 5, then one byte: 05 01 01
      for (let i = 4096; i < 8192; i++) news[i] = i & 0xff || 1; // page 11 rewritten: overflow
      const encoded = codec.encodeBatch(batch.set(news), [10, 11, 12]);
      expect(Array.from(encoded.encodings)).toEqual([Encoding.XBZRLE, Encoding.RAW, Encoding.XBZRLE]);
      expect(Array.from(encoded.lengths)).toEqual([3, 4096, 0]);
      expect(hex(encoded.data.subarray(0, 3))).toBe("050101");
      expect(codec.counters).toEqual({
        cacheSize: 1 << 20,
        bytes: 3 + 4096,
        pages: 3,
        cacheMiss: 3,
        cacheMissRate: 0.5,
        overflow: 1,
        encodingRate: (3 * 4096) / (3 + 4096),
      });
      expect(codec.stats.byEncoding).toEqual({ raw: 4, xbzrle: 2 });
      expect(codec.stats.notFit).toBe(4);
    } finally {
      batch.dispose();
      codec.dispose();
    }
  });

  it("rejects bad sizes, indices and missing page indices by name", () => {
    expect(() => new XbzrleCache({ cacheSize: 100 })).toThrow(/cacheSize/);
    expect(() => new XbzrleCache({ ways: 0 })).toThrow(/ways/);
    expect(() => new XbzrleCache({ pageSize: 1000 })).toThrow(/pageSize/);
    const codec = new XbzrleCodec({ pageSize: 512, cacheSize: 4096 });
    const batch = new PageBatch(2, 512).set(new Uint8Array(1024));
    try {
      expect(() => codec.encodeBatch(batch)).toThrow(/pageIndices/);
      expect(() => codec.encodeBatch(batch, [0])).toThrow(RangeError);
      expect(() => codec.encodeBatch(batch, [0, -1])).toThrow(/pageIndices\[1\]/);
      expect(() => codec.cache.put(0, new Uint8Array(4))).toThrow(/content.length/);
    } finally {
      batch.dispose();
      codec.dispose();
    }
    expect(() => xbzrleEncode(new Uint8Array(4096), new Uint8Array(512), new Uint8Array(10))).toThrow(RangeError);
    expect(() => xbzrleEncode(new Uint8Array(100), new Uint8Array(100), new Uint8Array(10))).toThrow(/newPage.length/);
  });
});

describe("xbzrle decoder rejects what QEMU's rejects", () => {
  const cases: Array<[string, string, string]> = [
    ["an empty zero run after the first pair", "0001aa 0001bb", "malformed"],
    ["an empty non-zero run", "0500aa", "malformed"],
    ["a length over 14 bits", "8080 01 01aa", "malformed"],
    ["a lone byte", "05", "truncated"],
    ["a pair without its bytes", "0503aabb", "truncated"],
    ["a zero run past the page", "8140 01aa", "overrun"],
    ["a run past the page", "ff1f 02aabb", "overrun"],
  ];
  for (const [what, delta, code] of cases) {
    it(`rejects ${what} (${code}) and leaves the page as it was`, () => {
      const page = new Uint8Array(4096).fill(7);
      expectCodecError(() => xbzrleDecode(fromHex(delta), page), code);
      expect(page.every((b) => b === 7)).toBe(true);
      expect(referenceDecode(fromHex(delta), new Uint8Array(4096))).toEqual({ ok: false, code });
    });
  }

  it("accepts what QEMU accepts: an empty first zero run, a two-byte length for a small value, an empty delta", () => {
    const page = new Uint8Array(4096);
    expect(xbzrleDecode(fromHex("0001aa"), page)).toBe(1);
    expect(xbzrleDecode(fromHex("8100 01bb"), page)).toBe(2);
    expect(Array.from(page.subarray(0, 2))).toEqual([0xaa, 0xbb]);
    expect(xbzrleDecode(new Uint8Array(0), page)).toBe(0);
  });

  it("names the page in a batch decode error and writes nothing", () => {
    const codec = new XbzrleCodec({ pageSize: 512, cacheSize: 4096 });
    const batch = new PageBatch(2, 512).set(new Uint8Array(1024).fill(3));
    try {
      const good = fromHex("0001aa");
      const bad = fromHex("0500aa");
      const data = new Uint8Array([...good, ...bad]);
      const encoded: EncodedBatch = {
        pageSize: 512,
        count: 2,
        encodings: new Uint8Array([Encoding.XBZRLE, Encoding.XBZRLE]),
        offsets: new Uint32Array([0, 3]),
        lengths: new Uint32Array([3, 3]),
        data,
      };
      expect(() => codec.decodeBatch(encoded, batch, [40, 41])).toThrow(/page 41/);
      expect(batch.bytes().every((b) => b === 3)).toBe(true);
      expectCodecError(() => codec.decodeBatch({ ...encoded, lengths: new Uint32Array([3, 9]) }, batch), "length");
      expectCodecError(() => codec.decodeBatch({ ...encoded, encodings: new Uint8Array([Encoding.LZ4, 0]) }, batch), "malformed");
      expectCodecError(() => codec.decodeBatch({ ...encoded, encodings: new Uint8Array([Encoding.RAW, 0]) }, batch), "length");
      batch.count = 1;
      expect(() => codec.decodeBatch({ ...encoded, lengths: new Uint32Array([3, 0]) }, batch)).toThrow(/load the destination's pages/);
    } finally {
      batch.dispose();
      codec.dispose();
    }
  });
});

describe("XBZRLE with QEMU's cache (policy qemu, for --flavor qemu)", () => {
  const P = 4096;
  /** A page filled with `fill`, bytes 100..107 set to `word` when given. */
  const page = (fill: number, word?: number): Uint8Array => {
    const bytes = new Uint8Array(P).fill(fill);
    if (word !== undefined) bytes.fill(word, 100, 108);
    return bytes;
  };

  it("is direct-mapped over pow2floor(size / page) slots, keeps a slot used within 2 syncs, encodes hits as QEMU sizes them", () => {
    // 5 pages of room: QEMU takes 4 slots; pages 0 and 4 share slot 0.
    const codec = new XbzrleCodec({ policy: "qemu", cacheSize: 5 * P });
    const batch = new PageBatch(2, P);
    const send = (pages: number[], contents: Uint8Array[]) => {
      const encoded = codec.encodeBatch(batch.set(concat(contents)), pages);
      return Array.from(encoded.encodings, (e, k) => `${e === Encoding.XBZRLE ? "xbzrle" : e === Encoding.RAW ? "raw" : e}:${encoded.lengths[k]}`);
    };
    try {
      expect(codec.cache.slots).toBe(4);
      codec.cache.age = 1;
      expect(send([0, 1], [page(1), page(2)])).toEqual(["raw:4096", "raw:4096"]);
      // One changed 8-byte word at offset 100: zero run 100 (1 byte), run 8 (1 byte), 8 bytes.
      expect(send([0], [page(1, 9)])).toEqual(["xbzrle:10"]);
      // Unchanged since cached: nothing to send.
      expect(send([0], [page(1, 9)])).toEqual(["xbzrle:0"]);
      // Page 4 collides with page 0, used at age 1: at age 2 the slot stays page 0's, page 4 goes whole uncached.
      codec.cache.age = 2;
      expect(send([4], [page(4)])).toEqual(["raw:4096"]);
      expect([codec.cache.has(0), codec.cache.has(4)]).toEqual([true, false]);
      // At age 3 page 0's slot is stale (1 + 2 <= 3): page 4 takes it.
      codec.cache.age = 3;
      expect(send([4], [page(4)])).toEqual(["raw:4096"]);
      expect([codec.cache.has(0), codec.cache.has(4)]).toEqual([false, true]);
      // A delta longer than a page overflows: whole page, cache updated to it.
      const noisy = new Uint8Array(P).map((_, i) => (i % 2 ? 0x55 : 0xaa));
      expect(send([1], [noisy])).toEqual(["raw:4096"]);
      expect(codec.cache.get(1)).toEqual(noisy);
      expect(codec.counters).toMatchObject({ pages: 3, cacheMiss: 4, overflow: 1 });
      // Last stage: a hit is encoded against the cache, which keeps its copy; a miss is not cached.
      codec.mode = "final";
      expect(send([4, 2], [page(4, 7), page(3)])).toEqual(["xbzrle:10", "raw:4096"]);
      expect(codec.cache.get(4)).toEqual(page(4));
      expect(codec.cache.has(2)).toBe(false);
      // Off (the first pass, post-copy): whole pages, the cache and its counters untouched.
      codec.mode = "off";
      const before = codec.counters;
      expect(send([4], [page(4, 8)])).toEqual(["raw:4096"]);
      expect(codec.counters).toEqual(before);
      expect(codec.cache.get(4)).toEqual(page(4));
      // A zero page sent by the zero stage is cached (xbzrle_cache_zero_page) when on, even if it was not before.
      codec.mode = "on";
      codec.sentElsewhere(batch.set(page(0)), [3], [0]);
      expect(codec.cache.get(3)).toEqual(page(0));
    } finally {
      batch.dispose();
      codec.dispose();
    }
  });

  it("refuses ways with policy qemu and an unknown policy", () => {
    expect(() => new XbzrleCache({ policy: "qemu", ways: 4 })).toThrow(/direct-mapped: no ways/);
    expect(() => new XbzrleCache({ policy: "fifo" as "lru" })).toThrow(/policy must be lru or qemu, got 'fifo'/);
  });
});

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

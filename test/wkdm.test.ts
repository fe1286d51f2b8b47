// WKdm: XNU's golden outputs, the plain reference (test/reference/wkdm.js) on
// generated and real pages for any batch size, round trips, the codec's wire
// choices, the hit-rate kernel and API misuse. Decoder fuzzing is in
// test/fuzz/wkdm.test.ts.

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { CodecError, PageBatch, WkdmCodec, wkdmCompress, wkdmDecompress, wkdmHitRates } from "../src/index.js";
import { Encoding } from "../src/codecs/codec.js";
import { SHARED, TRACE_NAMES, sharedTraceImagePages } from "./helpers/traces.js";
import { WKDM_MZV_MAGIC, wkdmCompressReference, wkdmDecompressReference, wkdmHitRateReference } from "./reference/wkdm.js";
import { u32Stream } from "./helpers/random.js";

const PAGE = 4096;
const RUNS = process.env.PAGEMILL_FUZZ ? 2000 : 150;

interface Vector {
  page: number;
  kind: string;
  ret: number;
  hex: string;
}

const vectorPages = new Uint8Array(readFileSync(`${SHARED}vectors/pages.bin`));
const vectors = (JSON.parse(readFileSync(`${SHARED}vectors/wkdm.json`, "utf8")) as { vectors: Vector[] }).vectors;

function pageOf(pages: Uint8Array, k: number): Uint8Array {
  return pages.subarray(k * PAGE, (k + 1) * PAGE);
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

function firstWord(page: Uint8Array): number {
  return new DataView(page.buffer, page.byteOffset, 4).getUint32(0, true);
}

/** Encodes `pages` with a fresh codec, checks every page against the reference and the round trip. */
function checkBatchAgainstReference(pages: Uint8Array, count: number): void {
  const codec = new WkdmCodec();
  const batch = new PageBatch(Math.max(1, count));
  const back = new PageBatch(Math.max(1, count));
  try {
    const encoded = codec.encodeBatch(batch.set(pages.subarray(0, count * PAGE)));
    expect(encoded.count).toBe(count);
    for (let k = 0; k < count; k++) {
      const page = pageOf(pages, k);
      // The codec's budget is 4095: a page that would pack into exactly 4096 bytes goes RAW.
      const ref = wkdmCompressReference(page, PAGE - 1);
      const payload = encoded.data.subarray(encoded.offsets[k]!, encoded.offsets[k]! + encoded.lengths[k]!);
      if (ref.ret > 0) {
        expect(encoded.encodings[k], `page ${k}`).toBe(Encoding.WKDM);
        expect(hex(payload), `page ${k}`).toBe(hex(ref.bytes));
      } else if (ref.ret === 0) {
        expect(encoded.encodings[k], `page ${k}`).toBe(ref.value === 0 ? Encoding.ZERO : Encoding.SAME_VALUE);
        if (ref.value !== 0) expect(new DataView(payload.buffer, payload.byteOffset).getUint32(0, true)).toBe(ref.value);
        else expect(payload.length).toBe(0);
      } else {
        expect(encoded.encodings[k], `page ${k}`).toBe(Encoding.RAW);
        expect(hex(payload)).toBe(hex(page));
      }
    }
    codec.decodeBatch(encoded, back);
    expect(back.count).toBe(count);
    expect(Buffer.compare(back.bytes(), pages.subarray(0, count * PAGE))).toBe(0);
  } finally {
    codec.dispose();
    batch.dispose();
    back.dispose();
  }
}

// ---------------------------------------------------------------------------
// Pages built from runs of word patterns: what makes WKdm take each branch.


type RunKind = "zero" | "repeat" | "near" | "random" | "small" | "recent";
const runArb = fc.record({
  kind: fc.constantFrom<RunKind>("zero", "repeat", "near", "random", "small", "recent"),
  length: fc.integer({ min: 1, max: 96 }),
  seed: fc.integer(),
});

function buildPage(runs: { kind: RunKind; length: number; seed: number }[]): Uint8Array {
  const words = new Uint32Array(PAGE / 4);
  let at = 0;
  for (const run of runs) {
    const next = u32Stream(run.seed);
    const base = next();
    for (let i = 0; i < run.length && at < words.length; i++, at++) {
      switch (run.kind) {
        case "zero":
          words[at] = 0;
          break;
        case "repeat":
          words[at] = base;
          break;
        case "near": // same high 22 bits: partial matches
          words[at] = ((base & ~0x3ff) | (next() & 0x3ff)) >>> 0;
          break;
        case "random":
          words[at] = next();
          break;
        case "small": // high bits zero: partial matches against the empty dictionary
          words[at] = next() & 0x3ff;
          break;
        case "recent": // a word seen a few words back: exact matches when the slot survived
          words[at] = at >= 8 ? words[at - 1 - (next() & 7)]! : base;
          break;
      }
    }
  }
  // Runs that end early leave the rest repeating the last run's pattern.
  const tail = at > 0 ? words[at - 1]! : 0;
  for (; at < words.length; at++) words[at] = tail;
  return new Uint8Array(words.buffer);
}

const patternPageArb = fc.array(runArb, { minLength: 1, maxLength: 40 }).map(buildPage);

/**
 * Pages near the budget's edges: zeros, then m misses, e exact and p partial
 * matches (the zeros first, so that the early give-up does not decide).
 */
const edgePageArb = fc
  .record({ misses: fc.integer({ min: 920, max: 970 }), exacts: fc.integer({ min: 0, max: 40 }), partials: fc.integer({ min: 0, max: 12 }), seed: fc.integer() })
  .map(({ misses, exacts, partials, seed }) => {
    const next = u32Stream(seed);
    const words = new Uint32Array(PAGE / 4);
    let at = Math.max(0, words.length - misses - exacts - partials);
    // Distinct high bits for every miss, so none matches the dictionary.
    for (let i = 0; i < misses && at < words.length; i++) words[at++] = ((((i + 1) * 0x9e37) & 0x3fffff) << 10 | (next() & 0x3ff)) >>> 0;
    for (let i = 0; i < exacts && at < words.length; i++, at++) words[at] = words[at - 1]!;
    for (let i = 0; i < partials && at < words.length; i++, at++) words[at] = ((words[at - 1]! & ~0x3ff) | ((words[at - 1]! + 1) & 0x3ff)) >>> 0;
    return new Uint8Array(words.buffer);
  });

/** Pages with a few non-zero words: the sparse (MZV) form and its boundary. */
const sparsePageArb = fc
  .array(fc.record({ index: fc.integer({ min: 0, max: 1023 }), value: fc.integer({ min: 1, max: 0xffffffff }) }), { maxLength: 220 })
  .map((entries) => {
    const words = new Uint32Array(PAGE / 4);
    for (const { index, value } of entries) words[index] = value;
    return new Uint8Array(words.buffer);
  });

const singleValuePageArb = fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 1, max: 1023 })).map((value) => {
  const words = new Uint32Array(PAGE / 4).fill(value);
  return new Uint8Array(words.buffer);
});

const anyPageArb = fc.oneof(patternPageArb, edgePageArb, sparsePageArb, singleValuePageArb);

describe("WKdm golden vectors (XNU WKdm_compress_new)", () => {
  it("the reference reproduces every vector", () => {
    for (const v of vectors) {
      const ref = wkdmCompressReference(pageOf(vectorPages, v.page));
      expect(ref.ret, `vector ${v.page} (${v.kind})`).toBe(v.ret);
      expect(hex(ref.bytes), `vector ${v.page} (${v.kind})`).toBe(v.hex);
    }
  });

  it("wkdmCompress returns every vector's ret and exact bytes", () => {
    const out = new Uint8Array(PAGE);
    for (const v of vectors) {
      out.fill(0xee);
      const ret = wkdmCompress(pageOf(vectorPages, v.page), out);
      expect(ret, `vector ${v.page} (${v.kind})`).toBe(v.ret);
      expect(hex(out.subarray(0, Math.max(ret, 0))), `vector ${v.page} (${v.kind})`).toBe(v.hex);
      if (ret <= 0) expect(out.every((b) => b === 0xee), "nothing written").toBe(true);
    }
  });

  it("covers every form: single value, sparse, default and does-not-fit", () => {
    const forms = new Set(vectors.map((v) => (v.ret <= 0 ? v.ret : v.hex.startsWith("21430000") ? "mzv" : "default")));
    expect(forms).toEqual(new Set([0, -1, "mzv", "default"]));
  });

  it("the codec encodes all vectors in one batch: WKDM with their bytes, SAME_VALUE/ZERO with the value, RAW when -1", () => {
    const codec = new WkdmCodec();
    const batch = new PageBatch(vectors.length).set(vectorPages);
    const encoded = codec.encodeBatch(batch);
    for (const v of vectors) {
      const page = pageOf(vectorPages, v.page);
      const payload = encoded.data.subarray(encoded.offsets[v.page]!, encoded.offsets[v.page]! + encoded.lengths[v.page]!);
      if (v.ret > 0) {
        expect(encoded.encodings[v.page]).toBe(Encoding.WKDM);
        expect(hex(payload)).toBe(v.hex);
      } else if (v.ret === 0) {
        const value = firstWord(page);
        expect(encoded.encodings[v.page]).toBe(value === 0 ? Encoding.ZERO : Encoding.SAME_VALUE);
        expect(hex(payload)).toBe(value === 0 ? "" : hex(page.subarray(0, 4)));
      } else {
        expect(encoded.encodings[v.page]).toBe(Encoding.RAW);
        expect(Buffer.compare(payload, page)).toBe(0);
      }
    }
    const notFit = vectors.filter((v) => v.ret < 0).length;
    expect(codec.stats.notFit).toBe(notFit);
    expect(codec.stats.pages).toBe(vectors.length);
    expect(codec.stats.byEncoding.raw).toBe(notFit);
    expect(codec.stats.outputBytes).toBe(encoded.data.length);
    const back = new PageBatch(vectors.length);
    codec.decodeBatch(encoded, back);
    expect(Buffer.compare(back.bytes(), vectorPages)).toBe(0);
    codec.dispose();
    batch.dispose();
    back.dispose();
  });

  it("wkdmDecompress restores every vector's page from its bytes", () => {
    const out = new Uint8Array(PAGE);
    for (const v of vectors.filter((v) => v.ret > 0)) {
      wkdmDecompress(Buffer.from(v.hex, "hex"), out);
      expect(Buffer.compare(out, pageOf(vectorPages, v.page)), `vector ${v.page} (${v.kind})`).toBe(0);
    }
  });
});

describe("WKdm decisions at XNU's thresholds", () => {
  const randomWords = (count: number, seed: number, zerosFirst: boolean) => {
    const next = u32Stream(seed);
    const words = new Uint32Array(PAGE / 4);
    const start = zerosFirst ? words.length - count : 0;
    for (let i = 0; i < count; i++) words[start + i] = ((((i + 7) * 0x2f1b) & 0x3fffff) << 10 | (next() & 0x3ff)) >>> 0;
    return new Uint8Array(words.buffer);
  };

  it("gives up early when the first 416 bytes project past 426 bytes, even if the page would fit", () => {
    const out = new Uint8Array(PAGE);
    expect(wkdmCompress(randomWords(104, 1, false), out)).toBe(-1);
    // The same 104 misses at the end of the page pass the checkpoint; sparse (4 + 6·104) beats 268 + 4·104.
    expect(wkdmCompress(randomWords(104, 1, true), out)).toBe(4 + 6 * 104);
    expect(firstWord(out)).toBe(WKDM_MZV_MAGIC);
    // 100 misses first: the estimate is exactly 426, so it goes on.
    expect(wkdmCompress(randomWords(100, 2, false), out)).toBe(4 + 6 * 100);
    // Past 132 misses the default form is smaller than the sparse one.
    expect(wkdmCompress(randomWords(132, 4, true), out)).toBe(4 + 6 * 132);
    expect(wkdmCompress(randomWords(133, 4, true), out)).toBe(268 + 4 * 133);
    expect(firstWord(out)).toBe(67 + 133);
  });

  it("charges 268 bytes first and 4 per miss: 956 misses fit, 957 do not", () => {
    const out = new Uint8Array(PAGE);
    expect(wkdmCompress(randomWords(956, 3, true), out)).toBe(268 + 4 * 956);
    expect(wkdmCompress(randomWords(957, 3, true), out)).toBe(-1);
  });

  it("out.byteLength is XNU's budget, not a capacity: a stream exactly that long is refused, as XNU refuses it", () => {
    for (const [misses, form] of [[133, 268 + 4 * 133], [500, 268 + 4 * 500], [100, 4 + 6 * 100]] as const) {
      const page = randomWords(misses, 5, true);
      expect(wkdmCompress(page, new Uint8Array(PAGE))).toBe(form);
      expect(wkdmCompress(page, new Uint8Array(form)), `${misses} misses, budget ${form}`).toBe(-1);
      // From the stream's length up, the same answer as XNU's at every budget, and taken within 200 bytes more.
      let least = -1;
      for (let budget = form; budget <= form + 200; budget++) {
        const ret = wkdmCompress(page, new Uint8Array(budget));
        expect(ret, `${misses} misses, budget ${budget}`).toBe(wkdmCompressReference(page, budget).ret);
        if (ret === form && least < 0) least = budget;
      }
      expect(least, `${misses} misses`).toBeGreaterThan(form);
    }
  });

  it("returns 4096 for a page that packs into exactly the budget; the codec sends that page RAW", () => {
    // 67 zeros, 956 misses, then the last miss again (an exact match): 268 + 4·956 + one word of slots.
    const page = randomWords(957, 6, true);
    const words = new Uint32Array(page.buffer);
    words[1023] = words[1022]!;
    expect(wkdmCompress(page, new Uint8Array(PAGE))).toBe(PAGE);
    expect(wkdmCompressReference(page).ret).toBe(PAGE);
    const codec = new WkdmCodec();
    const batch = new PageBatch(1).set(page);
    const encoded = codec.encodeBatch(batch);
    expect(encoded.encodings[0]).toBe(Encoding.RAW);
    expect(codec.stats.notFit).toBe(1);
    codec.dispose();
    batch.dispose();
  });

  it("uses the budget given by out.byteLength, as XNU's bytes_budget", () => {
    fc.assert(
      fc.property(anyPageArb, fc.integer({ min: 0, max: PAGE }), (page, budget) => {
        const out = new Uint8Array(budget);
        const ret = wkdmCompress(page, out);
        const ref = wkdmCompressReference(page, budget);
        expect(ret).toBe(ref.ret);
        if (ret > 0) expect(hex(out.subarray(0, ret))).toBe(hex(ref.bytes));
      }),
      { numRuns: RUNS },
    );
  });
});

describe("WKdm against the plain reference", () => {
  it("matches on generated pages, one at a time", () => {
    const out = new Uint8Array(PAGE);
    const back = new Uint8Array(PAGE);
    fc.assert(
      fc.property(anyPageArb, (page) => {
        const ret = wkdmCompress(page, out);
        const ref = wkdmCompressReference(page);
        expect(ret).toBe(ref.ret);
        if (ret > 0) {
          expect(hex(out.subarray(0, ret))).toBe(hex(ref.bytes));
          wkdmDecompress(out.subarray(0, ret), back);
          expect(Buffer.compare(back, page)).toBe(0);
        } else if (ret === 0) {
          expect(new Uint32Array(page.slice().buffer).every((w) => w === ref.value)).toBe(true);
        }
      }),
      { numRuns: RUNS * 4 },
    );
  });

  it("matches and round-trips for every batch size", () => {
    fc.assert(
      fc.property(fc.array(anyPageArb, { minLength: 0, maxLength: 48 }), (pages) => {
        const all = new Uint8Array(pages.length * PAGE);
        pages.forEach((p, k) => all.set(p, k * PAGE));
        checkBatchAgainstReference(all, pages.length);
      }),
      { numRuns: RUNS },
    );
  });

  it("matches and round-trips on a sample of every shared trace's image", async () => {
    for (const name of TRACE_NAMES) {
      const image = await sharedTraceImagePages(name, 12000);
      expect(image.pageSize).toBe(PAGE);
      // Every 4th page of the first 12000: 3000 pages spread over the image.
      const step = Math.max(1, Math.floor(image.count / 3000));
      const count = Math.floor(image.count / step);
      const sample = new Uint8Array(count * PAGE);
      for (let k = 0; k < count; k++) sample.set(pageOf(image.pages, k * step), k * PAGE);
      checkBatchAgainstReference(sample, count);
    }
  }, 180_000);

  it("the redis image has compressed, sparse, zero and does-not-fit pages", async () => {
    const image = await sharedTraceImagePages("redis", 6000);
    const codec = new WkdmCodec();
    const batch = new PageBatch(image.count).set(image.pages);
    const encoded = codec.encodeBatch(batch);
    const seen = new Set<number>(encoded.encodings);
    for (const encoding of [Encoding.WKDM, Encoding.ZERO, Encoding.RAW]) expect(seen.has(encoding)).toBe(true);
    let sparse = 0;
    for (let k = 0; k < encoded.count; k++) {
      if (encoded.encodings[k] === Encoding.WKDM && new DataView(encoded.data.buffer, encoded.offsets[k]!).getUint32(0, true) === WKDM_MZV_MAGIC) sparse++;
    }
    expect(sparse).toBeGreaterThan(0);
    codec.dispose();
    batch.dispose();
  });
});

describe("WKdm dictionary hit rate", () => {
  it("equals the reference for strides 1, 4, 64 on generated pages, any batch size", () => {
    fc.assert(
      fc.property(fc.array(anyPageArb, { minLength: 1, maxLength: 24 }), fc.constantFrom(1, 2, 4, 7, 64), (pages, stride) => {
        const batch = new PageBatch(pages.length);
        pages.forEach((p, k) => batch.page(k).set(p));
        batch.count = pages.length;
        const rates = wkdmHitRates(batch, stride);
        pages.forEach((p, k) => expect(rates[k]).toBeCloseTo(wkdmHitRateReference(p, stride), 6));
        batch.dispose();
      }),
      { numRuns: RUNS },
    );
  });

  it("agrees with the reference on real pages; a zero page scores 1, a random page near 0", async () => {
    const image = await sharedTraceImagePages("node-gc", 2000);
    const batch = new PageBatch(image.count).set(image.pages);
    const rates = wkdmHitRates(batch);
    for (let k = 0; k < image.count; k++) expect(rates[k]).toBeCloseTo(wkdmHitRateReference(pageOf(image.pages, k), 4), 6);
    batch.dispose();
    const edge = new PageBatch(2);
    edge.page(0).fill(0);
    const next = u32Stream(5);
    const random = new Uint32Array(PAGE / 4).map(() => next());
    edge.page(1).set(new Uint8Array(random.buffer));
    edge.count = 2;
    const [zero, noise] = wkdmHitRates(edge, 1);
    expect(zero).toBe(1);
    expect(noise).toBeLessThan(0.01);
    edge.dispose();
  });
});

describe("WKdm API misuse", () => {
  it("rejects page sizes other than 4096 with a RangeError naming the argument", () => {
    expect(() => wkdmCompress(new Uint8Array(8192), new Uint8Array(PAGE))).toThrow(/page.byteLength must be 4096/);
    expect(() => wkdmCompress(new Uint8Array(2048), new Uint8Array(PAGE))).toThrow(RangeError);
    const codec = new WkdmCodec();
    const big = new PageBatch(1, 8192);
    big.count = 1;
    expect(() => codec.encodeBatch(big)).toThrow(/batch.pageSize must be 4096/);
    expect(() => wkdmHitRates(big)).toThrow(RangeError);
    const small = new PageBatch(1);
    small.count = 1;
    expect(() => wkdmHitRates(small, 0)).toThrow(/stride/);
    const encoded = codec.encodeBatch(small);
    expect(() => codec.decodeBatch(encoded, big)).toThrow(RangeError);
    expect(() => wkdmDecompress(new Uint8Array(268), new Uint8Array(4095))).toThrow(/out.byteLength/);
    codec.dispose();
    big.dispose();
    small.dispose();
  });

  it("rejects an encoded batch whose arrays disagree with its count, and names the page of a bad payload", () => {
    const codec = new WkdmCodec();
    const batch = new PageBatch(3).set(vectorPages.subarray(4 * PAGE, 7 * PAGE));
    const encoded = codec.encodeBatch(batch);
    expect(() => codec.decodeBatch({ ...encoded, count: 2 }, batch)).toThrow(CodecError);
    const lengths = encoded.lengths.slice();
    lengths[1]! -= 4;
    const err = (() => {
      try {
        codec.decodeBatch({ ...encoded, lengths }, batch, [10, 11, 12]);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(CodecError);
    expect((err as CodecError).page).toBe(11);
    expect((err as CodecError).code).toBe("truncated");
    const encodings = encoded.encodings.slice();
    encodings[2] = Encoding.LZ4;
    expect(() => codec.decodeBatch({ ...encoded, encodings }, batch)).toThrow(/page 2: wire id/);
    codec.dispose();
    batch.dispose();
  });

  it("decodes a stream the same whatever follows it in the encoded data (nothing past it is read)", () => {
    const codec = new WkdmCodec();
    const back = new PageBatch(1);
    // Vector 13 has only zero and missed words (no area after the new words), vector 40 every area.
    for (const v of [13, 40]) {
      const page = pageOf(vectorPages, v);
      const batch = new PageBatch(1).set(page);
      const encoded = codec.encodeBatch(batch);
      batch.dispose();
      expect(encoded.encodings[0]).toBe(Encoding.WKDM);
      for (const fill of [0x00, 0xff, 0x5a]) {
        const data = new Uint8Array(encoded.data.length + 64).fill(fill);
        data.set(encoded.data);
        codec.decodeBatch({ ...encoded, data }, back);
        expect(Buffer.compare(back.bytes(), page)).toBe(0);
      }
    }
    codec.dispose();
    back.dispose();
  });

  it("wkdmDecompress rejects streams longer than any valid one before copying them", () => {
    expect(() => wkdmDecompress(new Uint8Array(1 << 20), new Uint8Array(PAGE))).toThrow(CodecError);
    expect(() => wkdmDecompressReference(new Uint8Array(3))).toThrow();
  });
});

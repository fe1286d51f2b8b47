import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  CodecError,
  Encoding,
  Lz4Codec,
  MECOM_DEFAULT_STRIDE,
  MECOM_DEFAULT_THRESHOLD,
  MecomCodec,
  PageBatch,
  WkdmCodec,
  lz4CompressBlock,
  lz4DecompressBlock,
  scanZeroPages,
  wkdmCompress,
  wkdmDecompress,
  wkdmHitRates,
} from "../src/index.js";
import type { EncodedBatch } from "../src/codecs/codec.js";
import { u32Stream } from "./helpers/random.js";
import { TRACE_NAMES, sharedTraceImagePages } from "./helpers/traces.js";

const FUZZ = process.env.PAGEMILL_FUZZ ? 100 : 1;

function roundTrip(codec: MecomCodec, pages: Uint8Array, pageSize: number): EncodedBatch {
  const count = pages.length / pageSize;
  const batch = new PageBatch(Math.max(1, count), pageSize).set(pages);
  const encoded = codec.encodeBatch(batch);
  const out = new PageBatch(Math.max(1, count), pageSize);
  codec.decodeBatch(encoded, out);
  expect(out.count).toBe(count);
  expect(Buffer.from(out.bytes()).equals(Buffer.from(pages))).toBe(true);
  batch.dispose();
  out.dispose();
  return encoded;
}

/**
 * A plain model of MECOM's choice (assembly/mecom.ts), from the single-page
 * APIs: zero, same-value, then for other pages the class evidence. The
 * constants are the kernel's; the model keeps its own evidence across the
 * batches given to it, as one codec instance does.
 */
class MecomModel {
  private readonly classes = Array.from({ length: 8 }, () => ({ wkdm: 0, lz4: 0, seen: 0 }));
  private nonZero = 0;
  private readonly sampled: number;
  private readonly minHits: number;

  constructor(
    threshold: number,
    private readonly stride: number,
  ) {
    this.sampled = 16 * Math.ceil(64 / stride);
    this.minHits = threshold > 1 ? 1 << 30 : Math.ceil(threshold * this.sampled);
  }

  private favoured(): boolean {
    return this.classes.some((c) => c.wkdm < c.lz4);
  }

  encode(list: Uint8Array[]): { encoding: number; payload: Uint8Array }[] {
    const pageSize = list[0]!.length;
    const wkdmOk = pageSize === 4096 && this.minHits <= this.sampled;
    let rates: Float32Array = new Float32Array(list.length);
    if (wkdmOk) {
      const batch = new PageBatch(list.length, 4096);
      list.forEach((p, k) => batch.page(k).set(p));
      batch.count = list.length;
      rates = wkdmHitRates(batch, this.stride);
      batch.dispose();
    }
    let favoured = wkdmOk && this.favoured();
    let inRun = false;
    return list.map((page, k) => {
      const words = new Uint32Array(page.buffer, page.byteOffset, page.byteLength / 4);
      if (words.every((w) => w === 0)) return { encoding: Encoding.ZERO, payload: new Uint8Array(0) };
      if (words.every((w) => w === words[0])) return { encoding: Encoding.SAME_VALUE, payload: page.slice(0, 4) };
      const lz4 = (): { encoding: number; payload: Uint8Array } => {
        const out = new Uint8Array(page.length);
        const n = lz4CompressBlock(page, out.subarray(0, page.length - 1));
        return n > 0 ? { encoding: Encoding.LZ4, payload: out.slice(0, n) } : { encoding: Encoding.RAW, payload: page.slice() };
      };
      const wkdm = (): Uint8Array | undefined => {
        const out = new Uint8Array(4096 + 64);
        const n = wkdmCompress(page, out.subarray(0, 4096));
        return n > 0 && n < 4096 ? out.slice(0, n) : undefined;
      };
      const seenNonZero = this.nonZero++;
      const sample = wkdmOk && (inRun || seenNonZero % (favoured ? 4 : 32) === 0);
      if (sample) inRun = false;
      const hits = Math.round(rates[k]! * this.sampled);
      if (!sample || hits < this.minHits) return lz4();
      const evidence = this.classes[Math.floor(((hits - this.minHits) * 8) / (this.sampled - this.minHits + 1))]!;
      const seen = evidence.seen++;
      if (!favoured || seen < 4 || seen % 32 === 0) {
        const byLz4 = lz4();
        const byWkdm = wkdm();
        const wkdmLength = byWkdm?.length ?? 4096;
        evidence.wkdm += wkdmLength;
        evidence.lz4 += byLz4.payload.length;
        if (Math.max(evidence.wkdm, evidence.lz4) > 2 ** 22) {
          evidence.wkdm >>>= 1;
          evidence.lz4 >>>= 1;
        }
        favoured = this.favoured();
        inRun = evidence.wkdm < evidence.lz4;
        return byWkdm && wkdmLength < byLz4.payload.length ? { encoding: Encoding.WKDM, payload: byWkdm } : byLz4;
      }
      if (evidence.wkdm < evidence.lz4) {
        inRun = true;
        const byWkdm = wkdm();
        if (byWkdm) return { encoding: Encoding.WKDM, payload: byWkdm };
      }
      return lz4();
    });
  }
}

/** Pages built from word patterns: the shapes that make WKdm, LZ4 or neither win. */
const pageArb = (pageSize: number) =>
  fc
    .tuple(
      fc.constantFrom("zero", "same", "small-ints", "pointers", "random", "sparse", "text"),
      fc.integer({ min: 1, max: 2 ** 31 }),
    )
    .map(([kind, seed]) => {
      const page = new Uint8Array(pageSize);
      const words = new Uint32Array(page.buffer);
      let x = seed;
      const next = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0), x);
      for (let i = 0; i < words.length; i++) {
        if (kind === "same") words[i] = seed;
        else if (kind === "small-ints") words[i] = next() % 300;
        else if (kind === "pointers") words[i] = 0x7f000000 + ((next() >>> 8) & 0x3fff);
        else if (kind === "random") words[i] = next();
        else if (kind === "sparse") words[i] = next() % 16 === 0 ? next() : 0;
        else if (kind === "text") words[i] = 0x20202020 + (next() % 26) * 0x01010101;
      }
      return page;
    });

describe("MECOM", () => {
  it("round-trips each shared trace's whole image, with zero pages as ZERO and no more bytes than LZ4 alone", async () => {
    for (const name of TRACE_NAMES) {
      const { pages, count } = await sharedTraceImagePages(name, Infinity);
      const mecom = new MecomCodec();
      const encoded = roundTrip(mecom, pages, 4096);
      const batch = new PageBatch(count, 4096).set(pages);
      const zero = scanZeroPages(batch).flags;
      for (let k = 0; k < count; k++) expect(encoded.encodings[k] === Encoding.ZERO, `${name} page ${k}`).toBe(zero[k] === 1);
      const lz4 = new Lz4Codec().encodeBatch(batch);
      expect(encoded.data.length, name).toBeLessThanOrEqual(lz4.data.length);
      expect(mecom.stats.pages).toBe(count);
      expect(Object.values(mecom.stats.byEncoding).reduce((a, b) => a + b, 0)).toBe(count);
      batch.dispose();
      mecom.dispose();
    }
  });

  it("sends each page exactly as a plain model of its rule would, batch after batch", () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(pageArb(4096), { minLength: 1, maxLength: 40 }), { minLength: 1, maxLength: 4 }),
        fc.constantFrom(0, 0.5, 0.75, 1, 2),
        fc.constantFrom(1, 4, 8),
        (batches, threshold, stride) => {
          const codec = new MecomCodec({ threshold, stride });
          const model = new MecomModel(threshold, stride);
          for (const list of batches) {
            const pages = new Uint8Array(list.length * 4096);
            list.forEach((p, k) => pages.set(p, k * 4096));
            const encoded = roundTrip(codec, pages, 4096);
            model.encode(list).forEach((want, k) => {
              expect(encoded.encodings[k], `page ${k}`).toBe(want.encoding);
              expect(encoded.data.subarray(encoded.offsets[k], encoded.offsets[k]! + encoded.lengths[k]!)).toEqual(want.payload);
            });
          }
          codec.dispose();
        },
      ),
      { numRuns: 40 * FUZZ },
    );
  });

  it("does not follow the hit rate where LZ4 does better: pages of repeated records stay LZ4", () => {
    // 64-byte records of pointers and small counters, repeated across the
    // page: nearly every word hits WKdm's dictionary, yet LZ4 sends the page
    // as one record and a match (the shape of PostgreSQL's heap tuples).
    const next = u32Stream(7);
    const count = 512;
    const pages = new Uint8Array(count * 4096);
    for (let k = 0; k < count; k++) {
      const record = new Uint32Array(16);
      for (let i = 0; i < 16; i++) record[i] = i % 2 ? 0x7f3a0000 + (next() & 0xfff) : next() & 0x3ff;
      const words = new Uint32Array(pages.buffer, k * 4096, 1024);
      for (let i = 0; i < 1024; i++) words[i] = record[i % 16]!;
    }
    const batch = new PageBatch(count, 4096).set(pages);
    const rates = wkdmHitRates(batch, MECOM_DEFAULT_STRIDE);
    expect(Math.min(...rates)).toBeGreaterThanOrEqual(MECOM_DEFAULT_THRESHOLD);
    const lz4Bytes = new Lz4Codec().encodeBatch(batch).data.length;
    const wkdmBytes = new WkdmCodec().encodeBatch(batch).data.length;
    expect(wkdmBytes).toBeGreaterThan(2 * lz4Bytes);
    const mecom = new MecomCodec();
    const encoded = roundTrip(mecom, pages, 4096);
    expect(encoded.data.length).toBeLessThanOrEqual(lz4Bytes);
    expect(mecom.stats.byEncoding.wkdm ?? 0).toBe(0);
    batch.dispose();
    mecom.dispose();
  });

  it("sends WKdm where its class keeps winning: small integers", () => {
    const next = u32Stream(11);
    const count = 512;
    const pages = new Uint8Array(count * 4096);
    const words = new Uint32Array(pages.buffer);
    for (let i = 0; i < words.length; i++) words[i] = next() % 300;
    const batch = new PageBatch(count, 4096).set(pages);
    const lz4Bytes = new Lz4Codec().encodeBatch(batch).data.length;
    const mecom = new MecomCodec();
    const encoded = roundTrip(mecom, pages, 4096);
    expect(mecom.stats.byEncoding.wkdm).toBeGreaterThan(count / 2);
    expect(encoded.data.length).toBeLessThan(0.9 * lz4Bytes);
    batch.dispose();
    mecom.dispose();
  });

  it("round-trips every page size (WKdm only at 4 KiB)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(512, 1024, 2048, 8192, 16384, 65536).chain((size) => fc.tuple(fc.constant(size), fc.array(pageArb(size), { minLength: 1, maxLength: 4 }))),
        ([size, list]) => {
          const pages = new Uint8Array(list.length * size);
          list.forEach((p, k) => pages.set(p, k * size));
          const codec = new MecomCodec({ threshold: 0 });
          const encoded = roundTrip(codec, pages, size);
          expect(Array.from(encoded.encodings)).not.toContain(Encoding.WKDM);
          codec.dispose();
        },
      ),
      { numRuns: 40 },
    );
  });

  it("rejects malformed and mutated batches with a CodecError, never a trap or a wrong page", async () => {
    const { pages } = await sharedTraceImagePages("redis", 64);
    const codec = new MecomCodec({ threshold: 0.3 });
    const source = new PageBatch(64, 4096).set(pages);
    // Pick 8 pages covering the classes.
    const encodedAll = codec.encodeBatch(source);
    const picks: number[] = [];
    for (const enc of [Encoding.ZERO, Encoding.SAME_VALUE, Encoding.WKDM, Encoding.LZ4, Encoding.RAW]) {
      for (let k = 0; k < 64 && picks.filter((p) => encodedAll.encodings[p] === enc).length < 2; k++) if (encodedAll.encodings[k] === enc) picks.push(k);
    }
    const sample = new PageBatch(picks.length, 4096).load(pages, picks);
    const good = codec.encodeBatch(sample);
    const out = new PageBatch(picks.length, 4096);
    let rejected = 0;
    let accepted = 0;
    fc.assert(
      fc.property(
        fc.nat(),
        fc.constantFrom("flip", "length", "offset", "encoding", "truncate"),
        fc.nat(),
        fc.nat({ max: 255 }),
        (where, how, k0, byte) => {
          const k = k0 % good.count;
          const data = good.data.slice();
          const offsets = good.offsets.slice();
          const lengths = good.lengths.slice();
          const encodings = good.encodings.slice();
          let dataLength = data.length;
          if (how === "flip" && data.length) data[where % data.length] ^= 1 << (byte % 8);
          else if (how === "length") lengths[k] = (lengths[k]! + 1 + (byte % 7)) % 5000;
          else if (how === "offset") offsets[k] = where % (data.length + 100);
          else if (how === "encoding") encodings[k] = byte % 9;
          else dataLength = where % (data.length + 1);
          const mutated: EncodedBatch = { ...good, data: data.subarray(0, dataLength), offsets, lengths, encodings };
          try {
            codec.decodeBatch(mutated, out);
            accepted++;
            // Accepted input must decode exactly as the pages it describes; flips can
            // only be accepted where they change raw or literal bytes, so compare with
            // a decode of the same bytes through the single-page reference path.
            for (let i = 0; i < good.count; i++) {
              if (!Buffer.from(out.page(i)).equals(decodeOne(mutated, i))) throw new Error(`page ${i} decoded differently from the reference path`);
            }
          } catch (err) {
            expect(err).toBeInstanceOf(CodecError);
            rejected++;
          }
        },
      ),
      { numRuns: 10_000 * FUZZ },
    );
    expect(rejected).toBeGreaterThan(1000);
    expect(accepted).toBeGreaterThan(100);
    sample.dispose();
    source.dispose();
    out.dispose();
    codec.dispose();
  });

  it("names what is wrong with its arguments", () => {
    expect(() => new MecomCodec({ stride: 0 })).toThrow(/stride/);
    expect(() => new MecomCodec({ threshold: Number.NaN })).toThrow(/threshold/);
    const codec = new MecomCodec();
    const batch = new PageBatch(2, 4096).set(new Uint8Array(8192));
    const encoded = codec.encodeBatch(batch);
    expect(() => codec.decodeBatch(encoded, new PageBatch(2, 8192))).toThrow(/pageSize/);
    expect(() => codec.decodeBatch(encoded, new PageBatch(1, 4096))).toThrow(/encoded.count/);
    expect(() => codec.decodeBatch({ ...encoded, lengths: new Uint32Array(1) }, batch)).toThrow(CodecError);
  });
});

/** Decodes page i of an encoded batch with the single-page APIs (the reference path). */
function decodeOne(encoded: EncodedBatch, i: number): Buffer {
  const page = Buffer.alloc(encoded.pageSize);
  const payload = encoded.data.subarray(encoded.offsets[i], encoded.offsets[i]! + encoded.lengths[i]!);
  const enc = encoded.encodings[i];
  if (enc === Encoding.SAME_VALUE) new Uint32Array(page.buffer).fill(new DataView(payload.buffer, payload.byteOffset).getUint32(0, true));
  else if (enc === Encoding.RAW) page.set(payload);
  else if (enc === Encoding.LZ4) expect(lz4DecompressBlock(payload, page)).toBe(page.length);
  else if (enc === Encoding.WKDM) wkdmDecompress(payload, page);
  return page;
}

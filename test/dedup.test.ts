import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { CodecError, DedupCodec, DedupIndex, DuplicateCounter, MAX_LOCATION, PageBatch, type EncodedBatch } from "../src/index.js";
import { Encoding } from "../src/codecs/codec.js";
import { sharedTraceImagePages } from "./helpers/traces.js";
import { randomBytes, u32Stream } from "./helpers/random.js";

const FUZZ = process.env.PAGEMILL_FUZZ ? 10 : 1;


/** A source memory of `pages` pages and the same-sized destination, moved by dedup batches. */
class Migration {
  readonly destination: Uint8Array;
  readonly sender: DedupCodec;
  readonly receiver: DedupCodec;
  private readonly src: PageBatch;
  private readonly dst: PageBatch;
  constructor(
    readonly source: Uint8Array,
    readonly pageSize: number,
    options: ConstructorParameters<typeof DedupCodec>[0] = {},
    batchCapacity = 64,
  ) {
    this.destination = new Uint8Array(source.length);
    const pages = source.length / pageSize;
    this.sender = new DedupCodec({ ...options, unitSize: pageSize });
    this.receiver = new DedupCodec({
      unitSize: pageSize,
      destination: (p) => (p < pages ? this.destination.subarray(p * pageSize, (p + 1) * pageSize) : undefined),
    });
    this.src = new PageBatch(batchCapacity, pageSize);
    this.dst = new PageBatch(batchCapacity, pageSize);
  }
  /** Sends source pages `indices` (one batch) and applies them at the destination. */
  send(indices: number[]): EncodedBatch {
    const encoded = this.sender.encodeBatch(this.src.load(this.source, indices), indices);
    this.receiver.decodeBatch(encoded, this.dst, indices);
    this.dst.store(this.destination, indices);
    return encoded;
  }
  page(memory: Uint8Array, p: number): Uint8Array {
    return memory.subarray(p * this.pageSize, (p + 1) * this.pageSize);
  }
  /** Pages whose destination copy differs from the source. */
  wrongPages(sent: Iterable<number>): number[] {
    const wrong: number[] = [];
    for (const p of sent) if (Buffer.compare(this.page(this.source, p), this.page(this.destination, p)) !== 0) wrong.push(p);
    return wrong;
  }
  dispose(): void {
    this.sender.dispose();
    this.receiver.dispose();
    this.src.dispose();
    this.dst.dispose();
  }
}

/** Random epochs over `source`: copy pages onto others, rewrite some, zero some, then send a random set. */
function runEpochs(m: Migration, seed: number, epochs: number, batch: number): { sent: Set<number>; refs: number } {
  const ps = m.pageSize;
  const pages = m.source.length / ps;
  const next = u32Stream(seed);
  const rand = (n: number): number => next() % n;
  const sent = new Set<number>();
  let refs = 0;
  for (let e = 0; e < epochs; e++) {
    const dirty = new Set<number>();
    for (let i = 0; i < batch; i++) {
      const p = rand(pages);
      const action = rand(4);
      const q = rand(pages);
      if (action === 0) m.source.copyWithin(p * ps, q * ps, (q + 1) * ps);
      else if (action === 1) m.source.set(randomBytes(ps, next()), p * ps);
      else if (action === 2) m.source.fill(0, p * ps, (p + 1) * ps);
      dirty.add(p);
    }
    // Repeated indices in one batch are allowed: the later slot wins.
    const order = [...dirty];
    if (order.length > 1) order.push(order[0]!);
    for (let at = 0; at < order.length; at += 48) {
      const indices = order.slice(at, at + 48);
      const encoded = m.send(indices);
      for (let k = 0; k < encoded.count; k++) if (encoded.encodings[k] === Encoding.DEDUP) refs++;
      indices.forEach((p) => sent.add(p));
    }
  }
  return { sent, refs };
}

describe("DedupIndex", () => {
  it("answers a remembered content with its location and new content with -1", () => {
    const ps = 4096;
    const a = randomBytes(ps, 1);
    const b = randomBytes(ps, 2);
    const index = new DedupIndex();
    const batch = new PageBatch(8, ps);
    index.remember(batch.set(a), [100]);
    const refs = index.dedupe(batch.set(new Uint8Array([...a, ...b, ...b, ...a])), [1, 2, 3, 4]);
    expect(Array.from(refs)).toEqual([100, -1, 2, 100]);
    expect(index.counters).toMatchObject({ lookups: 4, hits: 3, misses: 1, collisions: 0, bytesSaved: 3 * ps });
    batch.dispose();
    index.dispose();
  });

  it("forgets a location that received other content", () => {
    const ps = 1024;
    const a = randomBytes(ps, 3);
    const b = randomBytes(ps, 4);
    const index = new DedupIndex({ unitSize: ps });
    const batch = new PageBatch(4, ps);
    index.dedupe(batch.set(a), [7]);
    index.dedupe(batch.set(b), [7]); // page 7 now holds b
    expect(Array.from(index.dedupe(batch.set(a), [8]))).toEqual([-1]);
    expect(index.counters.invalidations).toBe(1);
    index.forget(8);
    expect(Array.from(index.dedupe(batch.set(a), [9]))).toEqual([-1]);
    batch.dispose();
    index.dispose();
  });

  it("stays within maxEntries, evicting the least recently used", () => {
    const ps = 512;
    const index = new DedupIndex({ unitSize: ps, maxEntries: 4 });
    const batch = new PageBatch(1, ps);
    const pages = Array.from({ length: 6 }, (_, i) => randomBytes(ps, 10 + i));
    for (let i = 0; i < 4; i++) index.dedupe(batch.set(pages[i]!), [i]);
    expect(Array.from(index.dedupe(batch.set(pages[0]!), [20]))).toEqual([0]); // touch 0: 1 is now the oldest
    index.dedupe(batch.set(pages[4]!), [4]); // evicts 1
    expect(index.size).toBe(4);
    expect(index.counters.evictions).toBe(1);
    expect(Array.from(index.dedupe(batch.set(pages[1]!), [21]))).toEqual([-1]); // evicts 2
    expect(Array.from(index.dedupe(batch.set(pages[3]!), [23]))).toEqual([3]);
    expect(Array.from(index.dedupe(batch.set(pages[2]!), [22]))).toEqual([-1]);
    expect(index.counters.evictions).toBe(3);
    expect(index.size).toBeLessThanOrEqual(4);
    batch.dispose();
    index.dispose();
  });

  it("finds exactly what a plain content map finds, over many overwrites of locations", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 }), (seed) => {
        const us = 512;
        const pool = Array.from({ length: 600 }, (_, i) => randomBytes(us, seed + i));
        const index = new DedupIndex({ unitSize: us, maxEntries: 1000 });
        const batch = new PageBatch(50, us);
        const byContent = new Map<number, number>(); // pool index → location
        const byLocation = new Map<number, number>(); // location → pool index
        const drop = (at: number): void => {
          const c = byLocation.get(at);
          if (c !== undefined) byContent.delete(c);
          byLocation.delete(at);
        };
        let x = seed;
        const rand = (n: number): number => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) % n;
        for (let round = 0; round < 60; round++) {
          const contents = Array.from({ length: 50 }, () => rand(pool.length));
          const locations = Array.from({ length: 50 }, () => rand(700));
          const units = new Uint8Array(50 * us);
          contents.forEach((c, k) => units.set(pool[c]!, k * us));
          const refs = index.dedupe(batch.set(units), locations);
          contents.forEach((c, k) => {
            const at = locations[k]!;
            const from = byContent.get(c);
            expect(refs[k]).toBe(from ?? -1);
            if (from !== undefined) {
              if (at !== from) drop(at);
            } else {
              drop(at);
              byContent.set(c, at);
              byLocation.set(at, c);
            }
          });
          expect(index.size).toBe(byContent.size);
        }
        batch.dispose();
        index.dispose();
      }),
      { numRuns: 5 * FUZZ },
    );
  });

  it("dedupes storage blocks against a base image the destination already has", () => {
    // FlimCD: dirty 512-byte blocks whose content the destination's base image holds travel as references.
    const bs = 512;
    const base = new Uint8Array(64 * bs);
    for (let b = 0; b < 64; b++) base.set(randomBytes(bs, 1000 + (b % 40)), b * bs); // blocks 40..63 repeat 0..23
    const index = new DedupIndex({ unitSize: bs, maxEntries: 1000 });
    const batch = new PageBatch(64, bs);
    index.remember(batch.load(base, Array.from({ length: 40 }, (_, b) => b)), Array.from({ length: 40 }, (_, b) => b));
    const dirty = new Uint8Array(4 * bs);
    dirty.set(base.subarray(5 * bs, 6 * bs), 0); // equal to base block 5
    dirty.set(randomBytes(bs, 77), bs); // new
    dirty.set(base.subarray(45 * bs, 46 * bs), 2 * bs); // equal to base block 5 too
    dirty.set(randomBytes(bs, 77), 3 * bs); // equal to the new block in slot 1
    const refs = index.dedupe(batch.set(dirty), [100, 101, 102, 103]);
    expect(Array.from(refs)).toEqual([5, -1, 5, 101]);
    expect(index.counters.bytesSaved).toBe(3 * bs);
    batch.dispose();
    index.dispose();
  });

  it("dedupes blocks held in JavaScript memory across staging batches", () => {
    const bs = 512;
    const blocks = new Uint8Array(700 * bs);
    for (let b = 0; b < 700; b++) blocks.set(randomBytes(bs, 1 + (b % 300)), b * bs); // block b repeats block b - 300
    const index = new DedupIndex({ unitSize: bs, maxEntries: 1000 });
    const locations = Array.from({ length: 700 }, (_, b) => 5000 + b);
    const refs = index.dedupeBlocks(blocks, locations);
    for (let b = 0; b < 700; b++) expect(refs[b], `block ${b}`).toBe(b < 300 ? -1 : 5000 + (b % 300));
    expect(index.counters.bytesSaved).toBe(400 * bs);
    expect(() => index.dedupeBlocks(blocks.subarray(1), [])).toThrow(/multiple of unitSize/);
    index.dispose();
    expect(() => index.dedupeBlocks(blocks, locations)).toThrow(/disposed/);
  });

  it("checks its arguments", () => {
    expect(() => new DedupIndex({ unitSize: 1000 })).toThrow(/unitSize/);
    expect(() => new DedupIndex({ maxEntries: 0 })).toThrow(/maxEntries/);
    expect(() => new DedupIndex({ digestBits: 54 })).toThrow(/digestBits/);
    expect(() => new DedupIndex({ digest: "md4" as "xxh3" })).toThrow(/digest/);
    const index = new DedupIndex();
    const batch = new PageBatch(2, 4096).set(new Uint8Array(8192));
    expect(() => index.dedupe(batch, [0])).toThrow(/locations has 1 entries/);
    expect(() => index.dedupe(batch, [0, -1])).toThrow(/locations\[1\]/);
    expect(() => index.dedupe(batch, [0, MAX_LOCATION + 1])).toThrow(/locations\[1\]/);
    // Both units are zero pages: the second refers to the first, at the highest location.
    expect(Array.from(index.dedupe(batch, [MAX_LOCATION, 0]))).toEqual([-1, MAX_LOCATION]);
    expect(() => index.dedupe(new PageBatch(1, 512), [0])).toThrow(/pageSize 512/);
    index.dispose();
    expect(() => index.dedupe(batch, [0, 1])).toThrow(/disposed/);
    batch.dispose();
  });
});

describe("DedupCodec round trips", () => {
  it("moves real trace pages with duplicates page-exact, references replacing repeated content", async () => {
    for (const name of ["redis", "node-gc"] as const) {
      const { pageSize, pages, count } = await sharedTraceImagePages(name, 1200);
      const m = new Migration(pages.slice(), pageSize);
      const all = Array.from({ length: count }, (_, p) => p);
      let refs = 0;
      for (let at = 0; at < count; at += 64) {
        const encoded = m.send(all.slice(at, at + 64));
        for (let k = 0; k < encoded.count; k++) if (encoded.encodings[k] === Encoding.DEDUP) refs++;
      }
      expect(m.wrongPages(all), name).toEqual([]);
      expect(refs, `${name}: duplicate pages (zero pages at least) become references`).toBeGreaterThan(0);
      expect(m.sender.stats.byEncoding.dedup).toBe(refs);
      expect(m.sender.index.counters.hits).toBe(refs);
      expect(m.sender.stats.outputBytes).toBe((count - refs) * pageSize + refs * 4);
      const epochs = runEpochs(m, 7, 6, 200);
      expect(m.wrongPages(epochs.sent), name).toEqual([]);
      m.dispose();
    }
  });

  it("stays page-exact over random epochs with any batch capacity, digest and entry bound", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 31 }),
        fc.constantFrom(512, 4096),
        fc.constantFrom("xxh3" as const, "xxh64" as const),
        fc.integer({ min: 1, max: 300 }),
        (seed, ps, digest, maxEntries) => {
          const source = randomBytes(96 * ps, seed);
          for (let p = 0; p < 96; p += 3) source.copyWithin(p * ps, 0, ps); // repeated content from the start
          const m = new Migration(source, ps, { digest, maxEntries });
          const { sent } = runEpochs(m, seed, 4, 60);
          expect(m.wrongPages(sent)).toEqual([]);
          expect(m.sender.index.size).toBeLessThanOrEqual(maxEntries);
          m.dispose();
        },
      ),
      { numRuns: 25 * FUZZ },
    );
  });

  it("forced fast-digest collisions never produce a wrong page", () => {
    for (const digestBits of [0, 1, 3]) {
      const ps = 4096;
      const source = randomBytes(128 * ps, 1234 + digestBits);
      for (let p = 0; p < 128; p += 5) source.copyWithin(p * ps, ps, 2 * ps);
      const m = new Migration(source, ps, { digestBits });
      const all = Array.from({ length: 128 }, (_, p) => p);
      for (let at = 0; at < 128; at += 32) m.send(all.slice(at, at + 32));
      const { sent } = runEpochs(m, 99 + digestBits, 5, 80);
      expect(m.wrongPages(all), `digestBits ${digestBits}`).toEqual([]);
      expect(m.wrongPages(sent)).toEqual([]);
      const c = m.sender.index.counters;
      expect(c.collisions, "the hook really forces collisions").toBeGreaterThan(50);
      expect(c.hits, "equal pages are still found").toBeGreaterThan(0);
      expect(c.lookups).toBe(c.hits + c.misses + c.collisions);
      m.dispose();
    }
  });
});

describe("DedupCodec decoder on bad input", () => {
  const ps = 4096;
  function encodedOf(entries: [number, Uint8Array][]): EncodedBatch {
    const total = entries.reduce((s, [, d]) => s + d.length, 0);
    const data = new Uint8Array(total);
    const offsets = new Uint32Array(entries.length);
    const lengths = new Uint32Array(entries.length);
    let at = 0;
    entries.forEach(([, d], k) => {
      data.set(d, at);
      offsets[k] = at;
      lengths[k] = d.length;
      at += d.length;
    });
    return { pageSize: ps, count: entries.length, encodings: Uint8Array.from(entries.map(([e]) => e)), offsets, lengths, data };
  }
  const ref = (p: number): Uint8Array => new Uint8Array(new Uint32Array([p]).buffer);

  it("throws CodecError naming the page and the cause, never a wrong page or a trap", () => {
    const held = randomBytes(ps, 5);
    const codec = new DedupCodec({ destination: (p) => (p === 9 ? held : undefined) });
    const batch = new PageBatch(4, ps);
    const expectCodecError = (encoded: EncodedBatch, code: string, page: number): void => {
      try {
        codec.decodeBatch(encoded, batch, [0, 1, 2, 3].slice(0, encoded.count));
        expect.unreachable("decodeBatch should have thrown");
      } catch (err) {
        expect(err).toBeInstanceOf(CodecError);
        expect((err as CodecError).code).toBe(code);
        expect((err as CodecError).page).toBe(page);
      }
    };
    expectCodecError(encodedOf([[Encoding.RAW, held], [Encoding.DEDUP, new Uint8Array(3)]]), "length", 1);
    expectCodecError(encodedOf([[Encoding.DEDUP, ref(10)]]), "malformed", 0);
    expectCodecError(encodedOf([[Encoding.LZ4, held]]), "malformed", 0);
    expectCodecError(encodedOf([[Encoding.RAW, held.subarray(1)]]), "length", 0);
    const truncated = encodedOf([[Encoding.RAW, held]]);
    expectCodecError({ ...truncated, data: truncated.data.subarray(0, 100) }, "truncated", 0);
    // A reference to page 9 (held) and then to slot 0's page decode to the right bytes.
    codec.decodeBatch(encodedOf([[Encoding.DEDUP, ref(9)], [Encoding.DEDUP, ref(0)]]), batch, [0, 1]);
    expect(Buffer.compare(batch.page(1), held)).toBe(0);
    // A codec made without a destination (as the registry makes it) can be given one later.
    const late = new DedupCodec();
    expect(() => late.decodeBatch(encodedOf([[Encoding.DEDUP, ref(9)]]), batch)).toThrow(/does not hold/);
    late.destination = (p) => (p === 9 ? held : undefined);
    late.decodeBatch(encodedOf([[Encoding.DEDUP, ref(9)]]), batch);
    expect(Buffer.compare(batch.page(0), held)).toBe(0);
    late.dispose();
    expect(() => codec.decodeBatch({ ...encodedOf([]), pageSize: 512 }, batch)).toThrow(RangeError);
    expect(() => codec.decodeBatch({ ...encodedOf([]), count: 5 }, batch)).toThrow(/encoded.count/);
    batch.dispose();
    codec.dispose();
  });

  it("decodes random bytes as payloads without writing past the batch", () => {
    const codec = new DedupCodec({ destination: () => undefined });
    const batch = new PageBatch(2, ps);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.array(fc.integer({ min: 0, max: 7 }), { minLength: 1, maxLength: 2 }), (bytes, encs) => {
        const encoded: EncodedBatch = {
          pageSize: ps,
          count: encs.length,
          encodings: Uint8Array.from(encs),
          offsets: Uint32Array.from(encs.map((_, k) => k * 4)),
          lengths: Uint32Array.from(encs.map(() => 4)),
          data: bytes,
        };
        expect(() => codec.decodeBatch(encoded, batch)).toThrow(CodecError);
      }),
      { numRuns: 200 * FUZZ },
    );
    batch.dispose();
    codec.dispose();
  });
});

describe("DuplicateCounter", () => {
  it("counts duplicate non-zero pages of a trace image like a plain content set", async () => {
    const { pageSize, pages, count } = await sharedTraceImagePages("redis", 3000);
    const counter = new DuplicateCounter();
    const batch = new PageBatch(500, pageSize);
    const seen = new Set<string>();
    let expected = 0;
    let nonZero = 0;
    for (let at = 0; at < count; at += 500) {
      const n = Math.min(500, count - at);
      batch.set(pages.subarray(at * pageSize, (at + n) * pageSize));
      const skip = new Uint8Array(n);
      for (let k = 0; k < n; k++) {
        const page = pages.subarray((at + k) * pageSize, (at + k + 1) * pageSize);
        if (page.every((b) => b === 0)) {
          skip[k] = 1;
          continue;
        }
        nonZero++;
        const key = Buffer.from(page).toString("base64");
        if (seen.has(key)) expected++;
        else seen.add(key);
      }
      counter.add(batch, skip);
    }
    expect(counter.units).toBe(nonZero);
    expect(counter.duplicates).toBe(expected);
    batch.dispose();
  });
});

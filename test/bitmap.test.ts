import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { DirtyBitmap, PageBatch } from "../src/index.js";
import { wasm } from "../src/wasm/module.js";
import { u32Stream } from "./helpers/random.js";

/** Plain model: a boolean per page. */
class Model {
  bits: boolean[];
  constructor(size: number) {
    this.bits = new Array(size).fill(false);
  }
  setIndices(): number[] {
    return this.bits.flatMap((b, i) => (b ? [i] : []));
  }
}

type Op =
  | { op: "set" | "clear" | "test"; page: number }
  | { op: "setRange" | "clearRange"; from: number; to: number }
  | { op: "count" | "extractAll" }
  | { op: "nextSet"; from: number }
  | { op: "extract"; from: number; max: number };

const opArb = (size: number): fc.Arbitrary<Op> => {
  const page = fc.nat({ max: Math.max(0, size - 1) });
  const bound = fc.nat({ max: size });
  return fc.oneof(
    fc.record({ op: fc.constantFrom("set" as const, "clear" as const, "test" as const), page }),
    fc.tuple(bound, bound).map(([a, b]) => ({ op: "setRange" as const, from: Math.min(a, b), to: Math.max(a, b) })),
    fc.tuple(bound, bound).map(([a, b]) => ({ op: "clearRange" as const, from: Math.min(a, b), to: Math.max(a, b) })),
    fc.constantFrom({ op: "count" as const }, { op: "extractAll" as const }),
    fc.record({ op: fc.constant("nextSet" as const), from: bound }),
    fc.record({ op: fc.constant("extract" as const), from: bound, max: bound }),
  );
};

function apply(bitmap: DirtyBitmap, model: Model, o: Op): void {
  switch (o.op) {
    case "set":
      bitmap.set(o.page);
      model.bits[o.page] = true;
      break;
    case "clear":
      bitmap.clear(o.page);
      model.bits[o.page] = false;
      break;
    case "test":
      expect(bitmap.test(o.page)).toBe(model.bits[o.page]);
      break;
    case "setRange":
    case "clearRange":
      if (o.op === "setRange") bitmap.setRange(o.from, o.to);
      else bitmap.clearRange(o.from, o.to);
      for (let i = o.from; i < o.to; i++) model.bits[i] = o.op === "setRange";
      break;
    case "count":
      expect(bitmap.count()).toBe(model.setIndices().length);
      break;
    case "extractAll":
      expect(Array.from(bitmap.extract())).toEqual(model.setIndices());
      break;
    case "nextSet": {
      const next = model.setIndices().find((i) => i >= o.from);
      expect(bitmap.nextSet(o.from)).toBe(next ?? -1);
      break;
    }
    case "extract":
      expect(Array.from(bitmap.extract(o.from, o.max))).toEqual(model.setIndices().filter((i) => i >= o.from).slice(0, o.max));
      break;
  }
}

describe("DirtyBitmap", () => {
  it("matches a plain model under random operation sequences, at sizes not a multiple of 64", () => {
    const sizeArb = fc.oneof(fc.integer({ min: 1, max: 70 }), fc.integer({ min: 120, max: 700 }));
    fc.assert(
      fc.property(
        sizeArb.chain((size) => fc.tuple(fc.constant(size), fc.array(opArb(size), { maxLength: 60 }))),
        ([size, ops]) => {
          const bitmap = new DirtyBitmap(size);
          const model = new Model(size);
          try {
            for (const o of ops) apply(bitmap, model, o);
            // Full agreement at the end, including the partial last word.
            expect(Array.from(bitmap.extract())).toEqual(model.setIndices());
            expect(bitmap.count()).toBe(model.setIndices().length);
          } finally {
            bitmap.dispose();
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("extracts dense and sparse stretches of large bitmaps from any start, up to any count", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1000, max: 40000 }).chain((size) =>
          fc.tuple(
            fc.constant(size),
            fc.array(fc.tuple(fc.nat({ max: size }), fc.nat({ max: 5000 }), fc.constantFrom(1, 2, 3, 17)), { maxLength: 8 }),
            fc.nat({ max: size }),
            fc.nat({ max: size }),
          ),
        ),
        ([size, stretches, from, max]) => {
          const bitmap = new DirtyBitmap(size);
          const model = new Model(size);
          // Each stretch sets every k-th page over a range: k = 1 is fully dense.
          for (const [start, length, k] of stretches) {
            for (let p = start; p < Math.min(size, start + length); p += k) {
              bitmap.set(p);
              model.bits[p] = true;
            }
          }
          try {
            const want = model.setIndices().filter((i) => i >= from);
            expect(Array.from(bitmap.extract(from))).toEqual(want);
            expect(Array.from(bitmap.extract(from, max))).toEqual(want.slice(0, max));
          } finally {
            bitmap.dispose();
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it("lays bits out as QEMU does: bit i of 64-bit word w is page 64w+i", () => {
    const bitmap = new DirtyBitmap(200);
    bitmap.set(0);
    bitmap.set(63);
    bitmap.set(64);
    bitmap.set(199);
    const words = bitmap.toWords();
    expect(words.length).toBe(4);
    expect(words[0]).toBe((1n << 63n) | 1n);
    expect(words[1]).toBe(1n);
    expect(words[3]).toBe(1n << BigInt(199 - 192));
    bitmap.dispose();
  });

  it("or, andNot and syncFrom agree with the model", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 600 }).chain((size) =>
          fc.tuple(fc.constant(size), fc.uniqueArray(fc.nat({ max: size - 1 })), fc.uniqueArray(fc.nat({ max: size - 1 }))),
        ),
        ([size, a, b]) => {
          const x = new DirtyBitmap(size);
          const y = new DirtyBitmap(size);
          const load = () => {
            x.clearRange();
            y.clearRange();
            a.forEach((p) => x.set(p));
            b.forEach((p) => y.set(p));
          };
          const sa = new Set(a);
          const sb = new Set(b);
          const sorted = (s: Iterable<number>) => [...s].sort((p, q) => p - q);
          load();
          x.or(y);
          expect(Array.from(x.extract())).toEqual(sorted(new Set([...a, ...b])));
          load();
          x.andNot(y);
          expect(Array.from(x.extract())).toEqual(sorted(a.filter((p) => !sb.has(p))));
          load();
          const added = x.syncFrom(y);
          expect(added).toBe(b.filter((p) => !sa.has(p)).length);
          expect(Array.from(x.extract())).toEqual(sorted(new Set([...a, ...b])));
          expect(y.count()).toBe(0);
          x.dispose();
          y.dispose();
        },
      ),
      { numRuns: 200 },
    );
  });

  it("handles 2^26 pages (256 GiB of guest at 4 KiB)", () => {
    const size = 2 ** 26;
    const bitmap = new DirtyBitmap(size);
    bitmap.set(size - 1);
    bitmap.set(12345678);
    bitmap.setRange(1000, 1064);
    expect(bitmap.count()).toBe(66);
    expect(bitmap.nextSet(12345679)).toBe(size - 1);
    const idx = bitmap.extract(0, 100);
    expect(idx.length).toBe(66);
    expect(idx[64]).toBe(12345678);
    expect(idx[65]).toBe(size - 1);
    bitmap.dispose();
  });

  it("names the argument on bad input", () => {
    const bitmap = new DirtyBitmap(100);
    expect(() => bitmap.set(100)).toThrow(/page 100 is outside/);
    expect(() => bitmap.test(-1)).toThrow(RangeError);
    expect(() => bitmap.set(1.5)).toThrow(RangeError);
    expect(() => bitmap.setRange(5, 101)).toThrow(/to must be/);
    expect(() => bitmap.nextSet(101)).toThrow(/from must be/);
    expect(() => new DirtyBitmap(-1)).toThrow(/size must be/);
    const other = new DirtyBitmap(101);
    expect(() => bitmap.or(other)).toThrow(/sizes differ/);
    bitmap.dispose();
    other.dispose();
  });
});

describe("bitmapExtract stays inside its output", () => {
  // The kernel expands 16-word chunks (up to 1024 indices) on fast paths and
  // checks each bit against max only near the end: every max around the chunk
  // sizes, on full, empty, sparse and dense bitmaps, with a guard region
  // after the output that must come back untouched.
  const GUARD = 4096;
  const maxima = [1, 2, 7, 8, 15, 16, 17, 63, 64, 65, 127, 128, 129, 1000, 1023, 1024, 1025, 2047, 2048, 2049, 3072, 4095, 4096];
  const fills: [string, (page: number, next: () => number) => boolean][] = [
    ["full", () => true],
    ["empty", () => false],
    ["1% set", (_, next) => next() % 100 === 0],
    ["50% set", (_, next) => (next() & 1) === 1],
    ["dense runs", (page) => page % 1500 < 1100],
  ];
  for (const size of [4096, 5000, 1 << 16]) {
    for (const [name, fill] of fills) {
      it(`${size} pages, ${name}`, () => {
        const { heap, kernels } = wasm();
        const next = u32Stream(size);
        const words = Math.ceil(size / 64);
        const bits = heap.alloc(words * 8);
        const model: number[] = [];
        const u32 = heap.u32();
        u32.fill(0, bits >>> 2, (bits >>> 2) + words * 2);
        for (let p = 0; p < size; p++) {
          if (!fill(p, next)) continue;
          u32[(bits >>> 2) + (p >>> 5)]! |= 1 << (p & 31);
          model.push(p);
        }
        try {
          for (const max of maxima) {
            for (const from of [0, 1, 63, 64, 1000, size - 1]) {
              const out = heap.alloc(max * 4 + GUARD);
              try {
                heap.bytes().fill(0xa5, out + max * 4, out + max * 4 + GUARD);
                const n = kernels.bitmapExtract(bits, size, from, out, max);
                const want = model.filter((p) => p >= from).slice(0, max);
                expect(n, `max ${max} from ${from}`).toBe(want.length);
                expect(Array.from(heap.u32().subarray(out >>> 2, (out >>> 2) + n)), `max ${max} from ${from}`).toEqual(want);
                const guard = heap.bytes().subarray(out + max * 4, out + max * 4 + GUARD);
                expect(guard.every((b) => b === 0xa5), `guard after max ${max} from ${from}`).toBe(true);
              } finally {
                heap.release(out);
              }
            }
          }
        } finally {
          heap.release(bits);
        }
      });
    }
  }

  it("DirtyBitmap.extract returns at most max and leaves memory next to its buffer alone", () => {
    const b = new DirtyBitmap(4096);
    const big = new DirtyBitmap(1 << 20);
    try {
      b.setRange(0, 4096);
      expect(b.extract(0, 1024)).toEqual(Uint32Array.from({ length: 1024 }, (_, i) => i));
      const batch = new PageBatch(4);
      try {
        batch.page(0).fill(0x5a);
        expect(Array.from(b.extract(0, 1024))).toHaveLength(1024);
        expect(batch.page(0).every((x) => x === 0x5a)).toBe(true);
      } finally {
        batch.dispose();
      }
      big.setRange(0, 1 << 20);
      expect(big.extract(0, 1024)).toHaveLength(1024);
      expect(big.extract(5000, 2048)[0]).toBe(5000);
    } finally {
      b.dispose();
      big.dispose();
    }
  });
});

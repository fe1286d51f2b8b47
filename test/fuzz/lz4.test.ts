// The LZ4 decoders fed random and mutated blocks with random capacities: the
// result is the plain decoder's (same bytes, or the same error), nothing is
// written outside the destination, the input is left as it was, and bytes
// past the end of the input make no difference (so none are read).
// 10^4 cases in `npm test`; PAGEMILL_FUZZ=1 (npm run fuzz) runs 100 times more.

import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { CodecError, Lz4Codec, PageBatch, lz4CompressBlock, lz4CompressBound } from "../../src/index.js";
import { Encoding, type EncodedBatch } from "../../src/codecs/codec.js";
import { Scratch } from "../../src/wasm/arena.js";
import { wasm } from "../../src/wasm/module.js";
import { referenceLz4Decode } from "../reference/lz4.js";

const SCALE = process.env.PAGEMILL_FUZZ ? 100 : 1;
/** Per test: the default 2 minutes, times the scale (a loaded machine runs 10^6 cases in many minutes). */
const TIMEOUT = 120_000 * SCALE;
const GUARD = 64;
const CODES: Record<number, string> = { [-1]: "overrun", [-2]: "malformed", [-3]: "truncated" };

const scratch = new Scratch();

interface KernelRun {
  status: number;
  output: Uint8Array;
}

/**
 * Runs the WebAssembly decoder on `block` with `capacity` bytes of room; the
 * bytes after the input are `after`, a guard of 0xa5 follows the output.
 */
function runKernel(block: Uint8Array, capacity: number, after: number): KernelRun {
  const { kernels, heap } = wasm();
  const src = scratch.reserve(block.length + GUARD + capacity + GUARD);
  const dst = src + block.length + GUARD;
  let mem = heap.bytes();
  mem.set(block, src);
  mem.fill(after, src + block.length, dst);
  mem.fill(0xa5, dst, dst + capacity + GUARD);
  const status = kernels.lz4Decompress(src, block.length, dst, capacity);
  mem = heap.bytes();
  expect(Buffer.compare(mem.subarray(src, src + block.length), block), "input changed").toBe(0);
  expect(mem.subarray(src + block.length, dst).every((b) => b === after), "wrote before the output").toBe(true);
  expect(mem.subarray(dst + capacity, dst + capacity + GUARD).every((b) => b === 0xa5), "wrote past the output").toBe(true);
  return { status, output: mem.slice(dst, dst + Math.max(0, status)) };
}

function checkDecoder(block: Uint8Array, capacity: number): void {
  const first = runKernel(block, capacity, 0x00);
  const second = runKernel(block, capacity, 0xff);
  expect(second.status, "result depends on bytes past the input").toBe(first.status);
  expect(Buffer.compare(second.output, first.output)).toBe(0);
  const ref = referenceLz4Decode(block, capacity);
  if (ref.ok) {
    expect(first.status).toBe(ref.bytes.length);
    expect(Buffer.compare(first.output, ref.bytes)).toBe(0);
  } else {
    expect(CODES[first.status]).toBe(ref.code);
  }
}

function compress(src: Uint8Array): Uint8Array {
  const out = new Uint8Array(lz4CompressBound(src.length));
  return out.slice(0, lz4CompressBlock(src, out));
}

/** Data with repeats (so blocks have matches, long lengths and short offsets). */
const compressible = fc
  .array(
    fc.oneof(
      fc.uint8Array({ maxLength: 40 }),
      fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 700 })).map(([b, n]) => new Uint8Array(n).fill(b)),
      fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 9 }), fc.integer({ min: 1, max: 80 })).map(([unit, times]) => {
        const out = new Uint8Array(unit.length * times);
        for (let i = 0; i < times; i++) out.set(unit, i * unit.length);
        return out;
      }),
    ),
    { maxLength: 20 },
  )
  .map((parts) => Uint8Array.from(parts.flatMap((p) => Array.from(p))));

type Mutation =
  | { kind: "set"; at: number; value: number }
  | { kind: "truncate"; at: number }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "delete"; at: number; n: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("set" as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), n: fc.integer({ min: 1, max: 8 }) }),
);

function mutate(block: Uint8Array, mutations: Mutation[]): Uint8Array {
  let b = block.slice();
  for (const m of mutations) {
    const at = b.length === 0 ? 0 : m.at % (b.length + 1);
    if (m.kind === "set" && at < b.length) b[at] = m.value;
    else if (m.kind === "truncate") b = b.slice(0, at);
    else if (m.kind === "insert") b = Uint8Array.from([...b.subarray(0, at), ...m.bytes, ...b.subarray(at)]);
    else if (m.kind === "delete") b = Uint8Array.from([...b.subarray(0, at), ...b.subarray(at + m.n)]);
  }
  return b;
}

describe("lz4 decoder fuzzing", () => {
  it("short random blocks with small capacities", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: 300 }), (block, capacity) => checkDecoder(block, capacity)),
      { numRuns: 3000 * SCALE },
    );
  }, TIMEOUT);

  it("long random blocks with large capacities", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), fc.integer({ min: 0, max: 70000 }), (block, capacity) => checkDecoder(block, capacity)),
      { numRuns: 2000 * SCALE },
    );
  }, TIMEOUT);

  it("valid blocks with mutations, with capacities around the right one", () => {
    fc.assert(
      fc.property(
        compressible,
        fc.array(mutation, { minLength: 0, maxLength: 4 }),
        fc.integer({ min: -40, max: 40 }),
        (src, mutations, slack) => checkDecoder(mutate(compress(src), mutations), Math.max(0, src.length + slack)),
      ),
      { numRuns: 5000 * SCALE },
    );
  }, TIMEOUT);

  it("the batch decoder: corrupt payloads and tables give a CodecError naming a page, or the right pages", () => {
    const codec = new Lz4Codec();
    const pageSize = 512;
    const pagesArb = fc.array(compressible.map((c) => {
      const page = new Uint8Array(pageSize);
      page.set(c.subarray(0, pageSize));
      return page;
    }), { minLength: 1, maxLength: 6 });
    fc.assert(
      fc.property(
        pagesArb,
        fc.array(mutation, { maxLength: 3 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: -2, max: 600 }), fc.constantFrom(Encoding.LZ4, Encoding.RAW)), { maxLength: 2 }),
        (pages, mutations, tableEdits) => {
          const batch = new PageBatch(pages.length, pageSize).set(Buffer.concat(pages));
          const back = new PageBatch(pages.length, pageSize);
          try {
            const good = codec.encodeBatch(batch);
            const lengths = good.lengths.slice();
            const offsets = good.offsets.slice();
            const encodings = good.encodings.slice();
            for (const [k, len, enc] of tableEdits) {
              const i = k % good.count;
              lengths[i] = Math.max(0, len);
              encodings[i] = enc;
            }
            const bad: EncodedBatch = { ...good, lengths, offsets, encodings, data: mutate(good.data, mutations) };
            try {
              codec.decodeBatch(bad, back);
              // Whatever got through must be what a plain decoder makes of it.
              for (let k = 0; k < bad.count; k++) {
                const payload = bad.data.subarray(bad.offsets[k], bad.offsets[k]! + bad.lengths[k]!);
                const expected = bad.encodings[k] === Encoding.RAW ? payload : referenceLz4Decode(payload, pageSize);
                const bytes = expected instanceof Uint8Array ? expected : expected.ok ? expected.bytes : undefined;
                expect(bytes && Buffer.compare(bytes, back.page(k)) === 0).toBe(true);
              }
            } catch (e) {
              expect(e).toBeInstanceOf(CodecError);
              // The page it names is one of the batch's.
              expect((e as CodecError).page).toBeGreaterThanOrEqual(0);
              expect((e as CodecError).page).toBeLessThan(bad.count);
            }
          } finally {
            batch.dispose();
            back.dispose();
          }
        },
      ),
      { numRuns: 1000 * SCALE },
    );
    codec.dispose();
  }, TIMEOUT);
});

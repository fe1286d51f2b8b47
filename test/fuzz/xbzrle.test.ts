// XBZRLE decoders fed random and mutated bytes with random capacities: a
// CodecError with the reference decoder's code and the page untouched, or
// exactly the reference's output; never a trap, a hang or a write outside
// the page. 10^4 cases in `npm test`, 10^6 with PAGEMILL_FUZZ.

import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { CodecError, PageBatch, XbzrleCodec, xbzrleDecode } from "../../src/index.js";
import { Encoding, type EncodedBatch } from "../../src/codecs/codec.js";
import { wasm } from "../../src/wasm/module.js";
import { referenceDecode, referenceEncode } from "../reference/xbzrle.js";
import { makePair, pairSpecArb } from "../helpers/xbzrle-pairs.js";

const SCALE = process.env.PAGEMILL_FUZZ ? 100 : 1;
/** Per-test time limit: the default, or half an hour for the 100x fuzz run. */
const TIMEOUT = process.env.PAGEMILL_FUZZ ? 1_800_000 : undefined;

/** Decodes with the public API and checks it against the reference; says which way it went. */
function decodeLikeReference(delta: Uint8Array, page: Uint8Array): "accepted" | "rejected" {
  const expected = page.slice();
  const reference = referenceDecode(delta, expected);
  const before = page.slice();
  let end: number;
  try {
    end = xbzrleDecode(delta, page);
  } catch (error) {
    if (!(error instanceof CodecError)) throw error;
    expect(reference.ok, `rejected a delta the reference accepts: ${error.message}`).toBe(false);
    if (!reference.ok) expect(error.code).toBe(reference.code);
    expect(Buffer.compare(page, before)).toBe(0);
    return "rejected";
  }
  expect(reference.ok, "accepted a delta the reference rejects").toBe(true);
  if (reference.ok) expect(end).toBe(reference.end);
  expect(Buffer.compare(page, expected)).toBe(0);
  return "accepted";
}

/** A mutation of a byte string: flips, inserts, deletes, truncation, splices. */
const mutationArb = fc.array(
  fc.record({
    op: fc.constantFrom("flip", "set", "insert", "delete", "truncate", "splice"),
    at: fc.nat(),
    value: fc.integer({ min: 0, max: 255 }),
    length: fc.integer({ min: 1, max: 40 }),
  }),
  { minLength: 1, maxLength: 4 },
);

function mutate(bytes: Uint8Array, mutations: Array<{ op: string; at: number; value: number; length: number }>): Uint8Array {
  let out = Array.from(bytes);
  for (const m of mutations) {
    const at = out.length ? m.at % (out.length + 1) : 0;
    if (m.op === "flip" && at < out.length) out[at] = out[at]! ^ (1 << (m.value & 7));
    if (m.op === "set" && at < out.length) out[at] = m.value;
    if (m.op === "insert") out.splice(at, 0, m.value);
    if (m.op === "delete") out.splice(at, m.length);
    if (m.op === "truncate") out = out.slice(0, at);
    if (m.op === "splice") out.splice(at, 0, ...out.slice(0, m.length));
  }
  return new Uint8Array(out);
}

/** Capacities around the interesting edges: tiny, page sizes, and anything. */
const capacityArb = fc.oneof(fc.integer({ min: 0, max: 8 }), fc.constantFrom(512, 4096), fc.integer({ min: 0, max: 9000 }));

describe("xbzrle decoder fuzz", () => {
  it("random bytes at random capacities: the reference's answer, nothing else", () => {
    const seen = { accepted: 0, rejected: 0 };
    fc.assert(
      fc.property(
        // Bytes skewed to small lengths, so that some random inputs are valid.
        fc.uint8Array({ maxLength: 48 }).map((a) => a.map((b) => (b & 0x40 ? b & 0x83 : b))),
        capacityArb,
        (delta, capacity) => {
          seen[decodeLikeReference(delta, new Uint8Array(capacity).fill(0x5c))]++;
        },
      ),
      { numRuns: 4000 * SCALE },
    );
    expect(seen.accepted).toBeGreaterThan(100);
    expect(seen.rejected).toBeGreaterThan(100);
  }, TIMEOUT);

  it("mutated real deltas at random capacities: the reference's answer, nothing else", () => {
    const seen = { accepted: 0, rejected: 0 };
    fc.assert(
      fc.property(pairSpecArb(fc.constantFrom(512, 4096)), mutationArb, fc.option(capacityArb, { nil: undefined }), (spec, mutations, capacity) => {
        const { oldPage, newPage } = makePair(spec);
        const out = new Uint8Array(spec.pageSize);
        const ret = referenceEncode(oldPage, newPage, out);
        const delta = mutate(out.subarray(0, Math.max(0, ret)), mutations);
        const page = capacity === undefined ? oldPage : new Uint8Array(capacity).fill(0x33);
        seen[decodeLikeReference(delta, page)]++;
      }),
      { numRuns: 5000 * SCALE },
    );
    expect(seen.accepted).toBeGreaterThan(100);
    expect(seen.rejected).toBeGreaterThan(100);
  }, TIMEOUT);

  it("the kernel never writes outside the page, whatever it is fed", () => {
    const { kernels, heap } = wasm();
    const GUARD = 64;
    const region = heap.alloc(2 * GUARD + 9000 + 64 + 12 * 2 + 4096);
    try {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: 9000 }), (delta, capacity) => {
          const page = region + GUARD;
          const table = (page + capacity + GUARD + 3) & ~3;
          const status = table + 12;
          const src = status + 12;
          // The page table of one page: offset, length, wire id.
          const mem = heap.bytes();
          mem.fill(0xee, region, page);
          mem.fill(0x11, page, page + capacity);
          mem.fill(0xee, page + capacity, table);
          mem.set(delta, src);
          const u32 = heap.u32();
          u32.set([0, delta.length, Encoding.XBZRLE], table >>> 2);
          const bad = kernels.xbzrleDecodeBatch(src, delta.length, table, 1, page, capacity, status);
          const after = heap.bytes();
          for (let i = region; i < page; i++) if (after[i] !== 0xee) throw new Error(`write before the page at ${i - page}`);
          for (let i = page + capacity; i < table; i++) if (after[i] !== 0xee) throw new Error(`write past the page at +${i - page - capacity}`);
          const reference = referenceDecode(delta, new Uint8Array(capacity));
          expect(bad === 0).toBe(reference.ok);
        }),
        { numRuns: 1500 * SCALE },
      );
    } finally {
      heap.release(region);
    }
  }, TIMEOUT);

  it("the encode kernel writes only its output (up to max(dlen, pageSize)) and, when asked, the old page", () => {
    const { kernels, heap } = wasm();
    const GUARD = 64;
    const ps = 512;
    const region = heap.alloc(3 * GUARD + 2 * ps + 2 * ps + 64 + 2 * ps + 8);
    try {
      fc.assert(
        fc.property(pairSpecArb(fc.constant(ps)), fc.integer({ min: 0, max: 2 * ps }), fc.boolean(), (spec, dlen, update) => {
          const { oldPage, newPage } = makePair(spec);
          const oldPtr = region + GUARD;
          const newPtr = oldPtr + ps;
          const table = newPtr + ps;
          const result = table + 4;
          const out = table + 64 + GUARD;
          const room = Math.max(dlen, ps);
          const end = out + room + GUARD;
          const mem = heap.bytes();
          mem.fill(0xee, region, end);
          mem.set(oldPage, oldPtr);
          mem.set(newPage, newPtr);
          heap.u32()[table >>> 2] = oldPtr + 1 + (update ? 2 : 0);
          kernels.xbzrleEncodeBatch(table, newPtr, ps, 1, dlen, out, result);
          const after = heap.bytes();
          for (let i = region; i < oldPtr; i++) if (after[i] !== 0xee) throw new Error("write before the old page");
          for (let i = out - GUARD; i < out; i++) if (after[i] !== 0xee) throw new Error("write before the output");
          for (let i = out + room; i < end; i++) if (after[i] !== 0xee) throw new Error(`write past the output at +${i - out}`);
          const expected = new Uint8Array(dlen);
          const ret = referenceEncode(oldPage, newPage, expected);
          // The page table at `result`: offset, length, wire id (RAW: -1).
          expect(heap.bytes()[result + 8] === Encoding.RAW ? -1 : heap.i32()[(result + 4) >>> 2]).toBe(ret);
          const oldAfter = after.subarray(oldPtr, oldPtr + ps);
          expect(Buffer.compare(oldAfter, update && ret !== 0 ? newPage : oldPage)).toBe(0);
          expect(Buffer.compare(after.subarray(newPtr, newPtr + ps), newPage)).toBe(0);
        }),
        { numRuns: 1000 * SCALE },
      );
    } finally {
      heap.release(region);
    }
  }, TIMEOUT);

  it("mutated encoded batches: CodecError naming a page, or every page like the reference", () => {
    const ps = 512;
    const codec = new XbzrleCodec({ pageSize: ps, cacheSize: 64 * ps });
    const batch = new PageBatch(8, ps);
    try {
      fc.assert(
        fc.property(
          fc.array(pairSpecArb(fc.constant(ps)), { minLength: 1, maxLength: 8 }),
          fc.nat(),
          mutationArb,
          fc.constantFrom("data", "length", "offset", "encoding"),
          (specs, which, mutations, where) => {
            const n = specs.length;
            const pairs = specs.map(makePair);
            const k = which % n;
            const encodings = new Uint8Array(n);
            const payloads = pairs.map(({ oldPage, newPage }, i) => {
              const out = new Uint8Array(ps);
              const ret = referenceEncode(oldPage, newPage, out);
              encodings[i] = ret < 0 ? Encoding.RAW : Encoding.XBZRLE;
              return ret < 0 ? newPage : out.slice(0, ret);
            });
            if (where === "data") payloads[k] = mutate(payloads[k]!, mutations);
            const offsets = new Uint32Array(n);
            const lengths = new Uint32Array(n);
            const data = new Uint8Array(payloads.reduce((a, d) => a + d.length, 0));
            payloads.reduce((at, d, i) => {
              data.set(d, at);
              offsets[i] = at;
              lengths[i] = d.length;
              return at + d.length;
            }, 0);
            const shift = mutations[0]!.value - 128;
            if (where === "length") lengths[k] = Math.max(0, lengths[k]! + shift);
            if (where === "offset") offsets[k] = Math.max(0, offsets[k]! + shift);
            if (where === "encoding") encodings[k] = mutations[0]!.value % 8;
            const encoded: EncodedBatch = { pageSize: ps, count: n, encodings, offsets, lengths, data };
            const olds = new Uint8Array(n * ps);
            pairs.forEach((p, i) => olds.set(p.oldPage, i * ps));
            batch.set(olds);
            // What the reference makes of each page, as the batch decoder must.
            const expected = olds.slice();
            let firstBad = -1;
            for (let i = 0; i < n && firstBad < 0; i++) {
              const end = offsets[i]! + lengths[i]!;
              const page = expected.subarray(i * ps, (i + 1) * ps);
              if (end > data.length) firstBad = i;
              else if (encodings[i] === Encoding.RAW) {
                if (lengths[i] !== ps) firstBad = i;
                else page.set(data.subarray(offsets[i], end));
              } else if (encodings[i] !== Encoding.XBZRLE) firstBad = i;
              else if (!referenceDecode(data.subarray(offsets[i], end), page).ok) firstBad = i;
            }
            const indices = Array.from({ length: n }, (_, i) => 100 + i);
            try {
              codec.decodeBatch(encoded, batch, indices);
            } catch (error) {
              if (!(error instanceof CodecError)) throw error;
              expect(firstBad).toBeGreaterThanOrEqual(0);
              expect(error.page).toBe(100 + firstBad);
              expect(Buffer.compare(batch.bytes(), olds)).toBe(0);
              return;
            }
            expect(firstBad).toBe(-1);
            expect(Buffer.compare(batch.bytes(), expected)).toBe(0);
          },
        ),
        { numRuns: 600 * SCALE },
      );
    } finally {
      batch.dispose();
      codec.dispose();
    }
  }, TIMEOUT);
});

// The WKdm decoders fed random, structurally plausible and mutated streams
// (bit flips, byte edits, truncations, extensions, header offset and tag
// edits, sparse-record edits): the result is the plain decoder's (same page,
// or a CodecError with the same code), nothing is written outside the page,
// the input is left as it was, and bytes past the stream make no difference.
// About 2·10^4 cases in `npm test`; PAGEMILL_FUZZ=1 (npm run fuzz) runs 100
// times more (~2·10^6).

import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { CodecError, PageBatch, WkdmCodec, wkdmCompress, wkdmDecompress } from "../../src/index.js";
import { Encoding, type EncodedBatch } from "../../src/codecs/codec.js";
import { Scratch } from "../../src/wasm/arena.js";
import { wasm } from "../../src/wasm/module.js";
import { sharedTraceImagePages } from "../helpers/traces.js";
import { WKDM_MZV_MAGIC, wkdmDecompressReference } from "../reference/wkdm.js";
import { u32Stream } from "../helpers/random.js";

const SCALE = process.env.PAGEMILL_FUZZ ? 100 : 1;
/** Per-test time limit: the default, or an hour for the 100-fold fuzz run. */
const TIME_LIMIT = SCALE > 1 ? 3_600_000 : undefined;
const PAGE = 4096;
const GUARD = 64;
/** Reason numbers of assembly/wkdm.ts, by the CodecError code they map to. */
const REASON_CODES: Record<number, string> = { 6: "truncated", 7: "length", 8: "malformed", 9: "truncated", 10: "malformed", 11: "truncated", 12: "length", 13: "malformed" };

const scratch = new Scratch();

/** True when `length` bytes of linear memory from `at` all equal `value`. */
function allEqual(mem: Uint8Array, at: number, length: number, value: number): boolean {
  return Buffer.from(mem.buffer, mem.byteOffset + at, length).equals(Buffer.alloc(length, value));
}

/** `length` bytes from a seeded u32Stream: long random inputs without fast-check's per-byte cost. */
function seededBytes(seed: number, length: number): Uint8Array {
  const next = u32Stream(seed);
  const words = Uint32Array.from({ length: (length + 3) >> 2 }, next);
  return new Uint8Array(words.buffer, 0, length);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * Runs the decode kernel on `stream` (one WKDM page) with `after` filling the
 * bytes past it and guards around the page. Returns the reason (0 when it
 * decoded) and the page.
 */
function runKernel(stream: Uint8Array, after: number): { reason: number; page: Uint8Array } {
  const { kernels, heap } = wasm();
  const meta = scratch.reserve(32 + stream.length + GUARD + GUARD + PAGE + GUARD);
  const src = meta + 32;
  const dst = src + stream.length + GUARD + GUARD;
  let mem = heap.bytes();
  const u32 = heap.u32();
  // The page table of one page (offset, length, wire id); the rejection record at meta + 16.
  u32[meta >>> 2] = 0;
  u32[(meta + 4) >>> 2] = stream.length;
  mem[meta + 8] = Encoding.WKDM;
  u32[(meta + 16) >>> 2] = 0xffffffff;
  u32[(meta + 20) >>> 2] = 0xffffffff;
  mem.set(stream, src);
  mem.fill(after, src + stream.length, src + stream.length + GUARD);
  mem.fill(0xa5, src + stream.length + GUARD, dst + PAGE + GUARD);
  const status = kernels.wkdmDecompressBatch(src, stream.length, meta, 1, dst, PAGE, meta + 16);
  mem = heap.bytes();
  expect(Buffer.compare(mem.subarray(src, src + stream.length), stream), "input changed").toBe(0);
  expect(allEqual(mem, dst - GUARD, GUARD, 0xa5), "wrote before the page").toBe(true);
  expect(allEqual(mem, dst + PAGE, GUARD, 0xa5), "wrote past the page").toBe(true);
  if (status === 0) return { reason: 0, page: mem.slice(dst, dst + PAGE) };
  expect(status).toBe(-2);
  expect(heap.u32()[(meta + 16) >>> 2]).toBe(0);
  // A rejected page is left untouched: every check comes before the first write.
  expect(allEqual(mem, dst, PAGE, 0xa5), "wrote a rejected page").toBe(true);
  return { reason: heap.u32()[(meta + 20) >>> 2]!, page: new Uint8Array(0) };
}

function referenceDecode(stream: Uint8Array): { code: string } | { page: Uint8Array } {
  try {
    return { page: wkdmDecompressReference(stream) };
  } catch (e) {
    return { code: (e as { code: string }).code };
  }
}

/** The kernel agrees with the reference whatever follows the stream, and so does wkdmDecompress with `capacity`. */
function checkDecoder(stream: Uint8Array, capacity: number): void {
  const first = runKernel(stream, 0x00);
  const second = runKernel(stream, 0xff);
  expect(second.reason, "result depends on bytes past the stream").toBe(first.reason);
  expect(Buffer.compare(second.page, first.page)).toBe(0);
  const ref = referenceDecode(stream);
  if ("page" in ref) {
    expect(first.reason).toBe(0);
    expect(Buffer.compare(first.page, ref.page)).toBe(0);
  } else {
    expect(REASON_CODES[first.reason]).toBe(ref.code);
  }
  const out = new Uint8Array(capacity).fill(0x3c);
  try {
    wkdmDecompress(stream, out);
    expect("page" in ref).toBe(true);
    expect(Buffer.compare(out.subarray(0, PAGE), first.page)).toBe(0);
    expect(allEqual(out, PAGE, capacity - PAGE, 0x3c), "wrote past 4096 bytes of out").toBe(true);
  } catch (e) {
    if (capacity < PAGE) {
      expect(e).toBeInstanceOf(RangeError);
      return;
    }
    expect(e).toBeInstanceOf(CodecError);
    if (stream.length <= 6244) expect((e as CodecError).code).toBe((ref as { code: string }).code);
    expect(allEqual(out, 0, capacity, 0x3c), "wrote out on error").toBe(true);
  }
}

// ---------------------------------------------------------------------------
// Inputs.

/** Valid streams of every form, from the shared traces (compressed once). */
const corpus: Uint8Array[] = [];
const corpusReady = (async () => {
  const out = new Uint8Array(PAGE);
  for (const name of ["redis", "node-gc"] as const) {
    const image = await sharedTraceImagePages(name, 3000);
    for (let k = 0; k < image.count && corpus.length < 400; k += 7) {
      const ret = wkdmCompress(image.pages.subarray(k * PAGE, (k + 1) * PAGE), out);
      if (ret > 0) corpus.push(out.slice(0, ret));
    }
  }
})();

/** A stream with random tags and a header consistent with them: decodes to some page. */
const consistentStream = fc
  .record({ tags: fc.uint8Array({ minLength: 256, maxLength: 256 }), fill: fc.integer(), zeroGroups: fc.nat(64) })
  .map(({ tags, fill, zeroGroups }) => {
    for (let i = 0; i < zeroGroups * 4 && i < 256; i += 4 + (fill & 7)) tags.fill(0, i, i + 4);
    let misses = 0;
    let partials = 0;
    let matches = 0;
    for (const byte of tags) {
      for (let s = 0; s < 8; s += 2) {
        const tag = (byte >> s) & 3;
        misses += tag === 2 ? 1 : 0;
        partials += tag === 1 ? 1 : 0;
        matches += tag & 1;
      }
    }
    const newEnd = 67 + misses;
    const slotEnd = newEnd + ((matches + 7) >> 3);
    const lowEnd = slotEnd + Math.ceil(partials / 3);
    const words = new Uint32Array(lowEnd);
    const next = u32Stream(fill);
    for (let i = 67; i < lowEnd; i++) words[i] = next();
    words[0] = newEnd;
    words[1] = slotEnd;
    words[2] = lowEnd;
    const bytes = new Uint8Array(words.buffer);
    bytes.set(tags, 12);
    return bytes;
  });

/** A sparse stream: magic, then records with offsets mostly valid. */
const sparseStream = fc
  .array(fc.tuple(fc.integer(), fc.oneof(fc.nat(1023).map((w) => w * 4), fc.nat(0xffff))), { maxLength: 40 })
  .map((records) => {
    const bytes = new Uint8Array(4 + 6 * records.length);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, WKDM_MZV_MAGIC, true);
    records.forEach(([value, offset], i) => {
      view.setUint32(4 + 6 * i, value >>> 0, true);
      view.setUint16(8 + 6 * i, offset, true);
    });
    return bytes;
  });

type Mutation =
  | { kind: "flip"; at: number; bit: number }
  | { kind: "set"; at: number; value: number }
  | { kind: "truncate"; at: number }
  | { kind: "extend"; bytes: Uint8Array }
  | { kind: "header"; field: number; delta: number }
  | { kind: "tag"; at: number; value: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.nat(7) }),
  fc.record({ kind: fc.constant("set" as const), at: fc.nat(), value: fc.nat(255) }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("extend" as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 12 }) }),
  fc.record({ kind: fc.constant("header" as const), field: fc.nat(2), delta: fc.oneof(fc.integer({ min: -3, max: 3 }), fc.integer()) }),
  fc.record({ kind: fc.constant("tag" as const), at: fc.nat(255), value: fc.nat(255) }),
);

function mutate(stream: Uint8Array, mutations: Mutation[]): Uint8Array {
  let s: Uint8Array = stream.slice();
  for (const m of mutations) {
    if (m.kind === "flip" && s.length > 0) s[m.at % s.length]! ^= 1 << m.bit;
    else if (m.kind === "set" && s.length > 0) s[m.at % s.length] = m.value;
    else if (m.kind === "truncate") s = s.slice(0, m.at % (s.length + 1));
    else if (m.kind === "extend") s = concat(s, m.bytes);
    else if (m.kind === "header" && s.length >= 12) {
      const view = new DataView(s.buffer);
      view.setUint32(4 * m.field, (view.getUint32(4 * m.field, true) + m.delta) >>> 0, true);
    } else if (m.kind === "tag" && s.length >= 268) s[12 + m.at] = m.value;
  }
  return s;
}

const capacity = fc.oneof({ weight: 8, arbitrary: fc.integer({ min: PAGE, max: PAGE + 40 }) }, { weight: 1, arbitrary: fc.nat(PAGE - 1) });

describe("WKdm decoder fuzzing", () => {
  it("random bytes, with and without a sparse magic", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc.tuple(fc.integer(), fc.integer({ min: 268, max: 6400 })).map(([seed, length]) => seededBytes(seed, length)),
          fc.tuple(sparseStream, fc.uint8Array({ maxLength: 8 })).map(([stream, tail]) => concat(stream, tail)),
        ),
        capacity,
        (stream, cap) => checkDecoder(stream, cap),
      ),
      { numRuns: 4000 * SCALE },
    );
  }, TIME_LIMIT);

  it("consistent streams with random tags and contents, mutated or not", () => {
    fc.assert(
      fc.property(consistentStream, fc.array(mutation, { maxLength: 2 }), capacity, (stream, mutations, cap) => checkDecoder(mutate(stream, mutations), cap)),
      { numRuns: 4000 * SCALE },
    );
  }, TIME_LIMIT);

  it("sparse streams with edited records", () => {
    fc.assert(
      fc.property(sparseStream, fc.array(mutation, { maxLength: 2 }), capacity, (stream, mutations, cap) => checkDecoder(mutate(stream, mutations), cap)),
      { numRuns: 2000 * SCALE },
    );
  }, TIME_LIMIT);

  it("real compressed pages with bit flips, truncations, extensions, header and tag edits", async () => {
    await corpusReady;
    expect(corpus.length).toBeGreaterThan(100);
    fc.assert(
      fc.property(fc.nat(corpus.length - 1), fc.array(mutation, { minLength: 1, maxLength: 4 }), capacity, (k, mutations, cap) => checkDecoder(mutate(corpus[k]!, mutations), cap)),
      { numRuns: 6000 * SCALE },
    );
  }, TIME_LIMIT);

  it("the batch decoder: corrupt payloads and tables give a CodecError naming the first bad page, or the right pages", async () => {
    await corpusReady;
    const codec = new WkdmCodec();
    fc.assert(
      fc.property(
        fc.array(fc.nat(corpus.length - 1), { minLength: 1, maxLength: 6 }),
        fc.array(fc.tuple(fc.nat(), fc.array(mutation, { maxLength: 2 })), { maxLength: 2 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: -1, max: 7000 }), fc.nat(6)), { maxLength: 2 }),
        (picks, payloadEdits, tableEdits) => {
          const payloads = picks.map((k) => corpus[k]!);
          for (const [k, mutations] of payloadEdits) payloads[k % payloads.length] = mutate(payloads[k % payloads.length]!, mutations);
          const count = payloads.length;
          const offsets = new Uint32Array(count);
          const lengths = new Uint32Array(count);
          const encodings = new Uint8Array(count).fill(Encoding.WKDM);
          let at = 0;
          payloads.forEach((p, k) => {
            offsets[k] = at;
            lengths[k] = p.length;
            at += p.length;
          });
          const data = new Uint8Array(at);
          payloads.forEach((p, k) => data.set(p, offsets[k]));
          for (const [k, len, enc] of tableEdits) {
            if (len >= 0) lengths[k % count] = len;
            encodings[k % count] = enc;
          }
          const encoded: EncodedBatch = { pageSize: PAGE, count, encodings, offsets, lengths, data };
          const back = new PageBatch(count + 1);
          const mem = wasm().heap.bytes();
          mem.fill(0xa5, back.ptr, back.ptr + (count + 1) * PAGE);
          try {
            let failed: number | undefined;
            try {
              codec.decodeBatch(encoded, back);
            } catch (e) {
              expect(e).toBeInstanceOf(CodecError);
              failed = (e as CodecError).page;
            }
            // Page by page, what a plain decoder makes of the same table.
            for (let k = 0; k < count; k++) {
              const end = offsets[k]! + lengths[k]!;
              const payload = data.subarray(offsets[k]!, end);
              let expected: Uint8Array | undefined;
              if (end > data.length) expected = undefined;
              else if (encodings[k] === Encoding.WKDM) {
                const ref = referenceDecode(payload);
                expected = "page" in ref ? ref.page : undefined;
              } else if (encodings[k] === Encoding.RAW) expected = lengths[k] === PAGE ? payload : undefined;
              else if (encodings[k] === Encoding.ZERO) expected = lengths[k] === 0 ? new Uint8Array(PAGE) : undefined;
              else if (encodings[k] === Encoding.SAME_VALUE) expected = lengths[k] === 4 ? new Uint8Array(new Uint32Array(PAGE / 4).fill(new DataView(payload.buffer, payload.byteOffset).getUint32(0, true)).buffer) : undefined;
              if (expected === undefined) {
                expect(failed).toBe(k);
                break;
              }
              expect(Buffer.compare(back.page(k), expected)).toBe(0);
            }
            // Nothing written from the rejected page on (or past the last page).
            const untouchedFrom = failed ?? count;
            expect(allEqual(wasm().heap.bytes(), back.ptr + untouchedFrom * PAGE, (count + 1 - untouchedFrom) * PAGE, 0xa5)).toBe(true);
          } finally {
            back.dispose();
          }
        },
      ),
      { numRuns: 2000 * SCALE },
    );
    codec.dispose();
  }, TIME_LIMIT);
});

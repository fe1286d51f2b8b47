// The dedup decoder fed mutated encoded batches (encodings, offsets, lengths,
// references and data changed at random): a CodecError naming a page of the
// batch, or pages decoded only from the payload and the destination; never a
// trap or a write past the batch's loaded slots. Streaming xxHash over random
// splits against one-shot. More cases with PAGEMILL_FUZZ.

import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { CodecError, DedupCodec, PageBatch, Xxh3Hasher, Xxh64Hasher, xxh3, xxh64, type EncodedBatch } from "../../src/index.js";
import { randomBytes } from "../helpers/random.js";

const SCALE = process.env.PAGEMILL_FUZZ ? 100 : 1;
const PS = 512;
const SLOTS = 6;

describe("dedup decoder on mutated input", () => {
  // A source with repeats, encoded once; the destination holds pages 0..9.
  const destination = randomBytes(10 * PS, 1);
  const source = new Uint8Array(SLOTS * PS);
  [3, 0, 3, 7, 0, 9].forEach((p, k) => source.set(destination.subarray(p * PS, (p + 1) * PS), k * PS));
  source.set(randomBytes(PS, 2), 4 * PS);
  const indices = [10, 11, 12, 13, 14, 15];
  const sender = new DedupCodec({ unitSize: PS });
  const seed = new PageBatch(10, PS).set(destination);
  sender.index.remember(seed, Array.from({ length: 10 }, (_, p) => p));
  const encoded = sender.encodeBatch(new PageBatch(SLOTS, PS).set(source), indices);

  it("the unmutated batch decodes to the source", () => {
    const receiver = new DedupCodec({ unitSize: PS, destination: (p) => (p < 10 ? destination.subarray(p * PS, (p + 1) * PS) : undefined) });
    const batch = new PageBatch(SLOTS, PS);
    receiver.decodeBatch(encoded, batch, indices);
    expect(Buffer.compare(batch.bytes(), source)).toBe(0);
    expect(Array.from(encoded.encodings).filter((e) => e === 6).length).toBe(5);
  });

  it("mutations give a CodecError or bytes from the payload and destination only", () => {
    const receiver = new DedupCodec({ unitSize: PS, destination: (p) => (p < 10 ? destination.subarray(p * PS, (p + 1) * PS) : undefined) });
    const batch = new PageBatch(SLOTS + 1, PS);
    const fence = randomBytes(PS, 99);
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            what: fc.constantFrom("encoding", "offset", "length", "byte", "truncate", "count"),
            k: fc.nat(SLOTS - 1),
            value: fc.nat(),
          }),
          { minLength: 1, maxLength: 4 },
        ),
        (mutations) => {
          const m: { -readonly [K in keyof EncodedBatch]: EncodedBatch[K] } = {
            ...encoded,
            encodings: encoded.encodings.slice(),
            offsets: encoded.offsets.slice(),
            lengths: encoded.lengths.slice(),
            data: encoded.data.slice(),
          };
          for (const { what, k, value } of mutations) {
            if (what === "encoding") m.encodings[k] = value % 8;
            else if (what === "offset") m.offsets[k] = value % (m.data.length + 8);
            else if (what === "length") m.lengths[k] = value % (PS + 8);
            else if (what === "byte" && m.data.length) m.data[value % m.data.length] ^= 1 + (value % 255);
            else if (what === "truncate") m.data = m.data.subarray(0, value % (m.data.length + 1));
            else if (what === "count") m.count = value % (SLOTS + 1);
          }
          batch.page(SLOTS).set(fence);
          try {
            receiver.decodeBatch(m, batch, indices);
          } catch (err) {
            expect(err).toBeInstanceOf(CodecError);
            const page = (err as CodecError).page;
            if (page !== undefined) expect(page).toBeLessThan(m.count);
          }
          expect(Buffer.compare(batch.page(SLOTS), fence), "nothing written past the batch's slots").toBe(0);
        },
      ),
      { numRuns: 2000 * SCALE },
    );
  });
});

describe("xxHash streaming over random splits", () => {
  it("equals one-shot for any split of inputs up to 20 KiB", () => {
    const h64 = new Xxh64Hasher();
    const h3 = new Xxh3Hasher();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 20000 }), fc.array(fc.nat(20000), { maxLength: 20 }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (len, cuts, seed) => {
        const data = randomBytes(len, len ^ 0x5bd1e995);
        h64.reset(seed);
        h3.reset(seed);
        let at = 0;
        for (const cut of [...cuts.map((c) => c % (len + 1)).sort((a, b) => a - b), len]) {
          h64.update(data.subarray(at, Math.max(at, cut)));
          h3.update(data.subarray(at, Math.max(at, cut)));
          at = Math.max(at, cut);
        }
        expect(h64.digest()).toBe(xxh64(data, seed));
        expect(h3.digest()).toBe(xxh3(data, seed));
      }),
      { numRuns: 300 * SCALE },
    );
  });
});

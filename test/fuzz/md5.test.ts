// MD5 against node:crypto on random input: pages that differ from their
// neighbours in one byte (a lane reading a neighbour's words would give the
// neighbour's digest), random batches of every page size (full lanes, partly
// filled lanes, the scalar page), and streaming input split at random points.
// About 10^3 cases in `npm test`; PAGEMILL_FUZZ=1 (npm run fuzz) runs 100
// times more.

import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { randomBytes } from "node:crypto";
import { Md5, md5, toHex } from "../../src/index.js";
import { md5BatchHex, nodeMd5 } from "../helpers/md5.js";

const SCALE = process.env.PAGEMILL_FUZZ ? 100 : 1;
const PAGE_SIZES = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];

describe("md5 fuzz", () => {
  it("keeps the lanes independent: a page's digest does not depend on its neighbours", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(512, 1024, 4096),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 13 }),
        (size, edits) => {
          // Pages that differ from a common base in one byte each: a lane that
          // read its neighbour's words would produce its neighbour's digest.
          const base = randomBytes(size);
          const pages = new Uint8Array(size * edits.length);
          edits.forEach(([at, value], k) => {
            pages.set(base, k * size);
            pages[k * size + (at % size)] = value;
          });
          const expected = edits.map((_, k) => nodeMd5(pages.subarray(k * size, (k + 1) * size)));
          expect(md5BatchHex(pages, size, edits.length)).toEqual(expected);
        },
      ),
      { numRuns: 100 * SCALE },
    );
  });

  it("agrees with node:crypto on random batches of every page size", () => {
    fc.assert(
      fc.property(fc.constantFrom(...PAGE_SIZES), fc.integer({ min: 1, max: 19 }), (size, count) => {
        const pages = randomBytes(size * count);
        const expected = Array.from({ length: count }, (_, k) => nodeMd5(pages.subarray(k * size, (k + 1) * size)));
        expect(md5BatchHex(pages, size, count)).toEqual(expected);
      }),
      { numRuns: 40 * SCALE },
    );
  });

  it("gives the one-shot digest for input split at random points", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 3000 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (data, cuts) => {
          const points = [...new Set(cuts.map((c) => (data.length ? c % (data.length + 1) : 0)))].sort((a, b) => a - b);
          const hasher = new Md5();
          let from = 0;
          for (const p of [...points, data.length]) {
            hasher.update(data.subarray(from, p));
            from = p;
          }
          const expected = nodeMd5(data);
          expect(toHex(hasher.digest())).toBe(expected);
          expect(toHex(md5(data))).toBe(expected);
        },
      ),
      { numRuns: 500 * SCALE },
    );
  });

});

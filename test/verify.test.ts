import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { VerificationError, verifyMemory } from "../src/index.js";
import { mixedPages } from "./helpers/frames.js";

describe("verifyMemory", () => {
  it("names exactly the pages that differ, across spans and in views at any offset (property)", () => {
    const pageSize = 4096;
    const pageCount = 2500; // more than two spans of 1024 pages, the last one short
    const source = new Uint8Array(pageSize * (pageCount + 2));
    const pool = mixedPages(pageSize, 10, 5);
    for (let p = 0; p < pageCount + 2; p++) source.set(pool.subarray((p % 10) * pageSize, (p % 10 + 1) * pageSize), p * pageSize);
    fc.assert(
      fc.property(fc.uniqueArray(fc.nat({ max: pageCount - 1 }), { maxLength: 40 }), fc.nat({ max: pageSize - 1 }), fc.nat({ max: 2 }), (changed, byte, shift) => {
        const expected = source.subarray(shift * pageSize, (shift + pageCount) * pageSize);
        const copy = source.slice();
        const actual = copy.subarray(shift * pageSize, (shift + pageCount) * pageSize);
        for (const page of changed) actual[page * pageSize + byte] ^= 0x40;
        // Bytes outside the views differ too: only the views count.
        if (shift > 0) copy[0] ^= 1;
        if (shift < 2) copy[copy.byteLength - 1] ^= 1;
        if (changed.length === 0) {
          expect(verifyMemory(expected, actual, pageSize)).toBe(pageCount);
          return;
        }
        let error: unknown;
        try {
          verifyMemory(expected, actual, pageSize);
        } catch (err) {
          error = err;
        }
        expect(error).toBeInstanceOf(VerificationError);
        expect((error as VerificationError).pages).toEqual([...changed].sort((a, b) => a - b));
      }),
      { numRuns: 60 },
    );
  });
});

import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { GeneratedPages } from "../src/guest/generated.js";
import { modelDisk } from "../src/guest/disk.js";
import { FlatPages } from "../src/guest/pages.js";

const PS = 512;

/** Page i's first content: its index in every byte, never zero. */
function generate(index: number, into: Uint8Array, at: number): void {
  into.fill((index % 255) + 1, at, at + PS);
}

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);

type Op = { kind: "write" | "zero" | "writable"; page: number; value: number };

describe("GeneratedPages", () => {
  it("reads, writes and zeroes as a flat memory with the same first content does", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }).chain((pages) =>
          fc.tuple(
            fc.constant(pages),
            fc.integer({ min: 0, max: pages }),
            fc.array(fc.record({ kind: fc.constantFrom<Op["kind"]>("write", "zero", "writable"), page: fc.integer({ min: 0, max: pages - 1 }), value: fc.integer({ min: 0, max: 255 }) }), { maxLength: 60 }),
          ),
        ),
        ([pages, generatedCount, ops]) => {
          const store = new GeneratedPages(pages, PS, generatedCount, generate);
          const flat = new FlatPages(new Uint8Array(pages * PS), PS);
          for (let i = 0; i < generatedCount; i++) generate(i, flat.bytes, i * PS);
          for (const op of ops) {
            if (op.kind === "write") {
              const content = new Uint8Array(PS + 3).fill(op.value);
              store.write(op.page, content, 3);
              flat.write(op.page, content, 3);
            } else if (op.kind === "zero") {
              store.zero(op.page);
              flat.zero(op.page);
            } else {
              // A write through a view changes only its own page; the other pages keep theirs.
              store.writable(op.page)[7] = op.value;
              flat.writable(op.page)[7] = op.value;
            }
          }
          const ranged = new Uint8Array((pages + 2) * PS).fill(9);
          store.readRange(0, pages, ranged, PS);
          expect(same(ranged.subarray(PS, PS + pages * PS), flat.bytes)).toBe(true);
          for (let i = 0; i < pages; i++) {
            expect(same(store.page(i), flat.page(i))).toBe(true);
            // isZero may only say true of a page that is all zeros.
            if (store.isZero(i)) expect(flat.page(i).every((b) => b === 0)).toBe(true);
          }
          // Untouched pages past the generated ones are known zero without looking.
          const touched = new Set(ops.map((op) => op.page));
          for (let i = generatedCount; i < pages; i++) if (!touched.has(i)) expect(store.isZero(i)).toBe(true);
        },
      ),
    );
  });

  it("holds only the pages written since the start", () => {
    const store = new GeneratedPages(1000, PS, 900, generate);
    expect(store.heldBytes).toBe(0);
    expect(store.page(5)[0]).toBe(6);
    store.readRange(0, 1000, new Uint8Array(1000 * PS), 0);
    expect(store.heldBytes).toBe(0);
    store.writable(5)[0] = 0;
    expect(store.heldBytes).toBe(PS);
    // A read view of an untouched page is its own: writing to it changes nothing.
    store.page(6)[0] = 0;
    expect(store.page(6)[0]).toBe(7);
  });

  it("refuses pages outside the memory and a generated count beyond it", () => {
    const store = new GeneratedPages(10, PS, 4, generate);
    expect(() => store.page(10)).toThrow(/page 10 is outside the memory \(0\.\.9\)/);
    expect(() => store.readRange(8, 3, new Uint8Array(3 * PS), 0)).toThrow(RangeError);
    expect(() => new GeneratedPages(10, PS, 11, generate)).toThrow(/generatedCount/);
  });

  it("gives a model disk its data without holding it: 1 GiB of filled blocks costs no block", () => {
    const disk = modelDisk("oltp", 2 ** 20, { filled: 1 / 4, seed: 3 });
    expect(disk.guest.memory.heldBytes).toBe(0);
    // The same block reads the same every time, and blocks differ from one another.
    const first = disk.guest.memory.page(1234).slice();
    expect(same(disk.guest.memory.page(1234), first)).toBe(true);
    expect(same(disk.guest.memory.page(1235), first)).toBe(false);
    expect(disk.guest.memory.isZero(2 ** 18)).toBe(true);
    expect(disk.guest.memory.isZero(2 ** 18 - 1)).toBe(false);
    expect(() => modelDisk("oltp", 64, { filled: 1.5 })).toThrow(/filled must be a share/);
  });
});

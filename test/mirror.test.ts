import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Guest } from "../src/guest/guest.js";
import { differingPages, flatBytes, sameBytes } from "../src/guest/pages.js";
import { MirrorPages } from "../src/engine/mirror.js";
import { verifyMemory } from "../src/engine/verify.js";
import { simulate } from "../src/engine/migrate.js";
import { PoissonWorkload, syntheticGuest } from "../src/guest/workloads.js";
import { init } from "../src/wasm/module.js";
import { mixedPages } from "./helpers/frames.js";

await init();
const PS = 4096;

describe("MirrorPages (an in-process destination's memory)", () => {
  it("reads as a flat copy would under any mix of landings and source writes, holding only pages that differ (property)", () => {
    const pageCount = 24;
    const pool = mixedPages(PS, 8, 5);
    const content = (k: number) => pool.subarray(k * PS, (k + 1) * PS);
    const op = fc.oneof(
      // the source's program changes a page
      fc.record({ kind: fc.constant("source" as const), page: fc.nat({ max: pageCount - 1 }), content: fc.nat({ max: 8 }) }),
      // a page lands: the source's current content, or other bytes (a stale copy)
      fc.record({ kind: fc.constant("land" as const), page: fc.nat({ max: pageCount - 1 }), stale: fc.option(fc.nat({ max: 8 })) }),
      fc.record({ kind: fc.constant("poke" as const), page: fc.nat({ max: pageCount - 1 }), at: fc.nat({ max: PS - 1 }), value: fc.nat({ max: 255 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const guest = new Guest(pageCount, PS);
        const mirror = new MirrorPages(guest.memory);
        guest.beforeChange = (p) => mirror.detach(p);
        const expected = new Uint8Array(pageCount * PS); // what a destination of its own would hold
        try {
          for (const o of ops) {
            if (o.kind === "source") {
              if (o.content === 8) guest.clear(o.page);
              else guest.write(o.page, content(o.content));
            } else if (o.kind === "land") {
              const bytes = o.stale === null ? guest.page(o.page).slice() : o.stale === 8 ? new Uint8Array(PS) : content(o.stale);
              if (bytes.every((b) => b === 0)) mirror.zero(o.page);
              else mirror.write(o.page, bytes);
              expected.set(bytes, o.page * PS);
            } else {
              mirror.writable(o.page)[o.at] = o.value;
              expected[o.page * PS + o.at] = o.value;
            }
            expect(sameBytes(flatBytes(mirror), expected)).toBe(true);
          }
          // Held: only the pages that differ from the source's now.
          const differ = differingPages(guest.memory, mirror);
          const nonZeroOwn = differ.filter((p) => expected.subarray(p * PS, (p + 1) * PS).some((b) => b !== 0));
          expect(mirror.heldBytes).toBeGreaterThanOrEqual(nonZeroOwn.length * PS);
          for (let p = 0; p < pageCount; p++) {
            if (mirror.knownSame(guest.memory, p)) expect(sameBytes(guest.page(p), expected.subarray(p * PS, (p + 1) * PS))).toBe(true);
          }
        } finally {
          guest.dispose();
        }
      }),
    );
  });

  it("the end check still names a page that differs", () => {
    const guest = new Guest(8, PS);
    const mirror = new MirrorPages(guest.memory);
    guest.beforeChange = (p) => mirror.detach(p);
    guest.write(3, new Uint8Array(PS).fill(1));
    mirror.write(3, guest.page(3));
    expect(mirror.heldBytes).toBe(0);
    guest.write(3, new Uint8Array(PS).fill(2)); // after it landed: the destination keeps what landed
    expect(mirror.page(3)[0]).toBe(1);
    expect(() => verifyMemory(guest.memory, mirror, PS)).toThrow(/1 page\(s\) differ between source and destination: 3$/);
    guest.dispose();
  });

  it("a sparse guest of 256 MiB with 4 MiB populated holds about its populated pages and migrates every page verified", async () => {
    const populated = 1024;
    const guest = syntheticGuest(65536, { profile: "redis", seed: 5, populated });
    try {
      let nonZero = 0;
      for (let p = 0; p < guest.pageCount; p++) if (!guest.memory.isZero(p)) nonZero++;
      // Whole 1 MiB regions are touched at random: about the pages asked for, exactly the pages held.
      expect(nonZero).toBeGreaterThan(populated / 2);
      expect(nonZero).toBeLessThan(populated * 2);
      expect(guest.memory.heldBytes).toBe(nonZero * PS);
      const workload = new PoissonWorkload(guest, { rate: 0.01, popularity: { kind: "hot-cold", hotPages: 0.1, hotWrites: 0.9 }, seed: 4 });
      for (const strategy of ["precopy", "postcopy"] as const) {
        const stats = await simulate(strategy, workload, { bitsPerSecond: 10e9, rtt: 0.001 }, { codec: "raw" });
        expect(stats.verifiedPages, strategy).toBe(65536);
      }
    } finally {
      guest.dispose();
    }
  });

  it("a simulated pre-copy (the destination a mirror of the source) ends verified and lets the guest go for the next migration", async () => {
    const guest = syntheticGuest(16384, { profile: "redis", seed: 3 });
    try {
      const workload = new PoissonWorkload(guest, { rate: 0.5, popularity: { kind: "hot-cold", hotPages: 0.1, hotWrites: 0.9 }, seed: 2 });
      const stats = await simulate("precopy", workload, { bitsPerSecond: 1e9, rtt: 0.001 }, { codec: "raw" });
      expect(stats.verifiedPages).toBe(16384);
      expect(guest.beforeChange).toBeUndefined(); // released for the next migration
    } finally {
      guest.dispose();
    }
  });
});

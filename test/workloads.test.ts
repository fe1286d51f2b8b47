import { afterAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateRawSync } from "node:zlib";
import { Guest, type AccessKind } from "../src/guest/guest.js";
import { TraceReader, TraceWriter } from "../src/guest/pagetrace.js";
import { fileURLToPath } from "node:url";
import {
  CONTENT_MODELS,
  ContentStats,
  IMAGE_PROFILES,
  IdleWorkload,
  NO_READS,
  PoissonWorkload,
  SweepWorkload,
  TRACE_CHANGED_BYTES,
  TraceReplay,
  syntheticGuest,
  syntheticImage,
  type Popularity,
} from "../src/guest/workloads.js";
import { Random } from "../src/random.js";
import { SHARED } from "./helpers/traces.js";
import { flatBytes } from "../src/index.js";

const SAMPLE = fileURLToPath(new URL("../data/redis-sample.ptrace.gz", import.meta.url));

const FUZZ = process.env.PAGEMILL_FUZZ ? 10 : 1;
const dir = mkdtempSync(join(tmpdir(), "pagemill-workloads-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sha(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Counts accesses per page through the guest's hook. */
function countAccesses(guest: Guest): { writes: Float64Array; kinds: Record<AccessKind, number> } {
  const writes = new Float64Array(guest.pageCount);
  const kinds = { read: 0, write: 0, overwrite: 0 };
  guest.hook = (page, kind) => {
    kinds[kind]++;
    if (kind !== "read") writes[page]!++;
  };
  return { writes, kinds };
}

describe("Poisson writes", () => {
  it("writes at λ · pages per second, within 4σ for every seed and 1% over all", async () => {
    const pages = 512;
    const rate = 2;
    const seconds = 4;
    const expected = rate * pages * seconds;
    let total = 0;
    const seeds = 24;
    for (let seed = 1; seed <= seeds; seed++) {
      const guest = new Guest(pages, 512);
      const workload = new PoissonWorkload(guest, { rate, seed, reads: NO_READS });
      const report = await workload.advance(seconds);
      const n = report.writes + report.overwrites;
      expect(Math.abs(n - expected)).toBeLessThan(4 * Math.sqrt(expected));
      total += n;
      guest.dispose();
    }
    expect(Math.abs(total / seeds / expected - 1)).toBeLessThan(0.01);
  });

  it("dirties 1 − e^(−λt) of the pages in an interval", async () => {
    const guest = new Guest(4096, 512);
    const workload = new PoissonWorkload(guest, { rate: 0.5, seed: 3, reads: NO_READS });
    for (const t of [1, 2, 3]) {
      await workload.advance(t);
      const dirty = guest.dirtyLog.count();
      guest.dirtyLog.clearRange();
      const expected = 4096 * (1 - Math.exp(-0.5));
      expect(Math.abs(dirty - expected)).toBeLessThan(4 * Math.sqrt(expected));
    }
    guest.dispose();
  });

  it("hot/cold: 10% of the pages take 90% of the writes, and pageRate says which", async () => {
    const popularity: Popularity = { kind: "hot-cold", hotPages: 0.1, hotWrites: 0.9 };
    for (let seed = 1; seed <= 6; seed++) {
      const guest = new Guest(1000, 512);
      const workload = new PoissonWorkload(guest, { rate: 3, seed, popularity, reads: NO_READS });
      const { writes } = countAccesses(guest);
      await workload.advance(3);
      let hotWrites = 0;
      let all = 0;
      let hotPages = 0;
      let rateSum = 0;
      for (let p = 0; p < 1000; p++) {
        const hot = workload.pageRate(p) > 3;
        rateSum += workload.pageRate(p);
        if (hot) {
          hotPages++;
          hotWrites += writes[p]!;
        }
        all += writes[p]!;
      }
      expect(hotPages).toBe(100);
      expect(rateSum).toBeCloseTo(3000, 6);
      expect(Math.abs(hotWrites / all - 0.9)).toBeLessThan(0.02);
      guest.dispose();
    }
  });

  it("Zipf: each of the top ranks gets its 1/r^s share", async () => {
    const s = 1.1;
    const n = 2000;
    let harmonic = 0;
    for (let r = 1; r <= n; r++) harmonic += 1 / r ** s;
    const guest = new Guest(n, 512);
    const workload = new PoissonWorkload(guest, { rate: 10, seed: 9, popularity: { kind: "zipf", exponent: s }, reads: NO_READS });
    const { writes } = countAccesses(guest);
    await workload.advance(2);
    const total = writes.reduce((a, b) => a + b, 0);
    const byRate = Array.from({ length: n }, (_, p) => p).sort((a, b) => workload.pageRate(b) - workload.pageRate(a));
    for (let r = 1; r <= 5; r++) {
      const page = byRate[r - 1]!;
      const share = 1 / r ** s / harmonic;
      expect(workload.pageRate(page)).toBeCloseTo(10 * n * share, 6);
      expect(Math.abs(writes[page]! - total * share)).toBeLessThan(4 * Math.sqrt(total * share) + 1);
    }
    guest.dispose();
  });

  it("is the same memory and the same accesses however time is split, for a given seed", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 8 }),
        fc.integer({ min: 1, max: 1000 }),
        fc.constantFrom<Popularity>({ kind: "uniform" }, { kind: "hot-cold", hotPages: 0.2, hotWrites: 0.8 }, { kind: "zipf", exponent: 0.9 }),
        async (cuts, seed, popularity) => {
          const run = async (points: number[]) => {
            const guest = new Guest(64, 512);
            const log: string[] = [];
            guest.hook = (page, kind) => log.push(`${kind}${page}`);
            const workload = new PoissonWorkload(guest, { rate: 4, seed, popularity, content: "node-gc" });
            for (const t of points) await workload.advance(t);
            const out = { memory: sha(flatBytes(guest.memory)), log: log.join(","), dirty: guest.dirtyLog.count() };
            guest.dispose();
            return out;
          };
          const points = [...cuts.map((c) => c * 2), 2].sort((a, b) => a - b);
          expect(await run(points)).toEqual(await run([2]));
        },
      ),
      { numRuns: 25 * FUZZ },
    );
  });

  it("throttled to a quarter, does in 4 s what it did in 1 s", async () => {
    const a = new Guest(256, 512);
    const b = new Guest(256, 512);
    const full = new PoissonWorkload(a, { rate: 5, seed: 4 });
    const slow = new PoissonWorkload(b, { rate: 5, seed: 4 });
    slow.throttle = 0.25;
    await full.advance(1);
    const report = await slow.advance(4);
    expect(report.ran).toBeCloseTo(1, 12);
    expect(slow.workTime).toBeCloseTo(1, 12);
    expect(sha(flatBytes(b.memory))).toBe(sha(flatBytes(a.memory)));
    slow.throttle = 0;
    const idle = await slow.advance(10);
    expect(idle.writes + idle.overwrites + idle.reads).toBe(0);
    expect(() => (slow.throttle = 1.5)).toThrow(/throttle/);
    await expect(slow.advance(5)).rejects.toThrow(/advance/);
    const first = slow.advance(11);
    await expect(slow.advance(12)).rejects.toThrow(/before the previous one finished/);
    await first;
    a.dispose();
    b.dispose();
  });

  it("issues perWrite reads per write, from the recent working set or anywhere", async () => {
    const guest = new Guest(2000, 512);
    const reads = { perWrite: 2, window: 16, uniformShare: 0 };
    const workload = new PoissonWorkload(guest, { rate: 1, seed: 5, reads, popularity: { kind: "hot-cold", hotPages: 0.05, hotWrites: 0.95 } });
    const recent: number[] = [];
    let outside = 0;
    guest.hook = (page, kind) => {
      if (kind === "read") {
        if (!recent.includes(page)) outside++;
      } else {
        recent.push(page);
        if (recent.length > 16) recent.shift();
      }
    };
    const report = await workload.advance(5);
    const written = report.writes + report.overwrites;
    expect(Math.abs(report.reads / written - 2)).toBeLessThan(0.1);
    expect(outside).toBe(0);
    guest.dispose();
  });
});

describe("model options", () => {
  it("names what is wrong with a model's options", () => {
    const guest = new Guest(8, 512);
    expect(() => new PoissonWorkload(guest, { rate: -1 })).toThrow(/rate/);
    expect(() => new PoissonWorkload(guest, { rate: 1, popularity: { kind: "hot-cold", hotPages: 1.5, hotWrites: 0.9 } })).toThrow(/hotPages/);
    expect(() => new PoissonWorkload(new Guest(1, 512), { rate: 1, popularity: { kind: "hot-cold", hotPages: 0.1, hotWrites: 0.9 } })).toThrow(/at least 2 pages/);
    expect(() => new PoissonWorkload(guest, { rate: 1, popularity: { kind: "zipf", exponent: -1 } })).toThrow(/exponent/);
    expect(() => new PoissonWorkload(guest, { rate: 1, content: { zeroed: 0.5, whole: 0.6, partialBytes: 8, partialWords: 1, partialRuns: 1 } })).toThrow(/at most 1/);
    expect(() => new PoissonWorkload(guest, { rate: 1, content: "nope" as "redis" })).toThrow(/unknown content model/);
    expect(() => new PoissonWorkload(guest, { rate: 1, reads: { perWrite: 1, window: 0, uniformShare: 0 } })).toThrow(/reads.window/);
    expect(() => new SweepWorkload(guest, { rate: 0 })).toThrow(/rate/);
    expect(() => new SweepWorkload(guest, { rate: 1, first: 4, pages: 5 })).toThrow(/pages/);
    expect(() => new PoissonWorkload(guest, { rate: 1 }).pageRate(8)).toThrow(/page/);
    guest.dispose();
  });
});

describe("content models", () => {
  for (const name of ["redis", "node-gc", "memstream"] as const) {
    it(`${name}: synthetic writes change ${TRACE_CHANGED_BYTES[name]} bytes per dirty page like the trace`, async () => {
      const guest = syntheticGuest(2048, { profile: name, seed: 2 });
      // A low rate, so that a page is rarely written twice between two snapshots.
      const workload = new PoissonWorkload(guest, { rate: 0.02, seed: 8, content: name, image: name, reads: NO_READS });
      const stats = new ContentStats();
      const before = flatBytes(guest.memory).slice();
      const delta = new Uint8Array(4096);
      for (let round = 1; round <= 40; round++) {
        await workload.advance(round);
        for (const p of guest.dirtyLog.extract()) {
          const at = p * 4096;
          const now = guest.page(p);
          for (let i = 0; i < 4096; i++) delta[i] = before[at + i]! ^ now[i]!;
          if (delta.some((x) => x !== 0)) stats.add(before.subarray(at, at + 4096), delta);
          before.set(now, at);
        }
        guest.dirtyLog.clearRange();
      }
      expect(stats.dirtyPages).toBeGreaterThan(1000);
      expect(Math.abs(stats.meanChangedBytes / TRACE_CHANGED_BYTES[name] - 1)).toBeLessThan(0.2);
      const model = stats.model();
      expect(Math.abs(model.whole - CONTENT_MODELS[name].whole)).toBeLessThan(0.02);
      guest.dispose();
    });
  }
});

describe("synthetic images", () => {
  for (const name of ["redis", "node-gc", "memstream"] as const) {
    it(`${name}: zero share, duplicate share and deflate deciles like the trace's image`, () => {
      const profile = IMAGE_PROFILES[name];
      const pages = 6000;
      const image = syntheticImage(pages, { profile: name, seed: 11 });
      let zero = 0;
      let nonZero = 0;
      let duplicates = 0;
      const seen = new Set<string>();
      const sizes: number[] = [];
      for (let p = 0; p < pages; p++) {
        const page = image.subarray(p * 4096, (p + 1) * 4096);
        if (page.every((x) => x === 0)) {
          zero++;
          continue;
        }
        nonZero++;
        const h = sha(page);
        if (seen.has(h)) duplicates++;
        else seen.add(h);
        if (p % 4 === 0) sizes.push(deflateRawSync(page, { level: 1 }).length / 4096);
      }
      expect(Math.abs(zero / pages - profile.zeroShare)).toBeLessThan(0.02);
      expect(Math.abs(duplicates / nonZero - profile.duplicateShare)).toBeLessThan(0.05);
      sizes.sort((a, b) => a - b);
      for (const decile of [2, 5, 8]) {
        const got = sizes[Math.round((decile / 10) * (sizes.length - 1))]!;
        expect(Math.abs(got - profile.deflateDeciles[decile]!), `decile ${decile}`).toBeLessThan(0.04);
      }
    });
  }

  it("is deterministic for a seed and different across seeds", () => {
    expect(sha(syntheticImage(300, { seed: 1 }))).toBe(sha(syntheticImage(300, { seed: 1 })));
    expect(sha(syntheticImage(300, { seed: 1 }))).not.toBe(sha(syntheticImage(300, { seed: 2 })));
    expect(() => syntheticImage(10, { profile: "nope" as "redis" })).toThrow(/unknown profile/);
  });
});

describe("sweep and idle", () => {
  it("overwrites the buffer's pages in order at the byte rate, each with a repeated-word delta", async () => {
    const guest = new Guest(100, 4096, syntheticImage(100, { profile: "memstream" }));
    const pagesPerSecond = 10;
    const sweep = new SweepWorkload(guest, { rate: pagesPerSecond * 4096, first: 20, pages: 30, seed: 3 });
    const seen: number[] = [];
    const before = flatBytes(guest.memory).slice();
    guest.hook = (page, kind) => {
      expect(kind).toBe("overwrite");
      seen.push(page);
    };
    await sweep.advance(2.55);
    expect(seen).toEqual(Array.from({ length: 25 }, (_, k) => 20 + k));
    // Each delta is one 8-byte value repeated, every word changed.
    const p = 21 * 4096;
    const now = guest.page(21);
    const word = Array.from({ length: 8 }, (_, i) => before[p + i]! ^ now[i]!);
    expect(word.every((x) => x !== 0)).toBe(true);
    for (let i = 0; i < 4096; i++) expect(before[p + i]! ^ now[i]!).toBe(word[i % 8]);
    await sweep.advance(7);
    expect(seen.length).toBe(70);
    expect(seen[30]).toBe(20);
    guest.dispose();
  });

  it("idle writes nothing", async () => {
    const guest = new Guest(10, 512);
    const idle = new IdleWorkload(guest);
    const report = await idle.advance(100);
    expect(report).toEqual({ ran: 100, writes: 0, overwrites: 0, reads: 0 });
    expect(guest.dirtyLog.count()).toBe(0);
    guest.dispose();
  });
});

describe("trace replay", () => {
  /** A small trace: 8 pages of 512 B, 3 epochs 100 ms apart; returns each epoch's state. */
  async function smallTrace(): Promise<{ path: string; states: Uint8Array[]; image: Uint8Array; dirty: number[][] }> {
    const path = join(dir, `small-${Math.random().toString(36).slice(2)}.ptrace.gz`);
    const random = new Random(7);
    const image = new Uint8Array(8 * 512).map(() => random.int(256));
    const writer = await TraceWriter.create(path, image.slice(), { pageSize: 512, intervalMicros: 100_000 });
    const dirty = [[1, 3], [0, 3, 7], [5]];
    const states: Uint8Array[] = [];
    for (const [e, pages] of dirty.entries()) {
      const contents = new Uint8Array(pages.length * 512);
      pages.forEach((p, k) => {
        contents.set(writer.current.subarray(p * 512, (p + 1) * 512), k * 512);
        // Page 7 is overwritten whole (every word changes); the others in part.
        if (p === 7) for (let i = 0; i < 512; i++) contents[k * 512 + i]! ^= 0x80 | i;
        else contents[k * 512 + 10 * (e + 1)]! ^= 0xff;
      });
      await writer.epoch((e + 1) * 100_000, pages, contents);
      states.push(writer.current.slice());
    }
    await writer.close();
    return { path, states, image, dirty };
  }

  it("applies each epoch at its recorded time, as write or overwrite, and loops soundly", async () => {
    const { path, states, image, dirty } = await smallTrace();
    const replay = await TraceReplay.open(path, { reads: NO_READS });
    const guest = replay.guest;
    const seen: string[] = [];
    guest.hook = (page, kind) => seen.push(`${kind[0]}${page}`);
    expect(sha(flatBytes(guest.memory))).toBe(sha(image));
    await replay.advance(0.0999);
    expect(seen).toEqual([]);
    await replay.advance(0.1);
    expect(seen).toEqual(["w1", "w3"]);
    expect(sha(flatBytes(guest.memory))).toBe(sha(states[0]!));
    await replay.advance(0.3);
    expect(seen.slice(2)).toEqual(["w0", "w3", "o7", "w5"]);
    expect(sha(flatBytes(guest.memory))).toBe(sha(states[2]!));
    expect(Array.from(guest.dirtyLog.extract())).toEqual([0, 1, 3, 5, 7]);
    // Pass 2 starts one interval after the last epoch: epochs at 0.5, 0.6, 0.7.
    seen.length = 0;
    await replay.advance(0.45);
    expect(seen).toEqual([]);
    await replay.advance(0.7);
    expect(replay.pass).toBe(2);
    expect(seen).toEqual(["w1", "w3", "w0", "w3", "o7", "w5"]);
    // Two passes of the same deltas: XOR twice is the time-0 image.
    expect(sha(flatBytes(guest.memory))).toBe(sha(image));
    await replay.advance(0.9);
    expect(sha(flatBytes(guest.memory))).toBe(sha(states[0]!));
    expect(replay.epochsApplied).toBe(7);
    await replay.close();
    guest.dispose();
    expect(dirty.length).toBe(3);
  });

  it("without looping goes idle after the last epoch; throttling stretches its times", async () => {
    const { path, states } = await smallTrace();
    const replay = await TraceReplay.open(path, { loop: false, reads: NO_READS });
    replay.throttle = 0.5;
    await replay.advance(0.3);
    expect(replay.epochsApplied).toBe(1);
    replay.throttle = 1;
    await replay.advance(10);
    expect(replay.epochsApplied).toBe(3);
    expect(sha(flatBytes(replay.guest.memory))).toBe(sha(states[2]!));
    await replay.close();
    replay.guest.dispose();
  });

  it("with spread, applies each epoch's pages evenly over the time since the epoch before, to the same memory", async () => {
    const reader = await TraceReader.open(SAMPLE, { skipImage: true });
    const epochs = reader.epochs();
    const first = (await epochs.next()).value!;
    const second = (await epochs.next()).value!;
    const t1 = first.elapsedMicros / 1e6;
    const t2 = second.elapsedMicros / 1e6;
    await epochs.return(undefined);
    const spread = await TraceReplay.open(SAMPLE, { loop: false, spread: true });
    const whole = await TraceReplay.open(SAMPLE, { loop: false });
    // A quarter of the way to epoch 1: a quarter of its pages (rounded down), all of them epoch 1's.
    await spread.advance(t1 / 4);
    expect(spread.guest.dirtyLog.count()).toBe(Math.floor(first.pages.length / 4));
    expect(spread.guest.dirtyLog.extract().every((p) => first.pages.includes(p))).toBe(true);
    expect(spread.epochsApplied).toBe(0);
    // Half way from epoch 1 to epoch 2: all of epoch 1, half of epoch 2's (rounded down).
    spread.guest.dirtyLog.clearRange();
    await spread.advance((t1 + t2) / 2);
    expect(spread.epochsApplied).toBe(1);
    const firstLeft = first.pages.length - Math.floor(first.pages.length / 4);
    expect(spread.guest.dirtyLog.count()).toBeGreaterThanOrEqual(firstLeft);
    expect(spread.guest.dirtyLog.count()).toBeLessThanOrEqual(firstLeft + Math.floor(second.pages.length / 2));
    expect(spread.guest.dirtyLog.count()).toBeGreaterThanOrEqual(Math.floor(second.pages.length / 2));
    for (const replay of [spread, whole]) await replay.advance(t2);
    expect(spread.epochsApplied).toBe(2);
    expect(sha(flatBytes(spread.guest.memory))).toBe(sha(flatBytes(whole.guest.memory)));
    for (const replay of [spread, whole]) {
      await replay.close();
      replay.guest.dispose();
    }
  });

  it("replays the bundled trace to the checker's final image, marking exactly each epoch's pages", async () => {
    const final = join(dir, "sample.final");
    execFileSync("python3", [`${SHARED}tools/check-pagetrace`, "--write-final", final, SAMPLE]);
    const replay = await TraceReplay.open(SAMPLE, { loop: false });
    const reader = await TraceReader.open(SAMPLE, { skipImage: true });
    const epochs = reader.epochs();
    const kinds = { read: 0, write: 0, overwrite: 0 };
    replay.guest.hook = (_page, kind) => kinds[kind]++;
    let dirty = 0;
    for (let e = 1; e <= 20; e++) {
      const { value } = await epochs.next();
      await replay.advance(value!.elapsedMicros / 1e6);
      expect(Array.from(replay.guest.dirtyLog.extract())).toEqual(Array.from(value!.pages));
      replay.guest.dirtyLog.clearRange();
      dirty += value!.pages.length;
    }
    expect(sha(flatBytes(replay.guest.memory))).toBe(sha(readFileSync(final)));
    expect(kinds.write + kinds.overwrite).toBe(dirty);
    // Overwrites: pages rewritten whole, and some of those zeroed (from
    // content with no zero word); redis's shares are 2.6% and 4.2%.
    const { whole, zeroed } = CONTENT_MODELS.redis;
    expect(kinds.overwrite / dirty).toBeGreaterThan(whole / 2);
    expect(kinds.overwrite / dirty).toBeLessThan(2 * (whole + zeroed));
    expect(Math.abs(kinds.read / dirty - 1)).toBeLessThan(0.1);
    await replay.close();
    replay.guest.dispose();
  });
});

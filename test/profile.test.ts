import { afterAll, describe, expect, it, vi } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LEFT_ZERO, LEFT_ZERO_EVEN, profileTrace, summarise, writePrediction, writeRate, workingSet } from "../src/adaptive/profile.js";
import { NO_READS, TraceReplay } from "../src/guest/workloads.js";
import { run } from "../src/cli/profile.js";
import { UsageError } from "../src/cli/args.js";
import { TraceWriter } from "../src/guest/pagetrace.js";

const dir = mkdtempSync(join(tmpdir(), "pagemill-profile-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const SAMPLE = fileURLToPath(new URL("../data/redis-sample.ptrace.gz", import.meta.url));

/**
 * 10 pages (0..4 zero), 6 epochs of 100 ms: page 5 written in every epoch
 * (whole; 1 ^ 2 ^ 3 and later ^ 4 ^ 5 ^ 6 ^ 7 leave it zero twice), page 6 in
 * epochs 0..2, page 7 in epochs 3..5 (partial), page 0 zeroed in epoch 1
 * after a write in epoch 0.
 */
async function knownTrace(): Promise<string> {
  const path = join(dir, "known.ptrace.gz");
  const image = new Uint8Array(10 * 4096);
  image.fill(1, 5 * 4096);
  const writer = await TraceWriter.create(path, image, { intervalMicros: 100_000, meta: { program: "known" } });
  const sets = [[0, 5, 6], [0, 5, 6], [5, 6], [5, 7], [5, 7], [5, 7]];
  for (const [e, pages] of sets.entries()) {
    const deltas = new Uint8Array(pages.length * 4096);
    for (const [k, p] of pages.entries()) {
      const page = deltas.subarray(k * 4096, (k + 1) * 4096);
      if (p === 0) page.fill(7); // page 0: 0 → 7s → 0
      else if (p === 5) page.fill(e + 2);
      else page[100] = e + 1;
    }
    await writer.epochDeltas((e + 1) * 100_000, pages, deltas);
  }
  await writer.close();
  return path;
}

describe("profiler", () => {
  it("counts each page's epochs, whole writes and zeroing, and fits λ per page", async () => {
    const { memory: m } = await profileTrace(await knownTrace());
    expect(Array.from(m.writtenEpochs)).toEqual([2, 0, 0, 0, 0, 6, 3, 3, 0, 0]);
    expect(Array.from(m.wholeEpochs)).toEqual([2, 0, 0, 0, 0, 6, 0, 0, 0, 0]);
    expect(Array.from(m.zeroEpochs)).toEqual([1, 0, 0, 0, 0, 2, 0, 0, 0, 0]);
    expect(Array.from(m.imageZero)).toEqual([1, 1, 1, 1, 1, 0, 0, 0, 0, 0]);
    expect(Array.from(m.dirtySeries)).toEqual([3, 3, 2, 2, 2, 2]);
    expect(writeRate(3, 6, 0.1)).toBeCloseTo(Math.log(2) / 0.1, 12);
    expect(writeRate(6, 6, 0.1)).toBe(Infinity);
    expect(writeRate(0, 6, 0.1)).toBe(0);
    // One epoch: page 5 surely, pages 0, 6, 7 with 1/3, 1/2, 1/2.
    expect(workingSet(m, 0.1)).toBeCloseTo(1 + 1 / 3 + 1 / 2 + 1 / 2, 12);
  });

  it("flags the writes that leave a page zero in the replay's even passes as the replay's second pass finds them", async () => {
    for (const path of [await knownTrace(), SAMPLE]) {
      const { memory: m } = await profileTrace(path);
      const replay = await TraceReplay.open(path, { reads: NO_READS });
      try {
        const E = m.epochTimes.length;
        const period = m.epochTimes[E - 1]! + m.interval;
        let differ = 0;
        for (let e = 0; e < 2 * E; e++) {
          await replay.advance(Math.floor(e / E) * period + m.epochTimes[e % E]!);
          const { pages, flags } = m.epochs[e % E]!;
          const flag = e < E ? LEFT_ZERO : LEFT_ZERO_EVEN;
          pages.forEach((p, k) => {
            const zero = replay.guest.page(p).every((byte) => byte === 0);
            expect(zero, `epoch ${e}, page ${p}`).toBe((flags[k]! & flag) !== 0);
            if (((flags[k]! & LEFT_ZERO) !== 0) !== zero) differ++;
          });
        }
        // The two passes' zero pages do differ: the first pass's flags do not serve for the second.
        expect(differ).toBeGreaterThan(0);
      } finally {
        await replay.close();
        replay.guest.dispose();
      }
    }
  });

  it("scores the next-epoch write prediction on held-out epochs only", async () => {
    const { memory: m } = await profileTrace(await knownTrace());
    // Trained on epochs 0..3: predicted written are page 5 (4/4), page 6 (3/4), page 0 (2/4); page 7 (1/4) is not.
    const c = writePrediction(m, 4 / 6)!;
    expect(c.samples).toBe(20);
    expect(c.truePositive).toBeCloseTo(2 / 20, 12); // page 5 in epochs 4, 5
    expect(c.falsePositive).toBeCloseTo(4 / 20, 12); // pages 0 and 6 in epochs 4, 5
    expect(c.falseNegative).toBeCloseTo(2 / 20, 12); // page 7 in epochs 4, 5
    expect(c.trueNegative).toBeCloseTo(12 / 20, 12);
    expect(c.accuracy).toBeCloseTo(14 / 20, 12);
  });

  it("summarises a real trace: the dirty series is the trace's, every page counted once", async () => {
    const s = summarise(await profileTrace(SAMPLE));
    expect(s.pages).toBe(3072);
    expect(s.dirtyRate.series).toHaveLength(20);
    expect(s.lambda.neverWritten + s.lambda.everyEpoch).toBeLessThan(s.pages);
    const c = s.writePrediction!;
    expect(c.trueNegative + c.falseNegative + c.falsePositive + c.truePositive).toBeCloseTo(1, 12);
    expect(c.accuracy).toBeGreaterThan(0.9);
  });

  it("pagemill profile: prints JSON, refuses bad input naming it", async () => {
    const lines: string[] = [];
    const log = vi.spyOn(console, "log").mockImplementation((...parts: unknown[]) => void lines.push(parts.join(" ")));
    try {
      expect(await run([SAMPLE, "--json"])).toBe(0);
    } finally {
      log.mockRestore();
    }
    expect(JSON.parse(lines.join("\n")).pages).toBe(3072);
    await expect(run([])).rejects.toThrow(UsageError);
    await expect(run([join(dir, "missing.ptrace.gz")])).rejects.toThrow(/does not exist/);
    await expect(run([SAMPLE, "--window", "fast"])).rejects.toThrow(/--window/);
  });
});

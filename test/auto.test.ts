import { describe, expect, it } from "vitest";
import { AutoCodec, batchSeconds } from "../src/codecs/auto.js";
import { CostModel, DEFAULT_COSTS } from "../src/codecs/cost.js";
import { simulate } from "../src/engine/migrate.js";
import type { StrategyName } from "../src/engine/metrics.js";
import { TraceReplay } from "../src/guest/workloads.js";
import { PageBatch } from "../src/index.js";
import { sharedTraceImagePages, tracePath, TRACE_NAMES } from "./helpers/traces.js";

const costs = new CostModel();

/** Encodes `pages` in batches of 256 at `bitsPerSecond`, checking each round trip; returns the choices. */
function stream(codec: AutoCodec, pages: Uint8Array, bitsPerSecond: number): string[] {
  const count = pages.length / 4096;
  const batch = new PageBatch(256, 4096);
  const back = new PageBatch(256, 4096);
  const choices: string[] = [];
  for (let first = 0; first < count; first += 256) {
    const part = pages.subarray(first * 4096, Math.min(count, first + 256) * 4096);
    codec.setLink({ bandwidth: bitsPerSecond / 8, costs });
    const encoded = codec.encodeBatch(batch.set(part));
    codec.decodeBatch(encoded, back);
    expect(Buffer.from(back.bytes()).equals(Buffer.from(part))).toBe(true);
    choices.push(codec.choice);
  }
  batch.dispose();
  back.dispose();
  return choices;
}

describe("codec auto", () => {
  it("flips its choice as the bandwidth changes: raw on a fast link, compression on a slow one", async () => {
    const { pages } = await sharedTraceImagePages("redis", 40 * 256);
    const codec = new AutoCodec();
    // Past the first batches, which measure each compressor once.
    const fast = stream(codec, pages, 10e9).slice(4);
    const lan = stream(codec, pages, 1e9).slice(4);
    const wan = stream(codec, pages, 10e6).slice(4);
    expect(new Set(fast)).toEqual(new Set(["raw"]));
    expect(lan.filter((c) => c === "lz4").length).toBeGreaterThan(lan.length / 2);
    // On a slow link only bytes count: MECOM sends fewer than LZ4 on redis.
    expect(wan.filter((c) => c === "mecom").length).toBeGreaterThan(wan.length / 2);
    expect(stream(codec, pages, 10e9).slice(4)).toContain("raw");
    expect(codec.stats.choices!.raw! + codec.stats.choices!.lz4! + codec.stats.choices!.mecom!).toBe(codec.stats.pages);
    codec.dispose();
  });

  it("times a batch by its slowest stage, from the cost table and the link", () => {
    const link = (bitsPerSecond: number) => ({ bandwidth: bitsPerSecond / 8, costs });
    const mib = 2 ** 20;
    // At 10 Gbit/s a MiB crosses in 0.84 ms raw; LZ4 needs 1.7 ms to encode it (600 MB/s).
    expect(batchSeconds("raw", mib, 1, link(10e9))).toBeCloseTo(mib / 1.25e9, 12);
    expect(batchSeconds("lz4", mib, 0.3, link(10e9))).toBeCloseTo(mib / DEFAULT_COSTS.codecs.lz4!.encode, 12);
    expect(batchSeconds("lz4", mib, 0.3, link(10e6))).toBeCloseTo((0.3 * mib * 8) / 10e6, 12);
    // CPU counted with headroom: the slowest stage is then LZ4's encode sooner.
    expect(batchSeconds("lz4", mib, 0.3, link(10e9), 1.25)).toBeCloseTo((1.25 * mib) / DEFAULT_COSTS.codecs.lz4!.encode, 12);
    expect(batchSeconds("raw", mib, 1, link(10e9), 1.25)).toBeCloseTo(mib / 1.25e9, 12);
  });

  it("migrates every shared trace with every strategy at 10 Mbit/s, 1 and 10 Gbit/s, verified, its choices in the rows and codecStats", async () => {
    for (const name of TRACE_NAMES) {
      for (const [strategy, bitsPerSecond] of [["precopy", 10e9], ["postcopy", 1e9], ["hybrid", 10e6], ["precopy", 1e9]] as [StrategyName, number][]) {
        const workload = await TraceReplay.open(tracePath(name), { loop: false });
        try {
          const stats = await simulate(strategy, workload, { bitsPerSecond, rtt: 0.001 }, { codec: "auto" });
          expect(stats.verifiedPages, `${name} ${strategy} ${bitsPerSecond}`).toBe(workload.guest.pageCount);
          const choices = stats.codecStats.choices!;
          expect(Object.values(choices).reduce((a, b) => a + b, 0)).toBe(stats.codecStats.pages - (stats.codecStats.byEncoding.zero ?? 0));
          for (const row of stats.rounds) expect(Object.values(row.choices!).reduce((a, b) => a + b, 0)).toBe(row.pages);
          if (bitsPerSecond === 10e9) expect(choices.raw).toBeGreaterThan(choices.lz4! + choices.mecom!);
          if (bitsPerSecond === 10e6) expect(choices.raw).toBeLessThan(choices.lz4! + choices.mecom!);
        } finally {
          await workload.close();
          workload.guest.dispose();
        }
      }
    }
  });
});

import { describe, expect, it } from "vitest";
import { fileURLToPath } from "node:url";
import { simulate } from "../src/engine/migrate.js";
import type { StrategyName } from "../src/engine/metrics.js";
import { TraceReplay } from "../src/guest/workloads.js";
import { init } from "../src/wasm/module.js";

await init();
const BUNDLED = fileURLToPath(new URL("../data/redis-sample.ptrace.gz", import.meta.url));
const LINK = { bitsPerSecond: 1e9, rtt: 0.001 };

async function run(strategy: StrategyName, codec: string, channels: number) {
  const workload = await TraceReplay.open(BUNDLED);
  try {
    return await simulate(strategy, workload, LINK, { codec, channels });
  } finally {
    await workload.close();
    workload.guest.dispose();
  }
}

describe("parallel channels (--channels, QEMU's multifd)", () => {
  for (const strategy of ["precopy", "postcopy", "hybrid"] as const) {
    it(`${strategy}: the same pages arrive verified with 1 and 2 channels; 2 channels take the longer one's CPU time, and their CPU is all counted`, async () => {
      const one = await run(strategy, "lz4", 1);
      const two = await run(strategy, "lz4", 2);
      for (const stats of [one, two]) {
        expect(stats.status).toBe("completed");
        expect(stats.verifiedPages).toBe(3072);
      }
      // The pages and what they compress to are the same: only the framing differs (one frame per channel).
      expect(two.codecStats.frames).toBeGreaterThan(one.codecStats.frames);
      expect(two.codecStats.byEncoding).toEqual(one.codecStats.byEncoding);
      expect(two.sourceCpu).toBeCloseTo(one.sourceCpu, 9);
      if (strategy === "precopy") expect(two.totalTime).toBeLessThan(one.totalTime);
    });
  }

  it("the adaptive codec (auto) chooses on the channels too, and every choice is counted", async () => {
    const two = await run("precopy", "auto", 2);
    expect(two.verifiedPages).toBe(3072);
    const chosen = Object.values(two.codecStats.choices ?? {}).reduce((a, b) => a + b, 0);
    expect(chosen).toBe(two.pagesTransferred - two.duplicate);
  });

  it("refuses a codec that remembers pages across frames, and a channel count out of range", async () => {
    await expect(run("precopy", "xbzrle+lz4", 2)).rejects.toThrow(/channels: codec 'xbzrle\+lz4' cannot run on parallel channels/);
    await expect(run("precopy", "raw", 0)).rejects.toThrow(/channels/);
    await expect(run("precopy", "raw", 65)).rejects.toThrow(/channels/);
  });
});

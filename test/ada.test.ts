// Ada-copy (src/engine/ada.ts): its rule on hand-made figures, the method it
// picks for a workload pre-copy handles and for one it cannot, and on every
// shipped trace a verified migration never worse than the worse of pre-copy
// and post-copy in total time or downtime, and, with the predictor's forecast,
// within 5% of the best fixed method's. And pre-copy's cold-first page
// order (EngineOptions.pageOrder), which Ada-copy and fractional use too.
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ADA_MAX_CV, AdaRule } from "../src/engine/ada.js";
import type { MigrationStats, StrategyName } from "../src/engine/metrics.js";
import { simulate } from "../src/engine/migrate.js";
import type { RoundCheck } from "../src/engine/precopy.js";
import type { Workload } from "../src/guest/guest.js";
import { PoissonWorkload, TraceReplay, syntheticGuest } from "../src/guest/workloads.js";
import { TRACE_NAMES, sharedAvailable, tracePath } from "./helpers/traces.js";
import { normaliseOptions, type AdaForecast } from "../src/engine/options.js";
import { meanDirtyRate, profileTrace } from "../src/adaptive/profile.js";
import { coldestFirst, forecastFixed } from "../src/adaptive/predict.js";
import { migrateCli } from "./helpers/migrate.js";

const BUNDLED = fileURLToPath(new URL("../data/redis-sample.ptrace.gz", import.meta.url));
const check = (c: Partial<RoundCheck>): RoundCheck => ({ round: 1, roundEnd: true, dirtyRate: 0, sendRate: 1000, left: 0, ...c });

describe("Ada-copy's rule", () => {
  it("switches within the first round when memory is dirtied at half the rate it is sent or more; within later rounds, never", () => {
    const rule = new AdaRule(0.3);
    expect(rule.check(check({ roundEnd: false, dirtyRate: 490 }))).toBeUndefined();
    expect(rule.check(check({ roundEnd: false, round: 2, dirtyRate: 5000 }))).toBeUndefined();
    expect(rule.check(check({ roundEnd: false, dirtyRate: 500 }))).toMatch(/ρ 0\.50 ≥ 0\.5/);
    expect(rule.decision).toMatchObject({ method: "postcopy", round: 1, rho: 0.5 });
  });

  it("at a round end, switches on the level of ρ, on the rounds pre-copy still needs, and on the rates' variation", () => {
    // ρ 0.6: each round re-sends more than half the last.
    expect(new AdaRule(0.3).check(check({ dirtyRate: 600, left: 100 }))).toMatch(/ρ 0\.60 ≥ 0\.5/);
    // ρ 0.4 with 100000 pages left and 300 fitting the limit: ln(300/100000)/ln(0.4) ≈ 6.3 more rounds.
    expect(new AdaRule(0.3).check(check({ dirtyRate: 400, left: 100000 }))).toMatch(/6\.3 more rounds/);
    // ρ 0.4, 1000 left: 1.3 more rounds, steady rate: pre-copy goes on.
    const steady = new AdaRule(0.3);
    expect(steady.check(check({ dirtyRate: 400, left: 1000 }))).toBeUndefined();
    expect(steady.check(check({ round: 2, dirtyRate: 380, left: 900 }))).toBeUndefined();
    expect(steady.decision).toBeUndefined();
    // The same level, but the rounds' rates swing: CV above the bound.
    const swinging = new AdaRule(0.3);
    expect(swinging.check(check({ dirtyRate: 400, left: 1000 }))).toBeUndefined();
    expect(swinging.check(check({ round: 2, dirtyRate: 50, left: 200 }))).toMatch(/vary/);
    expect(swinging.decision!.cv).toBeGreaterThan(ADA_MAX_CV);
    expect(swinging.decision!.method).toBe("hybrid");
  });

  it("with a forecast, runs the fixed method predicted fastest, a tie (within 1%) going to the least predicted downtime", () => {
    const pick = (forecast: AdaForecast[]) => new AdaRule(0.3).choose(forecast, 100, 1000);
    expect(pick([{ strategy: "precopy", totalTime: 15.55, downtime: 0.34 }, { strategy: "postcopy", totalTime: 14.37, downtime: 0.056 }, { strategy: "hybrid", totalTime: 15.29, downtime: 0.056 }])).toBe("postcopy");
    expect(pick([{ strategy: "precopy", totalTime: 10, downtime: 0.1 }, { strategy: "postcopy", totalTime: 10.09, downtime: 0.05 }, { strategy: "hybrid", totalTime: 10.2, downtime: 0.01 }])).toBe("postcopy");
    const rule = new AdaRule(0.3);
    rule.choose([{ strategy: "hybrid", totalTime: 2.46, downtime: 0.055 }, { strategy: "postcopy", totalTime: 2.64, downtime: 0.055 }], 5000, 1218);
    expect(rule.decision).toMatchObject({ method: "hybrid", round: 0 });
    expect(rule.decision!.reason).toMatch(/predicted T \/ D before the start: hybrid 2\.46 s/);
    const guest = { pageSize: 4096, pageCount: 4 };
    expect(() => normaliseOptions({ forecast: [{ strategy: "precopy", totalTime: Number.NaN, downtime: 1 }] }, guest)).toThrow(/forecast\[0\]\.totalTime/);
    expect(() => normaliseOptions({ forecast: [{ strategy: "ada" as "precopy", totalTime: 1, downtime: 1 }] }, guest)).toThrow(/forecast\[0\]\.strategy/);
  });

  it("decides nothing before the send rate is known", () => {
    expect(new AdaRule(0.3).check(check({ sendRate: 0, dirtyRate: 1e6 }))).toBeUndefined();
    expect(new AdaRule(0.3).before(1e6, 0)).toBe(false);
  });

  it("before the start, post-copies at once when the dirty rate measured before reaches half the link's page rate", () => {
    const low = new AdaRule(0.3);
    expect(low.before(499, 1000)).toBe(false);
    expect(low.decision).toBeUndefined();
    const high = new AdaRule(0.3);
    expect(high.before(500, 1000)).toBe(true);
    expect(high.decision).toMatchObject({ method: "postcopy", round: 0, rho: 0.5, dirtyRate: 500, sendRate: 1000 });
    expect(high.decision!.reason).toMatch(/before the start/);
    expect(() => normaliseOptions({ dirtyRateBefore: -1 }, { pageSize: 4096, pageCount: 4 })).toThrow(/dirtyRateBefore must be a positive/);
  });
});

function model(rate: number, seed = 3): Workload {
  return new PoissonWorkload(syntheticGuest(4096, { seed: 1 }), { rate, popularity: { kind: "hot-cold", hotPages: 0.1, hotWrites: 0.9 }, seed });
}

describe("Ada-copy's choice", () => {
  it("stays with pre-copy when pre-copy converges: the same migration as pre-copy's", async () => {
    const link = { bitsPerSecond: 1e9, rtt: 0.001 };
    const ada = await simulate("ada", model(0.05), link);
    const pre = await simulate("precopy", model(0.05), link);
    expect(ada.adaptive!.method).toBe("precopy");
    expect(ada.verifiedPages).toBe(4096);
    expect([ada.totalTime, ada.downtime, ada.transferred, ada.pagesTransferred]).toEqual([pre.totalTime, pre.downtime, pre.transferred, pre.pagesTransferred]);
  });

  it("with a dirty rate measured before the start: post-copy at once when it says so (the same migration as post-copy's), else as without", async () => {
    const wan = { bitsPerSecond: 40e6, rtt: 0.005 };
    // model(2): 4096 pages × 2 writes/s, far above half of the ~1200 pages/s 40 Mbit/s carries.
    const ada = await simulate("ada", model(2), wan, { dirtyRateBefore: 8192 });
    const post = await simulate("postcopy", model(2), wan);
    expect(ada.adaptive).toMatchObject({ method: "postcopy", round: 0 });
    expect(ada.verifiedPages).toBe(4096);
    expect([ada.totalTime, ada.downtime, ada.transferred, ada.pagesTransferred]).toEqual([post.totalTime, post.downtime, post.transferred, post.pagesTransferred]);
    // A low rate before the start leaves the decision to the rules that watch the migration.
    const lan = { bitsPerSecond: 1e9, rtt: 0.001 };
    const measured = await simulate("ada", model(0.05), lan, { dirtyRateBefore: 200 });
    const watched = await simulate("ada", model(0.05), lan);
    expect(measured.adaptive!.method).toBe("precopy");
    expect([measured.totalTime, measured.downtime, measured.transferred]).toEqual([watched.totalTime, watched.downtime, watched.transferred]);
  });

  it("switches to post-copy when pre-copy cannot keep up, and ends verified sooner than pre-copy", async () => {
    const link = { bitsPerSecond: 40e6, rtt: 0.005 };
    const ada = await simulate("ada", model(2), link);
    const pre = await simulate("precopy", model(2), link);
    expect(ada.stopReason).toBe("adaptive");
    expect(["postcopy", "hybrid"]).toContain(ada.adaptive!.method);
    expect(ada.adaptive!.rho).toBeGreaterThanOrEqual(0.5);
    expect(ada.verifiedPages).toBe(4096);
    expect(ada.totalTime).toBeLessThan(pre.totalTime);
    expect(ada.downtime).toBeLessThan(pre.downtime);
  });
});

describe("Ada-copy on the shipped traces, 40 Mbit/s", () => {
  const traces: [string, string][] = [["redis-sample (bundled)", BUNDLED], ...(sharedAvailable() ? TRACE_NAMES.map((n): [string, string] => [n, tracePath(n)]) : [])];
  for (const [name, path] of traces) {
    it(`${name}: verified, never worse than the worse of pre-copy and post-copy in T or D; with the forecast, within 5% of the best fixed T`, async () => {
      const link = { bitsPerSecond: 40e6, rtt: 0.005 };
      const run = async (strategy: StrategyName, options = {}): Promise<MigrationStats> => {
        const w = await TraceReplay.open(path);
        try {
          return await simulate(strategy, w, link, options);
        } finally {
          await w.close();
          w.guest.dispose();
        }
      };
      const [pre, post, hybrid] = [await run("precopy"), await run("postcopy"), await run("hybrid")];
      const { memory } = await profileTrace(path);
      const dirtyRateBefore = meanDirtyRate(memory);
      // Watching the migration only, with the trace's dirty rate as measured before the start, and with the predictor's forecast too (as the CLI runs it).
      const forecasted = await run("ada", { dirtyRateBefore, forecast: forecastFixed(memory, link) });
      for (const ada of [await run("ada"), await run("ada", { dirtyRateBefore }), forecasted]) {
        expect(ada.verifiedPages).toBe(pre.verifiedPages);
        expect(ada.totalTime).toBeLessThanOrEqual(Math.max(pre.totalTime, post.totalTime));
        expect(ada.downtime).toBeLessThanOrEqual(Math.max(pre.downtime, post.downtime));
      }
      // The target: within 5% of the best fixed method's T.
      expect(forecasted.totalTime).toBeLessThanOrEqual(1.05 * Math.min(pre.totalTime, post.totalTime, hybrid.totalTime));
    }, 180_000);
  }
});

describe("Ada-copy with a disk", () => {
  const DISK = fileURLToPath(new URL("../data/sqlite-disk.ptrace.gz", import.meta.url));
  type Run = { strategy: string; totalTime: number; downtime: number; verified: boolean; adaptive?: { method: string; reason: string } };

  it("with a disk trace, runs the fixed method the predictor says is fastest with that disk, within 5% of the best fixed T", async () => {
    const fixed = JSON.parse(await migrateCli(["--strategy", "all", "--disk", DISK, "--json"])) as Run[];
    const ada = JSON.parse(await migrateCli(["--strategy", "ada", "--disk", DISK, "--json"])) as Run;
    expect(ada.verified).toBe(true);
    expect(ada.adaptive!.reason).toMatch(/^predicted T \/ D before the start: precopy .*, postcopy .*, hybrid .*; the least/);
    const best = fixed.reduce((a, b) => (b.totalTime < a.totalTime ? b : a));
    expect(ada.adaptive!.method).toBe(best.strategy);
    expect(ada.totalTime).toBeLessThanOrEqual(1.05 * best.totalTime);
    expect(ada.downtime).toBe(best.downtime);
  });

  it("says why there is no forecast where the predictor does not model the run: a disk model, a codec, channels, a workload model", async () => {
    const reason = async (args: string[]) => (JSON.parse(await migrateCli(["--strategy", "ada", ...args, "--json"])) as Run).adaptive!.reason;
    expect(await reason(["--disk-workload", "oltp", "--disk-blocks", "1024"])).toMatch(/\(no forecast: the predictor models a disk trace, not a disk model\)$/);
    expect(await reason(["--codec", "lz4"])).toMatch(/\(no forecast: the predictor models the raw codec, not lz4\)$/);
    expect(await reason(["--channels", "2"])).toMatch(/\(no forecast: the predictor models one channel, not 2\)$/);
    expect(await reason(["--workload", "hot-cold", "--pages", "4096"])).toMatch(/\(no forecast: a workload model has no trace profile to predict from\)$/);
  });
});

describe("cold-first page order (--order cold-first)", () => {
  const traces: [string, string][] = [["redis-sample (bundled)", BUNDLED], ...(sharedAvailable() ? TRACE_NAMES.map((n): [string, string] => [n, tracePath(n)]) : [])];
  for (const [name, path] of traces) {
    it(`${name}: pre-copy sending pages coldest first by λ re-sends no more pages than index order, verified`, async () => {
      const order = coldestFirst((await profileTrace(path)).memory);
      const run = async (pageOrder?: Uint32Array): Promise<MigrationStats> => {
        const w = await TraceReplay.open(path);
        try {
          return await simulate("precopy", w, { bitsPerSecond: 40e6, rtt: 0.005 }, { pageOrder });
        } finally {
          await w.close();
          w.guest.dispose();
        }
      };
      const [index, coldFirst] = [await run(), await run(order)];
      expect(coldFirst.verifiedPages).toBe(index.verifiedPages);
      expect(coldFirst.pagesTransferred).toBeLessThanOrEqual(index.pagesTransferred);
    }, 120_000);
  }

  it("takes an order naming every page once, and refuses others", () => {
    const guest = { pageSize: 4096, pageCount: 4 };
    expect(normaliseOptions({ pageOrder: [3, 1, 0, 2] }, guest).pageRank).toEqual(Uint32Array.from([2, 1, 3, 0]));
    expect(() => normaliseOptions({ pageOrder: [0, 1, 2] }, guest)).toThrow(/pageOrder has 3 pages, the guest 4/);
    expect(() => normaliseOptions({ pageOrder: [0, 1, 1, 2] }, guest)).toThrow(/names page 1 twice/);
    expect(() => normaliseOptions({ pageOrder: [0, 1, 2, 4] }, guest)).toThrow(/pageOrder\[3\]/);
  });
});

describe("a pre-copy deadline (--deadline)", () => {
  const traces: [string, string][] = [["redis-sample (bundled)", BUNDLED], ...(sharedAvailable() ? TRACE_NAMES.map((n): [string, string] => [n, tracePath(n)]) : [])];
  const DEADLINE = 20;
  const run = async (path: string, options: { deadline: number; noPostcopy?: boolean }): Promise<MigrationStats> => {
    const w = await TraceReplay.open(path);
    try {
      return await simulate("precopy", w, { bitsPerSecond: 40e6, rtt: 0.005 }, options);
    } finally {
      await w.close();
      w.guest.dispose();
    }
  };
  for (const [name, path] of traces) {
    it(`${name} at 40 Mbit/s (pre-copy alone: 6.8-40 s): switches to post-copy and ends verified before ${DEADLINE} s`, async () => {
      const stats = await run(path, { deadline: DEADLINE });
      expect(stats.stopReason).toBe("deadline");
      expect(stats.deadline!.reason).toMatch(/past the 20 s deadline/);
      expect(stats.deadline!.switchedAt!).toBeLessThan(DEADLINE);
      expect(stats.totalTime).toBeLessThan(DEADLINE);
      expect(stats.remoteUptime).toBeGreaterThan(0);
      expect(stats.verifiedPages).toBeGreaterThan(0);
    }, 120_000);
  }

  it("without post-copy, raises the downtime limit step by step and ends before the deadline when the memory fits in it", async () => {
    for (const path of [BUNDLED, ...(sharedAvailable() ? [tracePath("node-gc")] : [])]) {
      const stats = await run(path, { deadline: DEADLINE, noPostcopy: true });
      const { raised } = stats.deadline!;
      expect(raised.length).toBeGreaterThan(0);
      raised.forEach((step, k) => expect(step.downtimeLimit).toBeGreaterThan(k ? raised[k - 1]!.downtimeLimit : 0.3));
      expect(stats.remoteUptime).toBe(0);
      expect(stats.totalTime).toBeLessThan(DEADLINE);
    }
  }, 120_000);

  it("must be a positive time", () => {
    expect(() => normaliseOptions({ deadline: 0 }, { pageSize: 4096, pageCount: 4 })).toThrow(/deadline must be a positive/);
  });
});

describe("the progress ETA", () => {
  it("moves when the rates do, not each time a round starts over: it rises less than half as often as the pages left", async () => {
    const w = await TraceReplay.open(BUNDLED);
    const seen: { eta: number; left: number }[] = [];
    try {
      await simulate("precopy", w, { bitsPerSecond: 40e6, rtt: 0.005 }, { onProgress: (p) => seen.push({ eta: p.eta, left: p.remainingPages }) });
    } finally {
      await w.close();
      w.guest.dispose();
    }
    const rises = (xs: number[]) => xs.slice(1).filter((x, i) => x > xs[i]! + 1e-9).length;
    expect(Number.isNaN(seen[0]!.eta)).toBe(true);
    const left = rises(seen.map((x) => x.left));
    expect(left).toBeGreaterThan(4);
    expect(rises(seen.map((x) => x.eta).filter((eta) => !Number.isNaN(eta)))).toBeLessThan(left / 2);
    expect(seen.at(-1)!.eta).toBe(0);
  });
});

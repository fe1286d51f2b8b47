import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { comparisonTable, openWorkload, run } from "../src/cli/migrate.js";
import { UsageError } from "../src/cli/args.js";
import { SimulationCostError, simulate } from "../src/engine/migrate.js";
import { SweepWorkload, syntheticGuest } from "../src/guest/workloads.js";
import type { MigrationStats } from "../src/engine/metrics.js";
import { migrateCli } from "./helpers/migrate.js";


describe("pagemill migrate", () => {
  it("--batch at and past the bitmap kernel's 1024-index chunk: every strategy verified on the bundled trace", async () => {
    for (const batch of ["1024", "2048"]) {
      const out = JSON.parse(await migrateCli(["--batch", batch, "--json"]));
      for (const stats of out) expect(stats.verifiedPages, `--batch ${batch} ${stats.strategy}`).toBe(3072);
    }
  });

  it("--json gives every metric of every strategy, verified", async () => {
    const out = JSON.parse(await migrateCli(["--workload", "poisson", "--pages", "2048", "--rate", "0.2", "--bandwidth", "100mbit", "--rtt", "2ms", "--json"]));
    expect(out).toHaveLength(3);
    expect(out.map((s: MigrationStats) => s.strategy)).toEqual(["precopy", "postcopy", "hybrid"]);
    for (const stats of out) {
      expect(stats.verifiedPages).toBe(2048);
      expect(stats.bandwidth).toBe(100e6);
      expect(stats.rtt).toBe(0.002);
      for (const key of ["totalTime", "setupTime", "downtime", "expectedDowntime", "transferred", "remaining", "duplicate", "normal", "normalBytes", "dirtyPagesRate", "mbps", "dirtySyncCount", "postcopyRequests", "precopyBytes", "downtimeBytes", "postcopyBytes", "cpuThrottlePercentage", "remoteUptime", "pagesTransferred", "workloadSlowdown", "rounds", "wallSeconds"]) {
        expect(stats, key).toHaveProperty(key);
      }
    }
  });

  it("one strategy prints its metrics and rounds; all prints one table with the best marked", async () => {
    const one = await migrateCli(["--workload", "hot-cold", "--pages", "1024", "--strategy", "precopy", "--codec", "lz4", "--downtime-limit", "100ms"]);
    expect(one).toMatch(/total-time/);
    expect(one).toMatch(/dirty-sync-count/);
    expect(one).toMatch(/round\s+pages\s+zero\s+skipped/);
    expect(one).toMatch(/1024 pages verified/);
    const all = await migrateCli(["--workload", "idle", "--pages", "1024"]);
    expect(all).toMatch(/^strategy\s+total-time\s+downtime/m);
    expect(all).toMatch(/\*/);
  });

  it("--start-at: the guest runs that long before the migration starts, as the API's workload advanced by hand", async () => {
    const trace = new URL("../data/redis-sample.ptrace.gz", import.meta.url).pathname;
    const options = ["--trace", trace, "--strategy", "precopy", "--bandwidth", "100mbit", "--rtt", "0.04ms", "--codec", "raw", "--batch", "256"];
    const later = JSON.parse(await migrateCli([...options, "--start-at", "60ms", "--json"]));
    const workload = await openWorkload({ trace });
    try {
      await workload.advance(0.06);
      const expected = await simulate("precopy", workload, { bitsPerSecond: 100e6, rtt: 0.00004 }, { codec: "raw", batchPages: 256 });
      expect(later.rounds).toEqual(JSON.parse(JSON.stringify(expected.rounds)));
      expect(later.downtime).toBe(expected.downtime);
    } finally {
      await workload.close();
      workload.guest.dispose();
    }
    // Not the run from the trace's start.
    expect(JSON.parse(await migrateCli([...options, "--json"])).rounds).not.toEqual(later.rounds);
    await expect(run([...options, "--start-at", "-1s"])).rejects.toThrow(/--start-at must be a duration/);
  });

  it("follows a bandwidth schedule", async () => {
    const args = ["--workload", "idle", "--pages", "2048", "--strategy", "precopy", "--bandwidth", "100mbit", "--json"];
    const flat = JSON.parse(await migrateCli(args));
    const slowed = JSON.parse(await migrateCli([...args, "--schedule", "10ms:10mbit"]));
    expect(slowed.verifiedPages).toBe(2048);
    expect(slowed.totalTime).toBeGreaterThan(flat.totalTime * 3);
    await expect(run([...args, "--schedule", "10ms"])).rejects.toThrow(/AT:RATE/);
    await expect(run([...args, "--schedule", "2s:1mbit,1s:2mbit"])).rejects.toThrow(/time order/);
    await expect(run([...args, "--schedule", "1s:1mbit", "--channel", "loopback"])).rejects.toThrow(/--channel link/);
  });

  it("names a bad option", async () => {
    await expect(run(["--strategy", "sideways"])).rejects.toThrow(UsageError);
    await expect(run(["--strategy", "sideways"])).rejects.toThrow(/--strategy/);
    await expect(run(["--workload", "idle", "--bandwidth", "fast"])).rejects.toThrow(/--bandwidth/);
    await expect(run(["--workload", "idle", "--rtt", "5"])).rejects.toThrow(/--rtt/);
    await expect(run(["--workload", "juggle"])).rejects.toThrow(/unknown MODEL 'juggle'/);
    await expect(run(["--trace", "/nonexistent.ptrace.gz"])).rejects.toThrow(/does not exist/);
    await expect(run(["--workload", "idle", "--trace", "x"])).rejects.toThrow(/not both/);
    await expect(run(["--workload", "idle", "--pages", "64", "--codec", "zip"])).rejects.toThrow(/unknown codec 'zip'/);
  });

  it("marks the lowest value per column, U and slowdown among post-copying strategies only", () => {
    const base = { rounds: [], stopReason: "immediate", cpuThrottlePercentage: 0, postcopyRequests: 0, verifiedPages: 1 } as unknown as MigrationStats;
    const table = comparisonTable([
      { ...base, strategy: "precopy", totalTime: 2, downtime: 0.1, remoteUptime: 0, transferred: 10, pagesTransferred: 5, workloadSlowdown: 1 },
      { ...base, strategy: "postcopy", totalTime: 1, downtime: 0.2, remoteUptime: 0.5, transferred: 20, pagesTransferred: 4, workloadSlowdown: 3 },
      { ...base, strategy: "hybrid", totalTime: 1.5, downtime: 0.2, remoteUptime: 0.3, transferred: 15, pagesTransferred: 6, workloadSlowdown: 2 },
    ]);
    const [, , pre, post, hybrid] = table.split("\n");
    expect(pre).toMatch(/100\.0 ms \*/);
    expect(pre).not.toMatch(/1\.00× \*/);
    expect(post).toMatch(/1\.000 s \*/);
    expect(hybrid).toMatch(/300\.0 ms \*/);
    expect(hybrid).toMatch(/2\.00× \*/);
  });
});

describe("pagemill migrate refuses what it cannot run, naming why", () => {
  const tmp = mkdtempSync(join(tmpdir(), "pagemill-migrate-cli-"));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const bundled = readFileSync(new URL("../data/redis-sample.ptrace.gz", import.meta.url));

  it("option values: negative numbers, a 400-digit rate, an empty codec stage", async () => {
    await expect(run(["--workload", "poisson", "--pages", "64", "--rate", "-1"])).rejects.toThrow(/--rate.*'-1'/);
    await expect(run(["--workload", "idle", "--pages", "-3"])).rejects.toThrow(/--pages must be an integer from 1 to .*'-3'/);
    await expect(run(["--rtt", "-5ms"])).rejects.toThrow(/--rtt must be a duration/);
    for (const args of [["--rate", "-1"], ["--rtt", "-5ms"], ["--bandwidth", `${"9".repeat(400)}mbit`], ["--codec", ""], ["--codec", "lz4+"]]) {
      await expect(run(["--workload", "idle", "--pages", "64", ...args]), args.join(" ")).rejects.toThrow(UsageError);
    }
    await expect(run(["--bandwidth", `${"9".repeat(400)}mbit`])).rejects.toThrow(/--bandwidth must be a rate above 0/);
    await expect(run(["--codec", ""])).rejects.toThrow(/--codec: .*empty stage/);
  });

  it("simulations that would run for hours are refused up front, saying why", async () => {
    const started = performance.now();
    await expect(run(["--bandwidth", "1bit"])).rejects.toThrow(/first pass over 3072 pages .* needs at least 6\.29e\+6 s of virtual time .* past the limit of 86400 s/);
    await expect(run(["--schedule", "0s:1bit"])).rejects.toThrow(/needs at least .* s of virtual time/);
    await expect(run(["--bandwidth", "1mbit", "--max-time", "2s"])).rejects.toThrow(/past the limit of 2 s/);
    await expect(run(["--workload", "poisson", "--rate", "1e6"])).rejects.toThrow(/would write about .* pages during the first pass alone/);
    await expect(run(["--workload", "sweep", "--rate", "100g"])).rejects.toThrow(/would write about .* pages during the first pass alone/);
    await expect(run(["--bandwidth", "1kbit"])).rejects.toThrow(SimulationCostError);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it("--max-time bounds the run itself, not only the estimate made before it starts", async () => {
    // 1 MiB of content over 1 Mbit/s: the estimate (a 16× compression) says 0.5 s, the run takes over 8 s.
    const args = ["--workload", "poisson", "--pages", "256", "--bandwidth", "1mbit", "--strategy", "precopy", "--json"];
    const done = JSON.parse(await migrateCli([...args, "--max-time", "60s"])) as MigrationStats;
    expect(done.totalTime).toBeGreaterThan(8);
    await expect(run([...args, "--max-time", "2s"])).rejects.toThrow(/the migration was still running after 2 s of virtual time, the limit .*--max-time/);
    // A pre-copy that never converges (QEMU's flavour has no cap but the iteration limit) stops at the limit.
    const started = performance.now();
    const sweep = new SweepWorkload(syntheticGuest(512, { seed: 3 }), { rate: 4 * 2 ** 20 });
    try {
      await expect(simulate("precopy", sweep, { bitsPerSecond: 16e6, rtt: 0.002 }, { flavor: "qemu", maxIterations: 1e6, maxTime: 30 })).rejects.toThrow(SimulationCostError);
    } finally {
      await sweep.close();
      sweep.guest.dispose();
    }
    expect(performance.now() - started).toBeLessThan(60_000);
  });

  it("a cost file that is not a cost table", async () => {
    const path = join(tmp, "not-costs.json");
    writeFileSync(path, JSON.stringify({ not: "a cost table" }));
    await expect(run(["--workload", "idle", "--pages", "64", "--cost", path])).rejects.toThrow(/unknown field 'not'/);
  });

  it("a trace that is invalid past the part a run replays: cut in an epoch, time going backwards, trailing bytes, a second gzip member, an interval of 0", async () => {
    const raw = gunzipSync(bundled);
    const zeroInterval = Buffer.from(raw);
    zeroInterval.writeUInt32LE(0, 20);
    // The last epoch record: a run of one fast pre-copy round never reaches it.
    const pageSize = raw.readUInt32LE(8);
    let last = 28 + raw.readUInt32LE(24) + raw.readUInt32LE(12) * pageSize;
    for (let e = 1; e < raw.readUInt32LE(16); e++) last += 12 + raw.readUInt32LE(last + 8) * (4 + pageSize);
    const backwards = Buffer.from(raw);
    backwards.writeUInt32LE(0, last + 4);
    const cases: [string, Buffer, RegExp][] = [
      ["cut-in-epoch", gzipSync(raw.subarray(0, raw.length - 10)), /truncated/],
      ["time-backwards", gzipSync(backwards), /elapsedMicros/],
      ["trailing", gzipSync(Buffer.concat([raw, Buffer.from([1, 2, 3])])), /bytes after the last epoch record/],
      ["two-members", Buffer.concat([gzipSync(raw), gzipSync(Buffer.from("xx"))]), /bytes after the last epoch record/],
      ["zero-interval", gzipSync(zeroInterval), /intervalMicros 0 is below the 1000 µs/],
    ];
    for (const [name, bytes, message] of cases) {
      const path = join(tmp, `${name}.ptrace.gz`);
      writeFileSync(path, bytes);
      // One pre-copy round on a fast link ends long before the bad part.
      await expect(run(["--trace", path, "--strategy", "precopy", "--bandwidth", "100gbit"]), name).rejects.toThrow(message);
    }
  });

  it("--json says every page was verified and in which unit its times are", async () => {
    const out = JSON.parse(await migrateCli(["--workload", "idle", "--pages", "256", "--strategy", "precopy", "--json"]));
    expect(out).toMatchObject({ verified: true, verifiedPages: 256, timeUnit: "s" });
  });
});

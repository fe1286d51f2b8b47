// Ada-copy against the fixed methods (issue 12; seed 000 claims −26% total
// time, −42% downtime, −35% pages against them). Every trace (the bundled
// one, the shared ones, and any in ../traces), seed 001's WAN link (40
// Mbit/s, 5 ms RTT) and a LAN (1 Gbit/s), raw codec, virtual time
// (deterministic: one run each): pre-copy, post-copy, hybrid and Ada-copy's
// T, D and pages sent, and Ada-copy's ratio to the best and the worst fixed
// method in each. Target: within 5% of the best fixed method's T on every
// trace. The traces the rule was tuned on (the bundled and shared ones and
// ../traces) are counted apart from those recorded for the held-out check
// after it was written (../traces/ada-heldout: ADA_HELD_OUT).
// PAGEMILL_ADA_SKIP leaves traces out by name (jvm-churn by default: minutes).
// Ada-copy gets each trace's mean dirty rate as measured before the start
// and the predictor's forecast of each fixed method (its rules 0 and 0f), as
// pagemill migrate gives them; PAGEMILL_ADA_FORECAST=0 leaves the forecast out
// (rules 0-3 alone). PAGEMILL_ADA_DISK=D.ptrace.gz migrates that disk trace
// with every run (its defaults: dedup, prefetch, hot-area), the forecast
// predicting it too; its results are saved apart (ada-disk).
import { fileURLToPath } from "node:url";
import { existsSync } from "node:fs";
import { TraceReplay, init, simulate } from "../dist/index.js";
import { meanDirtyRate, profileTrace, writeRates } from "../dist/adaptive/profile.js";
import { DiskTraceWorkload } from "../dist/guest/disk.js";
import { forecastFixed } from "../dist/adaptive/predict.js";
import { ADA_HELD_OUT, allTraces, check, save, tracesIn } from "./lib.js";

await init();
const BUNDLED = { name: "redis-sample (bundled)", path: fileURLToPath(new URL("../data/redis-sample.ptrace.gz", import.meta.url)) };
const skip = (process.env.PAGEMILL_ADA_SKIP ?? "jvm-churn").split(",");
const wanted = (t) => existsSync(t.path) && !skip.includes(t.name);
const traces = [
  ...[BUNDLED, ...allTraces()].filter(wanted).map((t) => ({ ...t, heldOut: false })),
  ...tracesIn(ADA_HELD_OUT).filter(wanted).map((t) => ({ ...t, name: `${t.name} (held out)`, heldOut: true })),
];
const LINKS = { "40 Mbit/s": { bitsPerSecond: 40e6, rtt: 0.005 }, "1 Gbit/s": { bitsPerSecond: 1e9, rtt: 0.005 } };
const FIXED = ["precopy", "postcopy", "hybrid"];
const METRICS = { T: (s) => s.totalTime, D: (s) => s.downtime, pages: (s) => s.pagesTransferred };
const DISK = process.env.PAGEMILL_ADA_DISK;
const diskProfile = DISK && (await profileTrace(DISK)).memory;
const diskHeat = diskProfile && writeRates(diskProfile);

async function run(strategy, path, link, options = {}) {
  const w = await TraceReplay.open(path);
  const disk = DISK && (await DiskTraceWorkload.open(DISK, diskHeat));
  try {
    const stats = await simulate(strategy, w, link, { ...options, ...(disk && { disk, diskHeat }) });
    check(stats.verifiedPages === w.guest.pageCount, `${strategy} on ${path}: ${stats.verifiedPages} of ${w.guest.pageCount} verified`);
    check(!disk || stats.disk.verifiedBlocks === disk.guest.pageCount, `${strategy} on ${path}: disk not all verified`);
    return stats;
  } finally {
    await w.close();
    w.guest.dispose();
    if (disk) {
      await disk.close();
      disk.guest.dispose();
    }
  }
}

const results = {};
/** runs within 5% of the best fixed T, and runs, of the tuning set and the held-out set */
const count = { tuned: [0, 0], heldOut: [0, 0] };
for (const [linkName, link] of Object.entries(LINKS)) {
  console.log(`\n${linkName}, 5 ms RTT, raw${DISK ? `, disk ${DISK}` : ""}: T s / D ms / pages; Ada-copy's ratio to the best and worst fixed method`);
  for (const { name, path, heldOut } of traces) {
    const stats = {};
    for (const strategy of FIXED) stats[strategy] = await run(strategy, path, link);
    const { memory } = await profileTrace(path);
    const forecast = process.env.PAGEMILL_ADA_FORECAST === "0" ? {} : { forecast: forecastFixed(memory, { ...link, ...(diskProfile && { disk: { profile: diskProfile } }) }) };
    stats.ada = await run("ada", path, link, { dirtyRateBefore: meanDirtyRate(memory), ...forecast });
    const ada = stats.ada;
    const row = { decision: `${ada.adaptive.method}: ${ada.adaptive.reason}` };
    const cells = [];
    for (const [metric, of] of Object.entries(METRICS)) {
      const fixed = FIXED.map((f) => of(stats[f]));
      const best = Math.min(...fixed);
      const worst = Math.max(...fixed);
      row[metric] = { ...Object.fromEntries(FIXED.map((f) => [f, of(stats[f])])), ada: of(ada), vsBest: of(ada) / best, vsWorst: of(ada) / worst };
      cells.push(`${metric} ${(of(ada) / best).toFixed(3)}× best, ${(of(ada) / worst).toFixed(3)}× worst`);
    }
    const tally = count[heldOut ? "heldOut" : "tuned"];
    if (row.T.vsBest <= 1.05) tally[0]++;
    tally[1]++;
    results[`${linkName} ${name}`] = row;
    const fmt = (s) => `${s.totalTime.toFixed(2)} / ${(s.downtime * 1000).toFixed(0)} / ${s.pagesTransferred}`;
    console.log(`  ${name}: ${[...FIXED, "ada"].map((f) => `${f} ${fmt(stats[f])}`).join("; ")}`);
    console.log(`    Ada-copy → ${row.decision}`);
    console.log(`    ${cells.join("; ")}`);
  }
}
console.log(`\nAda-copy's T within 5% of the best fixed method: tuning traces ${count.tuned[0]} of ${count.tuned[1]} runs, held-out traces ${count.heldOut[0]} of ${count.heldOut[1]}`);
save(DISK ? "ada-disk" : "ada", results);

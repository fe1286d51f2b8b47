// Checkpoint + trace/replay (a MODEL: src/engine/crtr.ts) against pre-copy,
// as CR/TR-Motion (Liu et al., HPDC'09) compares itself: downtime, total
// time, and the data sent to synchronise the state after the first full
// copy (pre-copy: the rounds after round 1 and the stop-and-copy; CR/TR: the
// log). It claims up to −72.4% downtime, −31.5% total time, −95.9% data.
// Every trace (bundled, shared, ../traces; PAGEMILL_CRTR_SKIP names some to
// leave out, jvm-churn by default), 40 Mbit/s and 5 ms RTT, raw codec,
// virtual time (one run each), the default log rate at replay speeds 1.25,
// 2 (the default) and 4.
import { fileURLToPath } from "node:url";
import { existsSync } from "node:fs";
import { TraceReplay, init, simulate } from "../dist/index.js";
import { allTraces, check, save } from "./lib.js";

await init();
const BUNDLED = { name: "redis-sample (bundled)", path: fileURLToPath(new URL("../data/redis-sample.ptrace.gz", import.meta.url)) };
const skip = (process.env.PAGEMILL_CRTR_SKIP ?? "jvm-churn").split(",");
const traces = [BUNDLED, ...allTraces().filter((t) => existsSync(t.path) && !skip.includes(t.name))];
const LINK = { bitsPerSecond: 40e6, rtt: 0.005 };
const SPEEDS = [1.25, 2, 4];

async function run(strategy, path, options = {}) {
  const w = await TraceReplay.open(path);
  try {
    const stats = await simulate(strategy, w, LINK, options);
    check(stats.verifiedPages === w.guest.pageCount, `${strategy} on ${path}: ${stats.verifiedPages} of ${w.guest.pageCount} verified`);
    return stats;
  } finally {
    await w.close();
    w.guest.dispose();
  }
}

/** Bytes sent to synchronise after the first full copy. */
const syncBytes = (s) => (s.crtr ? s.transferred - s.crtr.checkpointBytes : s.transferred - s.rounds[0].bytes);
const pct = (x, base) => `${x < base ? "" : "+"}${((100 * (x - base)) / base).toFixed(1)}%`;

const results = {};
console.log("40 Mbit/s, 5 ms RTT, raw; CR/TR is a model (log 16 KiB/s of execution, replay at the speed given)");
for (const { name, path } of traces) {
  const pre = await run("precopy", path);
  const row = { precopy: { T: pre.totalTime, D: pre.downtime, transferred: pre.transferred, sync: syncBytes(pre), stop: pre.stopReason } };
  console.log(`\n  ${name}: pre-copy T ${pre.totalTime.toFixed(2)} s, D ${(pre.downtime * 1000).toFixed(0)} ms, ${(pre.transferred / 2 ** 20).toFixed(1)} MiB (after round 1: ${(syncBytes(pre) / 2 ** 20).toFixed(2)} MiB), ${pre.stopReason}`);
  for (const replaySpeed of SPEEDS) {
    const s = await run("crtr", path, { replaySpeed });
    row[`crtr ×${replaySpeed}`] = { T: s.totalTime, D: s.downtime, transferred: s.transferred, sync: syncBytes(s), stop: s.stopReason, iterations: s.crtr.iterations };
    console.log(
      `    crtr (model) ×${replaySpeed}: T ${s.totalTime.toFixed(2)} s (${pct(s.totalTime, pre.totalTime)}), D ${(s.downtime * 1000).toFixed(0)} ms (${pct(s.downtime, pre.downtime)}), ` +
        `${(s.transferred / 2 ** 20).toFixed(1)} MiB (${pct(s.transferred, pre.transferred)}), after the checkpoint ${(syncBytes(s) / 2 ** 20).toFixed(2)} MiB (${pct(syncBytes(s), syncBytes(pre))}), ${s.crtr.iterations} logs, ${s.stopReason}`,
    );
  }
  results[name] = row;
}
save("crtr", results);

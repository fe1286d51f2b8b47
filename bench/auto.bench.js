// Codec auto against each fixed codec it chooses among (raw, LZ4, MECOM):
// total time of a pre-copy migration, in virtual time (default cost table,
// 1 ms RTT), at 10 Mbit/s, 1 Gbit/s and 10 Gbit/s, of every trace (the
// shared ones and any recorded into ../traces; each replayed once, then idle).
// Target (issue 10): auto's total time within 5% of the best fixed codec's,
// on every trace at every bandwidth. Virtual time does not depend on the
// machine's load, so one run of each suffices.
import { init, simulate, TraceReplay } from "../dist/index.js";
import { allTraces, check, save } from "./lib.js";

await init();
const BANDWIDTHS = [10e6, 1e9, 10e9];
const CODECS = ["raw", "lz4", "mecom", "auto"];
const label = (bps) => (bps >= 1e9 ? `${bps / 1e9} Gbit/s` : `${bps / 1e6} Mbit/s`);

const results = {};
const rows = [];
for (const { name, path } of allTraces()) {
  results[name] = {};
  for (const bitsPerSecond of BANDWIDTHS) {
    const times = {};
    let choices;
    let refused;
    for (const codec of CODECS) {
      const workload = await TraceReplay.open(path, { loop: false });
      try {
        let stats;
        try {
          stats = await simulate("precopy", workload, { bitsPerSecond, rtt: 0.001 }, { codec });
        } catch (err) {
          // The engine refuses runs it judges too long (SimulationCostError): say so and go on.
          if (err?.constructor?.name !== "SimulationCostError") throw err;
          refused = err.message;
          break;
        }
        check(stats.verifiedPages === workload.guest.pageCount, `${name} ${codec} ${label(bitsPerSecond)} verified`);
        times[codec] = stats.totalTime;
        if (codec === "auto") choices = stats.codecStats.choices;
      } finally {
        await workload.close();
        workload.guest.dispose();
      }
    }
    if (refused) {
      console.log(`${name.padEnd(18)} ${label(bitsPerSecond).padStart(10)}  skipped: ${refused}`);
      continue;
    }
    const best = CODECS.filter((c) => c !== "auto").reduce((a, b) => (times[a] <= times[b] ? a : b));
    const behind = times.auto / times[best];
    results[name][label(bitsPerSecond)] = { times, best, autoOverBest: behind, choices };
    rows.push({ name, bandwidth: label(bitsPerSecond), times, best, behind, choices });
    console.log(
      `${name.padEnd(18)} ${label(bitsPerSecond).padStart(10)}  ${CODECS.map((c) => `${c} ${times[c].toFixed(3)} s`).join("  ")}  best ${best}; auto/best ${behind.toFixed(3)}x ${behind <= 1.05 ? "met" : "NOT MET"}  (auto pages: ${JSON.stringify(choices)})`,
    );
  }
}
console.log("\nauto / best fixed codec, pre-copy total time (virtual):");
console.log(`  ${"trace".padEnd(18)} ${BANDWIDTHS.map((b) => label(b).padStart(12)).join("")}`);
for (const name of Object.keys(results)) {
  console.log(`  ${name.padEnd(18)} ${BANDWIDTHS.map((b) => (results[name][label(b)] ? `${results[name][label(b)].autoOverBest.toFixed(3)}x` : "skipped").padStart(12)).join("")}`);
}
save("auto", results);

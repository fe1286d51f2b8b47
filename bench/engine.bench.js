// Engines: wall time to live-migrate a large synthetic guest with each
// strategy, in virtual time (simulated 10 Gbit/s link, 1 ms RTT, default cost
// table) but with every page really zero-scanned, framed, decoded and
// checked at the end.
//
// The guest: PAGEMILL_ENGINE_GIB GiB (4 by default) of the redis trace's
// image profile (45% zero pages, most others highly compressible, a tail of
// incompressible ones: syntheticGuest), running a Poisson workload with the
// redis trace's write-content model at 2 writes/s per 1000 pages (hot-cold:
// 10% of the pages take 90% of the writes).
//
// Targets (issue 13): <= 0.8 s of wall time per GiB of guest for pre-copy
// with the raw codec on a 4 GiB guest (issue 6's was 4), wall / virtual time
// <= 1 (the emulation outruns the 10 Gbit/s link it models), and peak RSS /
// populated bytes <= 1.3 (printed once: the peak of the whole run).
//
// A guest larger than this machine: PAGEMILL_ENGINE_GIB=64
// PAGEMILL_ENGINE_POPULATED_GIB=8 PAGEMILL_ENGINE_STRATEGIES=precopy (the
// guest is sparse: only its populated bytes are held; target peak RSS
// <= 12 GiB).
import { PoissonWorkload, syntheticGuest } from "../dist/guest/workloads.js";
import { init, simulate, STRATEGY_NAMES } from "../dist/index.js";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { check, save } from "./lib.js";

/**
 * CPU seconds of this thread so far (Linux: /proc; undefined elsewhere). On
 * a loaded machine the wall time of a run says little; the migration
 * thread's CPU bounds how fast it could go with a core to itself.
 */
function threadCpu() {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

await init();
const GIB = Number(process.env.PAGEMILL_ENGINE_GIB ?? 4);
const PAGES = Math.round((GIB * 2 ** 30) / 4096);
const POPULATED_GIB = process.env.PAGEMILL_ENGINE_POPULATED_GIB === undefined ? undefined : Number(process.env.PAGEMILL_ENGINE_POPULATED_GIB);
const STRATEGIES = (process.env.PAGEMILL_ENGINE_STRATEGIES ?? STRATEGY_NAMES.join(",")).split(",");
const LINK = { bitsPerSecond: 10e9, rtt: 0.001 };
const CODECS = (process.env.PAGEMILL_ENGINE_CODECS ?? "raw").split(",");

let started = performance.now();
const guest = syntheticGuest(PAGES, { profile: "redis", seed: 1, populated: POPULATED_GIB === undefined ? undefined : (POPULATED_GIB * 2 ** 30) / 4096 });
const ZERO_PAGE = Buffer.alloc(4096);
let populated = 0;
for (let page = 0; page < PAGES; page++) if (!guest.memory.isZero(page) && !ZERO_PAGE.equals(guest.page(page))) populated += 4096;
console.log(
  `synthetic guest: ${PAGES} pages (${((PAGES * 4096) / 2 ** 30).toFixed(2)} GiB, ${(populated / 2 ** 30).toFixed(2)} GiB populated) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
);

let seed = 1;
/** A fresh workload on the same guest memory (its content drifts between runs: any content must migrate). */
function workload() {
  return new PoissonWorkload(guest, { rate: 0.002, popularity: { kind: "hot-cold", hotPages: 0.1, hotWrites: 0.9 }, content: "redis", seed: seed++ });
}

// Timed by hand rather than with lib.js suite(): one run takes many seconds,
// and benny probes a case by calling it more than once, which would start
// migrations of the same guest concurrently.
const RUNS = Number(process.env.PAGEMILL_ENGINE_RUNS ?? 2);
const median = (xs) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

// Channel counts to run each codec with (QEMU's multifd; issue 13's target: 2 channels >= 1.7x one, MECOM, wall time).
const CHANNELS = (process.env.PAGEMILL_ENGINE_CHANNELS ?? "1").split(",").map(Number);

const results = {};
for (const codec of CODECS) for (const channels of CHANNELS) {
  console.log(`\nmigrate ${GIB} GiB synthetic guest, codec ${codec}, ${channels} channel${channels === 1 ? "" : "s"}, 10 Gbit/s, 1 ms RTT (${RUNS} runs each, median)`);
  for (const strategy of STRATEGIES) {
    const walls = [];
    const cpus = [];
    const threadCpus = [];
    let stats;
    for (let run = 0; run < RUNS; run++) {
      started = performance.now();
      const cpu = process.cpuUsage();
      const thread = threadCpu();
      stats = await simulate(strategy, workload(), LINK, { codec, channels });
      walls.push((performance.now() - started) / 1000);
      const used = process.cpuUsage(cpu);
      cpus.push((used.user + used.system) / 1e6);
      if (thread !== undefined) threadCpus.push(threadCpu() - thread);
      // Checked on every run: the migration completed and every page verified.
      check(stats.verifiedPages === PAGES, `${strategy}/${codec} verified ${stats.verifiedPages} of ${PAGES} pages`);
    }
    const wall = median(walls);
    const cpu = median(cpus);
    const row = {
      medianMs: wall * 1000,
      secondsPerGiB: wall / GIB,
      targetSecondsPerGiB: 0.8,
      wallPerVirtual: wall / stats.totalTime,
      mbps: (PAGES * 4096) / wall / 1e6,
      runs: walls,
      // CPU time of this process (user + system): what the wall time would be on an idle machine.
      cpuSecondsPerGiB: cpu / GIB,
      cpuRuns: cpus,
      // CPU of the migration's own thread (the channels' threads and the runtime's apart).
      ...(threadCpus.length && { threadCpuSecondsPerGiB: median(threadCpus) / GIB, threadCpuRuns: threadCpus }),
      virtualTotalTime: stats.totalTime,
      downtime: stats.downtime,
      rounds: stats.rounds.length,
      transferred: stats.transferred,
    };
    const one = results[`${strategy} ${codec}`];
    if (channels > 1 && one) {
      row.speedupOverOneChannel = one.medianMs / row.medianMs;
      // Load-independent: how much less the migration's own thread works than with one channel (the bound on the speed-up while that thread is the busiest; the channels' threads are not counted).
      if (one.threadCpuSecondsPerGiB && row.threadCpuSecondsPerGiB) row.threadCpuRatio = one.threadCpuSecondsPerGiB / row.threadCpuSecondsPerGiB;
      // Load-independent too: the best wall time this machine allows whatever the scheduling (the busiest thread's CPU, or all
      // the CPU spread over every core) against one channel's on an idle machine (its migration thread's CPU).
      if (one.threadCpuSecondsPerGiB && row.threadCpuSecondsPerGiB) {
        row.speedupBoundOnCores = one.threadCpuSecondsPerGiB / Math.max(row.threadCpuSecondsPerGiB, row.cpuSecondsPerGiB / availableParallelism());
      }
    }
    results[`${strategy} ${codec}${channels === 1 ? "" : ` ${channels} channels`}`] = row;
    console.log(
      `  ${`${strategy}/${codec}`.padEnd(16)} ${wall.toFixed(2).padStart(6)} s wall  ${row.secondsPerGiB.toFixed(2)} s/GiB (target <= 0.8; cpu ${row.cpuSecondsPerGiB.toFixed(2)} s/GiB${row.threadCpuSecondsPerGiB === undefined ? "" : `, the migration's thread ${row.threadCpuSecondsPerGiB.toFixed(2)}`})  ${row.mbps.toFixed(0)} MB/s;` +
        ` wall/virtual ${row.wallPerVirtual.toFixed(2)} (target <= 1);` +
        ` virtual: total ${stats.totalTime.toFixed(3)} s, downtime ${(stats.downtime * 1000).toFixed(1)} ms, ${stats.rounds.length} rounds, ${(stats.transferred / 2 ** 30).toFixed(2)} GiB sent` +
        (row.speedupOverOneChannel ? `; ${row.speedupOverOneChannel.toFixed(2)}x one channel's wall time (target >= 1.7 for MECOM)` : "") +
        (row.threadCpuRatio ? `; migration thread CPU ${row.threadCpuRatio.toFixed(2)}x less than one channel's` : "") +
        (row.speedupBoundOnCores ? `; at most ${row.speedupBoundOnCores.toFixed(2)}x on ${availableParallelism()} cores with this CPU` : ""),
    );
  }
}
guest.dispose();
// maxRSS is in KiB: the peak of the whole run, source and destination memory together.
const peakRss = process.resourceUsage().maxRSS * 1024;
console.log(`\npeak RSS ${(peakRss / 2 ** 30).toFixed(2)} GiB = ${(peakRss / populated).toFixed(2)} x the populated bytes (target <= 1.3${GIB >= 64 ? "; <= 12 GiB for 64 GiB with 8 populated" : ""})`);
save(GIB === 4 && POPULATED_GIB === undefined ? "engine" : `engine-${GIB}g${POPULATED_GIB === undefined ? "" : `-${POPULATED_GIB}g`}`, { gib: GIB, link: LINK, populatedBytes: populated, peakRss, peakRssPerPopulated: peakRss / populated, results });

// Storage (issue 11): memory and disk migrated together over seed 001's WAN
// link (40 Mbit/s, 5 ms RTT), the bundled redis trace as memory, and as
// disk either the shipped SQLite storage trace (data/sqlite-disk.ptrace.gz)
// or the OLTP block model ("moderately I/O intensive": 300 block writes/s, a
// hot area of 5% of the blocks taking 80% of them) over a 64 MiB disk full
// of data. FlimCD's ideas (seed 003) against plain storage pre-copy (QEMU's
// drive-mirror: no dedup, blocks in order), each switched on alone and
// together; post-copy's block misses with and without prefetching.
//
// Migration figures are virtual time (deterministic: one run each). MD5's
// share is wall time, medians of 3 runs: the MD5 batch kernel's time over
// the disk pipeline's (MD5 + the encoding of the blocks sent) in the same
// runs.
import { fileURLToPath } from "node:url";
import { init, simulate } from "../dist/index.js";
import { TraceReplay } from "../dist/guest/workloads.js";
import { DiskTraceWorkload, modelDisk } from "../dist/guest/disk.js";
import { profileTrace, writeRates } from "../dist/adaptive/profile.js";
import { save } from "./lib.js";

await init();
const MEMORY = fileURLToPath(new URL("../data/redis-sample.ptrace.gz", import.meta.url));
const DISK_TRACE = fileURLToPath(new URL("../data/sqlite-disk.ptrace.gz", import.meta.url));
const LINK = { bitsPerSecond: 40e6, rtt: 0.005 };
const traceHeat = writeRates((await profileTrace(DISK_TRACE)).memory);

/** The OLTP model's write rates (they depend on the seed and the disk's size, not its content). */
function oltpHeat() {
  const w = modelDisk("oltp", 16384, { filled: 0, seed: 1 });
  const rates = w.blockRates();
  w.guest.dispose();
  return rates;
}

const DISKS = {
  "sqlite trace": { open: () => DiskTraceWorkload.open(DISK_TRACE, traceHeat), heat: traceHeat },
  "oltp model (64 MiB)": { open: async () => modelDisk("oltp", 16384, { filled: 1, seed: 1 }), heat: oltpHeat() },
};

async function once(strategy, disk, options) {
  const memory = await TraceReplay.open(MEMORY);
  const d = await disk.open();
  const wall = performance.now();
  try {
    const stats = await simulate(strategy, memory, LINK, { ...options, disk: d, diskHeat: disk.heat });
    return { stats, wall: (performance.now() - wall) / 1000 };
  } finally {
    await memory.close();
    await d.close();
    memory.guest.dispose();
    d.guest.dispose();
  }
}

const PLAIN = { diskDedup: false, hotArea: false, prefetch: false };
const VARIANTS = [
  ["plain storage pre-copy", PLAIN],
  ["+ dedup", { ...PLAIN, diskDedup: true }],
  ["+ hot-area", { ...PLAIN, hotArea: true }],
  ["+ dedup + hot-area", { ...PLAIN, diskDedup: true, hotArea: true }],
];
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const results = {};
for (const [name, disk] of Object.entries(DISKS)) {
  console.log(`\n${name} + bundled redis memory, 40 Mbit/s, 5 ms RTT, pre-copy`);
  console.log("variant                      total-time  downtime   disk bytes   blocks  dedup  passes   ratio T");
  const rows = {};
  let base;
  for (const [variant, options] of VARIANTS) {
    const { stats } = await once("precopy", disk, options);
    base ??= stats.totalTime;
    const d = stats.disk;
    rows[variant] = { totalTime: stats.totalTime, downtime: stats.downtime, diskBytes: d.bytes, blocksSent: d.blocksSent, dedupHits: d.dedupHits, passes: d.passes, ratio: stats.totalTime / base };
    console.log(
      `${variant.padEnd(27)} ${stats.totalTime.toFixed(3).padStart(9)} s ${(stats.downtime * 1000).toFixed(1).padStart(6)} ms ${(d.bytes / 2 ** 20).toFixed(2).padStart(8)} MiB ${String(d.blocksSent).padStart(8)} ${String(d.dedupHits).padStart(6)} ${String(d.passes).padStart(7)} ${(stats.totalTime / base).toFixed(3).padStart(8)}×`,
    );
  }
  console.log(`\n${name}: post-copy block misses`);
  const off = (await once("postcopy", disk, PLAIN)).stats.disk;
  const on = (await once("postcopy", disk, { ...PLAIN, prefetch: true })).stats.disk;
  console.log(`  prefetch off: ${off.blockMisses} misses; on: ${on.blockMisses} misses, ${on.prefetchedBlocks} blocks prefetched (${(on.blockMisses / Math.max(1, off.blockMisses)).toFixed(3)}×)`);
  rows.postcopy = { missesOff: off.blockMisses, missesOn: on.blockMisses, prefetched: on.prefetchedBlocks };

  // MD5's share: wall time of MD5 (candidates only) over the disk pipeline's (MD5 + the index's XXH3 + encoding the blocks sent),
  // and the modelled CPU it is charged over the source's whole (memory and disk), raw and LZ4.
  for (const codec of ["raw", "lz4"]) {
    const shares = [];
    let modelled = 0;
    for (let run = 0; run < 3; run++) {
      const { stats } = await once("precopy", disk, { ...PLAIN, diskDedup: true, hotArea: true, codec });
      const d = stats.disk;
      shares.push(d.md5WallSeconds / (d.md5WallSeconds + d.xxh3WallSeconds + d.encodeWallSeconds));
      modelled = d.md5Cpu / stats.sourceCpu;
    }
    console.log(
      `  MD5, codec ${codec}: ${(100 * median(shares)).toFixed(1)}% of the disk pipeline's wall time (median of 3: ${shares.map((x) => (100 * x).toFixed(1)).join(", ")}%), ${(100 * modelled).toFixed(1)}% of the source's modelled CPU`,
    );
    rows[`md5 ${codec}`] = { wallShare: median(shares), modelledShare: modelled };
  }
  results[name] = rows;
}
save("storage", results);

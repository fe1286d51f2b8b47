import { describe, expect, it } from "vitest";
import { fileURLToPath } from "node:url";
import { BLOCK_MODELS, DiskTraceWorkload, modelDisk, newDisk } from "../src/guest/disk.js";
import type { AccessHook, AccessKind, Workload } from "../src/guest/guest.js";
import { IdleWorkload, PoissonWorkload, TraceReplay, syntheticGuest } from "../src/guest/workloads.js";
import fc from "fast-check";
import { simulate } from "../src/engine/migrate.js";
import { SwitchoverView } from "../src/engine/frozen.js";
import type { MigrationStats, StrategyName } from "../src/engine/metrics.js";
import type { SimulationOptions } from "../src/engine/migrate.js";
import { CodecError } from "../src/errors.js";
import { FrameFlags, checkValue, encodeControl, readControl, readFrameHeader } from "../src/wire/frame.js";
import { decodeFrame } from "../src/wire/decoder.js";
import { md5 } from "../src/hash/md5.js";
import { normaliseOptions } from "../src/engine/options.js";
import { Source } from "../src/engine/source.js";
import { MD5_BYTES_PER_SECOND } from "../src/engine/storage.js";
import { CostModel, DEFAULT_COSTS } from "../src/codecs/cost.js";
import { Destination } from "../src/engine/destination.js";
import { differingPages } from "../src/guest/pages.js";
import { Tasks } from "../src/engine/tasks.js";
import { VirtualClock } from "../src/clock.js";
import { run as migrateRun } from "../src/cli/migrate.js";
import { commandOutput, migrateCli } from "./helpers/migrate.js";
import { run as compareRun } from "../src/cli/compare.js";

const MEMORY_TRACE = fileURLToPath(new URL("../data/redis-sample.ptrace.gz", import.meta.url));
const DISK_TRACE = fileURLToPath(new URL("../data/sqlite-disk.ptrace.gz", import.meta.url));
const WAN = { bitsPerSecond: 40e6, rtt: 0.005 };
/** npm run fuzz scales the property test up. */
const PAGEMILL_FUZZ = Boolean(process.env.PAGEMILL_FUZZ);
const STRATEGIES: StrategyName[] = ["precopy", "postcopy", "hybrid"];

async function run(strategy: StrategyName, memory: () => Promise<Workload> | Workload, disk: () => Promise<Workload> | Workload, options: SimulationOptions = {}): Promise<MigrationStats> {
  const workload = await memory();
  const d = await disk();
  try {
    return await simulate(strategy, workload, WAN, { ...options, disk: d });
  } finally {
    await workload.close();
    await d.close();
    workload.guest.dispose();
    d.guest.dispose();
  }
}

const traceMemory = () => TraceReplay.open(MEMORY_TRACE);
const traceDisk = () => DiskTraceWorkload.open(DISK_TRACE, undefined);
const smallMemory = () => new IdleWorkload(syntheticGuest(256));

describe("memory and disk in one migration", () => {
  for (const strategy of STRATEGIES) {
    for (const codec of ["raw", "mecom"]) {
      it(`${strategy} (${codec}) of the bundled trace with the shipped disk trace ends with every page and block verified`, async () => {
        const stats = await run(strategy, traceMemory, traceDisk, { codec });
        expect(stats.verifiedPages).toBe(3072);
        expect(stats.disk!.verifiedBlocks).toBe(stats.disk!.blockCount);
        expect(stats.disk!.blocksSent + stats.disk!.dedupHits).toBeGreaterThanOrEqual(stats.disk!.blockCount - 1);
        if (strategy !== "precopy") expect(stats.remoteUptime).toBeGreaterThan(0);
      });
    }
  }

  it("sends memory bytes + disk bytes + framing, nothing else", async () => {
    // Pre-copy without dedup: the destination sends nothing back.
    const plain = await run("precopy", traceMemory, traceDisk, { diskDedup: false });
    expect(plain.transferred).toBe(plain.codecStats.frameBytes + plain.disk!.bytes);
    // With dedup, the destination says "done" once it holds every block.
    const dedup = await run("precopy", traceMemory, () => modelDisk("oltp", 2048), {});
    const done = encodeControl({ type: "done", memoryBytes: 3072 * 4096, digestName: "none", digest: new Uint8Array(0) }, 0).byteLength;
    expect(dedup.transferred).toBe(dedup.codecStats.frameBytes + dedup.disk!.bytes + done);
    expect(dedup.disk!.dedupHits).toBeGreaterThan(0);
  });

  it("leaves memory's figures as they were when the disk is idle and tiny next to the link", async () => {
    const alone = await simulate("precopy", await traceMemory(), WAN, {});
    const withDisk = await run("precopy", traceMemory, () => new IdleWorkload(newDisk(1)), { diskDedup: false });
    expect(withDisk.pagesTransferred).toBe(alone.pagesTransferred);
    expect(withDisk.codecStats.frameBytes).toBe(alone.codecStats.frameBytes);
  });
});

describe("dedup of dirty blocks", () => {
  it("never writes a wrong block: collisions forced through the hook are refused and fetched", async () => {
    for (const strategy of ["precopy", "hybrid"] as const) {
      const memory = syntheticGuest(256);
      const page0 = md5(memory.page(0));
      let forced = 0;
      const stats = await run(strategy, () => new IdleWorkload(memory), () => modelDisk("oltp", 1024, { seed: 9 }), {
        // Every seventh block claims to be memory page 0, with page 0's MD5: an MD5 collision, as far as the digests go.
        dedupProbe: (block) => {
          if (block % 7 !== 3) return undefined;
          forced++;
          return { space: "memory", index: 0, md5: Buffer.from(page0).toString("hex") };
        },
      });
      expect(forced).toBeGreaterThan(0);
      expect(stats.disk!.dedupRefused).toBe(forced);
      expect(stats.disk!.dedupFromMemory).toBe(forced);
      expect(stats.disk!.verifiedBlocks).toBe(1024);
    }
  });

  it("finds blocks equal to memory pages already sent; the destination rebuilds them; the index's digests cost the cost table's hash rate", async () => {
    for (const cost of [undefined, new CostModel({ ...DEFAULT_COSTS, hash: 1e9 })]) {
      const memory = syntheticGuest(64, { seed: 4 });
      const disk = newDisk(128);
      // Blocks 0..63 and 64..127: memory's pages (a page cache written out, twice).
      for (let p = 0; p < 64; p++) {
        disk.memory.write(p, memory.page(p));
        disk.memory.write(p + 64, memory.page(p));
      }
      const frames: Uint8Array[] = [];
      const channel = { send: async (f: Uint8Array) => void frames.push(f), receive: () => Promise.resolve(frames.shift()), rtt: 0, sentBytes: 0, close: () => {} };
      const settings = normaliseOptions({ codec: "lz4", cost }, memory, disk);
      const clock = new VirtualClock();
      const tasks = new Tasks();
      const source = new Source({ settings, workload: new IdleWorkload(memory), disk: new IdleWorkload(disk), clock, channel, tasks });
      const pages = Array.from({ length: 64 }, (_, p) => p);
      await clock.run(async () => {
        await source.sendPages(pages);
        await source.sendBlocks(pages, true);
        await source.sendBlocks(pages.map((p) => p + 64), true);
      });
      const nonZero = pages.filter((p) => memory.page(p).some((x) => x !== 0));
      const { dedupHits, dedupFromMemory } = source.disk!.stats;
      // Every non-zero block is a reference, to the memory page first sent with its content.
      expect(dedupHits).toBe(2 * nonZero.length);
      expect(dedupFromMemory).toBe(dedupHits);
      // MD5 digests the candidates only (their references carry it); XXH3 every page and block sent.
      expect(source.disk!.stats.md5Cpu).toBeCloseTo((dedupHits * 4096) / MD5_BYTES_PER_SECOND, 12);
      // The default table's 10 GB/s, or the 1 GB/s given (a constant rate passed the first only).
      expect(source.disk!.stats.xxh3Cpu).toBeCloseTo((3 * 64 * 4096) / (cost ? 1e9 : 10e9), 12);
      // A destination built from the frames alone holds the disk.
      const destination = new Destination({ settings, clock, channel, tasks, shared: { original: (p) => memory.page(p), preserve: () => {}, release: () => {} }, disk: { workload: new IdleWorkload(disk), original: (b) => disk.page(b), preserve: () => {}, release: () => {} } });
      await clock.run(() => Promise.race([destination.receive(), tasks.failed]));
      expect(differingPages(destination.diskMemory!, disk.memory)).toEqual([]);
      source.dispose();
      destination.dispose();
      memory.dispose();
      disk.dispose();
    }
  });
});

/** Logs every access of `w`'s guest, then calls the hook the engine sets. */
function logAccesses(w: Workload, log: { at: number; kind: AccessKind | "arrive" }[]): void {
  let inner: AccessHook | undefined;
  Object.defineProperty(w.guest, "hook", {
    configurable: true,
    get: () => (inner ? (p: number, kind: AccessKind) => (log.push({ at: p, kind }), inner!(p, kind)) : undefined),
    set: (hook: AccessHook | undefined) => (inner = hook),
  });
}

describe("post-copy block misses and whole-block overwrites", () => {
  it("equal a brute-force count over the accesses and arrivals, in order", async () => {
    let overwritesSeen = 0;
    for (const seed of [1, 2, 3]) {
      const log: { at: number; kind: AccessKind | "arrive" }[] = [];
      const disk = modelDisk("read-mostly", 256, { seed });
      const release = SwitchoverView.prototype.release;
      // A block's switch-over copy is released exactly when it arrives (becomes present) at the destination.
      SwitchoverView.prototype.release = function (this: SwitchoverView, p: number) {
        if ((this as unknown as { guest: unknown }).guest === disk.guest) log.push({ at: p, kind: "arrive" });
        return release.call(this, p);
      };
      let stats: MigrationStats;
      try {
        logAccesses(disk, log);
        stats = await run("postcopy", smallMemory, () => disk, { prefetch: false, diskDedup: false });
      } finally {
        SwitchoverView.prototype.release = release;
      }
      // Sent blocks are exactly the pending ones (each once): the others were present from the switch-over.
      const present = new Set<number>(Array.from({ length: 256 }, (_, b) => b));
      for (const e of log) if (e.kind === "arrive") present.delete(e.at);
      let misses = 0;
      let overwrites = 0;
      for (const e of log) {
        if (e.kind === "overwrite" && !present.has(e.at)) overwrites++;
        if (e.kind === "arrive" || e.kind === "overwrite") present.add(e.at);
        else if (!present.has(e.at)) misses++;
      }
      expect(stats.disk!.blockMisses).toBe(misses);
      expect(misses).toBeGreaterThan(0);
      expect(stats.disk!.blockOverwrites).toBe(overwrites);
      overwritesSeen += overwrites;
    }
    expect(overwritesSeen).toBeGreaterThan(0);
  });
});

describe("FlimCD's switches, measured on and off", () => {
  it("prefetch lowers the block misses of sequential reads in post-copy", async () => {
    const model = { ...BLOCK_MODELS["read-mostly"], reads: { ...BLOCK_MODELS["read-mostly"].reads, sequentialShare: 0.5 } };
    const disk = () => modelDisk(model, 8192, { seed: 2, filled: 1 });
    const off = await run("postcopy", smallMemory, disk, { prefetch: false });
    const on = await run("postcopy", smallMemory, disk, { prefetch: true });
    expect(on.disk!.prefetchedBlocks).toBeGreaterThan(0);
    expect(off.disk!.prefetchedBlocks).toBe(0);
    expect(on.disk!.blockMisses).toBeLessThan(off.disk!.blockMisses);
    expect(on.disk!.verifiedBlocks).toBe(8192);
  });

  it("hot-area scheduling sends fewer blocks in pre-copy when the hot area is known", async () => {
    const make = () => modelDisk("oltp", 16384, { seed: 5, filled: 1 });
    const heat = make();
    const rates = heat.blockRates();
    heat.guest.dispose();
    const off = await run("precopy", smallMemory, make, { hotArea: false, diskDedup: false });
    const on = await run("precopy", smallMemory, make, { hotArea: true, diskHeat: rates, diskDedup: false });
    expect(on.disk!.blocksSent).toBeLessThan(off.disk!.blocksSent);
    expect(on.disk!.verifiedBlocks).toBe(16384);
  });
});

describe("bad input", () => {
  it("options naming the disk wrongly are refused before anything runs", async () => {
    await expect(run("precopy", smallMemory, () => new IdleWorkload(newDisk(16)), { diskHeat: [1, 2] })).rejects.toThrow(/diskHeat has 2 blocks, the disk 16/);
    await expect(run("precopy", smallMemory, () => new IdleWorkload(newDisk(16)), { diskHeat: new Array(16).fill(-1) })).rejects.toThrow(/diskHeat\[0\]/);
    await expect(run("precopy", smallMemory, () => new IdleWorkload(newDisk(16)), { prefetchWindow: 0 })).rejects.toThrow(/prefetchWindow/);
  });

  it("the DISK flag is allowed on disk frames only, and REFS frames must carry it", () => {
    const request = encodeControl({ type: "page-request", pages: [1, 5], disk: true }, 3);
    const header = readFrameHeader(request);
    expect(header.flags).toBe(FrameFlags.DISK);
    expect(readControl(request, header)).toEqual({ type: "page-request", sequence: 3, pages: Uint32Array.from([1, 5]), disk: true });
    const refs = encodeControl({ type: "refs", blockSize: 4096, refs: [{ block: 2, space: "memory", ref: 7, md5: new Uint8Array(16).fill(1), xxh3: 99n }] }, 4);
    expect(decodeFrame(refs)).toEqual({ type: "refs", sequence: 4, blockSize: 4096, refs: [{ block: 2, space: "memory", ref: 7, md5: new Uint8Array(16).fill(1), xxh3: 99n }] });
    // The flag on a frame type that cannot carry it, and a REFS frame without it: refused, naming the cause.
    const done = encodeControl({ type: "done", memoryBytes: 0, digestName: "none", digest: new Uint8Array(0) }, 0);
    expect(() => decodeFrame(reflag(done, FrameFlags.DISK))).toThrow(/flags 1 are not allowed on a frame of type 6/);
    expect(() => decodeFrame(reflag(refs, 0))).toThrow(/refs frame must carry the disk flag/);
    expect(() => decodeFrame(reflag(refs, 2 | FrameFlags.DISK))).toThrow(CodecError);
  });
});

/** `frame` with other header flags, its checks recomputed as a writer would (so only the flags are wrong). */
function reflag(frame: Uint8Array, flags: number): Uint8Array {
  const copy = frame.slice();
  const dv = new DataView(copy.buffer);
  dv.setUint16(6, flags, true);
  dv.setUint32(24, checkValue(copy, 0, 24), true);
  dv.setUint32(copy.length - 4, checkValue(copy, 0, copy.length - 4), true);
  return copy;
}

describe("pagemill migrate with a disk", () => {
  it("migrates the bundled trace with the shipped disk trace, every page and block verified, disk figures in --json", async () => {
    const out = JSON.parse(await migrateCli(["--disk", DISK_TRACE, "--strategy", "postcopy", "--json"]));
    expect(out.verified).toBe(true);
    expect(out.disk.verifiedBlocks).toBe(out.disk.blockCount);
    expect(out.disk.blockMisses).toBeGreaterThan(0);
    const table = await migrateCli(["--disk-workload", "oltp", "--disk-blocks", "2048", "--workload", "idle", "--pages", "1024", "--prefetch", "off", "--hot-area", "on"]);
    expect(table).toMatch(/disk bytes +blocks +dedup +misses +prefetched +verified/);
    expect(table).toMatch(/1024\+2048/);
  });

  it("refuses a disk at odds with the flags, and flags without a disk, before anything runs", async () => {
    await expect(migrateRun(["--disk", DISK_TRACE, "--block-size", "8192"])).rejects.toThrow(/disk trace .*sqlite-disk.ptrace.gz: its blocks are 4096 B, the flags say 8192 B/);
    await expect(migrateRun(["--disk", DISK_TRACE, "--disk-blocks", "5"])).rejects.toThrow(/sqlite-disk.ptrace.gz: it has \d+ blocks, the flags say 5/);
    await expect(migrateRun(["--disk", "/nonexistent.ptrace.gz"])).rejects.toThrow(/--disk: \/nonexistent.ptrace.gz does not exist/);
    await expect(migrateRun(["--disk-workload", "oltp", "--prefetch", "maybe"])).rejects.toThrow(/--prefetch: must be on or off/);
    await expect(migrateRun(["--disk-workload", "tape"])).rejects.toThrow(/--disk-workload: unknown MODEL 'tape'/);
    await expect(migrateRun(["--disk-workload", "oltp", "--block-size", "65536", "--disk-blocks", String(2 ** 24 + 1)])).rejects.toThrow(/--disk-blocks: blockCount/);
    // A 1 TiB model disk holds only its tables (192 MiB): refused under a smaller limit.
    const saved = process.env.PAGEMILL_MEMORY_LIMIT;
    process.env.PAGEMILL_MEMORY_LIMIT = String(64 * 2 ** 20);
    try {
      await expect(migrateRun(["--disk-workload", "oltp", "--disk-blocks", String(2 ** 28)])).rejects.toThrow(/--disk-blocks: a oltp disk of 1\.0 TiB needs an estimated .* more than the limit of 64\.0 MiB/);
    } finally {
      if (saved === undefined) delete process.env.PAGEMILL_MEMORY_LIMIT;
      else process.env.PAGEMILL_MEMORY_LIMIT = saved;
    }
    await expect(migrateRun(["--hot-area", "off"])).rejects.toThrow(/--hot-area: applies to a disk/);
    await expect(migrateRun(["--disk-workload", "oltp", "--block-size", "2048"])).rejects.toThrow(/--block-size must be a power of two from 4096/);
  });
});

describe("pagemill compare with a disk (npm start's default)", () => {
  it("runs every row with the disk, each verified for pages and blocks; the rows the predictor models predicted with the disk trace, none with a disk model", async () => {
    const out = JSON.parse(await commandOutput(compareRun, ["--disk", DISK_TRACE, "--codecs", "raw", "--json"]));
    expect(out.guest).toMatch(/disk trace .*sqlite-disk/);
    expect(out.rows.length).toBeGreaterThanOrEqual(4);
    for (const row of out.rows) {
      expect(row.verified, row.method).toBe(true);
      expect(row.stats.disk.verifiedBlocks).toBe(row.stats.disk.blockCount);
      const modelled = ["precopy", "postcopy", "hybrid", "fractional", "ada"].includes(row.strategy) && !row.method.includes("auto-converge");
      expect(row.predicted !== undefined, row.method).toBe(modelled);
      if (!modelled) continue;
      expect(Math.abs(row.predicted.totalTime / row.stats.totalTime - 1), `${row.method} T`).toBeLessThan(0.05);
      expect(Math.abs(row.predicted.downtime / row.stats.downtime - 1), `${row.method} D`).toBeLessThan(0.05);
    }
    const model = JSON.parse(await commandOutput(compareRun, ["--disk-workload", "oltp", "--disk-blocks", "512", "--codecs", "raw", "--json"]));
    for (const row of model.rows) expect(row.predicted, row.method).toBeUndefined();
  });
});

describe("any disk, any strategy (property)", () => {
  it("ends with every page and block verified, whatever the model, seed, switches, codec and forced collisions", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<StrategyName>("precopy", "postcopy", "hybrid"),
        fc.constantFrom(...(Object.keys(BLOCK_MODELS) as (keyof typeof BLOCK_MODELS)[])),
        fc.integer({ min: 1, max: 1000 }),
        fc.record({ diskDedup: fc.boolean(), prefetch: fc.boolean(), hotArea: fc.boolean(), codec: fc.constantFrom("raw", "lz4", "xbzrle+lz4", "dedup+mecom") }),
        fc.boolean(),
        async (strategy, model, seed, switches, collide) => {
          const disk = modelDisk(model, 256 + (seed % 7) * 128, { seed, filled: (seed % 4) / 4 });
          const blocks = disk.guest.pageCount;
          const stats = await run(strategy, () => new PoissonWorkload(syntheticGuest(256, { seed }), { rate: 0.5, seed }), () => disk, {
            ...switches,
            diskHeat: disk.blockRates(),
            ...(collide ? { dedupProbe: (b: number) => (b % 5 === 1 ? { space: "disk" as const, index: 0, md5: "00".repeat(16) } : undefined) } : {}),
          });
          expect(stats.verifiedPages).toBe(256);
          expect(stats.disk!.verifiedBlocks).toBe(blocks);
          if (!switches.diskDedup) expect(stats.disk!.dedupHits).toBe(0);
          if (!switches.prefetch) expect(stats.disk!.prefetchedBlocks).toBe(0);
        },
      ),
      { numRuns: PAGEMILL_FUZZ ? 200 : 12, seed: 11 },
    );
  });
});

describe("fractional hybrid-copy's storage share S", () => {
  it("pre-copies the coldest S% of blocks once, so post-copy misses fewer; every block verified with M = 0 and M > 0", async () => {
    const oltp = () => modelDisk("oltp", 2048, { seed: 5 });
    const heat = oltp().blockRates();
    const coldest = (percent: number) => Uint32Array.from({ length: 2048 }, (_, b) => b).sort((a, b) => heat[a]! - heat[b]! || a - b).subarray(0, (2048 * percent) / 100);
    const misses: number[] = [];
    for (const percent of [0, 50, 100]) {
      for (const memoryShare of [[], Array.from({ length: 128 }, (_, p) => p)]) {
        const stats = await run("fractional", smallMemory, oltp, { precopyPages: memoryShare, diskHeat: heat, diskPrecopyBlocks: coldest(percent) });
        expect(stats.disk!.verifiedBlocks).toBe(2048);
        expect(stats.verifiedPages).toBe(256);
        if (memoryShare.length === 0) misses.push(stats.disk!.blockMisses);
      }
    }
    // The more blocks are there at the switch-over, the fewer reads miss.
    expect(misses[1]!).toBeLessThan(misses[0]!);
    expect(misses[2]!).toBeLessThanOrEqual(misses[1]!);
  });

  it("refuses a block list naming a block outside the disk", async () => {
    await expect(run("fractional", smallMemory, () => modelDisk("oltp", 64), { precopyPages: [], diskPrecopyBlocks: [64] })).rejects.toThrow(/diskPrecopyBlocks\[0\]/);
  });
});

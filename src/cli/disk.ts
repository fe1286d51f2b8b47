// The disk options of `pagemill migrate` (issue 11): which disk goes with the
// memory (a storage trace, or a block workload model), FlimCD's switches,
// and the disk's figures in the table and the detail view.

import { existsSync } from "node:fs";
import { profileTrace, writeRates, type PageProfile } from "../adaptive/profile.js";
import type { EngineOptions } from "../engine/options.js";
import type { MigrationStats } from "../engine/metrics.js";
import { BLOCK_MODELS, DiskTraceWorkload, checkBlockSize, checkDiskShape, modelDisk, modelDiskBytes, type BlockModelName } from "../guest/disk.js";
import type { Workload } from "../guest/guest.js";
import { checkFitsInMemory } from "../guest/chunks.js";
import { UsageError, formatBytes, intOption, sizeOption, type OptionValue } from "./args.js";
import type { Column } from "./table.js";

export const DISK_USAGE = `  Disk (migrated with the memory, on the same link; --disk-workload models: ${Object.keys(BLOCK_MODELS).join(", ")}):
         [--disk FILE.ptrace.gz | --disk-workload MODEL [--disk-blocks 16384]] [--block-size 4096]
         [--disk-dedup on|off] [--prefetch on|off] [--hot-area on|off]`;

export const DISK_ARGS = {
  disk: { type: "string" },
  "disk-workload": { type: "string" },
  "disk-blocks": { type: "string" },
  "block-size": { type: "string" },
  "disk-dedup": { type: "string" },
  prefetch: { type: "string" },
  "hot-area": { type: "string" },
} as const;

function onOff(name: string, text: OptionValue): boolean | undefined {
  if (text === undefined) return undefined;
  if (text !== "on" && text !== "off") throw new UsageError(`--${name}: must be on or off, got '${String(text)}'`);
  return text === "on";
}

/** The options that say which disk a program has (what `pagemill receive` needs to start its own copy). */
export const DISK_PROGRAM_OPTIONS = ["disk", "disk-workload", "disk-blocks", "block-size"] as const;

/** A disk to migrate: fresh for each strategy, with the engine options it brings (hot-area's rates, the switches). */
export interface DiskSetup {
  readonly describe: string;
  readonly files: string[];
  open(): Promise<Workload>;
  /** FlimCD's switches and the blocks' write rates */
  options(): Promise<Pick<EngineOptions, "diskDedup" | "prefetch" | "hotArea" | "diskHeat">>;
  /** A disk trace's profile (the predictor's disk); a model has none */
  readonly profile?: () => Promise<PageProfile>;
}

/**
 * The disk the options name (checked whole, before anything runs), or
 * undefined without --disk / --disk-workload. A model takes the memory
 * model's --seed (1 with a trace).
 */
export async function diskSetup(values: Record<string, OptionValue>): Promise<DiskSetup | undefined> {
  const seed = values.workload !== undefined ? intOption("seed", values.seed, 1, 0, 2 ** 32 - 1) : 1;
  const switches = { diskDedup: onOff("disk-dedup", values["disk-dedup"]), prefetch: onOff("prefetch", values.prefetch), hotArea: onOff("hot-area", values["hot-area"]) };
  const { disk: path, "disk-workload": model } = values;
  if (path === undefined && model === undefined) {
    for (const name of ["disk-blocks", "block-size", "disk-dedup", "prefetch", "hot-area"]) {
      if (values[name] !== undefined) throw new UsageError(`--${name}: applies to a disk (--disk FILE or --disk-workload MODEL)`);
    }
    return undefined;
  }
  if (path !== undefined && model !== undefined) throw new UsageError("give --disk or --disk-workload, not both");
  const blockSize = values["block-size"] === undefined ? undefined : sizeOption("block-size", values["block-size"], 4096);
  if (blockSize !== undefined) {
    try {
      checkBlockSize(blockSize, "--block-size");
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  const given = { ...switches };
  if (typeof path === "string") {
    if (!existsSync(path)) throw new UsageError(`--disk: ${path} does not exist`);
    const blockCount = values["disk-blocks"] === undefined ? undefined : intOption("disk-blocks", values["disk-blocks"], 1, 1, 2 ** 28);
    // Checked whole (and against the flags) before any strategy runs; the rates are its profile's.
    const first = await DiskTraceWorkload.open(path, undefined, { expect: { blockSize, blockCount } });
    const { pageCount, pageSize } = first.guest;
    await first.close();
    first.guest.dispose();
    let profiled: Promise<PageProfile> | undefined;
    const profile = () => (profiled ??= profileTrace(path).then((p) => p.memory));
    let rates: Promise<Float64Array> | undefined;
    const heat = () => (rates ??= profile().then(writeRates));
    return {
      describe: `disk trace ${path} (${pageCount} blocks of ${pageSize} B)`,
      files: [path],
      open: async () => DiskTraceWorkload.open(path, await heat(), { seed }),
      options: async () => ({ ...given, diskHeat: await heat() }),
      profile,
    };
  }
  if (typeof model !== "string" || !Object.hasOwn(BLOCK_MODELS, model)) {
    throw new UsageError(`--disk-workload: unknown MODEL '${String(model)}' (${Object.keys(BLOCK_MODELS).join(", ")})`);
  }
  const size = blockSize ?? 4096;
  const blocks = intOption("disk-blocks", values["disk-blocks"], 16384, 1, 2 ** 28);
  try {
    checkDiskShape(blocks, size);
    // Refused here, before anything runs, when even its tables cannot fit (its data is computed when read).
    checkFitsInMemory(`a ${model} disk of ${formatBytes(blocks * size)}`, modelDiskBytes(blocks));
  } catch (err) {
    throw new UsageError(`--disk-blocks: ${(err as Error).message}`);
  }
  const open = async () => modelDisk(model as BlockModelName, blocks, { blockSize: size, seed });
  return {
    describe: `disk model ${model}, ${blocks} blocks of ${size} B (${formatBytes(blocks * size)}), seed ${seed}`,
    files: [],
    open,
    options: async () => {
      const w = await open();
      const diskHeat = w.blockRates();
      w.guest.dispose();
      return { ...given, diskHeat };
    },
  };
}

/** The disk's rows of the detail view. */
export function diskRows(stats: MigrationStats): [string, string][] {
  const d = stats.disk;
  if (!d) return [];
  return [
    ["disk", `${d.blockCount} blocks of ${d.blockSize} B, ${d.verifiedBlocks} verified`],
    ["disk bytes (wire)", formatBytes(d.bytes)],
    ["disk blocks sent / zero / passes", `${d.blocksSent} / ${d.zeroBlocks} / ${d.passes}`],
    ["dedup hits (from memory) / refused", `${d.dedupHits} (${d.dedupFromMemory}) / ${d.dedupRefused}`],
    ["post-copy block misses / whole-block overwrites / prefetched", `${d.blockMisses} / ${d.blockOverwrites} / ${d.prefetchedBlocks}`],
  ];
}

/** The disk's columns of the comparison tables (of a row's stats, when it has them). */
export function diskColumns<Row>(statsOf: (row: Row) => MigrationStats | undefined): Column<Row>[] {
  return DISK_COLUMNS.map(({ label, show, value }): Column<Row> => {
    const column: Column<Row> = { label, show: (r) => (statsOf(r) ? show(statsOf(r)!) : "") };
    return value ? { ...column, value: (r) => (statsOf(r) ? value(statsOf(r)!) : undefined) } : column;
  });
}

const DISK_COLUMNS: Column<MigrationStats>[] = [
  { label: "disk bytes", show: (s) => formatBytes(s.disk?.bytes ?? 0), value: (s) => s.disk?.bytes },
  { label: "blocks", show: (s) => String(s.disk?.blocksSent ?? 0), value: (s) => s.disk?.blocksSent },
  { label: "dedup", show: (s) => String(s.disk?.dedupHits ?? 0) },
  { label: "misses", show: (s) => String(s.disk?.blockMisses ?? 0), value: (s) => (s.remoteUptime > 0 ? s.disk?.blockMisses : undefined) },
  { label: "prefetched", show: (s) => String(s.disk?.prefetchedBlocks ?? 0) },
];

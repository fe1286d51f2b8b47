// What a caller may ask of a migration, and the one place those options are
// checked and given their defaults. Both ends and every strategy read the
// normalised EngineSettings, never the raw options.

import { checkInteger } from "../errors.js";
import type { Workload } from "../guest/guest.js";
import type { Channel } from "../net/channel.js";
import type { Clock } from "../clock.js";
import { MAX_STATE_BYTES, maxFramePages } from "../wire/frame.js";
import { pipelineEntries } from "../wire/pipeline.js";
import { CostModel } from "../codecs/cost.js";
import { codecEntry, codecNamesFor } from "../codecs/registry.js";
import { MAX_CHANNELS } from "../wire/channels.js";
import type { StrategyName } from "./metrics.js";
import { DEFAULT_LOG_RATE, DEFAULT_REPLAY_SPEED } from "./crtr.js";
import type { Tasks } from "./tasks.js";
import { parseQemuHost, type QemuHost } from "./qemu.js";

export type Flavor = "xen" | "qemu";
export const FLAVORS: readonly Flavor[] = ["xen", "qemu"];

/** The knobs of a migration, wherever its two ends run. */
export interface EngineOptions {
  /**
   * Whose pre-copy this is: "xen" (default; Clark/Xen: a page re-dirtied
   * during its round waits for the next, rounds are full passes, Xen's caps)
   * or "qemu" (QEMU 7.2's migration/ram.c: qemu.ts).
   */
  readonly flavor?: Flavor;
  /**
   * Codec pipeline: a registered codec name, or several joined by "+"
   * (e.g. "xbzrle+lz4": delta first, then compression). "raw": zero flags only.
   */
  readonly codec?: string;
  /** CPU cost of the per-page work (default table when absent). */
  readonly cost?: CostModel;
  /** Pre-copy: the downtime allowed at switch-over, seconds (QEMU downtime-limit, 300 ms). */
  readonly downtimeLimit?: number;
  /** Bytes of CPU and device state sent at switch-over. */
  readonly stateBytes?: number;
  /** Pages per frame. */
  readonly batchPages?: number;
  /**
   * Parallel channels encoding memory's pages (QEMU's multifd; 1 by
   * default): each batch is split into this many frames, encoded at once on
   * worker threads, and its CPU time is the longest channel's. A compress
   * codec or raw only (a delta or dedup stage remembers pages across frames).
   */
  readonly channels?: number;
  /** Pre-copy: most rounds before stop-and-copy (Xen caps at 30). */
  readonly maxIterations?: number;
  /** Pre-copy: stop once more than this × guest memory has been sent (Xen: 3). */
  readonly maxSentFactor?: number;
  /** Pre-copy: throttle the guest when it dirties faster than the link drains (QEMU auto-converge). */
  readonly autoConverge?: boolean;
  /**
   * Pre-copy: seconds from the start by which the migration should end
   * (src/engine/deadline.ts). When pre-copy's projection passes it, switch
   * to post-copy, or with `noPostcopy` raise the downtime limit step by step.
   */
  readonly deadline?: number;
  readonly noPostcopy?: boolean;
  /**
   * Ada-copy: pages per second the guest dirtied before the migration began,
   * when it was measured (QEMU's calc-dirty-rate does; the CLI takes a trace
   * profile's mean). Ada-copy decides on it before sending anything.
   */
  readonly dirtyRateBefore?: number;
  /**
   * Ada-copy: each fixed method's total time and downtime as predicted before
   * the migration began (src/adaptive's predictor, on a trace's profile).
   * Ada-copy then runs the one predicted fastest (ada.ts, rule 0).
   */
  readonly forecast?: readonly AdaForecast[];
  /**
   * Ada-copy without a forecast: why the predictor could not give one (it
   * does not model the run: docs/adaptive.md), put in its decision's reason.
   */
  readonly noForecast?: string;
  /** QEMU cpu-throttle-initial, percent (20). */
  readonly throttleInitial?: number;
  /** QEMU cpu-throttle-increment, percent (10). */
  readonly throttleIncrement?: number;
  /** QEMU max-cpu-throttle, percent (99). */
  readonly throttleMax?: number;
  /** QEMU throttle-trigger-threshold, percent (50): dirtied bytes over sent bytes in a round. */
  readonly throttleTriggerThreshold?: number;
  /** Seconds over which bandwidth and dirty rate are measured (QEMU: 100 ms). */
  readonly bandwidthPeriod?: number;
  /**
   * Flavor qemu: QEMU's max-bandwidth, bytes/s, a rate limit below the
   * link's rate. Pre-copy iterations send at most this much per
   * bandwidthPeriod window (migration_rate_limit); the stop-and-copy and
   * post-copy go at the link's rate, as QEMU lifts the limit at completion
   * and max-postcopy-bandwidth is 0 (unlimited) by default. Absent: the
   * link's rate is the only limit.
   */
  readonly maxBandwidth?: number;
  /**
   * Flavor qemu: the time QEMU's process took on the host a reference ran
   * on (setup, the migration thread per page while the guest runs, the
   * switch-over's fixed part; qemu.ts). Absent: none of it takes time.
   */
  readonly qemuHost?: QemuHost;
  /** Hybrid: pre-copy rounds before switching to post-copy. */
  readonly precopyRounds?: number;
  /** Hybrid: switch to post-copy once this many bytes were sent in pre-copy. */
  readonly precopyBudget?: number;
  /** Post-copy: pages pushed on each side of a fault before the linear push resumes. */
  readonly prepageWindow?: number;
  /**
   * Fractional hybrid-copy (seed 001): the pages pre-copied once before the
   * switch-over (the plan's M% coldest by λ; src/adaptive/); the rest is post-copied.
   */
  readonly precopyPages?: ArrayLike<number>;
  /**
   * The order pre-copy's rounds send pages in: every page index once, first
   * sent first (default: index order). `--order cold-first` gives the trace
   * profile's pages by λ, coldest first, so the pages most likely to be
   * written again go last in each round and are sent fewer times.
   */
  readonly pageOrder?: ArrayLike<number>;
  /**
   * Checkpoint + trace/replay (a model, src/engine/crtr.ts): the log's
   * growth in bytes per second of execution (16 KiB/s by default), and the
   * execution seconds the destination replays per second (2 by default).
   */
  readonly logRate?: number;
  readonly replaySpeed?: number;
  /** Post-copy: guest seconds the destination runs between fault services. */
  readonly faultQuantum?: number;
  /** Called as the migration goes (for progress bars). */
  readonly onProgress?: (progress: MigrationProgress) => void;
  /** Disk (storage.ts): dedup of dirty blocks by MD5 (FlimCD; on by default). */
  readonly diskDedup?: boolean;
  /** Disk, post-copy: fetch ahead of sequential read streams (FlimCD; on by default). */
  readonly prefetch?: boolean;
  /** Disk, post-copy: blocks asked for ahead of a stream (32). */
  readonly prefetchWindow?: number;
  /** Disk: send each pass coldest block first (FlimCD's hot-area scheduling; on by default). */
  readonly hotArea?: boolean;
  /** Disk, fractional hybrid-copy (seed 001's S%): the blocks pre-copied once before the switch-over (coldest first); the rest is post-copied. */
  readonly diskPrecopyBlocks?: ArrayLike<number>;
  /** Disk: each block's write rate, blocks/s (hot-area's order; without it, what the passes saw). */
  readonly diskHeat?: ArrayLike<number>;
  /** Disk: blocks per frame (256, or fewer to keep a frame at most 1 MiB). */
  readonly batchBlocks?: number;
  /**
   * Test hook for dedup: a place the index answers for `block` whatever its
   * content, with the MD5 it claims (as an MD5 collision would).
   */
  readonly dedupProbe?: (block: number) => { space: "disk" | "memory"; index: number; md5: string } | undefined;
}

/** A migration run in one process: both ends, the program, the clock and the channel between. */
export interface MigrationOptions extends EngineOptions {
  /** The running program whose guest is migrated; its `guest` is the memory. */
  readonly workload: Workload;
  /** The program's disk (its `guest` holds the blocks), migrated with the memory; none by default. */
  readonly disk?: Workload;
  readonly clock: Clock;
  /** The source's end of the channel. */
  readonly source: Channel;
  /** The destination's end of the same channel. */
  readonly destination: Channel;
}

export type Phase = "setup" | "precopy" | "downtime" | "postcopy" | "done";

export interface MigrationProgress {
  readonly strategy: StrategyName;
  readonly phase: Phase;
  readonly round: number;
  /** pages the destination does not hold yet (current estimate) */
  readonly remainingPages: number;
  readonly pageCount: number;
  /** measured wire rate, bit/s */
  readonly bitsPerSecond: number;
  readonly time: number;
  /** seconds left by the source's last prediction, made at round ends and the switch-over (NaN before one) */
  readonly eta: number;
}

/** What either end of a migration is built from. */
export interface EndParts {
  readonly settings: EngineSettings;
  readonly clock: Clock;
  /** this end's side of the channel */
  readonly channel: Channel;
  /** where its side tasks run (their failure fails the migration) */
  readonly tasks: Tasks;
  /** Called when progress may have moved (the caller rate-limits). */
  readonly report?: () => void;
}

/** EngineOptions checked, with every default filled in, for a guest of `pageCount` pages of `pageSize` B. */
export interface EngineSettings {
  readonly pageSize: number;
  readonly pageCount: number;
  readonly flavor: Flavor;
  readonly codec: string;
  readonly cost: CostModel;
  readonly downtimeLimit: number;
  readonly stateBytes: number;
  readonly batchPages: number;
  readonly channels: number;
  readonly maxIterations: number;
  readonly maxSentFactor: number;
  readonly autoConverge: boolean;
  readonly deadline: number | undefined;
  readonly noPostcopy: boolean;
  readonly dirtyRateBefore: number | undefined;
  readonly forecast: readonly AdaForecast[] | undefined;
  readonly noForecast: string | undefined;
  readonly throttleInitial: number;
  readonly throttleIncrement: number;
  readonly throttleMax: number;
  readonly throttleTriggerThreshold: number;
  readonly bandwidthPeriod: number;
  readonly maxBandwidth: number | undefined;
  readonly qemuHost: QemuHost | undefined;
  readonly precopyRounds: number;
  readonly precopyBudget: number;
  readonly prepageWindow: number;
  readonly faultQuantum: number;
  readonly logRate: number;
  readonly replaySpeed: number;
  readonly precopyPages: Uint32Array | undefined;
  /** each page's place in pageOrder (undefined: index order) */
  readonly pageRank: Uint32Array | undefined;
  readonly disk: DiskSettings | undefined;
}

/** The disk's part of EngineSettings. */
export interface DiskSettings {
  readonly blockSize: number;
  readonly blockCount: number;
  readonly batchBlocks: number;
  readonly dedup: boolean;
  readonly prefetch: boolean;
  readonly prefetchWindow: number;
  readonly hotArea: boolean;
  readonly heat: Float64Array | undefined;
  readonly dedupProbe: EngineOptions["dedupProbe"];
  readonly precopyBlocks: Uint32Array | undefined;
}

function positive(name: string, value: number): number {
  if (!(typeof value === "number" && value > 0 && Number.isFinite(value))) throw new RangeError(`${name} must be a positive finite number, got ${value}`);
  return value;
}

/** One fixed method's predicted figures for Ada-copy's rule 0. */
export interface AdaForecast {
  readonly strategy: "precopy" | "postcopy" | "hybrid";
  /** seconds */
  readonly totalTime: number;
  readonly downtime: number;
}

function forecastEntry(name: string, f: AdaForecast): AdaForecast {
  if (!["precopy", "postcopy", "hybrid"].includes(f?.strategy)) throw new RangeError(`${name}.strategy must be precopy, postcopy or hybrid, got ${String(f?.strategy)}`);
  return { strategy: f.strategy, totalTime: positive(`${name}.totalTime`, f.totalTime), downtime: positive(`${name}.downtime`, f.downtime) };
}

function nonNegative(name: string, value: number): number {
  if (!(typeof value === "number" && value >= 0)) throw new RangeError(`${name} must be a number ≥ 0, got ${value}`);
  return value;
}

function integer(name: string, value: number, min: number, max: number): number {
  checkInteger(name, value, min, max);
  return value;
}

function pageList(name: string, pages: ArrayLike<number>, pageCount: number): Uint32Array {
  const out = new Uint32Array(pages.length);
  for (let k = 0; k < pages.length; k++) {
    checkInteger(`${name}[${k}]`, pages[k]!, 0, pageCount - 1);
    out[k] = pages[k]!;
  }
  return out;
}

/** Each page's place in `order`, which must hold every page index once. */
function ranks(order: ArrayLike<number>, pageCount: number): Uint32Array {
  if (order.length !== pageCount) throw new RangeError(`pageOrder has ${order.length} pages, the guest ${pageCount}`);
  const rank = new Uint32Array(pageCount).fill(0xffffffff);
  for (let k = 0; k < pageCount; k++) {
    const p = order[k]!;
    checkInteger(`pageOrder[${k}]`, p, 0, pageCount - 1);
    if (rank[p] !== 0xffffffff) throw new RangeError(`pageOrder names page ${p} twice`);
    rank[p] = k;
  }
  return rank;
}

type Shape = { readonly pageSize: number; readonly pageCount: number };

function diskSettings(options: EngineOptions, disk: Shape): DiskSettings {
  const { pageSize: blockSize, pageCount: blockCount } = disk;
  let heat: Float64Array | undefined;
  if (options.diskHeat !== undefined) {
    if (options.diskHeat.length !== blockCount) throw new RangeError(`diskHeat has ${options.diskHeat.length} blocks, the disk ${blockCount}`);
    heat = Float64Array.from(options.diskHeat, (rate, k) => nonNegative(`diskHeat[${k}]`, rate));
  }
  return {
    blockSize,
    blockCount,
    batchBlocks: Math.min(integer("batchBlocks", options.batchBlocks ?? Math.max(1, Math.min(256, 2 ** 20 / blockSize)), 1, maxFramePages(blockSize)), blockCount),
    dedup: options.diskDedup ?? true,
    prefetch: options.prefetch ?? true,
    prefetchWindow: integer("prefetchWindow", options.prefetchWindow ?? 32, 1, 16384),
    hotArea: options.hotArea ?? true,
    heat,
    dedupProbe: options.dedupProbe,
    precopyBlocks: options.diskPrecopyBlocks === undefined ? undefined : pageList("diskPrecopyBlocks", options.diskPrecopyBlocks, blockCount),
  };
}

/**
 * Checks `options` for a guest of the given shape (and its disk's, when it
 * has one); a RangeError names the first bad option.
 */
export function normaliseOptions(options: EngineOptions, guest: Shape, disk?: Shape): EngineSettings {
  const { pageSize, pageCount } = guest;
  if (pageCount === 0) throw new RangeError("the guest has no pages");
  const codec = options.codec ?? "raw";
  pipelineEntries(codec);
  const throttleInitial = integer("throttleInitial", options.throttleInitial ?? 20, 1, 99);
  const throttleIncrement = integer("throttleIncrement", options.throttleIncrement ?? 10, 1, 99);
  const throttleMax = integer("throttleMax", options.throttleMax ?? 99, throttleInitial, 99);
  const flavor = options.flavor ?? "xen";
  if (!FLAVORS.includes(flavor)) throw new RangeError(`flavor must be ${FLAVORS.join(" or ")}, got '${flavor}'`);
  if (flavor === "qemu" && codec !== "raw" && codec !== "xbzrle") {
    throw new RangeError(`flavor qemu sends pages as QEMU does (zero pages flagged, the rest whole or as XBZRLE deltas): codec must be raw or xbzrle, got '${codec}'`);
  }
  if (flavor === "qemu" && disk) throw new RangeError("flavor qemu migrates memory only: no disk");
  // QEMU scans in address order and has no deadline rule.
  if (flavor === "qemu" && options.pageOrder !== undefined) throw new RangeError("flavor qemu sends pages in address order: no pageOrder");
  if (flavor === "qemu" && options.deadline !== undefined) throw new RangeError("flavor qemu has no deadline rule: no deadline");
  if (flavor === "qemu" && (options.channels ?? 1) > 1) throw new RangeError("flavor qemu models QEMU's one migration thread (its counters are not multifd's): no channels");
  if (flavor !== "qemu" && options.maxBandwidth !== undefined) throw new RangeError("maxBandwidth is QEMU's rate limit: it needs flavor qemu");
  if (flavor !== "qemu" && options.qemuHost !== undefined) throw new RangeError("qemuHost is the time QEMU's process takes: it needs flavor qemu");
  return {
    pageSize,
    pageCount,
    flavor,
    codec,
    cost: options.cost ?? new CostModel(),
    downtimeLimit: nonNegative("downtimeLimit", options.downtimeLimit ?? 0.3),
    // The switch-over frame carries the state, the record's head and the pending map.
    stateBytes: integer("stateBytes", options.stateBytes ?? 256 * 1024, 0, MAX_STATE_BYTES - 12 - 8 * Math.ceil(pageCount / 64)),
    batchPages: Math.min(integer("batchPages", options.batchPages ?? 256, 1, maxFramePages(pageSize)), pageCount),
    channels: channelCount(options.channels, codec),
    maxIterations: integer("maxIterations", options.maxIterations ?? 30, 1, 1e6),
    maxSentFactor: positive("maxSentFactor", options.maxSentFactor ?? 3),
    autoConverge: options.autoConverge ?? false,
    deadline: options.deadline === undefined ? undefined : positive("deadline", options.deadline),
    noPostcopy: options.noPostcopy ?? false,
    dirtyRateBefore: options.dirtyRateBefore === undefined || options.dirtyRateBefore === 0 ? options.dirtyRateBefore : positive("dirtyRateBefore", options.dirtyRateBefore),
    forecast: options.forecast?.map((f, i) => forecastEntry(`forecast[${i}]`, f)),
    noForecast: options.noForecast,
    throttleInitial,
    throttleIncrement,
    throttleMax,
    throttleTriggerThreshold: integer("throttleTriggerThreshold", options.throttleTriggerThreshold ?? 50, 1, 100),
    bandwidthPeriod: positive("bandwidthPeriod", options.bandwidthPeriod ?? 0.1),
    maxBandwidth: options.maxBandwidth === undefined ? undefined : positive("maxBandwidth", options.maxBandwidth),
    qemuHost: options.qemuHost === undefined ? undefined : parseQemuHost(options.qemuHost, "qemuHost"),
    precopyRounds: integer("precopyRounds", options.precopyRounds ?? 1, 1, 1e6),
    precopyBudget: options.precopyBudget === undefined ? Infinity : positive("precopyBudget", options.precopyBudget),
    prepageWindow: integer("prepageWindow", options.prepageWindow ?? Math.min(64, pageCount), 0, pageCount),
    faultQuantum: positive("faultQuantum", options.faultQuantum ?? 0.01),
    logRate: options.logRate === 0 ? 0 : positive("logRate", options.logRate ?? DEFAULT_LOG_RATE),
    replaySpeed: positive("replaySpeed", options.replaySpeed ?? DEFAULT_REPLAY_SPEED),
    precopyPages: options.precopyPages === undefined ? undefined : pageList("precopyPages", options.precopyPages, pageCount),
    pageRank: options.pageOrder === undefined ? undefined : ranks(options.pageOrder, pageCount),
    disk: disk && diskSettings(options, disk),
  };
}

/** Checks `channels` (1..MAX_CHANNELS, 1 by default) against the codec: more than one needs a codec the channels can run. */
function channelCount(channels: number | undefined, codec: string): number {
  const count = integer("channels", channels ?? 1, 1, MAX_CHANNELS);
  if (count > 1 && codec !== "raw" && codecEntry(codec)?.role !== "compress") {
    throw new RangeError(`channels: codec '${codec}' cannot run on parallel channels (a delta or dedup stage remembers pages across frames); give raw or one of ${codecNamesFor("compress").join(", ")}`);
  }
  return count;
}

// pagemill migrate: live-migrates a guest (a recorded trace, or a workload
// model) over a simulated link, in virtual time, with real encoding, framing,
// decoding and a page-for-page check at the end; prints QEMU-style metrics.

import { existsSync } from "node:fs";
import { CostModel, DEFAULT_COSTS, loadCostTable } from "../codecs/cost.js";
import type { CrtrOutcome, DeadlineOutcome, MigrationStats, StrategyName } from "../engine/metrics.js";
import { DEFAULT_MAX_TIME, QEMU_STRATEGIES, simulate, STRATEGY_NAMES, type LinkSpec, type SimulationOptions } from "../engine/migrate.js";
import type { RateStep } from "../net/link.js";
import { FLAVORS, type AdaForecast, type Flavor, type MigrationProgress } from "../engine/options.js";
import { pipelineEntries } from "../wire/pipeline.js";
import { MAX_CHANNELS } from "../wire/channels.js";
import { plan } from "../adaptive/plan.js";
import { ascendingBy, coldestFirst, forecastFixed, type PredictOptions, type Prediction } from "../adaptive/predict.js";
import { meanDirtyRate, profileTrace, type PageProfile, type Profile } from "../adaptive/profile.js";
import type { Workload } from "../guest/guest.js";
import { checkTrace } from "../guest/pagetrace.js";
import { MAX_BITMAP_PAGES } from "../guest/bitmap.js";
import { ChunkedPages, MemoryLimitError, checkFitsInMemory } from "../guest/chunks.js";
import {
  IMAGE_PROFILES,
  IdleWorkload,
  PoissonWorkload,
  SweepWorkload,
  TraceReplay,
  syntheticGuest,
  type Popularity,
  type ProfileName,
} from "../guest/workloads.js";
import { loadQemuHost } from "../engine/qemu.js";
import { Progress, UsageError, durationOption, formatBytes, intOption, noPositionals, parse, positiveDurationOption, rateOption, sizeOption, type OptionValue } from "./args.js";
import { markedTable, type Column } from "./table.js";
import { DISK_ARGS, DISK_USAGE, diskColumns, diskRows, diskSetup, type DiskSetup } from "./disk.js";

export const summary =
  "Live-migrates a guest (trace or model) with pre-copy, post-copy or hybrid over a simulated link; verifies every page.";
export const usage = `usage: pagemill migrate [--trace FILE [--trace-timing end|spread] | --workload MODEL] [--strategy precopy|postcopy|hybrid|fractional|ada|crtr|all]
         [--memory-precopy PERCENT] [--storage-precopy PERCENT] [--order index|cold-first] [--deadline T [--no-postcopy]]
         [--log-rate 16KiB] [--replay-speed 2] [--start-at 0s]
         [--bandwidth 40mbit] [--rtt 5ms] [--downtime-limit 300ms] [--codec raw] [--json]
         [--flavor xen|qemu [--max-bandwidth RATE] [--qemu-host FILE]] [--auto-converge] [--max-iterations 30] [--max-time 24h] [--rounds N] [--budget SIZE] [--state SIZE]
         [--batch N] [--channels N] [--cost FILE] [--channel link|loopback] [--schedule 5s:10mbit,20s:40mbit]
  MODEL (with --pages N or --guest-size SIZE, --populated SIZE, --profile redis|node-gc|memstream,
         --rate R, --seed S):
    idle                no writes
    poisson             every page written at R writes/s (default 0.05)
    hot-cold            10% of pages take 90% of the writes, R writes/s/page on average
    zipf                page popularity 1/rank, R writes/s/page on average
    sweep               streams through memory overwriting pages at R bytes/s (default 64MiB)
  --guest-size 64g --populated 8g: a guest far larger than this machine's memory; only the populated
  bytes (touched 1 MiB regions, the profile's content) are held, and a guest that would not fit in
  memory is refused before it starts.
${DISK_USAGE}
  --trace-timing spread: each epoch of the trace is applied page by page, evenly over the time since the
  epoch before, in a seeded random order (end, the default: all at once at the epoch's time; a recorder's
  late snapshot then makes a quiet gap the program did not have).
  --start-at 25ms: the guest runs that long before the migration starts (as a guest migrated by
  pagemill send ran while the two ends connected: its --json gives guestStartTime).
  --deadline 60s (pre-copy): when pre-copy's projection passes it, switch to post-copy; with
  --no-postcopy, double the downtime limit each time instead (reported).
  --max-bandwidth 40mbit (--flavor qemu): QEMU's max-bandwidth, a rate limit on pre-copy iterations below the
  link's --bandwidth; the stop-and-copy and post-copy go at the link's rate, as QEMU's do.
  --qemu-host FILE (--flavor qemu): the time QEMU's process took on the host of a reference (setup, the
  migration thread per page while the guest runs, the stop's fixed part), as bench/qemu/fit.py writes it.
  --channels 2: encode memory's pages on 2 threads at once (QEMU's multifd; raw or a compress codec):
  each batch goes as one frame per channel, and takes the longest channel's CPU time.
  --order cold-first: pre-copy rounds send the trace's pages by λ, coldest first (hot ones last: sent
  fewer times); index order by default. --strategy ada: Ada-copy (pre-copy, switching to post-copy when
  the dirty rate says it will not converge soon; on a trace, the fixed method the predictor says is fastest,
  or post-copy at once when the trace's dirty rate says so where the predictor does not model the run).
  --strategy crtr: checkpoint + trace/replay, a MODEL
  (the checkpoint is real; the event log, --log-rate bytes per second of execution, and its replay at the
  destination, --replay-speed times as fast as the source ran, are modelled: docs/engines.md).
  Default: the bundled trace ${"data/redis-sample.ptrace.gz"} over 40 Mbit/s with 5 ms RTT (seed 001's WAN link), every strategy.`;

/** The bundled trace: the default guest. */
export const BUNDLED_TRACE = new URL("../../data/redis-sample.ptrace.gz", import.meta.url);

export function seconds(s: number): string {
  if (s === 0) return "0";
  return s < 1 ? `${(s * 1000).toFixed(1)} ms` : `${s.toFixed(3)} s`;
}

function fail(name: string, message: string): never {
  throw new UsageError(`--${name}: ${message}`);
}

function numberOption(name: string, text: OptionValue, fallback: number): number {
  if (text === undefined) return fallback;
  if (typeof text !== "string") fail(name, "takes a value");
  // A decimal number: Number() would read '' as 0.
  const value = /^\d+(\.\d+)?(e[+-]?\d+)?$/i.test(text) ? Number(text) : NaN;
  if (!Number.isFinite(value)) fail(name, `must be a number ≥ 0 like 0.05 or 1e3, got '${text}'`);
  return value;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Options of the workload models, which a trace has no use for. */
const MODEL_OPTIONS = ["pages", "guest-size", "populated", "profile", "rate", "seed"];

/** Options that say which program runs: a trace, or a model and its parameters. */
export const WORKLOAD_OPTIONS = ["trace", "trace-timing", "workload", ...MODEL_OPTIONS];

/** Opens the workload the options name (what a guest thread runs: `pagemill send`'s guest). */
export function openWorkload(values: Record<string, OptionValue>): Promise<Workload> {
  return workloadFactory(values).open();
}
/** Their parse configuration (every one takes a value). */
export const WORKLOAD_ARGS = Object.fromEntries(WORKLOAD_OPTIONS.map((name) => [name, { type: "string" as const }]));

/** A model guest's pages: --pages N or --guest-size SIZE (64 Ki pages, 256 MiB, by default). */
function modelPages(values: Record<string, OptionValue>): number {
  if (values["guest-size"] === undefined) return intOption("pages", values.pages, 65536, 1, MAX_BITMAP_PAGES);
  if (values.pages !== undefined) throw new UsageError("give --pages or --guest-size, not both");
  const bytes = sizeOption("guest-size", values["guest-size"], 0);
  if (!(bytes >= 4096 && bytes % 4096 === 0 && bytes / 4096 <= MAX_BITMAP_PAGES)) {
    fail("guest-size", `must be a whole number of 4 KiB pages from 4k to ${formatBytes(MAX_BITMAP_PAGES * 4096)}, got '${values["guest-size"]}'`);
  }
  return bytes / 4096;
}

/**
 * Refuses, before anything is built, a model guest this machine cannot
 * hold: the source holds the populated pages (the profile's zero pages
 * within them cost nothing, which the estimate leaves as headroom for the
 * pages the program populates and the destination's copies of pages that
 * differ); every page costs its bits and chunk slot besides.
 */
function checkModelFits(pages: number, populated = pages): void {
  const estimate = populated * 4096 + ChunkedPages.overheadBytes(pages) + 2 * (pages / 8);
  try {
    checkFitsInMemory(`a guest of ${formatBytes(pages * 4096)} with ${formatBytes(populated * 4096)} populated`, estimate);
  } catch (error) {
    if (error instanceof MemoryLimitError) throw new UsageError(`--${pages === populated ? "guest-size" : "populated"}: ${error.message}`);
    throw error;
  }
}

/** Builds a fresh workload (each strategy migrates its own copy of the same guest). */
export function workloadFactory(values: Record<string, OptionValue>): { describe: string; open: () => Promise<Workload>; files: string[] } {
  const model = values.workload;
  if (values.trace !== undefined && model !== undefined) throw new UsageError("give --trace or --workload, not both");
  if (model === undefined) {
    for (const name of MODEL_OPTIONS) if (values[name] !== undefined) fail(name, "applies to --workload models only, not to a trace");
    const path = typeof values.trace === "string" ? values.trace : BUNDLED_TRACE.pathname;
    if (!existsSync(path)) fail("trace", `${path} does not exist`);
    const timing = values["trace-timing"] ?? "end";
    if (timing !== "end" && timing !== "spread") fail("trace-timing", `must be end or spread, got '${String(timing)}'`);
    // Checked whole once, before the first strategy replays any of it.
    let checked: Promise<unknown> | undefined;
    return {
      describe: `trace ${path}`,
      files: [path],
      open: async () => {
        await (checked ??= checkTrace(path));
        return TraceReplay.open(path, { spread: timing === "spread" });
      },
    };
  }
  if (typeof model !== "string") fail("workload", "takes a MODEL");
  if (values["trace-timing"] !== undefined) fail("trace-timing", "applies to --trace only, not to a model");
  const pages = modelPages(values);
  const populated = values.populated === undefined ? undefined : sizeOption("populated", values.populated, 0) / 4096;
  if (populated !== undefined && !(Number.isInteger(populated) && populated <= pages)) fail("populated", `must be a whole number of 4 KiB pages, at most the guest's size (${formatBytes(pages * 4096)}), got '${values.populated}'`);
  checkModelFits(pages, populated);
  const seed = intOption("seed", values.seed, 1, 0, 2 ** 32 - 1);
  const profile = (values.profile ?? "redis") as ProfileName;
  if (!Object.hasOwn(IMAGE_PROFILES, profile)) fail("profile", `must be one of ${Object.keys(IMAGE_PROFILES).join(", ")}, got '${profile}'`);
  const guest = () => syntheticGuest(pages, { profile, seed, populated });
  const rate = model === "sweep" ? sizeOption("rate", values.rate, 64 * 2 ** 20) : numberOption("rate", values.rate, 0.05);
  const poisson = (popularity: Popularity) => async () =>
    new PoissonWorkload(guest(), { rate, popularity, content: profile, image: profile, seed }) as Workload;
  const describe = `${model} model, ${pages} pages (${formatBytes(pages * 4096)}${populated === undefined ? "" : `, ${formatBytes(populated * 4096)} populated`}), ${profile} profile, seed ${seed}`;
  switch (model) {
    case "idle":
      return { describe, files: [], open: async () => new IdleWorkload(guest()) };
    case "poisson":
      return { describe: `${describe}, ${rate} writes/s/page`, files: [], open: poisson({ kind: "uniform" }) };
    case "hot-cold":
      return { describe: `${describe}, ${rate} writes/s/page`, files: [], open: poisson({ kind: "hot-cold", hotPages: 0.1, hotWrites: 0.9 }) };
    case "zipf":
      return { describe: `${describe}, ${rate} writes/s/page`, files: [], open: poisson({ kind: "zipf", exponent: 1 }) };
    case "sweep":
      return { describe: `${describe}, ${formatBytes(rate)}/s`, files: [], open: async () => new SweepWorkload(guest(), { rate, seed }) };
    default:
      fail("workload", `unknown MODEL '${model}' (idle, poisson, hot-cold, zipf, sweep)`);
  }
}

/** The result of one strategy as label/value rows. */
function detailRows(stats: MigrationStats): [string, string][] {
  const rows: [string, string][] = [
    ["status", `${stats.status}, ${stats.verifiedPages} pages verified`],
    ["flavor", stats.flavor ?? "xen"],
    ["stop reason", `${stats.stopReason}${stats.converged ? "" : " (did not converge)"}`],
    ...(stats.adaptive ? [["Ada-copy", `${stats.adaptive.method}: ${stats.adaptive.reason}`] as [string, string]] : []),
    ...(stats.deadline ? [["deadline", deadlineText(stats.deadline)] as [string, string]] : []),
    ...(stats.crtr ? [["CR/TR (model)", crtrText(stats.crtr)] as [string, string]] : []),
    ["total-time", seconds(stats.totalTime)],
    ["setup-time", seconds(stats.setupTime)],
    ["downtime", seconds(stats.downtime)],
    ["expected-downtime", seconds(stats.expectedDowntime)],
    ["remote uptime U", seconds(stats.remoteUptime)],
    ["transferred", formatBytes(stats.transferred)],
    ["precopy / downtime / postcopy bytes", `${formatBytes(stats.precopyBytes)} / ${formatBytes(stats.downtimeBytes)} / ${formatBytes(stats.postcopyBytes)}`],
    ["pages transferred", `${stats.pagesTransferred} (normal ${stats.normal}, duplicate ${stats.duplicate})`],
    ["compression", `${stats.compressionRatio.toFixed(2)}× (${stats.codec})`],
    ...(stats.codecStats.choices
      ? [["codec chosen (pages)", Object.entries(stats.codecStats.choices).map(([codec, pages]) => `${codec} ${pages}`).join(", ")] as [string, string]]
      : []),
    ["mbps", stats.mbps.toFixed(1)],
    ["dirty-pages-rate", `${stats.dirtyPagesRate.toFixed(0)} pages/s`],
    ["dirty-sync-count", String(stats.dirtySyncCount)],
    ["cpu-throttle-percentage", `${stats.cpuThrottlePercentage}%`],
    ["postcopy-requests", String(stats.postcopyRequests)],
    ["faults / whole-page overwrites / pre-paged", `${stats.faults} / ${stats.wholePageOverwrites} / ${stats.prepagedPages}`],
    ["workload slowdown (destination)", `${stats.workloadSlowdown.toFixed(2)}×`],
    ["cpu source / destination", `${seconds(stats.sourceCpu)} / ${seconds(stats.destinationCpu)}`],
    ...diskRows(stats),
  ];
  if (stats.xbzrleCache) {
    const x = stats.xbzrleCache;
    rows.push(["xbzrle-cache", `${x.pages} pages, ${formatBytes(x.bytes)}, miss rate ${(100 * x.cacheMissRate).toFixed(1)}%, encoding rate ${x.encodingRate.toFixed(1)}, overflow ${x.overflow}`]);
  }
  return rows;
}

export function printDetail(stats: MigrationStats): void {
  const rows = detailRows(stats);
  const width = Math.max(...rows.map(([label]) => label.length));
  for (const [label, value] of rows) console.log(`  ${label.padEnd(width)}  ${value}`);
  if (stats.rounds.length) {
    console.log("\n  round   pages    zero  skipped      bytes  duration  dirty pages/s  throttle");
    for (const r of stats.rounds) {
      console.log(
        `  ${String(r.round).padStart(5)} ${String(r.pages).padStart(7)} ${String(r.zeroPages).padStart(7)} ${String(r.skipped).padStart(8)} ${formatBytes(r.bytes).padStart(10)} ${seconds(r.duration).padStart(9)} ${r.dirtyRate.toFixed(0).padStart(14)} ${String(r.throttle).padStart(8)}%`,
      );
    }
  }
}

/** What a deadline did, in words. */
function deadlineText(d: DeadlineOutcome): string {
  if (d.reason !== undefined) return `${seconds(d.deadline)}: switched to post-copy at ${seconds(d.switchedAt!)} (${d.reason})`;
  if (d.raised.length) return `${seconds(d.deadline)}: downtime limit raised ${d.raised.length}× to ${seconds(d.raised.at(-1)!.downtimeLimit)} (first at ${seconds(d.raised[0]!.at)})`;
  return `${seconds(d.deadline)}: pre-copy projected to end in time`;
}

/** What CR/TR's model did, in words. */
function crtrText(c: CrtrOutcome): string {
  return `checkpoint ${formatBytes(c.checkpointBytes)} in ${seconds(c.checkpointSeconds)}, then ${c.iterations} log(s) of ${formatBytes(c.logBytes)} in all (modelled: ${formatBytes(c.logRate)}/s of execution), ${seconds(c.replayedSeconds)} of execution replayed at ${c.replaySpeed}× (modelled), ${c.replayedPages} pages${c.replayedBlocks === undefined ? "" : ` and ${c.replayedBlocks} disk blocks`} written by it`;
}

/** A strategy's name in a table; Ada-copy's with the method it chose; a model's says so. */
export function strategyLabel(stats: MigrationStats): string {
  if (stats.crtr) return `${stats.strategy} (model)`;
  return stats.adaptive ? `${stats.strategy}→${stats.adaptive.method}` : stats.strategy;
}

/** One row per strategy, one column per metric; `*` marks the best of each marked column. */
export function comparisonTable(results: MigrationStats[]): string {
  // U and the destination slowdown only mean something for strategies that post-copied.
  const postcopied = (value: (s: MigrationStats) => number) => (s: MigrationStats) => (s.remoteUptime > 0 ? value(s) : undefined);
  const columns: Column<MigrationStats>[] = [
    { label: "strategy", show: strategyLabel },
    { label: "total-time", show: (s) => seconds(s.totalTime), value: (s) => s.totalTime },
    { label: "downtime", show: (s) => seconds(s.downtime), value: (s) => s.downtime },
    { label: "remote-uptime", show: (s) => seconds(s.remoteUptime), value: postcopied((s) => s.remoteUptime) },
    { label: "transferred", show: (s) => formatBytes(s.transferred), value: (s) => s.transferred },
    { label: "pages", show: (s) => String(s.pagesTransferred), value: (s) => s.pagesTransferred },
    { label: "rounds", show: (s) => String(s.rounds.length) },
    { label: "requests", show: (s) => String(s.postcopyRequests) },
    { label: "slowdown", show: (s) => `${s.workloadSlowdown.toFixed(2)}×`, value: postcopied((s) => s.workloadSlowdown) },
    { label: "throttle", show: (s) => `${s.cpuThrottlePercentage}%` },
    { label: "stop", show: (s) => s.stopReason },
    { label: "verified", show: (s) => (s.disk ? `${s.verifiedPages}+${s.disk.verifiedBlocks}` : String(s.verifiedPages)) },
  ];
  if (results.some((s) => s.disk)) columns.splice(columns.length - 1, 0, ...diskColumns<MigrationStats>((s) => s));
  return markedTable(columns, results);
}

/** Parses a bandwidth schedule: comma-separated AT:RATE steps, e.g. "5s:10mbit,20s:40mbit". */
function scheduleOption(text: OptionValue): RateStep[] {
  if (text === undefined) return [];
  if (typeof text !== "string") fail("schedule", "takes a value");
  const steps = text.split(",").map((step) => {
    const [at, rate, extra] = step.split(":");
    if (rate === undefined || extra !== undefined) fail("schedule", `each step must be AT:RATE like 5s:10mbit, got '${step}'`);
    return { at: durationOption("schedule", at, 0), bitsPerSecond: rateOption("schedule", rate, 0) };
  });
  for (let i = 1; i < steps.length; i++) {
    if (steps[i]!.at < steps[i - 1]!.at) fail("schedule", "steps must be in time order");
  }
  return steps;
}

/** The options of a simulated migration, as migrate and compare both take them. */
export const SIMULATION_OPTIONS = {
  ...WORKLOAD_ARGS,
  bandwidth: { type: "string" },
  rtt: { type: "string" },
  "downtime-limit": { type: "string" },
  json: { type: "boolean" },
  "max-iterations": { type: "string" },
  "max-time": { type: "string" },
  rounds: { type: "string" },
  budget: { type: "string" },
  state: { type: "string" },
  batch: { type: "string" },
  channels: { type: "string" },
  cost: { type: "string" },
  channel: { type: "string" },
  schedule: { type: "string" },
} as const;

export interface SimulationSetup {
  /** `files`: what it reads (an output must not be one of them) */
  guest: { describe: string; open: () => Promise<Workload>; files: string[] };
  link: LinkSpec;
  /** without codec and strategy choices, which the command adds */
  options: SimulationOptions;
  cost: CostModel;
}

/** Checks the shared options (every one, before anything runs) and builds what a simulation needs. */
export function simulationSetup(values: Record<string, OptionValue>): SimulationSetup {
  const channel = values.channel ?? "link";
  if (channel !== "link" && channel !== "loopback") fail("channel", `must be link or loopback, got '${String(channel)}'`);
  const schedule = scheduleOption(values.schedule);
  const link: LinkSpec = {
    bitsPerSecond: rateOption("bandwidth", values.bandwidth, 40e6),
    rtt: durationOption("rtt", values.rtt, 0.005),
    channel,
    schedule,
  };
  if (schedule.length && channel === "loopback") fail("schedule", "needs --channel link (the loopback channel has a constant rate)");
  const budget = values.budget === undefined ? undefined : sizeOption("budget", values.budget, 0);
  if (budget === 0) fail("budget", "must be above 0");
  const cost = typeof values.cost === "string" ? new CostModel(loadCostTable(values.cost)) : new CostModel(DEFAULT_COSTS);
  const options: SimulationOptions = {
    cost,
    downtimeLimit: durationOption("downtime-limit", values["downtime-limit"], 0.3),
    maxIterations: intOption("max-iterations", values["max-iterations"], 30, 1, 1e6),
    maxTime: durationOption("max-time", values["max-time"], DEFAULT_MAX_TIME),
    precopyRounds: intOption("rounds", values.rounds, 1, 1, 1e6),
    ...(budget === undefined ? {} : { precopyBudget: budget }),
    stateBytes: sizeOption("state", values.state, 256 * 1024),
    batchPages: intOption("batch", values.batch, 256, 1, 16384),
    channels: intOption("channels", values.channels, 1, 1, MAX_CHANNELS),
  };
  if (options.stateBytes! > 32 * 2 ** 20) fail("state", `must be at most 32MiB, got ${formatBytes(options.stateBytes!)}`);
  return { guest: workloadFactory(values), link, options, cost };
}

/**
 * Fractional's pages to pre-copy: the `percent` (default: the plan's M)
 * coldest by the profile's λ; and, with a disk in the profile, S (default:
 * the plan's), the share of its blocks.
 */
export function fractionalPages(profile: Profile, link: LinkSpec, options: SimulationOptions, percent?: number, storage?: number): { percent: number; storage: number; precopyPages: Uint32Array } {
  const planned = percent === undefined || (profile.disk && storage === undefined) ? plan(profile, { bitsPerSecond: link.bitsPerSecond, rtt: link.rtt, downtimeLimit: options.downtimeLimit, stateBytes: options.stateBytes }, storage) : undefined;
  const m = percent ?? planned!.memoryPrecopy;
  return { percent: m, storage: storage ?? planned?.storagePrecopy ?? 0, precopyPages: coldestFirst(profile.memory).subarray(0, Math.round((m / 100) * profile.memory.pageCount)) };
}

/** Why the predictor does not model a run with `codec`, or undefined where it does (docs/adaptive.md: what it models). */
export function unmodelled(setup: SimulationSetup, codec: string, autoConverge = false): string | undefined {
  if (codec !== "raw") return `the predictor models the raw codec, not ${codec}`;
  if (autoConverge) return "the predictor does not model auto-converge";
  if (setup.link.schedule?.length) return "the predictor models a constant link, not a bandwidth schedule";
  if ((setup.link.channel ?? "link") !== "link") return `the predictor models the simulated link, not ${setup.link.channel}`;
  // Frames split over channels change when pages leave (bundled pre-copy with 2: 3.32 s against one channel's 6.76).
  const channels = setup.options.channels ?? 1;
  if (channels > 1) return `the predictor models one channel, not ${channels}`;
  return undefined;
}

/** The predictor's options for a run with `codec`, or undefined where it does not model the run (unmodelled says why). */
export function predictOptions(setup: SimulationSetup, codec: string, autoConverge = false): PredictOptions | undefined {
  const o = setup.options;
  if (unmodelled(setup, codec, autoConverge) !== undefined) return undefined;
  return {
    bitsPerSecond: setup.link.bitsPerSecond,
    rtt: setup.link.rtt,
    cost: setup.cost,
    ...(o.downtimeLimit === undefined ? {} : { downtimeLimit: o.downtimeLimit }),
    ...(o.stateBytes === undefined ? {} : { stateBytes: o.stateBytes }),
    ...(o.batchPages === undefined ? {} : { batchPages: o.batchPages }),
    ...(o.maxIterations === undefined ? {} : { maxIterations: o.maxIterations }),
    ...(o.precopyRounds === undefined ? {} : { precopyRounds: o.precopyRounds }),
    ...(o.prepageWindow === undefined ? {} : { prepageWindow: o.prepageWindow }),
  };
}

/** Why a workload model's run has no prediction. */
export const NO_PROFILE = "a workload model has no trace profile to predict from";

/** The predictor's disk for a run with `disk`: a trace's profile with the run's switches; undefined for a model disk, which it does not model. */
export async function predictedDisk(disk: DiskSetup): Promise<PredictOptions["disk"] | undefined> {
  if (!disk.profile) return undefined;
  const { hotArea, diskDedup } = await disk.options();
  return { profile: await disk.profile(), hotArea: hotArea ?? true, dedup: diskDedup ?? true };
}

/**
 * Ada-copy's forecast of a trace's run (its rule 0f), each fixed method
 * predicted (with the disk, when there is one), or why there is none.
 */
export async function adaForecast(
  memory: PageProfile,
  setup: SimulationSetup,
  codec: string,
  run: { readonly autoConverge?: boolean; readonly flavor?: Flavor; readonly disk?: DiskSetup } = {},
): Promise<{ forecast: (Prediction & AdaForecast)[] } | { noForecast: string }> {
  const options = predictOptions(setup, codec, run.autoConverge);
  if (!options) return { noForecast: unmodelled(setup, codec, run.autoConverge)! };
  if (run.flavor === "qemu") return { noForecast: "the predictor models the xen flavour, not qemu's" };
  const disk = run.disk && (await predictedDisk(run.disk));
  if (run.disk && !disk) return { noForecast: "the predictor models a disk trace, not a disk model" };
  return { forecast: forecastFixed(memory, { ...options, ...(disk && { disk }) }) };
}

/** Refuses a codec spec the pipeline cannot build (as a usage error of `flag`). */
export function checkCodecOption(flag: string, codec: string): void {
  try {
    pipelineEntries(codec);
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}

/** How a link reads in a headline: rate, steps of its schedule, RTT. */
export function describeLink(link: LinkSpec): string {
  const steps = (link.schedule ?? []).map((step) => `, ${(step.bitsPerSecond / 1e6).toFixed(1)} Mbit/s from ${seconds(step.at)}`).join("");
  return `link ${(link.bitsPerSecond / 1e6).toFixed(1)} Mbit/s${steps}, RTT ${seconds(link.rtt)}`;
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    ...SIMULATION_OPTIONS,
    strategy: { type: "string" },
    codec: { type: "string" },
    "auto-converge": { type: "boolean" },
    flavor: { type: "string" },
    "max-bandwidth": { type: "string" },
    "qemu-host": { type: "string" },
    "memory-precopy": { type: "string" },
    "storage-precopy": { type: "string" },
    order: { type: "string" },
    deadline: { type: "string" },
    "no-postcopy": { type: "boolean" },
    "log-rate": { type: "string" },
    "replay-speed": { type: "string" },
    "start-at": { type: "string" },
    ...DISK_ARGS,
  });
  noPositionals(positionals);
  const strategyText = typeof values.strategy === "string" ? values.strategy : "all";
  const flavor = (values.flavor ?? "xen") as Flavor;
  if (!FLAVORS.includes(flavor)) fail("flavor", `must be ${FLAVORS.join(" or ")}, got '${String(values.flavor)}'`);
  let strategies: StrategyName[];
  if (strategyText === "all") strategies = flavor === "qemu" ? QEMU_STRATEGIES : STRATEGY_NAMES;
  else if ((STRATEGY_NAMES as string[]).includes(strategyText) || ["fractional", "ada", "crtr"].includes(strategyText)) strategies = [strategyText as StrategyName];
  else fail("strategy", `must be ${STRATEGY_NAMES.join(", ")}, fractional, ada, crtr or all, got '${strategyText}'`);
  if (flavor === "qemu" && !QEMU_STRATEGIES.includes(strategies[0]!)) fail("flavor", `qemu runs ${QEMU_STRATEGIES.join(", ")}, not ${strategyText}`);
  const fractional = strategyText === "fractional";
  if (!fractional) for (const name of ["memory-precopy", "storage-precopy"]) if (values[name] !== undefined) fail(name, "applies to --strategy fractional only");
  const memoryPercent = values["memory-precopy"] === undefined ? undefined : numberOption("memory-precopy", values["memory-precopy"], 0);
  if (memoryPercent !== undefined && memoryPercent > 100) fail("memory-precopy", `must be a percent from 0 to 100, got ${memoryPercent}`);
  const storagePercent = values["storage-precopy"] === undefined ? undefined : numberOption("storage-precopy", values["storage-precopy"], 0);
  if (storagePercent !== undefined && storagePercent > 100) fail("storage-precopy", `must be a percent from 0 to 100, got ${storagePercent}`);
  if (fractional && values.workload !== undefined) fail("strategy", "fractional orders pages by the λ of a trace's profile: give --trace, not --workload");
  if ((values.deadline !== undefined || values["no-postcopy"]) && strategyText !== "precopy") fail("deadline", "--deadline and --no-postcopy apply to --strategy precopy");
  if (values["no-postcopy"] && values.deadline === undefined) fail("no-postcopy", "applies with --deadline");
  const deadline = values.deadline === undefined ? undefined : positiveDurationOption("deadline", values.deadline, 0);
  if (strategyText !== "crtr") for (const name of ["log-rate", "replay-speed"]) if (values[name] !== undefined) fail(name, "applies to --strategy crtr only");
  const logRate = values["log-rate"] === undefined ? undefined : sizeOption("log-rate", values["log-rate"], 0);
  const replaySpeed = values["replay-speed"] === undefined ? undefined : numberOption("replay-speed", values["replay-speed"], 0);
  if (replaySpeed !== undefined && !(replaySpeed > 0)) fail("replay-speed", "must be above 0");
  const order = values.order ?? "index";
  if (order !== "index" && order !== "cold-first") fail("order", `must be index or cold-first, got '${String(order)}'`);
  if (order === "cold-first" && values.workload !== undefined) fail("order", "cold-first orders pages by the λ of a trace's profile: give --trace, not --workload");
  const setup = simulationSetup(values);
  const { guest, link, cost } = setup;
  const disk = await diskSetup(values);
  if (storagePercent && !disk) fail("storage-precopy", "applies to a disk (--disk FILE or --disk-workload MODEL)");
  const diskOptions: Mutable<Pick<SimulationOptions, "diskDedup" | "prefetch" | "hotArea" | "diskHeat" | "diskPrecopyBlocks">> = disk ? await disk.options() : {};
  const options: Mutable<SimulationOptions> = {
    ...setup.options,
    codec: typeof values.codec === "string" ? values.codec : "raw",
    autoConverge: values["auto-converge"] === true,
    ...(deadline !== undefined && { deadline, noPostcopy: values["no-postcopy"] === true }),
    ...(flavor === "qemu" && { flavor }),
    ...(logRate !== undefined && { logRate }),
    ...(replaySpeed !== undefined && { replaySpeed }),
    ...(values["max-bandwidth"] !== undefined && { maxBandwidth: rateOption("max-bandwidth", values["max-bandwidth"], 0) / 8 }),
  };
  if (options.maxBandwidth !== undefined && flavor !== "qemu") fail("max-bandwidth", "is QEMU's rate limit: give --flavor qemu");
  if (typeof values["qemu-host"] === "string") {
    if (flavor !== "qemu") fail("qemu-host", "is the time QEMU's process takes: give --flavor qemu");
    options.qemuHost = loadQemuHost(values["qemu-host"]);
  }
  checkCodecOption("--codec", options.codec!);
  if (flavor === "qemu" && options.codec !== "raw" && options.codec !== "xbzrle") fail("flavor", `qemu sends pages whole, as zero pages or as XBZRLE deltas: give --codec raw or xbzrle, not '${options.codec}'`);
  if (flavor === "qemu" && disk) fail("flavor", "qemu migrates memory only: no disk");
  // Ada-copy on a trace takes the trace's dirty rate as measured before the start (its rule 0).
  const ada = strategyText === "ada" && values.workload === undefined;
  const profile = fractional || ada || order === "cold-first" ? await profileTrace(typeof values.trace === "string" ? values.trace : BUNDLED_TRACE.pathname) : undefined;
  if (order === "cold-first") options.pageOrder = coldestFirst(profile!.memory);
  if (ada) {
    options.dirtyRateBefore = meanDirtyRate(profile!.memory);
    Object.assign(options, await adaForecast(profile!.memory, setup, options.codec!, { autoConverge: options.autoConverge, flavor, ...(disk && { disk }) }));
  } else if (strategyText === "ada") options.noForecast = NO_PROFILE;
  if (fractional) {
    // The coldest M% by λ, and S% of a disk's blocks by write rate; without --memory-precopy (or, with a disk trace, --storage-precopy), the plan's (pagemill plan).
    const diskTrace = typeof values.disk === "string" ? values.disk : undefined;
    const planned: Profile = diskTrace ? { ...profile!, disk: (await profileTrace(diskTrace)).memory } : profile!;
    const { percent, storage, precopyPages } = fractionalPages(planned, link, options, memoryPercent, storagePercent);
    options.precopyPages = precopyPages;
    if (storage && diskOptions.diskHeat) diskOptions.diskPrecopyBlocks = ascendingBy(diskOptions.diskHeat).subarray(0, Math.round((storage / 100) * diskOptions.diskHeat.length));
    const plans = memoryPercent === undefined || (diskTrace !== undefined && storagePercent === undefined) ? " (the plan's)" : "";
    if (!values.json) console.log(`fractional: pre-copy ${disk ? `the ${storage}% coldest disk blocks and ` : ""}the ${percent}% coldest pages${plans}, post-copy the rest`);
  }

  const startAt = durationOption("start-at", values["start-at"], 0);
  const results: MigrationStats[] = [];
  const wall: number[] = [];
  let pageCount = 0;
  for (const strategy of strategies) {
    const workload = await guest.open();
    const diskWorkload = await disk?.open();
    // The guest (and its disk's program) ran this long before the migration starts.
    if (startAt > 0) {
      await workload.advance(startAt);
      await diskWorkload?.advance(startAt);
    }
    pageCount = workload.guest.pageCount;
    let progress: Progress | undefined;
    const onProgress = (p: MigrationProgress): void => {
      progress ??= new Progress(strategy, p.pageCount);
      const eta = Number.isNaN(p.eta) ? "" : ` eta ${p.eta.toFixed(1)}s`;
      const extra = `${p.phase} r${p.round} left ${p.remainingPages} ${(p.bitsPerSecond / 1e6).toFixed(1)} Mbit/s t=${p.time.toFixed(2)}s${eta}`;
      progress.update(p.pageCount - p.remainingPages, extra);
    };
    const started = performance.now();
    try {
      results.push(await simulate(strategy, workload, link, { ...options, ...diskOptions, disk: diskWorkload, onProgress }));
    } finally {
      progress?.done();
      await workload.close();
      workload.guest.dispose();
      await diskWorkload?.close();
      diskWorkload?.guest.dispose();
    }
    wall.push((performance.now() - started) / 1000);
  }

  if (values.json) {
    // QEMU's query-migrate counts milliseconds; these figures are seconds, and say so.
    // verified: every page, and every disk block when there is a disk.
    const out = results.map((stats, i) => ({
      ...stats,
      verified: stats.verifiedPages === pageCount && (!stats.disk || stats.disk.verifiedBlocks === stats.disk.blockCount),
      timeUnit: "s",
      wallSeconds: wall[i],
    }));
    console.log(JSON.stringify(out.length === 1 ? out[0] : out, null, 2));
    return 0;
  }
  console.log(`${guest.describe}${disk ? `; ${disk.describe}` : ""}`);
  console.log(`${describeLink(link)}, ${flavor} flavour, codec ${options.codec}, downtime limit ${seconds(options.downtimeLimit!)} (cost table: ${cost.table.source})\n`);
  if (results.length === 1) printDetail(results[0]!);
  else {
    console.log(comparisonTable(results));
    console.log("\n* best in its column; times are virtual seconds (simulated link and CPU costs), every page really encoded and checked.");
    console.log("remote-uptime: how long the guest ran at the destination while pages were still arriving (post-copy; seed 001's U).");
  }
  console.log(`\nwall time: ${wall.map((w, i) => `${results[i]!.strategy} ${w.toFixed(2)} s`).join(", ")}`);
  return 0;
}

// pagemill compare: every migration method the engine has, with each codec
// choice that matters, on one guest and link, side by side. The methods are
// the strategies registered in engine/migrate.ts (STRATEGIES) plus pre-copy
// with auto-converge, so a strategy appears here once it is registered there.
// For a trace, src/adaptive's predictor gives T and D beside the rows it models.

import type { MigrationStats, StrategyName } from "../engine/metrics.js";
import { STRATEGIES, STRATEGY_NAMES, simulate, type SimulationOptions } from "../engine/migrate.js";
import { writeFile } from "node:fs/promises";
import { checkDistinct, checkOutput, writeAtomically } from "../files.js";
import { Progress, UsageError, formatBytes, noPositionals, parse, pathOption } from "./args.js";
import { compareReport } from "./report.js";
import { predictedCell, type CompareRow } from "./rows.js";
export type { CompareRow } from "./rows.js";
import { inspectTrace } from "./inspect.js";
import { predict, type PredictedStrategy, type Prediction } from "../adaptive/predict.js";
import { meanDirtyRate, profileTrace, type PageProfile, type Profile } from "../adaptive/profile.js";
import { NO_PROFILE, SIMULATION_OPTIONS, adaForecast, checkCodecOption, describeLink, fractionalPages, predictOptions, predictedDisk as predictedDiskOf, seconds, simulationSetup, strategyLabel, type SimulationSetup } from "./migrate.js";
import { markedTable, type Column } from "./table.js";
import { DISK_ARGS, DISK_USAGE, diskColumns, diskSetup, type DiskSetup } from "./disk.js";

export const summary = "Migrates one guest with every strategy × codec (raw, mecom, xbzrle, auto) and prints them side by side; --report writes an HTML report with charts.";
export const usage = `usage: pagemill compare [--trace FILE | --workload MODEL ...] [--bandwidth 40mbit] [--rtt 5ms]
         [--codecs raw,mecom,xbzrle,auto] [--report OUT.html] [--json] [migrate's other options]
  Every strategy the engine has (${STRATEGY_NAMES.join(", ")}, precopy with auto-converge, and for a trace fractional at the plan's M)
  with each codec of --codecs; one row each. --report writes one self-contained HTML file with
  charts (bytes and dirty pages per round, a timeline per method, bytes by encoding). Defaults as \`pagemill migrate\` (the bundled trace, 40 Mbit/s, 5 ms RTT).
${DISK_USAGE}`;

/** The codec choices that matter for a migration: none, the adaptive compressor, a delta, and per-batch auto. */
export const COMPARE_CODECS = ["raw", "mecom", "xbzrle", "auto"];

/** One row's method: a registered strategy with the options that make it a variant. */
export interface Method {
  readonly label: string;
  readonly strategy: StrategyName;
  readonly options: Partial<SimulationOptions>;
  /** fractional: the share of pages pre-copied, for the predictor */
  readonly memoryPrecopy?: number;
}

/**
 * Every strategy that runs without a plan, and pre-copy again with
 * auto-converge (a throttle, not a strategy of its own), and Ada-copy (its
 * row named with the method it chose); with a trace's profile, fractional
 * too, at the plan's M.
 */
export function compareMethods(setup?: SimulationSetup, profile?: Profile): Method[] {
  const methods: Method[] = [];
  for (const strategy of STRATEGY_NAMES) {
    methods.push({ label: strategy, strategy, options: {} });
    if (strategy === "precopy") methods.push({ label: "precopy+auto-converge", strategy, options: { autoConverge: true } });
  }
  // With a trace's profile, Ada-copy knows the dirty rate before the start (its rule 0), as migrate gives it.
  methods.push({ label: "ada", strategy: "ada", options: profile ? { dirtyRateBefore: meanDirtyRate(profile.memory) } : {} });
  if (setup && profile && Object.hasOwn(STRATEGIES, "fractional")) {
    const { percent, precopyPages } = fractionalPages(profile, setup.link, setup.options);
    methods.push({ label: `fractional M=${percent}%`, strategy: "fractional", options: { precopyPages }, memoryPrecopy: percent / 100 });
  }
  return methods;
}

/** Seed 001's δT: the stretch of normal execution whose restoration Γ measures (20 s there). */
export const AGILITY_WINDOW = 20;

/**
 * Seed 001's performance restoration agility Γ = δT / (D + ΔT), ΔT being how
 * long the resumed guest takes to do δT of its normal work. Post-copy faults
 * stall it: ΔT = δT × slowdown while pages still arrive for all of δT, else
 * δT + the time stalled (the smaller of the two is the one that applies).
 * 1 is a migration the guest never notices; pre-copy loses only D.
 */
export function restorationAgility(stats: MigrationStats, window = AGILITY_WINDOW): number {
  const restore = Math.min(window * stats.workloadSlowdown, window + stats.faultStall);
  return window / (stats.downtime + restore);
}

/** The strategies src/adaptive's predictor models (with the raw codec, no auto-converge, a constant link). */
const PREDICTED: readonly string[] = ["precopy", "postcopy", "hybrid", "fractional"] satisfies PredictedStrategy[];

/** What the predictor says of one row (with the disk, a trace's), or undefined for a row it does not model. */
async function prediction(memory: PageProfile, setup: SimulationSetup, method: Method, codec: string, disk?: DiskSetup): Promise<CompareRow["predicted"]> {
  const options = PREDICTED.includes(method.strategy) ? predictOptions(setup, codec, method.options.autoConverge) : undefined;
  if (!options) return undefined;
  const predictedDisk = disk && (await predictedDiskOf(disk));
  if (disk && !predictedDisk) return undefined;
  const p = predict(memory, method.strategy as PredictedStrategy, {
    ...options,
    deltaT: AGILITY_WINDOW,
    ...(method.memoryPrecopy === undefined ? {} : { memoryPrecopy: method.memoryPrecopy }),
    ...(predictedDisk && { disk: predictedDisk }),
  });
  return predictedCells(p);
}

const predictedCells = (p: Prediction): CompareRow["predicted"] => ({ totalTime: p.totalTime, downtime: p.downtime, gamma: p.gamma });

/** Runs every method × codec in turn; a failed row records its reason and the rest still run. */
export async function compare(
  setup: SimulationSetup,
  methods: Method[],
  codecs: string[],
  { profile, onRow, disk }: { profile?: Profile; onRow?: (done: number, total: number, row: CompareRow) => void; disk?: DiskSetup } = {},
): Promise<CompareRow[]> {
  const diskOptions = disk ? await disk.options() : {};
  const rows: CompareRow[] = [];
  const total = methods.length * codecs.length;
  for (const method of methods) {
    for (const codec of codecs) {
      const started = performance.now();
      const row: CompareRow = { method: method.label, strategy: method.strategy, codec, verified: false, wallSeconds: 0 };
      let workload;
      let diskWorkload;
      try {
        const predicted = profile && (await prediction(profile.memory, setup, method, codec, disk));
        if (predicted) row.predicted = predicted;
        workload = await setup.guest.open();
        diskWorkload = await disk?.open();
        // Ada-copy on a trace runs the fixed method predicted fastest, where the predictor models the run (its rule 0f); else why not.
        const ada = method.strategy !== "ada" ? undefined : profile ? await adaForecast(profile.memory, setup, codec, { autoConverge: method.options.autoConverge, ...(disk && { disk }) }) : { noForecast: NO_PROFILE };
        row.stats = await simulate(method.strategy, workload, setup.link, { ...setup.options, ...method.options, ...diskOptions, codec, disk: diskWorkload, ...ada });
        if (row.stats.adaptive) row.method = strategyLabel(row.stats);
        // Its prediction is the chosen method's.
        const chosen = ada && "forecast" in ada ? ada.forecast.find((f) => f.strategy === row.stats!.adaptive?.method) : undefined;
        if (chosen) row.predicted = predictedCells(chosen);
        const blocks = row.stats.disk;
        row.verified = row.stats.verifiedPages === workload.guest.pageCount && (!blocks || blocks.verifiedBlocks === blocks.blockCount);
        row.agility = restorationAgility(row.stats);
      } catch (err) {
        row.error = err instanceof Error ? err.message : String(err);
      } finally {
        if (workload) {
          await workload.close();
          workload.guest.dispose();
        }
        if (diskWorkload) {
          await diskWorkload.close();
          diskWorkload.guest.dispose();
        }
      }
      row.wallSeconds = (performance.now() - started) / 1000;
      rows.push(row);
      onRow?.(rows.length, total, row);
    }
  }
  return rows;
}

const ok = (row: CompareRow): MigrationStats | undefined => row.stats;


/** The comparison as text: one line per row, `*` on the best of each column; failed rows give their reason. */
export function compareTable(rows: CompareRow[]): string {
  const columns: Column<CompareRow>[] = [
    { label: "method", show: (r) => r.method },
    { label: "codec", show: (r) => r.codec },
    { label: "T", show: (r) => (r.stats ? seconds(r.stats.totalTime) : "failed"), value: (r) => ok(r)?.totalTime },
    { label: "D", show: (r) => (r.stats ? seconds(r.stats.downtime) : ""), value: (r) => ok(r)?.downtime },
    // U only means something for rows that post-copied
    { label: "U", show: (r) => (r.stats ? seconds(r.stats.remoteUptime) : ""), value: (r) => (r.stats?.remoteUptime ? r.stats.remoteUptime : undefined) },
    { label: "Γ", show: (r) => (r.agility === undefined ? "" : r.agility.toFixed(4)), value: (r) => r.agility, higherIsBetter: true },
    { label: "bytes", show: (r) => (r.stats ? formatBytes(r.stats.transferred) : ""), value: (r) => ok(r)?.transferred },
    { label: "pages", show: (r) => (r.stats ? String(r.stats.pagesTransferred) : ""), value: (r) => ok(r)?.pagesTransferred },
    { label: "faults", show: (r) => (r.stats ? String(r.stats.faults) : "") },
    { label: "rounds", show: (r) => (r.stats ? String(r.stats.rounds.length) : "") },
    { label: "predicted T", show: (r) => predictedCell(r.predicted?.totalTime, r.stats?.totalTime) },
    { label: "predicted D", show: (r) => predictedCell(r.predicted?.downtime, r.stats?.downtime) },
    { label: "verified", show: (r) => (r.stats ? (r.verified ? "yes" : "NO") : "") },
  ];
  if (rows.some((r) => r.stats?.disk)) columns.splice(columns.length - 3, 0, ...diskColumns<CompareRow>((r) => r.stats));
  const lines = markedTable(columns, rows).split("\n");
  const failed = rows.flatMap((r) => (r.error ? [`${r.method} with ${r.codec} failed: ${r.error}`] : []));
  return [...lines, ...(failed.length ? ["", ...failed] : [])].join("\n");
}

/** Parses --codecs: a comma-separated list of codec specs, each one the pipeline can build. */
function codecsOption(text: unknown): string[] {
  if (text === undefined) return COMPARE_CODECS;
  if (typeof text !== "string") throw new UsageError("--codecs takes a value");
  const codecs = text.split(",").map((c) => c.trim());
  for (const codec of codecs) {
    if (codec === "") throw new UsageError(`--codecs: an empty entry in '${text}'`);
    checkCodecOption("--codecs", codec);
  }
  return [...new Set(codecs)];
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { ...SIMULATION_OPTIONS, ...DISK_ARGS, codecs: { type: "string" }, report: { type: "string" } });
  noPositionals(positionals);
  const setup = simulationSetup(values);
  const disk = await diskSetup(values);
  const codecs = codecsOption(values.codecs);
  const report = values.report === undefined ? undefined : pathOption("--report OUT.html", values.report, undefined, "an HTML file");
  if (report !== undefined) {
    await checkOutput(report);
    await checkDistinct(report, [...setup.guest.files, ...(disk?.files ?? []), ...(typeof values.cost === "string" ? [values.cost] : [])]);
  }
  const [trace] = setup.guest.files;
  const profile = trace === undefined ? undefined : await profileTrace(trace);
  const methods = compareMethods(setup, profile);

  const progress = new Progress("compare", methods.length * codecs.length);
  const started = performance.now();
  const onRow = (done: number, total: number, row: CompareRow): void => {
    const elapsed = (performance.now() - started) / 1000;
    progress.update(done, `${done}/${total} rows, last ${row.method} ${row.codec}, ETA ${((elapsed / done) * (total - done)).toFixed(0)} s`);
  };
  const rows = await compare(setup, methods, codecs, { ...(profile ? { profile } : {}), onRow, ...(disk ? { disk } : {}) });
  const guest = disk ? `${setup.guest.describe}; ${disk.describe}` : setup.guest.describe;
  progress.done();
  const wallSeconds = (performance.now() - started) / 1000;

  if (values.json) {
    console.log(JSON.stringify({ guest, link: setup.link, timeUnit: "s", wallSeconds, rows }, null, 2));
  } else {
    console.log(guest);
    console.log(`${describeLink(setup.link)}, downtime limit ${seconds(setup.options.downtimeLimit!)} (cost table: ${setup.cost.table.source})\n`);
    console.log(compareTable(rows));
    console.log("\n* best in its column (U among rows that post-copied). T total time, D downtime, U remote uptime: virtual seconds");
    console.log("(simulated link and CPU costs), every page really encoded, sent, decoded and checked. Γ: seed 001's restoration");
    console.log(`agility δT / (D + ΔT), δT = ${AGILITY_WINDOW} s, ΔT the time the resumed guest takes for δT of its work (higher is better).`);
    console.log("predicted: src/adaptive's model of a trace (docs/adaptive.md), with its error against the emulation; it models the raw codec");
    console.log("without auto-converge on a constant link, and a disk only as a trace, so other rows show –; Ada-copy's is the method it chose.");
    console.log(`\nwall time ${wallSeconds.toFixed(1)} s for ${rows.length} migrations`);
  }
  if (report !== undefined) {
    const [trace] = setup.guest.files;
    const downtime = setup.options.downtimeLimit!;
    const html = compareReport(rows, {
      guest,
      link: setup.link,
      downtimeLimit: downtime,
      wallSeconds,
      ...(trace === undefined ? {} : { trace: await inspectTrace(trace, { bandwidth: setup.link.bitsPerSecond, downtime }) }),
    });
    await writeAtomically(report, (temporary) => writeFile(temporary, html));
    // with --json, stdout is the JSON alone
    (values.json ? console.error : console.log)(`report: ${report}`);
  }
  return rows.some((r) => r.error || !r.verified) ? 1 : 0;
}

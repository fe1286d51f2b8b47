// Running one migration in one process: a Source and a Destination over
// whatever Clock and Channel the caller gives, a strategy driving the
// source, and the end-of-migration check. Also the usual set-up for
// simulations: a fresh VirtualClock and a simulated link (or the loopback
// channel) between the two ends.

import type { Guest, Workload } from "../guest/guest.js";
import { MirrorPages } from "./mirror.js";
import { SimulatedLink, type RateStep } from "../net/link.js";
import { LoopbackPair } from "../net/loopback.js";
import { TimeLimitError, VirtualClock } from "../clock.js";
import { Destination } from "./destination.js";
import { ada } from "./ada.js";
import { crtr, replayFromSource } from "./crtr.js";
import { fractional } from "./fractional.js";
import { hybrid } from "./hybrid.js";
import { combineStats, type MigrationStats, type StopReason, type StrategyName } from "./metrics.js";
import { normaliseOptions, type MigrationOptions, type Phase } from "./options.js";
import { postcopy } from "./postcopy.js";
import { precopy } from "./precopy.js";
import { Source } from "./source.js";
import { diskStats } from "./storage.js";
import { Tasks } from "./tasks.js";
import { verifyMemory } from "./verify.js";
import { PagemillError } from "../errors.js";

/** A strategy drives the source; it returns once the source has nothing more to send. */
export type Strategy = (source: Source) => Promise<{ reason: StopReason; converged: boolean }>;

export const STRATEGIES: Readonly<Record<StrategyName, Strategy>> = { precopy, postcopy, hybrid, fractional, ada, crtr };
/** The strategies that run without a plan ("all"); fractional needs its pages (`precopyPages`). */
export const STRATEGY_NAMES: StrategyName[] = ["precopy", "postcopy", "hybrid"];

/** What flavor qemu runs (QEMU has no fractional hybrid-copy, Ada-copy or CR/TR). */
export const QEMU_STRATEGIES: StrategyName[] = ["precopy", "postcopy", "hybrid"];

/** Progress reports at most this often (clock seconds), and always at the end. */
const PROGRESS_PERIOD = 0.05;

/**
 * Migrates `options.workload`'s guest with `strategy`, then checks that the
 * destination's memory equals the source's (VerificationError otherwise).
 * The workload is left where the migration left it (advanced, unthrottled).
 */
export async function migrate(strategy: StrategyName, options: MigrationOptions): Promise<MigrationStats> {
  if (!STRATEGIES[strategy]) throw new RangeError(`unknown strategy '${strategy}' (have: ${STRATEGY_NAMES.join(", ")})`);
  const { workload, clock, disk } = options;
  const settings = normaliseOptions(options, workload.guest, disk?.guest);
  if (settings.flavor === "qemu" && !QEMU_STRATEGIES.includes(strategy)) throw new RangeError(`flavor qemu runs ${QEMU_STRATEGIES.join(", ")}, not ${strategy}`);
  // QEMU's post-copy starts after the first pre-copy pass (migrate-start-postcopy once it ended): hybrid's one round.
  const run = settings.flavor === "qemu" && strategy === "postcopy" ? hybrid : STRATEGIES[strategy];
  const tasks = new Tasks();
  let lastProgress = -Infinity;
  const report = (): void => {
    if (!options.onProgress) return;
    const now = clock.now();
    const done = destination.complete;
    if (now - lastProgress < PROGRESS_PERIOD && !done) return;
    lastProgress = now;
    const resumed = destination.resumeAt >= 0;
    const phase: Phase = done ? "done" : resumed ? "postcopy" : source.phase;
    options.onProgress({
      strategy,
      phase,
      round: source.round,
      remainingPages: resumed ? destination.missingPages : source.remainingPages,
      pageCount: settings.pageCount,
      bitsPerSecond: source.bandwidth * 8,
      time: source.elapsed(),
      eta: done ? 0 : source.eta(),
    });
  };
  // CR/TR's replay is a model that reaches across both ends (crtr.ts).
  const modelReplay = (): { pages: number; blocks: number } => ({
    pages: replayFromSource(destination.memory, workload.guest.memory, source.switchover),
    blocks: disk ? replayFromSource(destination.diskMemory!, disk.guest.memory, source.disk!.switchover) : 0,
  });
  const source = new Source({ settings, workload, clock, channel: options.source, tasks, report, disk, modelReplay });
  const sourceDisk = source.disk;
  // Both ends in one process: the destination holds only the pages that differ from the source's (mirror.ts).
  const memory = mirrorOf(workload.guest);
  const diskMemory = disk && mirrorOf(disk.guest);
  const destination = new Destination({
    memory,
    diskMemory,
    settings,
    clock,
    channel: options.destination,
    tasks,
    report,
    shared: {
      workload,
      state: source.state,
      original: (p) => source.switchover.page(p),
      preserve: (p) => source.switchover.preserve(p),
      release: (p) => source.switchover.release(p),
    },
    disk: sourceDisk && {
      workload: sourceDisk.workload,
      original: (b) => sourceDisk.switchover.page(b),
      preserve: (b) => sourceDisk.switchover.preserve(b),
      release: (b) => sourceDisk.switchover.release(b),
    },
  });
  try {
    const { reason, converged, end } = await clock.run(async () => {
      destination.listen();
      source.listen();
      const outcome = await Promise.race([
        (async () => {
          const outcome = await run(source);
          await destination.completed;
          return outcome;
        })(),
        tasks.failed,
      ]);
      options.source.close();
      options.destination.close();
      // The migration ends when both ends are done: the destination holds
      // every page and the source has stopped sending (QEMU measures at the source).
      return { ...outcome, end: clock.now() };
    });
    const stats = combineStats(
      {
        strategy,
        codec: settings.codec,
        converged,
        stopReason: reason,
        totalTime: end - source.t0,
        downtime: destination.resumeAt - source.stopAt,
        remoteUptime: end - destination.resumeAt,
        total: settings.pageCount * settings.pageSize,
        pageSize: settings.pageSize,
        remaining: destination.missingPages * settings.pageSize,
        stateBytes: settings.stateBytes,
        rtt: options.source.rtt,
      },
      source.counters,
      { ...destination.counters, workloadSlowdown: destination.slowdown(end) },
      [source.traffic, destination.traffic],
      source.pipeline.report(settings.pageSize),
    );
    stats.verifiedPages = verifyMemory(workload.guest.memory, destination.memory, settings.pageSize);
    if (sourceDisk) {
      const verifiedBlocks = verifyMemory(sourceDisk.guest.memory, destination.diskMemory!, sourceDisk.settings.blockSize, "disk block");
      stats.disk = diskStats(sourceDisk.stats, destination.diskCounters, verifiedBlocks);
    }
    return stats;
  } finally {
    workload.throttle = 1;
    workload.guest.beforeChange = undefined;
    if (disk) {
      disk.throttle = 1;
      disk.guest.beforeChange = undefined;
    }
    destination.dispose();
    source.dispose();
  }
}

/** A destination memory reading through to `guest`'s, kept by copy-on-write as the guest changes. */
function mirrorOf(guest: Guest): MirrorPages {
  if (guest.beforeChange) throw new PagemillError("the guest is being migrated already (one migration per guest at a time)");
  const mirror = new MirrorPages(guest.memory);
  guest.beforeChange = (page) => mirror.detach(page);
  return mirror;
}

/** A link for a simulated migration. */
export interface LinkSpec {
  /** bit/s */
  readonly bitsPerSecond: number;
  /** seconds */
  readonly rtt: number;
  readonly schedule?: readonly RateStep[];
  /** "link" (SimulatedLink, default) or "loopback" (LoopbackPair: constant rate only). */
  readonly channel?: "link" | "loopback";
}

export type SimulationOptions = Omit<MigrationOptions, "workload" | "clock" | "source" | "destination"> & {
  /** Most virtual seconds a run may take (default DEFAULT_MAX_TIME): refused before it starts when the first pass alone needs more at the least, stopped with a SimulationCostError when it gets there. */
  readonly maxTime?: number;
};

/** Virtual time a simulation may take (see SimulationOptions.maxTime): a day. */
export const DEFAULT_MAX_TIME = 86400;
/**
 * Most page writes a simulated guest may have to make during the first pass:
 * each costs about 10 µs of wall time here (written, logged, sent again),
 * so this is a few minutes.
 */
export const MAX_SIMULATED_WRITES = 2e7;
/** Better than any codec does on real pages: a lower bound of a pass's bytes is the guest's over this. */
const BEST_COMPRESSION = 16;

/** A simulation refused before it starts because it would run for hours. */
export class SimulationCostError extends PagemillError {}

/**
 * What a simulation costs at the least, estimated before it runs: every
 * strategy moves every page once, so the first pass takes at least the
 * guest's bytes (compressed as well as any codec could) over the fastest rate
 * the link ever offers, and the guest runs through it.
 */
export function simulationCost(workload: Workload, link: LinkSpec): { firstPassSeconds: number; pageWrites: number } {
  const steps = link.schedule ?? [];
  const rates = [...(steps.some((s) => s.at <= 0) ? [] : [link.bitsPerSecond]), ...steps.map((s) => s.bitsPerSecond)];
  const guest = workload.guest;
  const firstPassSeconds = (guest.pageCount * guest.pageSize * 8) / BEST_COMPRESSION / Math.max(...rates);
  return { firstPassSeconds, pageWrites: (workload.writeRate ?? 0) * firstPassSeconds };
}

function checkCost(workload: Workload, link: LinkSpec, maxTime: number): void {
  const { firstPassSeconds, pageWrites } = simulationCost(workload, link);
  const pages = `${workload.guest.pageCount} pages of ${workload.guest.pageSize} B`;
  if (firstPassSeconds > maxTime) {
    throw new SimulationCostError(
      `the first pass over ${pages} needs at least ${firstPassSeconds.toPrecision(3)} s of virtual time at the link's best rate, past the limit of ${maxTime} s (raise the bandwidth or the time limit)`,
    );
  }
  if (pageWrites > MAX_SIMULATED_WRITES) {
    throw new SimulationCostError(
      `the guest (${workload.name}) would write about ${pageWrites.toPrecision(3)} pages during the first pass alone (${workload.writeRate!.toPrecision(3)}/s for ${firstPassSeconds.toPrecision(3)} s), past the ${MAX_SIMULATED_WRITES} a simulation takes (hours of wall time); lower the write rate or raise the bandwidth`,
    );
  }
}

/** Migrates over a simulated link on a fresh virtual clock. */
export async function simulate(
  strategy: StrategyName,
  workload: Workload,
  link: LinkSpec,
  options: SimulationOptions = {},
): Promise<MigrationStats> {
  const { maxTime = DEFAULT_MAX_TIME, ...migration } = options;
  checkCost(workload, link, maxTime);
  // The estimate above is a lower bound: the run itself stops at the limit too.
  const clock = new VirtualClock(maxTime);
  let ends: { a: SimulatedLink["a"]; b: SimulatedLink["b"] };
  if (link.channel === "loopback") {
    if (link.schedule?.length) throw new RangeError("the loopback channel has a constant rate: no schedule");
    ends = new LoopbackPair(clock, link);
  } else ends = new SimulatedLink(clock, link);
  let stats: MigrationStats;
  try {
    stats = await migrate(strategy, { ...migration, workload, clock, source: ends.a, destination: ends.b });
  } catch (error) {
    if (!(error instanceof TimeLimitError)) throw error;
    throw new SimulationCostError(`the migration was still running after ${maxTime} s of virtual time, the limit (maxTime; the CLI's --max-time): raise it, or the bandwidth`, { cause: error });
  }
  stats.bandwidth = link.bitsPerSecond;
  return stats;
}

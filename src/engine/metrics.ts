// What a migration reports: one stats object, in QEMU's words where QEMU has
// one (`query-migrate`: total-time, downtime, ram.transferred, ...; named in
// each field's comment), plus what the seeds add (remote uptime U, pages
// transferred, the workload's slowdown at the destination, per-round rows).
// Times are in seconds of the migration's clock (virtual unless run on a
// real one), sizes in bytes, rates per second of that clock.

import type { XbzrleStats } from "../codecs/codec.js";
import type { WireStats } from "../wire/pipeline.js";
import type { PipelineReport } from "../wire/pipeline.js";
import type { DiskStats } from "./storage.js";

export type StrategyName = "precopy" | "postcopy" | "hybrid" | "fractional" | "ada" | "crtr";

/** Why pre-copy stopped iterating. */
export type StopReason =
  /** the bytes left fit the downtime limit at the measured bandwidth (QEMU) */
  | "downtime-limit"
  /** nothing left to send after a round */
  | "converged"
  /** Xen's cap on the number of rounds */
  | "iteration-limit"
  /** Xen's cap: more than `maxSentFactor` × guest memory sent */
  | "sent-limit"
  /** hybrid: the configured pre-copy rounds are done */
  | "round-limit"
  /** hybrid: the configured pre-copy byte budget is spent */
  | "byte-budget"
  /** post-copy: switch-over at once */
  | "immediate"
  /** Ada-copy: its rule switched to post-copy (MigrationStats.adaptive says why) */
  | "adaptive"
  /** pre-copy's projection passed the deadline: switched to post-copy (MigrationStats.deadline says when) */
  | "deadline"
  /** CR/TR (a model): the destination's replay does not gain on the source (replay speed ≤ 1, or a log rate the link cannot carry); stopped with the lag as downtime */
  | "replay-lag";

/** What a pre-copy deadline did (src/engine/deadline.ts). */
export interface DeadlineOutcome {
  /** the deadline, seconds from the start */
  deadline: number;
  /** when pre-copy switched to post-copy, and why (absent: it did not) */
  switchedAt?: number;
  reason?: string;
  /** with noPostcopy: each raise of the downtime limit (seconds from the start, the new limit) */
  raised: { at: number; downtimeLimit: number }[];
}

/** What Ada-copy chose (src/engine/ada.ts), and the figures it chose on. */
export interface AdaDecision {
  /** pre-copy to the end; post-copy from the first round; hybrid: post-copy after `round` rounds */
  method: "precopy" | "postcopy" | "hybrid";
  reason: string;
  /** the round it decided in (0: before the start, on the dirty rate measured before it) */
  round: number;
  /** dirty rate over send rate, and both (pages/s), when it decided */
  rho: number;
  dirtyRate: number;
  sendRate: number;
  /** coefficient of variation of the rounds' dirty rates so far */
  cv: number;
}

/**
 * What checkpoint + trace/replay did (src/engine/crtr.ts). A model: the
 * checkpoint is real (every page encoded, sent and checked), the log of
 * non-deterministic events and its replay are not (pagemill records none):
 * the log's bytes are its rate times the execution it covers, its replay
 * takes that execution over the replay speed.
 */
export interface CrtrOutcome {
  /** always true: the log and the replay are modelled, not recorded */
  model: true;
  /** the log's growth, bytes per second of the source's execution */
  logRate: number;
  /** execution seconds the destination replays per second */
  replaySpeed: number;
  /** wire bytes of the checkpoint (the memory once, with the codec, and a disk's blocks) and the seconds it took to send */
  checkpointBytes: number;
  checkpointSeconds: number;
  /** modelled log bytes sent after it, in how many iterations (the last in the downtime) */
  logBytes: number;
  iterations: number;
  /** seconds of the source's execution the destination replayed */
  replayedSeconds: number;
  /** pages the execution wrote after the checkpoint: what the replay re-creates (taken from the source in this process) */
  replayedPages: number;
  /** with a disk: the blocks it wrote after the checkpoint, re-created the same way */
  replayedBlocks?: number;
}

/** One pre-copy round (Clark et al.'s iteration; QEMU's dirty sync period). */
export interface RoundRow {
  /** 1 for the first full pass */
  round: number;
  /** clock time the round started */
  start: number;
  /** seconds the round took */
  duration: number;
  /** pages sent with content */
  pages: number;
  /** pages sent as zero flags */
  zeroPages: number;
  /** pages of the round's set skipped because they were dirtied again meanwhile (sent next round) */
  skipped: number;
  /** bytes put on the wire */
  bytes: number;
  /** pages the guest dirtied during the round, per second */
  dirtyRate: number;
  /** the throttle in force at the round's end, percent */
  throttle: number;
  /** codec auto: pages it gave each codec (raw, lz4, mecom) in this round */
  choices?: Record<string, number>;
}

export interface ThrottleStep {
  /** clock time of the change */
  at: number;
  /** new cpu-throttle-percentage */
  percent: number;
}

export interface MigrationStats {
  strategy: StrategyName;
  /** codec name as given */
  codec: string;
  /** QEMU status: "completed" (a failed migration throws instead) */
  status: "completed";
  /** pre-copy met its downtime rule (false: a cap forced the stop) */
  converged: boolean;
  stopReason: StopReason;

  /** QEMU total-time: start until the destination runs with every page and the source has stopped sending */
  totalTime: number;
  /** QEMU setup-time: start until the first page is sent */
  setupTime: number;
  /** QEMU downtime: the guest runs nowhere (source stopped → destination resumed) */
  downtime: number;
  /** QEMU expected-downtime: the last estimate before stopping (bytes left / bandwidth) */
  expectedDowntime: number;
  /** remote uptime U (seed 001): destination resume → the end (every page there, the source done; 0 for pre-copy) */
  remoteUptime: number;

  /** QEMU ram.total: guest memory bytes */
  total: number;
  /** guest page size */
  pageSize: number;
  /**
   * QEMU ram.transferred: bytes put on the wire (every frame, both
   * directions); with flavor qemu, QEMU 7.2's own count (qemu.ts): page
   * headers, page bytes, zero-page bytes and end-of-section markers
   */
  transferred: number;
  /** "qemu" when QEMU's flavour of pre-copy ran (absent: Xen's, the default) */
  flavor?: "qemu";
  /** flavor qemu: bytes of pagemill's own frames, both directions (what the link carried) */
  wireBytes?: number;
  /** QEMU ram.remaining: bytes still to send when the stats were taken (0 at the end) */
  remaining: number;
  /** QEMU ram.duplicate: pages sent as zero flags */
  duplicate: number;
  /** QEMU ram.normal: pages sent with content */
  normal: number;
  /** QEMU ram.normal-bytes: normal × page size (before compression) */
  normalBytes: number;
  /** pages transferred (the survey's metric): normal + duplicate, resends included */
  pagesTransferred: number;
  /** QEMU ram.dirty-pages-rate: pages dirtied per second over the last period */
  dirtyPagesRate: number;
  /** QEMU ram.mbps: wire throughput over the last period, Mbit/s */
  mbps: number;
  /** QEMU ram.dirty-sync-count: dirty-log syncs (rounds) */
  dirtySyncCount: number;
  /** QEMU ram.postcopy-requests: pages the destination asked for */
  postcopyRequests: number;
  /** QEMU ram.precopy-bytes: wire bytes while the guest ran on the source */
  precopyBytes: number;
  /** QEMU ram.downtime-bytes: wire bytes while the guest was stopped */
  downtimeBytes: number;
  /** QEMU ram.postcopy-bytes: wire bytes after the destination resumed */
  postcopyBytes: number;
  /** QEMU xbzrle-cache, when the codec is xbzrle */
  xbzrleCache: XbzrleStats | undefined;
  /** QEMU cpu-throttle-percentage: auto-converge throttle at the end */
  cpuThrottlePercentage: number;
  /** every throttle change (auto-converge) */
  throttleSteps: ThrottleStep[];

  /** post-copy: workload accesses that found their page missing */
  faults: number;
  /** post-copy: faults on whole-page writes served without a fetch (seed 001) */
  wholePageOverwrites: number;
  /** post-copy: pages pushed because they neighbour a fault (adaptive pre-paging) */
  prepagedPages: number;
  /** post-copy: seconds the destination's workload stalled on faults */
  faultStall: number;
  /**
   * Destination workload slowdown (post-copy): clock time from resume until
   * the last page arrived, over the part of it the program was not stalled
   * on faults (1 = no slowdown; 1 for pre-copy).
   */
  workloadSlowdown: number;

  /** CPU seconds the source spent on zero scans, encoding and digests */
  sourceCpu: number;
  /** CPU seconds the destination spent on decoding */
  destinationCpu: number;
  /** the codec's counters (pages per wire id, bytes in and out) and the frames' */
  codecStats: WireStats;
  /** raw bytes of pages sent with content per wire byte of their payload */
  compressionRatio: number;

  /** pages compared at the end (all of them) */
  verifiedPages: number;
  /** the state blob's size */
  stateBytes: number;
  /** link rate at the start (bit/s) and RTT (s) */
  bandwidth: number;
  rtt: number;
  /** per-round rows (pre-copy rounds; hybrid's pre-copy part) */
  rounds: RoundRow[];
  /**
   * The disk's figures, when a disk was migrated with the memory (its bytes
   * are in `transferred` too; the other fields above are memory's).
   */
  disk?: DiskStats;
  /** Ada-copy's decision (strategy "ada" only) */
  adaptive?: AdaDecision;
  /** what a pre-copy deadline did (with EngineOptions.deadline) */
  deadline?: DeadlineOutcome;
  /** checkpoint + trace/replay's figures (strategy "crtr" only; a model) */
  crtr?: CrtrOutcome;
  /**
   * Between two processes: the guest's clock (Workload.now) when the
   * migration's time started. The guest ran before (while the ends
   * connected); its emulation starts there too (`migrate --start-at`).
   */
  guestStartTime?: number;
}


// Who keeps which counter. Each end owns its counters while the migration
// runs (only it changes them; strategies go through the Source's methods),
// and combineStats is the one place they become a MigrationStats. The
// meaning of every counter is written once, above.

/** The counters the source keeps. */
export type SourceCounters = Pick<
  MigrationStats,
  | "setupTime"
  | "expectedDowntime"
  | "duplicate"
  | "normal"
  | "pagesTransferred"
  | "dirtyPagesRate"
  | "mbps"
  | "dirtySyncCount"
  | "cpuThrottlePercentage"
  | "throttleSteps"
  | "prepagedPages"
  | "sourceCpu"
  | "rounds"
  | "adaptive"
  | "deadline"
  | "crtr"
> & {
  /** flavor qemu: QEMU's ram.transferred (absent for xen) */
  qemuTransferred?: number;
};

/** The counters the destination keeps. */
export type DestinationCounters = Pick<MigrationStats, "postcopyRequests" | "faults" | "wholePageOverwrites" | "faultStall" | "workloadSlowdown" | "destinationCpu">;

/** Wire bytes one end put on its channel, by the phase the migration was in. */
export type TrafficCounters = Pick<MigrationStats, "transferred" | "precopyBytes" | "downtimeBytes" | "postcopyBytes">;

export function newSourceCounters(): SourceCounters {
  return {
    setupTime: 0,
    expectedDowntime: 0,
    duplicate: 0,
    normal: 0,
    pagesTransferred: 0,
    dirtyPagesRate: 0,
    mbps: 0,
    dirtySyncCount: 0,
    cpuThrottlePercentage: 0,
    throttleSteps: [],
    prepagedPages: 0,
    sourceCpu: 0,
    rounds: [],
  };
}

export function newDestinationCounters(): DestinationCounters {
  return { postcopyRequests: 0, faults: 0, wholePageOverwrites: 0, faultStall: 0, workloadSlowdown: 1, destinationCpu: 0 };
}

export function newTrafficCounters(): TrafficCounters {
  return { transferred: 0, precopyBytes: 0, downtimeBytes: 0, postcopyBytes: 0 };
}

/** Adds `bytes` put on the wire in `phase` to `traffic`. */
export function countTraffic(traffic: TrafficCounters, phase: "precopy" | "downtime" | "postcopy", bytes: number): void {
  traffic.transferred += bytes;
  if (phase === "postcopy") traffic.postcopyBytes += bytes;
  else if (phase === "downtime") traffic.downtimeBytes += bytes;
  else traffic.precopyBytes += bytes;
}

/** The figures no single counter holds: the run's identity, its times and its link. */
export type RunFigures = Pick<
  MigrationStats,
  "strategy" | "codec" | "converged" | "stopReason" | "totalTime" | "downtime" | "remoteUptime" | "total" | "pageSize" | "remaining" | "stateBytes" | "rtt"
>;

/** The one way a migration's counters become its MigrationStats. */
export function combineStats(
  run: RunFigures,
  source: SourceCounters,
  destination: DestinationCounters,
  traffic: readonly TrafficCounters[],
  pipeline: PipelineReport,
): MigrationStats {
  const wire = newTrafficCounters();
  for (const t of traffic) for (const key of Object.keys(wire) as (keyof TrafficCounters)[]) wire[key] += t[key];
  const { qemuTransferred, ...counters } = source;
  const stats: MigrationStats = {
    ...run,
    status: "completed",
    ...counters,
    ...destination,
    ...wire,
    ...pipeline,
    normalBytes: source.normal * run.pageSize,
    verifiedPages: 0,
    bandwidth: 0,
  };
  if (qemuTransferred !== undefined) {
    stats.flavor = "qemu";
    stats.wireBytes = stats.transferred;
    stats.transferred = qemuTransferred;
  }
  // No full measurement period: report the average rate instead.
  if (stats.mbps === 0 && stats.totalTime > 0) stats.mbps = (stats.transferred * 8) / stats.totalTime / 1e6;
  return stats;
}

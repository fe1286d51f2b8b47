// Checkpoint + trace/replay (CR/TR; the survey, after Liu et al., "Live
// migration of virtual machine based on full system trace and replay",
// HPDC'09, CR/TR-Motion), as a MODEL. The source ships one checkpoint of the
// memory, then a log of the execution's non-deterministic events (interrupts,
// I/O, timer reads), which the destination replays to re-create the writes
// instead of receiving dirty pages; it iterates until the log left fits the
// downtime, stops the guest, sends the last log, and the destination resumes
// once its replay has caught up.
//
// pagemill records no events and cannot replay a program, so:
//   - real: the checkpoint. Every page is encoded with the chosen codec,
//     framed, sent over the link and decoded, as the memory was when the
//     checkpoint began (copy-on-write: a page the guest writes before it is
//     sent goes as it was). Before the replay the destination's memory is
//     checked page for page against that snapshot.
//   - modelled: the log. It grows at `logRate` bytes per second of the
//     source's execution, whatever the guest writes (a deterministic
//     re-execution re-creates every write from the events alone); its bytes
//     cross the link as INFO frames of that size, their content a stand-in.
//   - modelled: the replay. The destination re-executes each log's stretch
//     of execution at `replaySpeed` seconds per second, starting once that
//     log has arrived and the one before is replayed. Its effect on memory
//     is taken from the source in this process (modelReplay): the pages the
//     execution wrote after the checkpoint. So the end check (every page
//     equals the source's) shows the checkpoint and the bookkeeping of which
//     pages changed are right, not that a replay reproduces them.
// Each iteration sends the log of the execution since the last cut and
// waits until the destination has replayed it: the next log covers that
// wait. The stretch to replay shrinks by about 1/replaySpeed an iteration
// (and grows by the log's transfer), so it converges only when the replay
// is faster than the execution and the link carries the log (the survey:
// "only when the log generation rate is less than the log replay rate").
// It stops when sending the log of the stretch since the last cut and
// replaying it would fit the downtime limit; when a stretch is no shorter
// than the one before ("replay-lag"); or at the iteration cap. A disk goes
// the same way: its blocks in the checkpoint after memory's (copy-on-write
// too, without dedup), its writes since re-created by the replay (the log
// carries the I/O events; the same modelled rate covers both), its end
// check beside memory's. Not modelled: the logging's slowdown of the source
// (ReVirt: 0–8%; CR/TR-Motion: under 8.54% on average), the replay's CPU at
// the destination, a log that depends on the workload (every trace gets the
// same rate).
//
// Defaults (EngineOptions.logRate, replaySpeed), from what could be read of
// the literature here: ReVirt (OSDI'02) says its workloads' logs fit one disk
// for months, i.e. the order of a GB a day; 16 KiB/s is 1.4 GB a day. ReTrace
// (VMware) logs as little as 0.5 byte per thousand instructions, 0.5 MB/s at
// 10^9 instructions/s: try --log-rate 512KiB for a CPU-busy guest. Replay
// speed: the replayer skips the time the guest waits idle, so a server
// replays faster than it ran; no abstract we could read gives a figure, so
// 2 is our assumption (docs/engines.md shows 1.25 and 4 beside it).

import { VerificationError } from "../errors.js";
import { sameBytes, type PageMemory } from "../guest/pages.js";
import type { SwitchoverView } from "./frozen.js";
import type { CrtrOutcome, StopReason } from "./metrics.js";
import type { Source } from "./source.js";

/** Log growth, bytes per second of execution (see the module comment). */
export const DEFAULT_LOG_RATE = 16 * 1024;
/** Execution seconds replayed per second at the destination (our assumption). */
export const DEFAULT_REPLAY_SPEED = 2;
/** Log bytes per INFO frame (an INFO frame carries at most 64 KiB of text). */
const LOG_FRAME_BYTES = 32 * 1024;
/** The stand-in's JSON around its padding: {"log":"…"} */
const LOG_JSON_OVERHEAD = 10;

/** Lets the guest run (while it still runs here) until clock time `t`, sampling the link as it goes. */
async function runUntil(s: Source, t: number): Promise<void> {
  while (s.clock.now() < t) {
    await s.clock.sleep(Math.min(s.settings.bandwidthPeriod, t - s.clock.now()));
    await s.runGuest();
    s.samplePeriod();
  }
}

/**
 * Sends `bytes` of modelled log as INFO frames (a stand-in for the events:
 * pagemill records none); returns when the log is all at the destination
 * (now, for an empty one).
 */
async function sendLog(s: Source, bytes: number, outcome: CrtrOutcome, bytesPerSecond: number): Promise<number> {
  outcome.iterations++;
  outcome.logBytes += bytes;
  for (let left = bytes; left > 0; left -= LOG_FRAME_BYTES) {
    const n = Math.min(left, LOG_FRAME_BYTES);
    await s.sendControl({ type: "info", json: JSON.stringify({ log: "x".repeat(Math.max(0, n - LOG_JSON_OVERHEAD)) }) });
    await s.runGuest();
    s.samplePeriod();
  }
  return bytes > 0 ? s.clock.now() + s.bufferedBytes / bytesPerSecond + s.channel.rtt / 2 : s.clock.now();
}

/**
 * The modelled replay in one process: checks that `destination` holds the
 * checkpoint exactly (every page as `snapshot` says it was when the
 * checkpoint began; VerificationError names those that are not), then
 * writes into it the pages the execution changed since, from `source`.
 * Returns how many it wrote.
 */
export function replayFromSource(destination: PageMemory, source: PageMemory, snapshot: SwitchoverView): number {
  const differ: number[] = [];
  for (let p = 0; p < destination.pageCount; p++) if (!sameBytes(destination.page(p), snapshot.page(p))) differ.push(p);
  if (differ.length) {
    throw new VerificationError(`${differ.length} page(s) at the destination differ from the checkpoint before the replay: ${differ.slice(0, 16).join(", ")}`, differ);
  }
  let written = 0;
  for (const p of snapshot.pages()) {
    destination.write(p, source.page(p));
    written++;
  }
  return written;
}

/** CR/TR migration (a model; see the module comment). */
export async function crtr(s: Source): Promise<{ reason: StopReason; converged: boolean }> {
  if (!s.modelReplay) throw new RangeError("crtr is a model whose replay needs both ends in one process: it cannot run between two processes");
  const bytesPerSecond = s.linkBandwidth();
  if (!(bytesPerSecond > 0)) throw new RangeError("crtr times its modelled log on the link's rate: give it a channel with a known rate");
  const { logRate, replaySpeed, pageCount, batchPages, maxIterations, stateBytes } = s.settings;
  const latency = s.channel.rtt / 2;
  const outcome: CrtrOutcome = { model: true, logRate, replaySpeed, checkpointBytes: 0, checkpointSeconds: 0, logBytes: 0, iterations: 0, replayedSeconds: 0, replayedPages: 0 };
  s.setCrtr(outcome);
  const start = s.clock.now();
  // The checkpoint is the memory (and disk) as at `start`: a page written from now on is kept as it was (copy-on-write).
  s.guest.hook = (p, kind) => {
    if (kind !== "read") s.switchover.preserve(p);
  };
  const disk = s.disk;
  if (disk) {
    disk.guest.hook = (b, kind) => {
      if (kind !== "read") disk.switchover.preserve(b);
    };
  }
  try {
    await s.beginRound(pageCount);
    let zeroPages = 0;
    for (let first = 0; first < pageCount; first += batchPages) {
      const pages = Array.from({ length: Math.min(batchPages, pageCount - first) }, (_, k) => first + k);
      zeroPages += await s.sendPages(pages);
      s.setRemaining(pageCount - first - pages.length);
      await s.runGuest();
      s.samplePeriod();
    }
    outcome.checkpointBytes = s.roundBytes;
    s.addRound({ round: 1, start: start - s.t0, duration: s.clock.now() - start, pages: pageCount - zeroPages, zeroPages, skipped: 0, bytes: s.roundBytes, dirtyRate: 0, throttle: 0 });
    if (disk) outcome.checkpointBytes += await checkpointDisk(s);
    // The destination starts replaying once the checkpoint's last frame is there.
    let replayEnd = s.clock.now() + s.bufferedBytes / bytesPerSecond + latency;
    outcome.checkpointSeconds = replayEnd - start;

    // Iterations: each log covers the execution since the last cut.
    let cut = start;
    let lastSpan = Infinity;
    let reason: StopReason;
    for (;;) {
      const now = s.clock.now();
      const span = now - cut;
      const bytes = Math.ceil(logRate * span);
      // Stopped now: the last log's replay, and the state behind that log on the link.
      const replayed = Math.max(now + bytes / bytesPerSecond + latency, replayEnd) + span / replaySpeed;
      const downtime = Math.max(replayed, now + (bytes + stateBytes) / bytesPerSecond + latency) - now;
      if (downtime <= s.downtimeLimit) reason = "downtime-limit";
      else if (span >= lastSpan) reason = "replay-lag";
      else if (outcome.iterations >= maxIterations) reason = "iteration-limit";
      else {
        const arrived = await sendLog(s, bytes, outcome, bytesPerSecond);
        cut = now;
        lastSpan = span;
        replayEnd = Math.max(replayEnd, arrived) + span / replaySpeed;
        await runUntil(s, replayEnd);
        continue;
      }
      break;
    }

    await s.stopGuest();
    const span = s.stopAt - cut;
    const arrived = await sendLog(s, Math.ceil(logRate * span), outcome, bytesPerSecond);
    replayEnd = Math.max(replayEnd, arrived) + span / replaySpeed;
    outcome.replayedSeconds = s.stopAt - start;
    // The state travels while the replay ends: sent so that it arrives as the replay does.
    await runUntil(s, replayEnd - (stateBytes / bytesPerSecond + latency));
    const replayed = s.modelReplay();
    outcome.replayedPages = replayed.pages;
    if (disk) outcome.replayedBlocks = replayed.blocks;
    await s.sendSwitchover(undefined);
    return { reason, converged: reason === "downtime-limit" };
  } finally {
    s.guest.hook = undefined;
    if (disk) disk.guest.hook = undefined;
  }
}

/** The disk's part of the checkpoint: every block once, in batches; returns its wire bytes. */
async function checkpointDisk(s: Source): Promise<number> {
  const d = s.disk!;
  const { blockCount, batchBlocks } = d.settings;
  const before = d.stats.bytes;
  for (let first = 0; first < blockCount; first += batchBlocks) {
    await s.sendBlocks(Array.from({ length: Math.min(batchBlocks, blockCount - first) }, (_, k) => first + k), false);
    await s.runGuest();
    s.samplePeriod();
  }
  return d.stats.bytes - before;
}

// Pre-copy (Clark et al., NSDI'05; QEMU's default). Round 1 sends every page
// while the guest runs (zero pages go as flags, by the Wire pipeline's zero
// stage); each later round sends the pages dirtied during the one before.
// It stops iterating when either
//   - QEMU's rule holds: the bytes left (pages still to send, plus those
//     dirtied since the last sync) could go within the downtime limit at the
//     bandwidth measured over the last period (checked every period, so a
//     round can end early, and at every round end), or
//   - one of Xen's caps is reached: the iteration limit, or more than
//     maxSentFactor × guest memory sent in total;
// then stops the guest and sends what is left plus the CPU/device state
// (stop-and-copy). As in Xen, a page of the round's set that has been
// dirtied again since the round began is left for the next round rather
// than sent twice. With auto-converge on, the guest is throttled when a
// round dirtied more bytes than `throttleTriggerThreshold`% of what it sent,
// twice (QEMU's migration_trigger_throttle): first to throttleInitial%,
// then +throttleIncrement% each time, up to throttleMax%.
// That is the "xen" flavour; "qemu" (settings.flavor) follows QEMU's ram.c
// instead where the two differ: qemu.ts says how.

import { DirtyBitmap } from "../guest/bitmap.js";
import type { StopReason } from "./metrics.js";
import { MAX_WAIT, THROTTLE_PERIOD } from "./qemu.js";
import type { Source } from "./source.js";
import { deadlineRule } from "./deadline.js";
import { switchToPostcopy } from "./postcopy.js";
import { diskLeftBytes, diskStep, drainDisk, finishDiskPass, mirrorDisk, serveUntilDone } from "./storage.js";

export interface RoundLimits {
  /** Stop when the bytes left fit the downtime limit (pre-copy); hybrid does not. */
  readonly downtimeRule: boolean;
  /** Stop after this many rounds (hybrid). */
  readonly maxRounds: number;
  /** Stop once this many bytes went out in pre-copy (hybrid). */
  readonly budget: number;
  /**
   * Stop the guest the moment the decision is made (pre-copy: what it would
   * dirty while the channel drains must go in the downtime). False lets the
   * channel drain first (hybrid: what the guest dirties meanwhile is
   * post-copied, and the downtime stays the switch-over alone). A function
   * decides by the reason the rounds stopped (Ada-copy).
   */
  readonly stopAtOnce: boolean | ((reason: StopReason) => boolean);
  /**
   * Asked at each bandwidth period and each round end, when no other rule
   * stopped the rounds: a reason to stop them and switch to post-copy
   * ("adaptive"), or undefined to go on (Ada-copy).
   */
  readonly switchWhen?: (check: RoundCheck) => string | undefined;
  /** The stop reason of such a switch ("adaptive" by default). */
  readonly switchAs?: StopReason;
  /** The pages of round 1 (every page when absent: fractional hybrid-copy gives its share). */
  readonly first?: ArrayLike<number>;
}

/** What a switchWhen rule sees. */
export interface RoundCheck {
  readonly round: number;
  /** at a round's end (false: at a bandwidth period within it) */
  readonly roundEnd: boolean;
  /** distinct pages dirtied per second since the last dirty-log sync (at a round end: over the round) */
  readonly dirtyRate: number;
  /** pages per second the link carries: the measured bandwidth over the wire bytes of a page sent with content */
  readonly sendRate: number;
  /** pages still to send: the rest of this round's and those dirtied since the last sync */
  readonly left: number;
}

export interface RoundsResult {
  readonly reason: StopReason;
  /** Stopped by the downtime rule or with nothing left, rather than by a cap. */
  readonly converged: boolean;
  /** Pages the destination does not have current: to send in stop-and-copy or post-copy. Caller disposes. */
  readonly left: DirtyBitmap;
}

/** QEMU's scan position, kept across syncs (ram.c's last_seen_block and last_page). */
interface Scan {
  at: number;
  /** the scan passed the end of memory once (ram.c turns XBZRLE on then) */
  wrapped: boolean;
}

/**
 * A round's batches of `toSend` (each taken out of it, ascending within a
 * batch, of at most the pages asked): in index order, or with `rank`
 * (EngineOptions.pageOrder) lowest rank first. With `scan` (flavor qemu) the
 * round starts where the last one stopped and wraps to page 0 at the end, as
 * QEMU's scan does.
 */
function roundOrder(toSend: DirtyBitmap, rank: Uint32Array | undefined, scan?: Scan): (batchPages: number) => Uint32Array {
  if (!rank) {
    let cursor = scan?.at ?? 0;
    let wrapped = false;
    return (batchPages) => {
      let batch = toSend.extract(cursor, batchPages);
      if (batch.length === 0 && scan && !wrapped) {
        wrapped = scan.wrapped = true;
        cursor = 0;
        batch = toSend.extract(cursor, batchPages);
      }
      if (batch.length) {
        toSend.clearRange(cursor, batch[batch.length - 1]! + 1);
        cursor = batch[batch.length - 1]! + 1;
      }
      if (scan) scan.at = cursor;
      return batch;
    };
  }
  const queue = toSend.extract().sort((a, b) => rank[a]! - rank[b]!);
  let at = 0;
  return (batchPages) => {
    const batch = queue.slice(at, (at += batchPages)).sort();
    for (const p of batch) toSend.clear(p);
    return batch;
  };
}

/**
 * The candidates whose bit in the dirty log is clear, in order (`candidates` itself when that is all of
 * them). A function of its own: a loop over the pages inside runRounds made that whole function hot, and
 * V8 compiled it, much of what it calls inlined, for 20-70 ms on a helper thread of an uncapped TCP
 * sender whose migration took 0.3-0.5 s (--trace-opt).
 */
function notDirtiedAgain(candidates: Uint32Array, log: DirtyBitmap): Uint32Array {
  const kept = new Uint32Array(candidates.length);
  let n = 0;
  for (let k = 0; k < candidates.length; k++) {
    const p = candidates[k]!;
    if (!log.test(p)) kept[n++] = p;
  }
  return n === candidates.length ? candidates : kept.subarray(0, n);
}

/**
 * Runs pre-copy rounds while the guest runs on the source, then stops the
 * guest. Returns why it stopped and the pages left.
 */
export async function runRounds(s: Source, limits: RoundLimits): Promise<RoundsResult> {
  const { guest, settings, counters, traffic } = s;
  const ps = settings.pageSize;
  const toSend = new DirtyBitmap(settings.pageCount);
  if (limits.first) for (let k = 0; k < limits.first.length; k++) toSend.set(limits.first[k]!);
  else toSend.setRange();
  const qemu = settings.flavor === "qemu";
  const scan: Scan | undefined = qemu ? { at: 0, wrapped: false } : undefined;
  // QEMU's setup-time, the guest running.
  if (settings.qemuHost) await s.charge(settings.qemuHost.setupTime);
  // The log starts now: what the guest wrote before is taken first and dropped (a program that runs by
  // itself holds its writes until it is let run; taken later, they counted as dirtied in round 1).
  await s.runGuest();
  s.clearDirtyLog();
  // QEMU syncs once at setup (ram_init_bitmaps): nothing is dirty yet, but it counts.
  if (qemu) s.syncDirtyLog(toSend);
  /** QEMU's auto-converge and dirty-rate period: since when, pages newly dirtied, transferred at its start. */
  let throttleLook = { at: s.clock.now(), pages: 0, transferred: 0 };
  /** QEMU: below this many bytes still to send, sync (bandwidth × downtime limit; 0 before a measurement). */
  const threshold = (): number => s.bandwidth * s.downtimeLimit;
  /** QEMU: rate-limit windows (one ram_save_iterate call each) since the rounds began, and how many were counted. */
  const roundsStart = s.clock.now();
  let windows = 0;
  /**
   * QEMU under max-bandwidth: when the current ram_save_iterate call began, and the windows measured then. A
   * window is measured only as a call returns: its allowance spent (rateLimit), or MAX_WAIT into the call.
   */
  let iterate = { at: s.clock.now(), measurements: s.measurements };
  let highDirtyRounds = 0;
  let reason: StopReason | undefined;
  /** When the dirty log was last synced (and so began its count). */
  let lastSync = s.clock.now();

  /**
   * QEMU's threshold test with the bandwidth measured so far; updates
   * expected-downtime. The frame still in the channel counts as left: the
   * stop-and-copy queues behind it.
   */
  const fits = (leftPages: number, fallbackRate: number): boolean => {
    const rate = s.bandwidth || fallbackRate;
    if (rate <= 0) return false;
    // With a disk, its blocks still to send count too (storage.ts, policy step 3).
    const left = leftPages * ps + s.bufferedBytes + (s.disk ? diskLeftBytes(s) : 0);
    s.setExpectedDowntime(left / rate);
    return left <= rate * s.downtimeLimit;
  };

  /** Asks the switchWhen rule; within a round the dirty rate is the log's so far, at its end the round's. */
  const check = (roundEnd: boolean, left: number): string | undefined => {
    const window = s.clock.now() - lastSync;
    const dirtyRate = roundEnd ? counters.dirtyPagesRate : window > 0 ? guest.dirtyLog.count() / window : 0;
    return limits.switchWhen?.({ round: s.round, roundEnd, dirtyRate, sendRate: s.pageSendRate(), left });
  };
  while (reason === undefined) {
    const start = s.clock.now();
    await s.beginRound(toSend.count());
    let pages = 0;
    let zeroPages = 0;
    let skipped = 0;
    const next = roundOrder(toSend, settings.pageRank, scan);
    /** QEMU under max-bandwidth: the window measured last when the pending bytes were last checked. */
    let checked = s.measurements;
    for (;;) {
      const candidates = next(s.windowPages());
      if (scan?.wrapped) s.firstPassOver();
      if (candidates.length === 0) break;
      // Xen: a page dirtied again since the round began goes next round (QEMU sends it).
      const send = qemu ? candidates : notDirtiedAgain(candidates, guest.dirtyLog);
      skipped += candidates.length - send.length;
      if (send.length) {
        zeroPages += await s.sendPages(send);
        pages += send.length;
        if (s.disk) await diskStep(s);
      }
      s.setRemaining(s.remainingPages - candidates.length);
      await s.runGuest();
      if (qemu) {
        const now = Math.floor((s.clock.now() - roundsStart) / settings.bandwidthPeriod);
        s.countIterates(now - windows);
        windows = now;
        // The first window began with the migration thread, before setup: after a setup longer than a window
        // its allowance still goes at once, and the window is measured as the call that spent it returns.
        if (s.measurements !== iterate.measurements) iterate = { at: s.clock.now(), measurements: s.measurements };
        const returned = settings.maxBandwidth === undefined || s.clock.now() - iterate.at >= MAX_WAIT;
        if (returned && s.samplePeriod()) {
          // QEMU's expected-downtime, once it has sent something.
          if (s.bandwidth > 0) s.setExpectedDowntime((toSend.count() * ps) / s.bandwidth);
        }
        if (returned) iterate = { at: s.clock.now(), measurements: s.measurements };
        // Sync once the bytes still to send fall below the threshold (ram_state_pending_exact). Under
        // max-bandwidth QEMU looks once a window, before the window's sending (migration_iteration_run).
        const look = settings.maxBandwidth === undefined || s.measurements !== checked;
        checked = s.measurements;
        if (look && toSend.count() * ps < threshold()) break;
      } else if (s.samplePeriod()) {
        if (limits.downtimeRule && fits(toSend.count() + guest.dirtyLog.count(), 0)) {
          reason = "downtime-limit";
          break;
        }
        // Once a whole period was logged: a shorter window says little about the rate.
        if (limits.switchWhen && s.clock.now() - lastSync >= settings.bandwidthPeriod && check(false, toSend.count() + guest.dirtyLog.count())) {
          reason = limits.switchAs ?? "adaptive";
          break;
        }
      }
      if (traffic.precopyBytes >= limits.budget) {
        reason = "byte-budget";
        break;
      }
    }
    if (s.disk) await finishDiskPass(s);
    await s.runGuest();
    const duration = s.clock.now() - start;
    if (!qemu) {
      const dirtied = s.syncDirtyLog(toSend);
      // Over the time the log counted, which includes the control frames between rounds.
      const logged = s.clock.now() - lastSync;
      lastSync = s.clock.now();
      s.setDirtyRate(logged > 0 ? dirtied / logged : 0);
      if (settings.autoConverge && dirtied * ps > (s.roundBytes * settings.throttleTriggerThreshold) / 100 && ++highDirtyRounds >= 2) {
        highDirtyRounds = 0;
        throttleStep(s);
      }
    } else if (reason === undefined && (toSend.count() > 0 || threshold() > 0)) {
      // QEMU: pending fell below the threshold (or the pass ended): sync. With
      // nothing pending and no bandwidth measured yet it completes without one.
      const before = toSend.count();
      s.syncDirtyLog(toSend);
      throttleLook.pages += toSend.count() - before;
      const since = s.clock.now() - throttleLook.at;
      if (since > THROTTLE_PERIOD) {
        const transferred = counters.qemuTransferred!;
        const sent = transferred - throttleLook.transferred;
        if (settings.autoConverge && throttleLook.pages * ps > (sent * settings.throttleTriggerThreshold) / 100 && ++highDirtyRounds >= 2) {
          highDirtyRounds = 0;
          throttleStep(s);
        }
        s.setDirtyRate(throttleLook.pages / since);
        throttleLook = { at: s.clock.now(), pages: 0, transferred };
      }
    }
    s.addRound({
      round: s.round,
      start: start - s.t0,
      duration,
      pages: pages - zeroPages,
      zeroPages,
      skipped,
      bytes: s.roundBytes,
      dirtyRate: counters.dirtyPagesRate,
      throttle: counters.cpuThrottlePercentage,
    });
    s.predictEnd(toSend.count() + guest.dirtyLog.count(), true);

    if (reason === undefined) {
      const left = toSend.count();
      // Without a measured bandwidth, the round's rate is what left the source
      // (not the frame still in the channel, which may be the whole round).
      const drained = duration > 0 ? Math.max(0, s.roundBytes - s.bufferedBytes) / duration : 0;
      // Nothing left to send is convergence only once the frame still in the
      // channel fits the downtime too: the stop-and-copy queues behind it.
      // Until then the guest runs while it drains, and the next round sends
      // what it dirtied meanwhile.
      if (qemu && limits.downtimeRule) {
        // ram.c: pending still at or above the threshold means another iteration; no caps.
        if (left === 0 || left * ps < threshold()) reason = left === 0 ? "converged" : "downtime-limit";
        else if (s.round >= settings.maxIterations) reason = "iteration-limit";
      } else if (limits.downtimeRule ? fits(left, drained) : left === 0) reason = left === 0 ? "converged" : "downtime-limit";
      else if (s.round >= limits.maxRounds) reason = "round-limit";
      else if (traffic.precopyBytes >= limits.budget) reason = "byte-budget";
      else if (s.round >= settings.maxIterations) reason = "iteration-limit";
      else if (counters.pagesTransferred * ps > settings.maxSentFactor * settings.pageCount * ps) reason = "sent-limit";
      else if (check(true, left)) reason = limits.switchAs ?? "adaptive";
    }
    if (reason !== undefined && (typeof limits.stopAtOnce === "function" ? limits.stopAtOnce(reason) : limits.stopAtOnce)) await s.stopGuest();
    await s.sendControl({ type: "round-end", round: s.round, pages: pages - zeroPages });
    void s.sendProgress()?.catch(() => {});
  }
  if (s.stopAt < 0) await s.stopGuest();

  // QEMU syncs once more after the stop (ram_save_complete) and counts it.
  if (qemu) s.syncDirtyLog(toSend);
  else s.takeDirty(toSend);
  s.setRemaining(toSend.count());
  return { reason, converged: reason === "downtime-limit" || reason === "converged", left: toSend };
}

/** One auto-converge step: throttleInitial% first, then +throttleIncrement% up to throttleMax% (mig_throttle_guest_down). */
function throttleStep(s: Source): void {
  const { throttleInitial, throttleIncrement, throttleMax } = s.settings;
  const now = s.counters.cpuThrottlePercentage;
  s.setThrottle(now === 0 ? throttleInitial : Math.min(throttleMax, now + throttleIncrement));
}

/**
 * Pre-copy migration; returns once the switch-over record is sent (when disk
 * blocks went as references, once the destination holds every block).
 */
export async function precopy(s: Source): Promise<{ reason: StopReason; converged: boolean }> {
  if (s.disk) await mirrorDisk(s, { downtimeRule: true, maxPasses: s.settings.maxIterations });
  const deadline = s.settings.deadline === undefined ? undefined : deadlineRule(s, s.settings.deadline);
  const { reason, converged, left } = await runRounds(s, {
    downtimeRule: true,
    maxRounds: Infinity,
    budget: Infinity,
    // A switch to post-copy lets the channel drain first, as hybrid does.
    stopAtOnce: (why) => why !== "deadline",
    switchWhen: deadline,
    switchAs: "deadline",
  });
  try {
    if (reason !== "deadline") await stopAndCopy(s, left);
    else await switchToPostcopy(s, left);
  } finally {
    left.dispose();
  }
  return { reason, converged: converged || reason === "deadline" };
}

/**
 * Pre-copy's end, the guest stopped: sends the pages `left` (and the disk's
 * last blocks), then the switch-over record; with disk references sent,
 * serves refused ones until the destination holds everything.
 */
export async function stopAndCopy(s: Source, left: DirtyBitmap): Promise<void> {
  await s.sendAll(left);
  if (s.disk) await drainDisk(s);
  await s.sendSwitchover(undefined);
  // A reference sent may yet be refused: serve its block until the destination holds everything.
  if (s.disk?.referenced.size) await serveUntilDone(s);
}

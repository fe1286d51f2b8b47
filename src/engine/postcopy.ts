// Post-copy (Hines & Gopalan, VEE'09). The source scans memory once for zero
// pages (what dynamic self-ballooning buys: the destination knows them
// without a transfer and never asks for them), stops the guest, and sends
// only the CPU/device state and the map of pages still to come; the
// destination resumes at once and runs the program, fetching a page it does
// not hold when the program touches it (destination.ts). Meanwhile the
// source pushes every page still to come in the background, each at most
// once (a page asked for while its push frame is not yet delivered goes
// again on the priority lane), serving requests first; after a fault it
// pushes the fault's neighbourhood outward from it, one page above then one
// below (adaptive pre-paging, "bubbling"), for `prepageWindow` pages each
// side, then resumes its linear sweep.
//
// Remote uptime U (seed 001) is the time from resume until the last page
// arrived; the program's slowdown at the destination is that time over the
// time it would have taken without stalls.

import { DirtyBitmap } from "../guest/bitmap.js";
import type { StopReason } from "./metrics.js";
import type { Source } from "./source.js";
import { pendDisk, serveUntilDone } from "./storage.js";

/** Pages per frame of the background push: small, so a request is not stuck behind a long frame. */
const PUSH_BATCH_PAGES = 32;
/**
 * With a priority lane, how long before the line frees the push chooses its
 * next frame's pages (seconds), at least: time to encode the frame and hand
 * it over on a busy machine, so the line does not wait for it (at 2 ms,
 * measured at load 4-6, it waited 45 ms more over a 3 s post-copy). Up to
 * TIMER_GRAIN more on a real clock, whose timers count whole milliseconds.
 */
const CHOOSE_AHEAD = 0.004;
const TIMER_GRAIN = 0.001;

/** What the push and the server of urgent requests share. */
interface PushState {
  /** pages still pending */
  left: number;
  /** the last page asked for, and how far the bubble around it has grown */
  pivot: number;
  radius: number;
  pushing: boolean;
  /**
   * With the priority lane: pages of the push's frames the line has not
   * delivered, the frame on it (`onLine`) and the one waiting for it. A
   * request for one goes on the lane as well, at once: waiting for that
   * frame was up to two frames' time (21 ms at 100 Mbit/s). Absent with a
   * delta stage, whose second copy could be a delta against the first,
   * which the destination may not hold yet.
   */
  undelivered?: Set<number>;
  onLine: readonly number[];
}

/** Serves page requests the moment they arrive, on the channel's priority lane, beside the push. */
async function serveUrgently(s: Source, pending: DirtyBitmap, state: PushState, batchPages: number): Promise<void> {
  while (state.pushing && (await s.nextPageRequest())) {
    const batch: number[] = [];
    let fresh = 0;
    for (let p = s.nextRequest(); p !== undefined; p = s.nextRequest()) {
      // A page not pending but in a push frame not yet delivered goes again (the destination keeps the copy that comes first, Held.came).
      if (pending.test(p)) {
        pending.clear(p);
        fresh++;
      } else if (!state.undelivered?.delete(p)) continue;
      batch.push(p);
      if (batch.length === batchPages) break;
    }
    if (!batch.length) continue;
    state.left -= fresh;
    state.pivot = batch[batch.length - 1]!;
    state.radius = 0;
    await s.sendPages(batch, true);
  }
}

/**
 * The source's push: requested pages first (over a priority lane, at once,
 * from their own task), then the bubble around the last fault, then a
 * linear sweep.
 */
async function push(s: Source, pending: DirtyBitmap): Promise<void> {
  const batchPages = Math.min(s.settings.batchPages, PUSH_BATCH_PAGES);
  const window = s.settings.prepageWindow;
  const state: PushState = { left: pending.count(), pivot: -1, radius: 0, pushing: true, onLine: [] };
  if (s.urgentLane && !s.pipeline.delta) state.undelivered = new Set();
  const urgent = s.urgentLane ? serveUrgently(s, pending, state, batchPages) : undefined;
  // Its failure is thrown below, once the push stops; until then it must not count as unhandled.
  urgent?.catch(() => {});
  try {
    await pushRest(s, pending, state, batchPages, window, urgent === undefined);
  } finally {
    state.pushing = false;
    s.wakePageServer();
    await urgent;
  }
}

/** Resolves CHOOSE_AHEAD (to TIMER_GRAIN more) before `s`'s line is free for the next frame; at once where the channel models no line. */
async function lineFrees(s: Source): Promise<void> {
  // Again while lane frames put the line's end later.
  for (let left = s.channel.lineFreeIn?.() ?? 0; left > CHOOSE_AHEAD + TIMER_GRAIN; left = s.channel.lineFreeIn!()) await s.clock.sleep(left - CHOOSE_AHEAD);
}

async function pushRest(s: Source, pending: DirtyBitmap, state: PushState, batchPages: number, window: number, serveRequests: boolean): Promise<void> {
  const n = s.settings.pageCount;
  let cursor = 0;
  const take = (p: number, into: number[]): void => {
    if (into.length < batchPages && p >= 0 && p < n && pending.test(p)) {
      pending.clear(p);
      into.push(p);
    }
  };
  // A disk's pending blocks (storage.ts): requested ones before anything, then a frame after each memory frame.
  const d = s.disk;
  // Small frames for the same reason as memory's: a fault is not stuck behind a long one.
  const pushBlocks = d ? Math.min(d.settings.batchBlocks, PUSH_BATCH_PAGES) : 0;
  let diskLeft = d?.pending?.count() ?? 0;
  let diskCursor = 0;
  while (!s.destinationDone && (state.left > 0 || diskLeft > 0)) {
    if (d) {
      const { blocks: asked, cleared } = d.takeAsked(pushBlocks);
      diskLeft -= cleared;
      if (asked.length) {
        await s.sendBlocks(asked, false);
        s.samplePeriod();
        continue;
      }
    }
    // With the lane, the frame's pages are chosen as the line frees, not a frame's time before: a page
    // the program asks for meanwhile goes on the lane alone, not again in a frame waiting for the line.
    if (!serveRequests) await lineFrees(s);
    const batch: number[] = [];
    while (serveRequests && batch.length < batchPages) {
      const p = s.nextRequest();
      if (p === undefined) break;
      take(p, batch);
    }
    if (batch.length) {
      state.pivot = batch[batch.length - 1]!;
      state.radius = 0;
    } else {
      while (state.pivot >= 0 && state.radius < window && batch.length < batchPages) {
        state.radius++;
        take(state.pivot + state.radius, batch);
        take(state.pivot - state.radius, batch);
      }
      if (batch.length) s.countPrepaged(batch.length);
      else {
        let next = pending.extract(cursor, batchPages);
        if (next.length === 0) next = pending.extract(0, batchPages);
        for (const p of next) {
          pending.clear(p);
          batch.push(p);
        }
        if (batch.length) cursor = batch[batch.length - 1]! + 1;
      }
    }
    if (batch.length) {
      state.left -= batch.length;
      for (const p of batch) state.undelivered?.add(p);
      await s.sendPages(batch);
      // This frame is on the line now: the one before has left it.
      for (const p of state.onLine) state.undelivered?.delete(p);
      state.onLine = batch;
      s.samplePeriod();
    }
    if (d && diskLeft > 0) {
      let blocks = d.pending!.extract(diskCursor, pushBlocks);
      if (blocks.length === 0) blocks = d.pending!.extract(0, pushBlocks);
      for (const b of blocks) d.pending!.clear(b);
      diskLeft = blocks.length ? diskLeft - blocks.length : 0;
      diskCursor = blocks.length ? blocks[blocks.length - 1]! + 1 : 0;
      await s.sendBlocks(Array.from(blocks), false);
      s.samplePeriod();
    } else if (batch.length === 0) break;
  }
}

/**
 * Switch-over to post-copy with `pending` the pages the destination must
 * still get (guest already stopped; with a disk, the blocks it still needs
 * are worked out here); returns once every page is pushed or the
 * destination said it holds them all. Every strategy with a post-copy
 * phase ends here.
 */
export async function switchToPostcopy(s: Source, pending: DirtyBitmap): Promise<void> {
  if (s.disk) await pendDisk(s);
  s.setRemaining(pending.count());
  s.predictEnd(pending.count(), false);
  const rate = s.bandwidth || 0;
  if (rate > 0) s.setExpectedDowntime((s.state.byteLength + s.settings.pageCount / 8) / rate);
  await s.sendSwitchover(pending);
  s.startPostcopy();
  await push(s, pending);
  // Everything pushed. With disk dedup, blocks of refused references may still be asked for: serve them until the destination holds everything.
  if (s.disk?.referenced.size) await serveUntilDone(s);
  // Otherwise tell the destination, which then holds every page or fails naming the missing.
  else if (!s.destinationDone) await s.sendControl({ type: "done", memoryBytes: s.settings.pageCount * s.settings.pageSize, digestName: "none", digest: new Uint8Array(0) });
}

/** Post-copy migration. */
export async function postcopy(s: Source): Promise<{ reason: StopReason; converged: boolean }> {
  const pending = new DirtyBitmap(s.settings.pageCount);
  try {
    s.clearDirtyLog();
    // (A disk fractional pre-copied in part keeps the log its share started.)
    if (!s.disk?.precopied) s.disk?.guest.dirtyLog.clearRange();
    await s.scanNonZero(pending);
    await s.runGuest();
    s.endSetup();
    await s.stopGuest();
    s.syncDirtyLog(pending);
    await switchToPostcopy(s, pending);
  } finally {
    pending.dispose();
  }
  return { reason: "immediate", converged: true };
}

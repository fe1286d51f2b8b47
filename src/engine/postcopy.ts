// Post-copy (Hines & Gopalan, VEE'09). The source scans memory once for zero
// pages (what dynamic self-ballooning buys: the destination knows them
// without a transfer and never asks for them), stops the guest, and sends
// only the CPU/device state and the map of pages still to come; the
// destination resumes at once. From then on:
//
// - the destination's program runs; an access to a page it does not hold is
//   a fault: the page is requested over the channel and the program stalls
//   until it arrives (RTT + queueing + transfer). A write that replaces the
//   whole page (seed 001's whole-page overwrite) is not fetched: the
//   destination takes the page as its own.
// - the source pushes every page still to come in the background, each at
//   most once, serving requests first; after a fault it pushes the fault's
//   neighbourhood outward from it, one page above then one below (adaptive
//   pre-paging, "bubbling"), for `prepageWindow` pages each side, then
//   resumes its linear sweep.
//
// The program runs in quanta of `faultQuantum` guest seconds: the accesses
// of a quantum that fault are requested together and the quantum ends when
// they have all arrived (the trace gives accesses per epoch, not their order
// within it, so the faults of one quantum are taken as concurrent, as with
// several vCPUs or asynchronous page faults).
//
// Remote uptime U (seed 001) is the time from resume until the last page
// arrived; the program's slowdown at the destination is that time over the
// time it would have taken without stalls.

import { DirtyBitmap } from "../guest/bitmap.js";
import type { AccessKind } from "../guest/guest.js";
import type { StopReason } from "./metrics.js";
import { VerificationError } from "../errors.js";
import { PageState, type Session } from "./session.js";

/** Pages per frame of the background push: small, so a request is not stuck behind a long frame. */
const PUSH_BATCH_PAGES = 32;

/** The source's push: requested pages first, then the bubble around the last fault, then a linear sweep. */
async function push(s: Session, pending: DirtyBitmap): Promise<void> {
  const n = s.pageCount;
  const batchPages = Math.min(s.batchPages, PUSH_BATCH_PAGES);
  let left = pending.count();
  let cursor = 0;
  let pivot = -1;
  let radius = 0;
  let requestsRead = 0;
  const take = (p: number, into: number[]): void => {
    if (into.length < batchPages && p >= 0 && p < n && pending.test(p)) {
      pending.clear(p);
      into.push(p);
    }
  };
  while (!s.sourceDone && left > 0) {
    const batch: number[] = [];
    while (requestsRead < s.requests.length && batch.length < batchPages) take(s.requests[requestsRead++]!, batch);
    if (requestsRead === s.requests.length) {
      s.requests.length = 0;
      requestsRead = 0;
    }
    if (batch.length) {
      pivot = batch[batch.length - 1]!;
      radius = 0;
    } else {
      while (pivot >= 0 && radius < s.prepageWindow && batch.length < batchPages) {
        radius++;
        take(pivot + radius, batch);
        take(pivot - radius, batch);
      }
      if (batch.length) s.stats.prepagedPages += batch.length;
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
    if (batch.length === 0) break;
    left -= batch.length;
    await s.sendPages(batch);
    s.samplePeriod();
  }
}

/** The program at the destination, from resume until every page is there. */
async function runAtDestination(s: Session): Promise<void> {
  await s.resumed;
  const { guest, workload, clock } = s;
  const ps = s.pageSize;
  const faults: number[] = [];
  const waiting = new Set<number>();
  const touched: number[] = [];
  workload.throttle = 1;
  guest.hook = (p: number, kind: AccessKind): void => {
    const state = s.pageState[p]!;
    if (state & PageState.PRESENT) {
      if (kind === "read") return;
      if (!(state & PageState.CHECKED)) {
        // Before the program first changes a page it holds, the page must be the source's.
        const mine = s.memory.subarray(p * ps, (p + 1) * ps);
        if (!Buffer.from(mine.buffer, mine.byteOffset, ps).equals(Buffer.from(guest.memory.buffer, guest.memory.byteOffset + p * ps, ps))) {
          throw new VerificationError(`page ${p} at the destination differs from the source's at switch-over`, [p]);
        }
        s.pageState[p] = state | PageState.CHECKED;
      }
      touched.push(p);
      return;
    }
    // Missing. Keep the switch-over content before the program changes it.
    if (kind !== "read" && !s.cow.has(p)) s.cow.set(p, guest.page(p).slice());
    if (kind === "overwrite") {
      s.stats.wholePageOverwrites++;
      s.claim(p);
      touched.push(p);
      return;
    }
    s.stats.faults++;
    if (kind === "write") touched.push(p);
    if (!(state & PageState.REQUESTED)) {
      s.pageState[p] = state | PageState.REQUESTED;
      faults.push(p);
    }
    waiting.add(p);
  };
  try {
    while (!s.complete) {
      await clock.sleep(s.faultQuantum);
      if (s.complete) break;
      await clock.settle(workload.advance(workload.now + s.faultQuantum));
      if (faults.length) await s.requestPages(faults.splice(0));
      if (waiting.size) {
        const stalled = clock.now();
        await s.waitForPages(waiting);
        s.stats.faultStall += clock.now() - stalled;
      }
      for (const p of touched) if (!(s.pageState[p]! & PageState.OWNED)) s.memory.set(guest.page(p), p * ps);
      touched.length = 0;
      if (s.presentCount === s.pageCount) s.finish();
    }
  } finally {
    guest.hook = undefined;
  }
}

/**
 * Switch-over to post-copy with `pending` the pages the destination must
 * still get (guest already stopped); resolves when the destination holds
 * every page. Shared by post-copy and hybrid.
 */
export async function switchToPostcopy(s: Session, pending: DirtyBitmap): Promise<void> {
  s.remainingPages = pending.count();
  const rate = s.bandwidth || 0;
  if (rate > 0) s.stats.expectedDowntime = (s.state.byteLength + s.pageCount / 8) / rate;
  s.stopDedup();
  s.spawn(runAtDestination(s));
  await s.sendSwitchover(pending);
  s.phase = "postcopy";
  await push(s, pending);
  // Everything pushed: tell the destination, which then holds every page or fails naming the missing.
  if (!s.sourceDone) await s.sendControl({ type: "done", memoryBytes: s.stats.total, digestName: "none", digest: new Uint8Array(0) });
  await s.completed;
  const span = s.clock.now() - s.resumeAt;
  s.stats.workloadSlowdown = span > s.stats.faultStall ? span / (span - s.stats.faultStall) : 1;
}

/** Post-copy migration. */
export async function postcopy(s: Session): Promise<{ reason: StopReason; converged: boolean }> {
  const pending = new DirtyBitmap(s.pageCount);
  try {
    s.guest.dirtyLog.clearRange();
    await s.scanNonZero(pending);
    await s.runGuestOnSource();
    s.stats.setupTime = s.elapsed();
    await s.stopGuest();
    pending.syncFrom(s.guest.dirtyLog);
    s.stats.dirtySyncCount++;
    await switchToPostcopy(s, pending);
  } finally {
    pending.dispose();
  }
  return { reason: "immediate", converged: true };
}

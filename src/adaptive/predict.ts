// The predictor: total time T, remote uptime U, downtime D and seed 001's Γ
// of a migration, from a profile and a link, without moving a byte. It walks
// the engine's own steps (src/engine/precopy.ts, postcopy.ts, hybrid.ts) on
// per-page probabilities instead of pages: q[p], the chance page p is still
// to send; dirty[p], the chance it was written since the last dirty-log
// sync; zero[p], the chance it is all zero now (sent as an 8-byte flag).
// Writes arrive at the trace's epoch instants, as the replay applies them:
// by default the recorded epochs' pages (the profile keeps them), or, with
// the "poisson" model, each page with its fitted chance k/E per epoch (the
// Poisson fit at the epoch's length; less exact: pages' writes are
// correlated in time, and a trace loops). Each step costs O(pages), each epoch O(its writes), so a
// prediction is linear in pages.
//
// What it takes from the engine: frames of 32 + 8/page + the raw page
// (codec "raw"; zero pages as flags), batches of `batchPages` candidates, the
// Xen skip of pages dirtied again since the round began, QEMU's downtime rule
// every 100 ms period and at round ends (pages left × page size + the frame
// in the channel within downtimeLimit at the line rate), the 30-round and
// 3×-memory caps; post-copy's zero scan, switch-over frame with its page map,
// push frames of 32 pages, requested pages first, and the destination's
// stall of about a round trip and a frame and a half per quantum that
// faults. Not modelled: compression (codec other than raw), auto-converge,
// bandwidth schedules, pre-paging's order (its pages count as the sweep's).

import { DEFAULT_READS } from "../guest/workloads.js";
import { CostModel } from "../codecs/cost.js";
import { CHECK_BYTES, ENTRY_BYTES, HEADER_BYTES } from "../wire/frame.js";
import type { AdaForecast } from "../engine/options.js";
import { LEFT_ZERO, LEFT_ZERO_EVEN, WHOLE_WRITE, type PageProfile } from "./profile.js";

export type PredictedStrategy = "precopy" | "postcopy" | "hybrid" | "fractional";

export interface PredictOptions {
  /** bit/s */
  readonly bitsPerSecond: number;
  /** seconds */
  readonly rtt: number;
  readonly downtimeLimit?: number;
  readonly stateBytes?: number;
  readonly batchPages?: number;
  readonly maxIterations?: number;
  readonly maxSentFactor?: number;
  /** hybrid: pre-copy rounds before the switch */
  readonly precopyRounds?: number;
  /** post-copy: pages each side of the last fault the push sends next (the engine's prepageWindow; default 64) */
  readonly prepageWindow?: number;
  /** fractional: share of pages (0..1), coldest by λ, pre-copied once before the switch */
  readonly memoryPrecopy?: number;
  /**
   * "replay" (default: the profile's recorded epochs, as the emulation replays
   * them) or "poisson" (each page written in each epoch with its fitted
   * chance: seed 001's model, for a profile without history)
   */
  readonly model?: "poisson" | "replay";
  /**
   * A disk migrated with the memory (src/engine/storage.ts): its profile;
   * for fractional, S, the share of its blocks (coldest by λ) sent once
   * before memory's pass; `hotArea` (default on, as the engine's): the
   * mirror's passes go coldest first. Pre-copy and hybrid mirror it first
   * (a bulk pass and, for pre-copy, passes over the dirtied blocks until
   * they fit the downtime limit), then a disk frame after each memory frame
   * and the rest of a pass at each round end; pre-copy's stop rule counts its
   * blocks left and its stop-and-copy sends them after memory's pages.
   * Post-copy, hybrid and fractional push its pending blocks, a frame of up
   * to 32 after each memory frame. Not modelled: the disk program's reads
   * and writes at the destination (its misses and claims), dedup's hits
   * (a block sent as a reference), prefetching. With `dedup` (default on,
   * as the engine's) the XXH3 digests of what goes before the switch-over
   * are charged: every block, and every memory page when pages are blocks.
   */
  readonly disk?: { readonly profile: PageProfile; readonly precopy?: number; readonly hotArea?: boolean; readonly dedup?: boolean };
  /** Γ's δT, seconds (seed 001: 20) */
  readonly deltaT?: number;
  readonly cost?: CostModel;
}

export interface Prediction {
  readonly strategy: PredictedStrategy;
  readonly totalTime: number;
  readonly downtime: number;
  readonly remoteUptime: number;
  /** seconds the destination's program waits for faulted pages */
  readonly faultStall: number;
  /** Γ = δT / (D + ΔT), ΔT = δT + the fault stall within it */
  readonly gamma: number;
  readonly transferred: number;
  readonly pagesTransferred: number;
  readonly rounds: number;
}

const POSTCOPY_BATCH = 32;
const QUANTUM = 0.01;
const PERIOD = 0.1;

/** The program's writes, epoch by epoch, looping as the replay does. */
class Writes {
  private next = 0;
  private readonly period: number;
  /** the Poisson model's per-page chances (the replay model reads the recorded epochs instead) */
  private readonly fitted?: { readonly written: Uint32Array; readonly chance: Float64Array; readonly wholeShare: Float64Array; readonly zeroShare: Float64Array };

  constructor(
    private readonly m: PageProfile,
    private readonly replay: boolean,
  ) {
    const E = m.epochTimes.length;
    this.period = E ? m.epochTimes[E - 1]! + m.interval : Infinity;
    if (replay) return;
    const chance = new Float64Array(m.pageCount);
    const wholeShare = new Float64Array(m.pageCount);
    const zeroShare = new Float64Array(m.pageCount);
    const written: number[] = [];
    for (let p = 0; p < m.pageCount; p++) {
      const k = m.writtenEpochs[p]!;
      if (!k) continue;
      written.push(p);
      chance[p] = k / E;
      wholeShare[p] = m.wholeEpochs[p]! / k;
      zeroShare[p] = m.zeroEpochs[p]! / k;
    }
    this.fitted = { written: Uint32Array.from(written), chance, wholeShare, zeroShare };
  }

  /** Guest time of the next epoch. */
  get due(): number {
    const E = this.m.epochTimes.length;
    if (!E) return Infinity;
    return Math.floor(this.next / E) * this.period + this.m.epochTimes[this.next % E]!;
  }

  /** Writes of the next epoch: visit(page, chance, whole share, zero share); the expected count returned. */
  apply(visit: (p: number, x: number, whole: number, zero: number) => void): number {
    const E = this.m.epochTimes.length;
    // The replay's even passes go through other contents (LEFT_ZERO_EVEN).
    const leftZero = Math.floor(this.next / E) % 2 ? LEFT_ZERO_EVEN : LEFT_ZERO;
    const e = this.next++ % E;
    if (this.replay) {
      const { pages, flags } = this.m.epochs[e]!;
      for (let k = 0; k < pages.length; k++) visit(pages[k]!, 1, flags[k]! & WHOLE_WRITE ? 1 : 0, flags[k]! & leftZero ? 1 : 0);
      return pages.length;
    }
    const { written, chance, wholeShare, zeroShare } = this.fitted!;
    let total = 0;
    for (const p of written) {
      const x = chance[p]!;
      total += x;
      visit(p, x, wholeShare[p]!, zeroShare[p]!);
    }
    return total;
  }
}

/** Each fixed method's prediction: Ada-copy's forecast (EngineOptions.forecast takes their T and D; rule 0f in ada.ts). */
export function forecastFixed(m: PageProfile, options: PredictOptions): (Prediction & AdaForecast)[] {
  return (["precopy", "postcopy", "hybrid"] as const).map((strategy) => ({ ...predict(m, strategy, options), strategy }));
}

/** Predicts one migration of the profiled memory. */
export function predict(m: PageProfile, strategy: PredictedStrategy, options: PredictOptions): Prediction {
  const n = m.pageCount;
  const ps = m.pageSize;
  const B = options.bitsPerSecond / 8;
  const rtt = options.rtt;
  const limit = options.downtimeLimit ?? 0.3;
  const stateBytes = options.stateBytes ?? 256 * 1024;
  const batch = Math.min(options.batchPages ?? 256, n);
  const maxIterations = options.maxIterations ?? 30;
  const maxSentFactor = options.maxSentFactor ?? 3;
  const maxSent = maxSentFactor * n;
  const cost = options.cost ?? new CostModel();
  const deltaT = options.deltaT ?? 20;
  const prepageWindow = options.prepageWindow ?? Math.min(64, n);
  const writes = new Writes(m, options.model !== "poisson");

  const zero = new Float64Array(n);
  for (let p = 0; p < n; p++) zero[p] = m.imageZero[p]!;
  const dirty = new Float64Array(n);
  let dirtyMass = 0;
  /** clock (s); the line is busy until lineFree */
  let t = 0;
  let lineFree = 0;
  let buffered = 0;
  let transferred = 0;
  let pagesTransferred = 0;
  let rounds = 0;

  const reads = DEFAULT_READS;
  // Only a post-copy phase reads where the program wrote last: pre-copy alone keeps no record.
  const recent = strategy === "precopy" ? undefined : new RecentWrites(reads.window);
  const onSourceWrite = (p: number, x: number, _whole: number, z: number): void => {
    recent?.add(p, x);
    dirtyMass += (1 - dirty[p]!) * x;
    dirty[p] = dirty[p]! + (1 - dirty[p]!) * x;
    zero[p] = (1 - x) * zero[p]! + x * z;
  };
  /** The guest runs at the source up to clock `to`. */
  const disk = options.disk && new DiskModel(options.disk.profile, options.model !== "poisson", options.disk.hotArea ?? true);
  const runGuest = (to: number): void => {
    while (writes.due <= to) writes.apply(onSourceWrite);
    disk?.run(to);
  };
  const send = (bytes: number, cpu: number): void => {
    t += cpu;
    const start = Math.max(t, lineFree);
    lineFree = start + bytes / B;
    t = start;
    buffered = bytes;
    transferred += bytes;
  };
  const frame = (body: number): number => HEADER_BYTES + body + CHECK_BYTES;
  const pageBytes = (p: number): number => ENTRY_BYTES + ps * (1 - zero[p]!);
  const pageCpu = (pages: number, content: number): number => cost.zeroScanSeconds(pages * ps) + cost.encodeSeconds("raw", content);

  /** Pre-copy rounds over `q` (chance each page is to send); returns when the guest stops. */
  /** When the guest stopped at the source. */
  let stopAt = 0;
  /** The dirty log starts now (what a disk's share wrote before memory's pass does not count). */
  const clearDirty = (): void => {
    dirty.fill(0);
    dirtyMass = 0;
  };
  /** When the source last measured the bandwidth: its periods (source.ts samplePeriod) pace pre-copy's downtime rule. */
  let lastPeriod = 0;
  const samplePeriod = (): boolean => {
    if (t - lastPeriod < PERIOD) return false;
    lastPeriod = t;
    return true;
  };
  /** Dedup's index digests what goes before the switch-over with XXH3 (storage.ts; memory pages too when they are blocks); seconds for `bytes`. */
  const digests = disk !== undefined && (options.disk!.dedup ?? true);
  const digestSeconds = (bytes: number): number => (digests ? cost.hashSeconds(bytes) : 0);
  const memoryDigestSeconds = (pages: number): number => (disk?.blockSize === ps ? digestSeconds(pages * ps) : 0);
  /** CPU of `blocks` disk blocks sent before the switch-over (source.ts sendBlocks): the zero scan and the digests. */
  const blockCpu = (blocks: number): number => cost.zeroScanSeconds(blocks * disk!.blockSize) + digestSeconds(blocks * disk!.blockSize);
  /** One frame of the disk's current pass (storage.ts nextOfPass and sendBlocks: zero blocks as flags). */
  const diskFrame = (): void => {
    const f = disk!.nextOfPass();
    if (f.blocks > 0) send(frame(f.bytes), blockCpu(f.blocks));
  };
  /** storage.ts diskStep: after each memory frame of a round, a disk frame (a new pass over the dirtied blocks once one is done). */
  const diskStep = (): void => {
    if (!disk?.mirroring) return;
    if (disk.passDone) {
      if (disk.dirtyMass < 0.5) return;
      disk.syncPass();
    }
    diskFrame();
  };
  /** storage.ts finishDiskPass: the rest of the disk's pass at a round's end, the guest running. */
  const finishDiskPass = (): void => {
    while (disk?.mirroring && !disk.passDone) {
      diskFrame();
      runGuest(t);
    }
  };
  /** Bytes the disk still has to send (storage.ts diskLeftBytes; pre-copy's stop rule counts them). */
  const diskLeft = (): number => (disk?.mirroring ? disk.left() * disk.blockSize : 0);
  /** storage.ts mirrorDisk: the disk alone first, a bulk pass and passes over the dirtied blocks until they fit the limit (`downtimeRule`) or a cap. */
  const mirror = (downtimeRule: boolean, maxPasses: number): void => {
    const d = disk!;
    d.startMirror();
    for (;;) {
      diskFrame();
      runGuest(t);
      samplePeriod();
      if (!d.passDone) continue;
      if (downtimeRule && d.dirtyMass * d.blockSize + buffered <= B * limit) return;
      if (d.passes >= maxPasses || d.blocksSent > maxSentFactor * d.blockCount) return;
      d.syncPass();
    }
  };
  const runRounds = (q: Float64Array, downtimeRule: boolean, maxRounds: number): { converged: boolean } => {
    clearDirty();
    /** chance-weighted pages still to send this round (a round starts with what the last one left) */
    let remaining = 0;
    /** the round's pages with q > 0, ascending: a later round visits only what is dirty, not every page */
    const todo = new Uint32Array(n);
    let todoCount = 0;
    for (let p = 0; p < n; p++) {
      if (!q[p]) continue;
      todo[todoCount++] = p;
      remaining += q[p]!;
    }
    for (;;) {
      rounds++;
      send(frame(8), 0);
      let stop = false;
      for (let k = 0; k < todoCount && !stop; ) {
        let candidates = 0;
        let sent = 0;
        let bytes = 0;
        let content = 0;
        for (; k < todoCount && candidates < batch; k++) {
          const p = todo[k]!;
          const c = q[p]!;
          candidates += c;
          const go = c * (1 - dirty[p]!);
          sent += go;
          bytes += go * pageBytes(p);
          content += go * ps * (1 - zero[p]!);
          q[p] = 0;
        }
        remaining -= candidates;
        if (sent > 0) {
          send(frame(bytes), disk ? pageCpu(sent, content) + memoryDigestSeconds(sent) : pageCpu(sent, content));
          pagesTransferred += sent;
          diskStep();
        }
        runGuest(t);
        if (samplePeriod()) {
          if (downtimeRule && (remaining + dirtyMass) * ps + buffered + diskLeft() <= B * limit) stop = true;
        }
      }
      finishDiskPass();
      runGuest(t);
      const left = (q: Float64Array): number => {
        let sum = 0;
        todoCount = 0;
        for (let p = 0; p < n; p++) {
          q[p] = 1 - (1 - q[p]!) * (1 - dirty[p]!);
          dirty[p] = 0;
          if (!q[p]) continue;
          todo[todoCount++] = p;
          sum += q[p]!;
        }
        dirtyMass = 0;
        return sum;
      };
      const leftPages = left(q);
      let converged = stop;
      if (!stop) {
        if (downtimeRule ? leftPages * ps + buffered + diskLeft() <= B * limit : leftPages < 0.5) {
          stop = true;
          converged = true;
        }
        else if (rounds >= maxRounds || rounds >= maxIterations || pagesTransferred > maxSent) stop = true;
      }
      if (stop) {
        // pre-copy stops the guest at the decision; hybrid once the round-end frame is taken
        if (!downtimeRule) send(frame(8), 0);
        runGuest(t);
        stopAt = t;
        for (let p = 0; p < n; p++) q[p] = 1 - (1 - q[p]!) * (1 - dirty[p]!);
        if (downtimeRule) send(frame(8), 0);
        return { converged };
      }
      remaining = leftPages;
      send(frame(8), 0);
    }
  };

  const finish = (downtime: number, end: number, stall: number): Prediction => ({
    strategy,
    totalTime: end,
    downtime,
    remoteUptime: strategy === "precopy" ? 0 : end - resumeAt,
    faultStall: stall,
    gamma: deltaT / (downtime + deltaT + stall),
    transferred,
    pagesTransferred,
    rounds,
  });
  let resumeAt = 0;

  if (strategy === "precopy") {
    if (disk) mirror(true, maxIterations);
    const q = new Float64Array(n).fill(1);
    runRounds(q, true, Infinity);
    let left = 0;
    let bytes = 0;
    let content = 0;
    for (let p = 0; p < n; p++) {
      left += q[p]!;
      bytes += q[p]! * pageBytes(p);
      content += q[p]! * ps * (1 - zero[p]!);
    }
    const frames = Math.ceil(left / batch);
    send(frames * frame(0) + bytes, disk ? pageCpu(left, content) + memoryDigestSeconds(left) : pageCpu(left, content));
    pagesTransferred += left;
    if (disk) {
      // storage.ts drainDisk: the disk's last blocks after memory's, then its switch-over.
      const d = disk.drain();
      if (d.blocks > 0) send(d.frames * frame(0) + d.bytes, blockCpu(d.blocks));
      send(frame(12), 0);
    }
    send(frame(12 + stateBytes), 0);
    resumeAt = lineFree + rtt / 2;
    return finish(resumeAt - stopAt, resumeAt, 0);
  }

  // Post-copy, hybrid and fractional: what is pending at the switch-over.
  const pending = new Float64Array(n);
  const cold = strategy === "fractional" ? Math.round((options.memoryPrecopy ?? 0) * n) : strategy === "hybrid" ? n : 0;
  // Hybrid mirrors the disk first for as many passes as memory has rounds (hybrid.ts).
  if (disk && strategy === "hybrid") mirror(false, options.precopyRounds ?? 1);
  else if (disk) {
    // The disk's share goes first, in batches, while both programs run (storage.ts: precopyDiskShare).
    for (const blocks of disk.share(options.disk!.precopy ?? 0)) {
      send(frame(disk.bytes(blocks)), blockCpu(blocks.length));
      runGuest(t);
    }
  }
  if (cold === 0) {
    // Post-copy: a zero scan, then stop; zero pages are never sent.
    clearDirty();
    for (let p = 0; p < n; p++) pending[p] = 1 - zero[p]!;
    t += cost.zeroScanSeconds(n * ps);
    runGuest(t);
    stopAt = t;
    for (let p = 0; p < n; p++) pending[p] = 1 - (1 - pending[p]!) * (1 - dirty[p]!);
  } else if (strategy === "hybrid") {
    pending.fill(1);
    runRounds(pending, false, options.precopyRounds ?? 1);
  } else {
    // Fractional: one pre-copy pass over the `cold` coldest pages; the rest, and what the pass left dirty, post-copied.
    const order = coldestFirst(m);
    for (let k = cold; k < n; k++) pending[order[k]!] = 1;
    const q = new Float64Array(n);
    for (let k = 0; k < cold; k++) q[order[k]!] = 1;
    runRounds(q, false, 1);
    for (let p = 0; p < n; p++) pending[p] = 1 - (1 - pending[p]!) * (1 - q[p]!);
  }
  if (disk) {
    // After the stop (storage.ts pendDisk): without a mirror, the disk's zero scan; its own switch-over with its block map.
    if (!disk.mirroring) t += cost.zeroScanSeconds(disk.blockCount * disk.blockSize);
    disk.pend();
  }
  send(frame(12 + stateBytes + 8 * Math.ceil(n / 64)), 0);
  if (disk) send(frame(12 + 8 * Math.ceil(disk.blockCount / 64)), 0);
  resumeAt = lineFree + rtt / 2;
  const downtime = resumeAt - stopAt;

  // The push: frames of 32 pages from when the switch-over left the line.
  let pendingMass = 0;
  let pushBytesPerPage = 0;
  for (let p = 0; p < n; p++) {
    pendingMass += pending[p]!;
    pushBytesPerPage += pending[p]! * pageBytes(p);
  }
  pushBytesPerPage = pendingMass > 0 ? pushBytesPerPage / pendingMass : ENTRY_BYTES + ps;
  const frameTime = frame(POSTCOPY_BATCH * pushBytesPerPage) / B;
  /** line seconds of each pushed page: its bytes at the switch-over (what the source sends) and its share of a frame's */
  const pushCost = new Float64Array(n);
  for (let p = 0; p < n; p++) pushCost[p] = (pageBytes(p) + frame(0) / POSTCOPY_BATCH) / B;
  const pushTime = (p: number): number => pushCost[p]!;
  const pushStart = lineFree;
  /** the chance each page is still missing at the destination */
  const absent = new Absent(pending);
  let missing = 0;
  for (let p = 0; p < n; p++) missing += pending[p]!;
  /** the chance the source still has each page queued though the destination holds it (claimed by a whole write) */
  const claimedQueued = new Float64Array(n);
  /** the chance the source still has the page to send */
  const queued = (p: number): number => absent.get(p) + claimedQueued[p]!;
  /** line seconds the push has used since it started */
  let pushed = 0;
  let sweep = 0;
  let end = -1;
  /** memory pages pushed since the last disk frame (postcopy.ts: a disk frame after each memory frame) */
  let framePages = 0;
  /** when the last disk frame left the line (−1 while blocks are queued) */
  let diskDone = disk?.queued ? -1 : 0;
  const pushDisk = (bytes: number): void => {
    pushed += disk!.take(bytes) / B;
    if (!disk!.queued && diskDone < 0) diskDone = pushStart + pushed;
  };
  /** Advances the linear sweep until the push reaches clock `time`; sets `end` when nothing is missing. */
  const sweepTo = (time: number): void => {
    const budget = time - pushStart;
    while (pushed < budget && sweep < n) {
      const c = queued(sweep);
      if (c > 0) {
        const cost = c * pushTime(sweep);
        if (pushed + cost > budget) break;
        pushed += cost;
        claimedQueued[sweep] = 0;
        missing -= absent.get(sweep);
        absent.set(sweep, 0);
        framePages += c;
        if (disk?.queued && framePages >= POSTCOPY_BATCH) {
          framePages -= POSTCOPY_BATCH;
          pushDisk(disk.frameBytes);
        }
      }
      sweep++;
      if (missing < 0.5 && end < 0) end = pushStart + pushed + rtt / 2;
    }
    if (sweep >= n && end < 0) end = pushStart + pushed + rtt / 2;
    // Memory all pushed: the disk's frames go on alone.
    if (sweep >= n && disk?.queued) pushDisk(Infinity);
  };

  // Per-epoch notes on pages, valid where their stamp is the epoch's (no clearing, no Map, no object per write).
  let epoch = 0;
  /** the epoch's last write of the page: stamp, writes before it, its chance, its whole share */
  const rewriteStamp = new Int32Array(n);
  const rewriteAt = new Float64Array(n);
  const rewriteX = new Float64Array(n);
  const rewriteWhole = new Float64Array(n);
  /**
   * a page's chance of being missing before the epoch's writes, noted at its
   * first write in the epoch: the reads before that write find it so
   */
  const missingBefore = new Float64Array(n);

  // The program at the destination: guest time goes on from the stop, stalled by faults.
  let clock = resumeAt;
  let guest = stopAt;
  let stall = 0;
  while (end < 0) {
    const due = writes.due;
    if (!Number.isFinite(due)) {
      sweepTo(Infinity);
      break;
    }
    const at = clock + Math.max(0, Math.ceil((due - guest) / QUANTUM) * QUANTUM);
    sweepTo(at);
    if (end >= 0 && end <= at) break;
    clock = at;
    guest = due;
    // A quantum's faults are requested together and the program waits until
    // the pages it needs are here. A page read while missing and then
    // overwritten whole later in the same quantum is requested (the source
    // sends it) but claimed by the write, so it is not waited for
    // (destination.ts: claim). The wait is for the waited pages, and for the
    // claimed ones' bytes only when there is a wait at all.
    /** pages the program waits for, and their bytes */
    let waited = 0;
    let waitedBytes = 0;
    /** bytes of pages requested and then claimed */
    let claimedBytes = 0;
    let written = 0;
    const before = recent!.snapshot();
    epoch++;
    /** the last page the epoch's writes fault on: where the push's pre-paging starts once the requests are served */
    let pivot = -1;
    /** uniform reads per write per page */
    const uniformRate = (reads.perWrite * reads.uniformShare) / n;
    writes.apply((p, x, whole, z) => {
      if (rewriteStamp[p] !== epoch) missingBefore[p] = absent.get(p);
      rewriteStamp[p] = epoch;
      rewriteAt[p] = written;
      rewriteX[p] = x;
      rewriteWhole[p] = whole;
      const gone = x * absent.get(p);
      if (gone > 0) {
        absent.set(p, absent.get(p) - gone);
        missing -= gone;
        const fetched = gone * (1 - whole);
        if (fetched >= 0.5) pivot = p;
        waited += fetched;
        waitedBytes += fetched * pushTime(p) * B;
        // The uniform reads after the epoch's first `written` writes found it missing; a partial write fetches it anyway.
        const requested = uniformRate * written * gone * whole;
        claimedBytes += requested * pushTime(p) * B;
        claimedQueued[p] = Math.max(0, claimedQueued[p]! + gone * whole - requested);
      }
      written += x;
      recent!.add(p, x, false);
      zero[p] = (1 - x) * zero[p]! + x * z;
    });
    // Uniform reads of pages the epoch does not write find them missing all
    // through it: each such page is fetched with the same chance (applied to
    // every page at once; the source's sweep still counts them, as it counts
    // pages it sends twice), and is of the average pending size.
    const uniformKept = Math.exp(-uniformRate * written);
    const uniformFaults = (1 - uniformKept) * missing;
    absent.scale(uniformKept);
    waited += uniformFaults;
    waitedBytes += uniformFaults * pushBytesPerPage;
    // The other reads pick one of the last `window` pages written, each read
    // after a write. The epoch's own writes push the older entries out, oldest
    // first: the entry `c` writes from the ring's old end is seen by the
    // epoch's first c reads (and by none once the ring was short of full by
    // less). A page the epoch also writes is missing only for the reads
    // before that write; past it, the write claimed or fetched it.
    /** read faults on pages still missing after the epoch's writes (these change `missing`) */
    let unwritten = 0;
    if (before.weight > 0) {
      const perRead = (reads.perWrite * (1 - reads.uniformShare)) / reads.window;
      const room = Math.max(0, reads.window - before.weight);
      let c = 0;
      before.forEach((p, w, atSource) => {
        c += w;
        // A page the program wrote here is here (the Poisson model's weights would say only likely).
        if (!atSource) return;
        const seen = Math.min(c + room, written);
        // Missing after the writes: missing for every read that sees the entry.
        const left = (1 - Math.exp(-perRead * w * seen)) * absent.get(p);
        // Written whole in the epoch but missing before: requested by the reads before the write, then claimed.
        // (A read before a partial write fetches what that write would have.)
        const early = rewriteStamp[p] === epoch ? (1 - Math.exp(-perRead * w * Math.min(seen, rewriteAt[p]!))) * rewriteX[p]! * missingBefore[p]! * rewriteWhole[p]! : 0;
        if (left + early <= 0) return;
        absent.set(p, absent.get(p) - left);
        unwritten += left;
        claimedQueued[p] = Math.max(0, claimedQueued[p]! - early);
        waited += left;
        waitedBytes += left * pushTime(p) * B;
        claimedBytes += early * pushTime(p) * B;
      });
    }
    missing -= uniformFaults + unwritten;
    // Every requested page takes the line; the program waits, when it waits at all, until the last one it needs is here.
    pushed += (waitedBytes + claimedBytes) / B;
    // The requests go as the push's memory frames (postcopy.ts pushRest), each followed by a disk frame while
    // blocks are queued; the source takes requests only as a disk frame starts, so they wait two frames, not one and a half.
    const diskPushing = disk !== undefined && disk.queued > 0;
    /** line seconds of the disk frames between the request frames: the last requested page waits for them too */
    let between = 0;
    if (diskPushing) {
      const frames = Math.ceil((waitedBytes + claimedBytes) / (POSTCOPY_BATCH * pushBytesPerPage) - 1e-9);
      for (let k = 0; k < frames && disk.queued; k++) {
        const before = pushed;
        pushDisk(disk.frameBytes);
        if (k < frames - 1) between += pushed - before;
      }
    }
    const wait = (1 - Math.exp(-waited)) * (rtt + (diskPushing ? 2 : 1.5) * frameTime + claimedBytes / B + between) + waitedBytes / B;
    stall += wait;
    clock += wait;
    // Pre-paging: the push sends the pages the source still holds around the last fault, nearest first (postcopy.ts: bubbling).
    /** when the last page the program still lacked arrives by pre-paging */
    let prepaged = clock;
    if (pivot >= 0) {
      for (let r = 1; r <= prepageWindow; r++) {
        for (const p of [pivot + r, pivot - r]) {
          if (p < 0 || p >= n || !(queued(p) > 0)) continue;
          pushed += queued(p) * pushTime(p);
          claimedQueued[p] = 0;
          if (absent.get(p) > 0) prepaged = Math.max(prepaged, pushStart + pushed);
          missing -= absent.get(p);
          absent.set(p, 0);
        }
      }
    }
    if (missing < 0.5) end = prepaged + rtt / 2;
  }
  if (disk && diskDone < 0) {
    // The source pushes on, memory and disk frames in turn, until the destination holds both.
    sweepTo(Infinity);
  }
  return finish(downtime, Math.max(end, diskDone + rtt / 2, resumeAt), stall);
}

/**
 * The disk beside the memory (PredictOptions.disk): its writes at the
 * source, the mirror's passes (pre-copy, hybrid) or fractional's share,
 * what is queued for the push. Chances per block, as memory's per page.
 */
class DiskModel {
  readonly blockSize: number;
  readonly blockCount: number;
  /** blocks per frame before the switch-over (options.ts: batchBlocks) */
  private readonly batch: number;
  private readonly writes: Writes;
  private readonly zero: Float64Array;
  /** the chance each block was written since the dirty log's last sync */
  private readonly dirty: Float64Array;
  dirtyMass = 0;
  private readonly precopied: Uint8Array;
  /** the blocks in the mirror's sending order: coldest first (hot-area), else by index */
  private readonly rank: Uint32Array;
  /** the chance each block is in the current pass and not reached yet */
  private readonly inPass: Float64Array;
  /** the current pass's blocks in sending order, and how far it got */
  private pass: Uint32Array = new Uint32Array(0);
  private passAt = 0;
  private passMass = 0;
  /** the mirror has started (pre-copy, hybrid) */
  mirroring = false;
  passes = 0;
  blocksSent = 0;
  /** bytes queued for the push */
  queued = 0;
  /** bytes of a push frame of 32 blocks */
  frameBytes = 0;

  constructor(
    private readonly profile: PageProfile,
    replay: boolean,
    hotArea: boolean,
  ) {
    this.blockSize = profile.pageSize;
    this.blockCount = profile.pageCount;
    this.batch = Math.min(256, Math.max(1, 2 ** 20 / this.blockSize), this.blockCount);
    this.writes = new Writes(profile, replay);
    this.zero = Float64Array.from(profile.imageZero);
    this.dirty = new Float64Array(this.blockCount);
    this.precopied = new Uint8Array(this.blockCount);
    this.inPass = new Float64Array(this.blockCount);
    this.rank = hotArea ? coldestFirst(profile) : Uint32Array.from({ length: this.blockCount }, (_, b) => b);
  }

  /** The disk's program writes up to clock `to`. */
  run(to: number): void {
    while (this.writes.due <= to) {
      this.writes.apply((b, x, _whole, z) => {
        this.dirtyMass += (1 - this.dirty[b]!) * x;
        this.dirty[b] = this.dirty[b]! + (1 - this.dirty[b]!) * x;
        this.zero[b] = (1 - x) * this.zero[b]! + x * z;
      });
    }
  }

  private clearDirty(): void {
    this.dirty.fill(0);
    this.dirtyMass = 0;
  }

  /** The `share` coldest blocks, in the engine's batches (ascending within each); the dirty log starts here. */
  share(share: number): number[][] {
    this.clearDirty();
    const order = coldestFirst(this.profile).subarray(0, Math.round(share * this.blockCount));
    const batches: number[][] = [];
    for (let at = 0; at < order.length; at += this.batch) batches.push(Array.from(order.subarray(at, at + this.batch)).sort((a, b) => a - b));
    for (const b of order) this.precopied[b] = 1;
    return batches;
  }

  /** Wire bytes of `blocks` sent now. */
  bytes(blocks: readonly number[]): number {
    let bytes = 0;
    for (const b of blocks) bytes += this.blockBytes(b);
    return bytes;
  }

  private blockBytes(b: number): number {
    return ENTRY_BYTES + this.blockSize * (1 - this.zero[b]!);
  }

  /** The mirror's bulk pass over every block starts; the dirty log starts here. */
  startMirror(): void {
    this.mirroring = true;
    this.clearDirty();
    this.startPass(() => 1);
  }

  /** A pass over the blocks dirtied since the last sync (a dirty-log sync). */
  syncPass(): void {
    const dirty = Float64Array.from(this.dirty);
    this.clearDirty();
    this.startPass((b) => dirty[b]!);
  }

  private startPass(chance: (b: number) => number): void {
    const pass: number[] = [];
    this.passMass = 0;
    for (const b of this.rank) {
      const c = chance(b);
      if (!(c > 0)) continue;
      pass.push(b);
      this.inPass[b] = c;
      this.passMass += c;
    }
    this.pass = Uint32Array.from(pass);
    this.passAt = 0;
    this.passes++;
  }

  get passDone(): boolean {
    return this.passAt >= this.pass.length;
  }

  /** Blocks left in the pass and dirtied since the last sync (storage.ts leftBlocks). */
  left(): number {
    return this.passMass + this.dirtyMass;
  }

  /**
   * The next frame of the pass: up to a batch of blocks sent, a block
   * dirtied since the sync being left for the next pass (it stays dirty).
   */
  nextOfPass(): { blocks: number; bytes: number } {
    let blocks = 0;
    let bytes = 0;
    while (blocks < this.batch - 1e-9 && this.passAt < this.pass.length) {
      const b = this.pass[this.passAt++]!;
      const c = this.inPass[b]!;
      this.inPass[b] = 0;
      this.passMass -= c;
      const go = c * (1 - this.dirty[b]!);
      blocks += go;
      bytes += go * this.blockBytes(b);
    }
    this.blocksSent += blocks;
    return { blocks, bytes };
  }

  /** The chance each block is not current at the destination at the stop: the pass's rest and the dirtied (or, without a mirror, the non-zero blocks not pre-copied and the dirtied). */
  private outOfDate(b: number): number {
    if (this.mirroring) return 1 - (1 - this.inPass[b]!) * (1 - this.dirty[b]!);
    return this.precopied[b] ? this.dirty[b]! : 1 - this.zero[b]!;
  }

  /** Pre-copy's stop-and-copy of the disk (storage.ts drainDisk): its blocks, bytes and frames. */
  drain(): { blocks: number; bytes: number; frames: number } {
    let blocks = 0;
    let bytes = 0;
    for (let b = 0; b < this.blockCount; b++) {
      const x = this.outOfDate(b);
      blocks += x;
      bytes += x * this.blockBytes(b);
    }
    return { blocks, bytes, frames: Math.ceil(blocks / this.batch - 1e-9) };
  }

  /** At a post-copy switch-over: queues the blocks not current at the destination for the push. */
  pend(): void {
    let blocks = 0;
    for (let b = 0; b < this.blockCount; b++) {
      const x = this.outOfDate(b);
      blocks += x;
      this.queued += x * this.blockBytes(b);
    }
    this.queued += Math.ceil(blocks / POSTCOPY_BATCH) * (HEADER_BYTES + CHECK_BYTES);
    this.frameBytes = HEADER_BYTES + CHECK_BYTES + POSTCOPY_BATCH * (ENTRY_BYTES + this.blockSize);
  }

  /** Takes up to `bytes` off the queue; what was taken. */
  take(bytes: number): number {
    const taken = Math.min(bytes, this.queued);
    this.queued -= taken;
    return taken;
  }
}

/**
 * Per-page chances kept with one factor shared by all, so that scaling every
 * page (the uniform reads' fetches) costs O(1) and not O(pages) per epoch.
 */
class Absent {
  private factor = 1;
  private readonly scaled: Float64Array;

  constructor(initial: Float64Array) {
    this.scaled = Float64Array.from(initial);
  }

  get(p: number): number {
    return this.scaled[p]! * this.factor;
  }

  set(p: number, chance: number): void {
    this.scaled[p] = chance / this.factor;
  }

  /** Every page's chance times `keep` (0 < keep ≤ 1). */
  scale(keep: number): void {
    this.factor *= keep;
    if (this.factor > 1e-200) return;
    for (let p = 0; p < this.scaled.length; p++) this.scaled[p] = this.scaled[p]! * this.factor;
    this.factor = 1;
  }
}

/**
 * The last `window` pages written, by weight (the replay's read model picks
 * reads among them): a ring of typed arrays, as a prediction adds one entry
 * per write (a million for a 1 GiB pre-copy) and keeps about `window`.
 */
class RecentWrites {
  private pages: Uint32Array = new Uint32Array(1024);
  private weights: Float64Array = new Float64Array(1024);
  /** 1: written at the source (0: by the program at the destination, which then holds the page) */
  private atSource: Uint8Array = new Uint8Array(1024);
  /** entries [head, head + count) modulo the capacity */
  private head = 0;
  private count = 0;
  /** what snapshot() last copied out */
  private shot = RecentWrites.arrays(0);
  weight = 0;

  constructor(private readonly window: number) {}

  add(p: number, x: number, atSource = true): void {
    if (this.count === this.pages.length) this.grow();
    const mask = this.pages.length - 1;
    const at = (this.head + this.count++) & mask;
    this.pages[at] = p;
    this.weights[at] = x;
    this.atSource[at] = atSource ? 1 : 0;
    this.weight += x;
    while (this.weight - this.weights[this.head]! >= this.window) {
      this.weight -= this.weights[this.head]!;
      this.head = (this.head + 1) & mask;
      this.count--;
    }
  }

  /** The entries now, to visit after more are added (until the next snapshot: its arrays are reused). */
  snapshot(): { weight: number; forEach(visit: (p: number, w: number, atSource: boolean) => void): void } {
    if (this.shot.pages.length < this.pages.length) this.shot = RecentWrites.arrays(this.pages.length);
    const { pages, weights, atSource } = this.inOrder(this.shot);
    const count = this.count;
    return { weight: this.weight, forEach: (visit) => { for (let k = 0; k < count; k++) visit(pages[k]!, weights[k]!, atSource[k] === 1); } };
  }

  private static arrays(size: number): { pages: Uint32Array; weights: Float64Array; atSource: Uint8Array } {
    return { pages: new Uint32Array(size), weights: new Float64Array(size), atSource: new Uint8Array(size) };
  }

  /** Twice the room. */
  private grow(): void {
    ({ pages: this.pages, weights: this.weights, atSource: this.atSource } = this.inOrder(RecentWrites.arrays(this.pages.length * 2)));
    this.head = 0;
  }

  /** The entries oldest first, into `out` from index 0. */
  private inOrder<T extends { pages: Uint32Array; weights: Float64Array; atSource: Uint8Array }>(out: T): T {
    const mask = this.pages.length - 1;
    for (let k = 0; k < this.count; k++) {
      const at = (this.head + k) & mask;
      out.pages[k] = this.pages[at]!;
      out.weights[k] = this.weights[at]!;
      out.atSource[k] = this.atSource[at]!;
    }
    return out;
  }
}

/** Page indices by λ, coldest first (ties in index order). */
export function coldestFirst(m: PageProfile): Uint32Array {
  return ascendingBy(m.writtenEpochs);
}

/** Indices 0..n−1 ordered by `keys` ascending (a write rate: coldest first), ties in index order. */
export function ascendingBy(keys: ArrayLike<number>): Uint32Array {
  return Uint32Array.from({ length: keys.length }, (_, k) => k).sort((a, b) => keys[a]! - keys[b]! || a - b);
}

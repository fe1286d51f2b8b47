// The machinery every strategy shares: the two ends of one migration and
// the accounting between them. The source side loads pages from the guest,
// charges the cost model for encoding, frames them through the Wire pipeline
// (src/wire/frame.ts) and sends them; the destination side receives frames,
// charges for decoding, decodes into its own memory and tracks which pages
// it holds. Strategies (precopy.ts, postcopy.ts, hybrid.ts) decide only which
// pages go when.
//
// The guest is simulated in one process: `guest.memory` is the program's
// memory as the program sees it. While it runs on the source that is the
// source's memory; after switch-over (post-copy) the program runs "at the
// destination": its accesses go through `guest.hook`, which makes a missing
// page a fault, and its writes are mirrored into the destination's memory.
// A page the program changes at the destination before the source has sent
// it is saved first (copy-on-write), so the source still sends, and the
// destination still checks, the content the page had at switch-over.

import { ENCODING_NAMES, type CodecStats, type Encoding, type PageCodec } from "../codecs/codec.js";
import { scanZeroPages } from "../codecs/zero.js";
import { PagemillError, VerificationError, checkInteger } from "../errors.js";
import { DirtyBitmap } from "../guest/bitmap.js";
import type { Guest, Workload } from "../guest/guest.js";
import { Random } from "../random.js";
import type { Channel } from "../net/channel.js";
import { PageBatch } from "../wasm/arena.js";
import { FrameDecoder, FrameEncoder, MAX_REQUEST_PAGES, MAX_STATE_BYTES, maxFramePages, readPageEncodings, encodeSwitchover, decodeSwitchover, type ControlMessage, type SwitchoverRecord } from "../wire/frame.js";
import { buildPipeline, type PipelineStages } from "../wire/pipeline.js";
import type { Clock } from "../clock.js";
import { CostModel } from "./cost.js";
import type { MigrationStats, RoundRow, StopReason, StrategyName } from "./metrics.js";

export interface MigrationOptions {
  /** The running program whose guest is migrated; its `guest` is the memory. */
  readonly workload: Workload;
  readonly clock: Clock;
  /** The source's end of the channel. */
  readonly source: Channel;
  /** The destination's end of the same channel. */
  readonly destination: Channel;
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
  /** Pre-copy: most rounds before stop-and-copy (Xen caps at 30). */
  readonly maxIterations?: number;
  /** Pre-copy: stop once more than this × guest memory has been sent (Xen: 3). */
  readonly maxSentFactor?: number;
  /** Pre-copy: throttle the guest when it dirties faster than the link drains (QEMU auto-converge). */
  readonly autoConverge?: boolean;
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
  /** Hybrid: pre-copy rounds before switching to post-copy. */
  readonly precopyRounds?: number;
  /** Hybrid: switch to post-copy once this many bytes were sent in pre-copy. */
  readonly precopyBudget?: number;
  /** Post-copy: pages pushed on each side of a fault before the linear push resumes. */
  readonly prepageWindow?: number;
  /** Post-copy: guest seconds the destination runs between fault services. */
  readonly faultQuantum?: number;
  /** Called as the migration goes (for progress bars). */
  readonly onProgress?: (progress: MigrationProgress) => void;
}

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
}

export type Phase = "setup" | "precopy" | "downtime" | "postcopy" | "done";

/** The per-page state the destination keeps. */
export const PageState = {
  /** the destination holds the page */
  PRESENT: 1,
  /** a page request for it is outstanding */
  REQUESTED: 2,
  /** the destination's program replaced it whole before it arrived: an arrival is checked, not used */
  OWNED: 4,
  /** checked against the source's copy before the destination's program first changed it */
  CHECKED: 8,
} as const;

function positive(name: string, value: number): number {
  if (!(typeof value === "number" && value > 0 && Number.isFinite(value))) throw new RangeError(`${name} must be a positive finite number, got ${value}`);
  return value;
}

function nonNegative(name: string, value: number): number {
  if (!(typeof value === "number" && value >= 0)) throw new RangeError(`${name} must be a number ≥ 0, got ${value}`);
  return value;
}

/** Deterministic stand-in for CPU and device state (its bytes only need to survive the trip). */
function stateBlob(size: number): Uint8Array {
  return new Random(0x9e3779b9).bytes(size);
}

export class Session {
  readonly strategy: StrategyName;
  readonly workload: Workload;
  readonly guest: Guest;
  readonly clock: Clock;
  readonly src: Channel;
  readonly dst: Channel;
  readonly cost: CostModel;
  readonly pageSize: number;
  readonly pageCount: number;
  readonly batchPages: number;
  readonly downtimeLimit: number;
  readonly maxIterations: number;
  readonly maxSentFactor: number;
  readonly autoConverge: boolean;
  readonly throttleInitial: number;
  readonly throttleIncrement: number;
  readonly throttleMax: number;
  readonly throttleTriggerThreshold: number;
  readonly bandwidthPeriod: number;
  readonly precopyRounds: number;
  readonly precopyBudget: number;
  readonly prepageWindow: number;
  readonly faultQuantum: number;
  readonly state: Uint8Array;
  readonly stats: MigrationStats;
  private readonly onProgress: ((progress: MigrationProgress) => void) | undefined;

  /** The destination's memory (zero at the start, as a fresh VM's). */
  readonly memory: Uint8Array;
  /** PageState flags per page, at the destination. */
  readonly pageState: Uint8Array;
  presentCount = 0;
  /** Switch-over content of pages the destination's program changed before they arrived. */
  readonly cow = new Map<number, Uint8Array>();

  /** The encoder's stages (the encoder reads this object on every frame). */
  private readonly stages: PipelineStages;
  private readonly allCodecs: PageCodec[];
  /** Source: PAGES and control frames out, page requests in. */
  private readonly encoder: FrameEncoder;
  private readonly sourceDecoder = new FrameDecoder();
  /** Destination: frames in, page requests out. */
  private readonly decoder: FrameDecoder;
  private readonly requestEncoder = new FrameEncoder();
  private readonly batch: PageBatch;
  /** Clock time the migration started. */
  readonly t0: number;
  /** guest time = clock time + guestOffset while the guest runs on the source */
  private readonly guestOffset: number;

  phase: Phase = "setup";
  round = 0;
  remainingPages: number;
  /** Set by the source when the guest stops; the program no longer runs there. */
  stopAt = -1;
  /** When the destination resumed the program. */
  resumeAt = -1;
  private resumedWake!: () => void;
  /** Resolves when the destination resumes the program. */
  readonly resumed: Promise<void>;
  /** Set once the destination holds every page (post-copy). */
  complete = false;
  /** Set on the source when the destination's "done" arrives: nothing more to push. */
  sourceDone = false;
  private completeWake!: () => void;
  readonly completed: Promise<void>;
  private failWith!: (error: unknown) => void;
  /** Rejects when a side task (the destination, the request server) fails. */
  readonly failed: Promise<never>;
  /** Post-copy: page requests the source has received and not served. */
  readonly requests: number[] = [];
  private waitingPages: Set<number> | undefined;
  private waitingWake: (() => void) | undefined;

  /** Wire bytes and clock time of the current measurement period (QEMU's bandwidth sampling). */
  private periodStart: number;
  private periodBytes = 0;
  /** bytes of the frame the channel is carrying now (not yet counted as carried) */
  bufferedBytes = 0;
  /** bytes/s over the last complete period (0 until one completed) */
  bandwidth = 0;
  /** source wire bytes of the current round */
  roundBytes = 0;
  private lastProgress = -Infinity;
  /** An adaptive compress stage's choices when the last round ended. */
  private choicesBefore: Record<string, number> = {};

  constructor(strategy: StrategyName, options: MigrationOptions) {
    this.strategy = strategy;
    this.workload = options.workload;
    this.guest = options.workload.guest;
    this.clock = options.clock;
    this.src = options.source;
    this.dst = options.destination;
    this.cost = options.cost ?? new CostModel();
    this.pageSize = this.guest.pageSize;
    this.pageCount = this.guest.pageCount;
    if (this.pageCount === 0) throw new RangeError("the guest has no pages");
    const batchPages = options.batchPages ?? 256;
    checkInteger("batchPages", batchPages, 1, maxFramePages(this.pageSize));
    this.batchPages = Math.min(batchPages, this.pageCount);
    this.downtimeLimit = nonNegative("downtimeLimit", options.downtimeLimit ?? 0.3);
    this.maxIterations = options.maxIterations ?? 30;
    checkInteger("maxIterations", this.maxIterations, 1, 1e6);
    this.maxSentFactor = positive("maxSentFactor", options.maxSentFactor ?? 3);
    this.autoConverge = options.autoConverge ?? false;
    this.throttleInitial = options.throttleInitial ?? 20;
    this.throttleIncrement = options.throttleIncrement ?? 10;
    this.throttleMax = options.throttleMax ?? 99;
    checkInteger("throttleInitial", this.throttleInitial, 1, 99);
    checkInteger("throttleIncrement", this.throttleIncrement, 1, 99);
    checkInteger("throttleMax", this.throttleMax, this.throttleInitial, 99);
    this.throttleTriggerThreshold = options.throttleTriggerThreshold ?? 50;
    checkInteger("throttleTriggerThreshold", this.throttleTriggerThreshold, 1, 100);
    this.bandwidthPeriod = positive("bandwidthPeriod", options.bandwidthPeriod ?? 0.1);
    this.precopyRounds = options.precopyRounds ?? 1;
    checkInteger("precopyRounds", this.precopyRounds, 1, 1e6);
    this.precopyBudget = options.precopyBudget === undefined ? Infinity : positive("precopyBudget", options.precopyBudget);
    this.prepageWindow = options.prepageWindow ?? Math.min(64, this.pageCount);
    checkInteger("prepageWindow", this.prepageWindow, 0, this.pageCount);
    this.faultQuantum = positive("faultQuantum", options.faultQuantum ?? 0.01);
    const stateBytes = options.stateBytes ?? 256 * 1024;
    // The switch-over frame carries the state, the record's head and the pending map.
    checkInteger("stateBytes", stateBytes, 0, MAX_STATE_BYTES - 12 - 8 * Math.ceil(this.pageCount / 64));
    this.state = stateBlob(stateBytes);
    this.onProgress = options.onProgress;

    const spec = options.codec ?? "raw";
    const codecs = buildPipeline(spec);
    this.stages = codecs;
    this.allCodecs = Object.values(codecs).filter((c) => c !== undefined);
    this.encoder = new FrameEncoder(codecs);
    this.decoder = new FrameDecoder();
    this.batch = new PageBatch(this.batchPages, this.pageSize);
    this.memory = new Uint8Array(this.pageCount * this.pageSize);
    this.pageState = new Uint8Array(this.pageCount);
    this.remainingPages = this.pageCount;
    this.resumed = new Promise((wake) => (this.resumedWake = wake));
    this.completed = new Promise((wake) => (this.completeWake = wake));
    this.failed = new Promise<never>((_, reject) => (this.failWith = reject));
    this.failed.catch(() => {});
    this.t0 = this.clock.now();
    this.periodStart = this.t0;
    this.guestOffset = this.workload.now - this.t0;
    this.stats = {
      strategy,
      codec: spec,
      status: "completed",
      converged: true,
      stopReason: "immediate",
      totalTime: 0,
      setupTime: 0,
      downtime: 0,
      expectedDowntime: 0,
      remoteUptime: 0,
      total: this.pageCount * this.pageSize,
      pageSize: this.pageSize,
      transferred: 0,
      remaining: 0,
      duplicate: 0,
      normal: 0,
      normalBytes: 0,
      pagesTransferred: 0,
      dirtyPagesRate: 0,
      mbps: 0,
      dirtySyncCount: 0,
      postcopyRequests: 0,
      precopyBytes: 0,
      downtimeBytes: 0,
      postcopyBytes: 0,
      xbzrleCache: undefined,
      cpuThrottlePercentage: 0,
      throttleSteps: [],
      faults: 0,
      wholePageOverwrites: 0,
      prepagedPages: 0,
      faultStall: 0,
      workloadSlowdown: 1,
      sourceCpu: 0,
      destinationCpu: 0,
      codecStats: this.encoder.stats,
      compressionRatio: 1,
      verifiedPages: 0,
      stateBytes,
      bandwidth: 0,
      rtt: this.src.rtt,
      rounds: [],
    };
  }

  /** Lets `seconds` of modelled CPU time pass (on a virtual clock; a real clock has spent them already). */
  private charge(seconds: number): Promise<void> | void {
    if (this.clock.virtual) return this.clock.sleep(seconds);
  }

  /** Runs a side task of the migration: its failure fails the migration. */
  spawn(task: Promise<unknown>): void {
    task.catch(this.failWith);
  }

  /** Clock time since the migration started. */
  elapsed(): number {
    return this.clock.now() - this.t0;
  }

  // ------------------------------------------------------------ source side

  /** Lets the guest run on the source up to now (no-op once stopped). */
  async runGuestOnSource(): Promise<void> {
    if (this.stopAt >= 0) return;
    const to = this.clock.now() + this.guestOffset;
    if (to > this.workload.now) await this.clock.settle(this.workload.advance(to));
  }

  /** Stops the guest on the source: it runs up to now, then no more. */
  async stopGuest(): Promise<void> {
    await this.runGuestOnSource();
    this.stopAt = this.clock.now();
    this.phase = "downtime";
  }

  /** Sets the auto-converge throttle (percent) and records the step. */
  setThrottle(percent: number): void {
    this.stats.cpuThrottlePercentage = percent;
    this.stats.throttleSteps.push({ at: this.elapsed(), percent });
    this.workload.throttle = 1 - percent / 100;
  }

  /**
   * Encodes `pages` (one frame: at most batchPages) from the source's view of
   * memory, charges the CPU, and sends the frame. Returns the zero pages among them.
   */
  async sendPages(pages: ArrayLike<number>): Promise<number> {
    const n = pages.length;
    const batch = this.batch.load(this.guest.memory, pages);
    if (this.cow.size) {
      for (let k = 0; k < n; k++) {
        const saved = this.cow.get(pages[k]!);
        if (saved) batch.page(k).set(saved);
      }
    }
    const stats = this.encoder.stats;
    const zeroBefore = stats.byEncoding.zero ?? 0;
    const link = { bandwidth: this.linkBandwidth(), costs: this.cost };
    for (const codec of this.allCodecs) codec.setLink?.(link);
    const frame = this.encoder.pages(batch, pages);
    const zero = (stats.byEncoding.zero ?? 0) - zeroBefore;
    const contentBytes = (n - zero) * this.pageSize;
    let cpu = this.cost.zeroScanSeconds(n * this.pageSize);
    for (const codec of [this.stages.dedup, this.stages.delta, this.stages.compress]) {
      // An adaptive codec is charged for the codecs it ran; raw is no encoding work.
      for (const work of codec ? (codec.work ?? codec.name).split("+") : []) {
        if (work !== "raw") cpu += this.cost.encodeSeconds(work, contentBytes);
      }
    }
    this.stats.sourceCpu += cpu;
    this.stats.duplicate += zero;
    this.stats.normal += n - zero;
    this.stats.pagesTransferred += n;
    await this.charge(cpu);
    if (this.stats.pagesTransferred === n && this.phase === "precopy") this.stats.setupTime = this.elapsed();
    await this.sendFromSource(frame);
    return zero;
  }

  /**
   * Zero scan of the whole guest (post-copy's first pass, which lets the
   * destination treat zero pages as present): sets the non-zero pages in
   * `into` and charges the scan.
   */
  async scanNonZero(into: DirtyBitmap): Promise<void> {
    const ps = this.pageSize;
    for (let first = 0; first < this.pageCount; first += this.batchPages) {
      const count = Math.min(this.batchPages, this.pageCount - first);
      const { flags } = scanZeroPages(this.batch.set(this.guest.memory.subarray(first * ps, (first + count) * ps)));
      for (let k = 0; k < count; k++) if (!flags[k]) into.set(first + k);
    }
    const cpu = this.cost.zeroScanSeconds(this.pageCount * ps);
    this.stats.sourceCpu += cpu;
    await this.charge(cpu);
  }

  /**
   * Post-copy from here on: a dedup reference names another page the
   * destination holds, which its running program may since have changed, so
   * the dedup stage stops (XBZRLE stays: its base is the same page, which the
   * program cannot have touched before it arrives).
   */
  stopDedup(): void {
    this.stages.dedup = undefined;
  }

  /** Sends a control frame from the source. */
  sendControl(message: ControlMessage): Promise<void> {
    return this.sendFromSource(this.encoder.control(message));
  }

  private async sendFromSource(frame: Uint8Array): Promise<void> {
    this.account(frame.byteLength);
    this.roundBytes += frame.byteLength;
    await this.src.send(frame);
    // send() resolves when the channel takes the next frame, i.e. once the
    // one before has left: count that one as carried in this period.
    this.periodBytes += this.bufferedBytes;
    this.bufferedBytes = frame.byteLength;
  }

  private account(bytes: number): void {
    this.stats.transferred += bytes;
    if (this.phase === "postcopy") this.stats.postcopyBytes += bytes;
    else if (this.phase === "downtime") this.stats.downtimeBytes += bytes;
    else this.stats.precopyBytes += bytes;
  }

  /**
   * Closes the measurement period when it is due: the source's wire rate
   * over its length (QEMU's migration_update_counters). Returns true when a
   * new measurement was taken.
   */
  samplePeriod(force = false): boolean {
    const now = this.clock.now();
    const span = now - this.periodStart;
    if (span <= 0 || (!force && span < this.bandwidthPeriod)) return false;
    this.bandwidth = this.periodBytes / span;
    this.stats.mbps = (this.bandwidth * 8) / 1e6;
    this.periodStart = now;
    this.periodBytes = 0;
    this.progress();
    return true;
  }

  progress(): void {
    if (!this.onProgress) return;
    const now = this.clock.now();
    if (now - this.lastProgress < 0.05 && this.phase !== "done") return;
    this.lastProgress = now;
    this.onProgress({
      strategy: this.strategy,
      phase: this.phase,
      round: this.round,
      remainingPages: this.remainingPages,
      pageCount: this.pageCount,
      bitsPerSecond: this.bandwidth * 8,
      time: this.elapsed(),
    });
  }

  /**
   * The link's bandwidth now, bytes/s: the line rate when the channel knows
   * it, else the rate measured over the last period (0 before one ended).
   */
  linkBandwidth(): number {
    const bits = this.src.bitsPerSecond;
    return bits !== undefined ? bits / 8 : this.bandwidth;
  }

  /** Records a finished pre-copy round, with the pages per codec an adaptive codec chose in it. */
  addRound(row: Omit<RoundRow, "choices">): void {
    const now = this.stages.compress?.stats.choices;
    let choices: Record<string, number> | undefined;
    if (now) {
      choices = {};
      for (const [codec, pages] of Object.entries(now)) choices[codec] = pages - (this.choicesBefore[codec] ?? 0);
      this.choicesBefore = { ...now };
    }
    this.stats.rounds.push({ ...row, choices });
  }

  /**
   * Stop-time work common to every strategy: sends the switch-over record
   * (state, and for post-copy the pages the destination must wait for).
   */
  async sendSwitchover(pending: DirtyBitmap | undefined): Promise<void> {
    const record = encodeSwitchover({ state: this.state, pending: pending?.toWords() }, this.pageCount);
    await this.sendControl({ type: "switch-over", state: record });
  }

  /** Source: listens for page requests (post-copy) until the destination closes. */
  async serveRequests(): Promise<void> {
    for (;;) {
      const bytes = await this.src.receive();
      if (!bytes) return;
      const frame = this.sourceDecoder.decode(bytes);
      if (frame.type === "done") {
        this.sourceDone = true;
        continue;
      }
      if (frame.type !== "page-request") throw new PagemillError(`source got an unexpected ${frame.type} frame`);
      for (const p of frame.pages) this.requests.push(p);
    }
  }

  // ------------------------------------------------------- destination side

  /** Destination: receives, charges and decodes every frame until the source closes. */
  async receive(): Promise<void> {
    for (;;) {
      const bytes = await this.dst.receive();
      if (!bytes) return;
      // The decode's CPU time passes before its pages land. Writing them into
      // memory and updating their page states is then one step, with no wait
      // between: otherwise the program could run, or the migration end, while
      // memory holds the source's copy of a page the program has replaced.
      const encodings = readPageEncodings(bytes);
      if (encodings) {
        let cpu = 0;
        for (const id of encodings) cpu += this.cost.decodeSeconds(ENCODING_NAMES[id as Encoding] ?? "raw", this.pageSize);
        this.stats.destinationCpu += cpu;
        await this.charge(cpu);
      }
      const frame = this.decoder.decode(bytes, this.memory);
      switch (frame.type) {
        case "pages":
          this.arrived(frame.indices);
          break;
        case "switch-over":
          this.resume(decodeSwitchover(frame.state, this.pageCount));
          break;
        case "round-start":
        case "round-end":
          break;
        case "done":
          // The source has sent every page it had: any still missing is lost.
          if (!this.complete) {
            const missing: number[] = [];
            for (let p = 0; p < this.pageCount; p++) if (!(this.pageState[p]! & PageState.PRESENT)) missing.push(p);
            throw new VerificationError(`the source finished, but ${missing.length} page(s) never arrived: ${missing.slice(0, 16).join(", ")}`, missing);
          }
          break;
        default:
          throw new PagemillError(`destination got an unexpected ${frame.type} frame`);
      }
    }
  }

  private resume(record: SwitchoverRecord): void {
    if (record.state.byteLength !== this.state.byteLength || !Buffer.from(record.state).equals(Buffer.from(this.state))) {
      throw new VerificationError("the CPU/device state arrived different from the state sent", []);
    }
    if (record.pending) {
      // Post-copy follows: everything not pending is in place.
      const bits = new Uint32Array(record.pending.buffer, record.pending.byteOffset, record.pending.length * 2);
      this.presentCount = 0;
      for (let p = 0; p < this.pageCount; p++) {
        if ((bits[p >>> 5]! >>> (p & 31)) & 1) this.pageState[p] = 0;
        else {
          this.pageState[p] = PageState.PRESENT;
          this.presentCount++;
        }
      }
      this.remainingPages = this.pageCount - this.presentCount;
    } else {
      this.pageState.fill(PageState.PRESENT);
      this.presentCount = this.pageCount;
      this.remainingPages = 0;
    }
    this.resumeAt = this.clock.now();
    this.phase = this.presentCount === this.pageCount ? "done" : "postcopy";
    this.resumedWake();
    if (this.presentCount === this.pageCount) this.finish();
  }

  /** Destination bookkeeping for pages just decoded into its memory. */
  private arrived(indices: Uint32Array): void {
    if (this.resumeAt < 0) return; // pre-copy: the final state is checked at the end
    const ps = this.pageSize;
    for (const p of indices) {
      const state = this.pageState[p]!;
      const expected = this.cow.get(p) ?? this.guest.page(p);
      const got = this.memory.subarray(p * ps, (p + 1) * ps);
      if (!Buffer.from(got.buffer, got.byteOffset, ps).equals(Buffer.from(expected.buffer, expected.byteOffset, ps))) {
        throw new VerificationError(`page ${p} arrived different from the source's copy at switch-over`, [p]);
      }
      this.cow.delete(p);
      if (state & PageState.PRESENT) {
        // The destination already holds this page (the program replaced it
        // whole while the source's copy was on the wire): the program's content wins.
        got.set(this.guest.page(p));
        this.pageState[p] = state & ~PageState.OWNED;
        continue;
      }
      this.pageState[p] = state | PageState.PRESENT;
      this.presentCount++;
      this.remainingPages--;
      if (this.waitingPages?.delete(p) && this.waitingPages.size === 0) this.waitingWake?.();
    }
    this.progress();
    if (this.presentCount === this.pageCount) this.finish();
  }

  /**
   * Marks a page present without a transfer (whole-page overwrite at the
   * destination). Until the source's copy arrives, the destination's memory
   * keeps the old version there (what an XBZRLE delta in flight applies to);
   * the program's content goes in on arrival or at completion.
   */
  claim(p: number): void {
    this.pageState[p] = this.pageState[p]! | PageState.PRESENT | PageState.OWNED | PageState.CHECKED;
    this.presentCount++;
    this.remainingPages--;
    this.waitingPages?.delete(p);
  }

  /** Resolves once every page of `pages` is present. */
  waitForPages(pages: Set<number>): Promise<void> {
    for (const p of pages) if (this.pageState[p]! & PageState.PRESENT) pages.delete(p);
    if (pages.size === 0) return Promise.resolve();
    this.waitingPages = pages;
    return new Promise((wake) => (this.waitingWake = wake));
  }

  /** Sends page requests from the destination. */
  async requestPages(pages: number[]): Promise<void> {
    for (let i = 0; i < pages.length; i += MAX_REQUEST_PAGES) {
      const chunk = pages.slice(i, i + MAX_REQUEST_PAGES);
      this.stats.postcopyRequests += chunk.length;
      const frame = this.requestEncoder.control({ type: "page-request", pages: chunk });
      this.account(frame.byteLength);
      await this.dst.send(frame);
    }
  }

  /**
   * The destination holds every page: the migration is complete. A post-copy
   * destination tells the source with a "done" frame (no digest: the memory
   * keeps changing under the running program; the end check compares pages).
   */
  finish(): void {
    if (this.complete) return;
    if (this.strategy !== "precopy") {
      const frame = this.requestEncoder.control({ type: "done", memoryBytes: this.memory.byteLength, digestName: "none", digest: new Uint8Array(0) });
      this.account(frame.byteLength);
      this.spawn(this.dst.send(frame));
    }
    const ps = this.pageSize;
    for (let p = 0; p < this.pageCount; p++) {
      if (this.pageState[p]! & PageState.OWNED) this.memory.set(this.guest.page(p), p * ps);
    }
    this.complete = true;
    this.phase = "done";
    this.completeWake();
  }

  // ------------------------------------------------------------- the end

  /** Fills the final figures; call after the destination completed. */
  finalStats(reason: StopReason, converged: boolean): MigrationStats {
    const s = this.stats;
    const now = this.clock.now();
    s.stopReason = reason;
    s.converged = converged;
    s.totalTime = now - this.t0;
    s.downtime = this.resumeAt - this.stopAt;
    s.remoteUptime = this.strategy === "precopy" ? 0 : now - this.resumeAt;
    s.normalBytes = s.normal * this.pageSize;
    s.remaining = (this.pageCount - this.presentCount) * this.pageSize;
    // No full measurement period: report the average rate instead.
    if (s.mbps === 0 && s.totalTime > 0) s.mbps = (s.transferred * 8) / s.totalTime / 1e6;
    const codec: CodecStats = this.encoder.stats;
    const contentIn = (codec.pages - (codec.byEncoding.zero ?? 0)) * this.pageSize;
    const contentOut = codec.outputBytes;
    s.compressionRatio = contentOut > 0 ? contentIn / contentOut : 1;
    const choices = this.stages.compress?.stats.choices;
    if (choices) codec.choices = { ...choices };
    for (const stage of this.allCodecs) s.xbzrleCache = stage.cacheReport?.(codec, this.pageSize) ?? s.xbzrleCache;
    return s;
  }

  /** Releases WebAssembly memory and the access hook. */
  dispose(): void {
    this.guest.hook = undefined;
    this.batch.dispose();
    this.decoder.dispose();
    this.sourceDecoder.dispose();
    for (const codec of this.allCodecs) codec.dispose();
  }
}

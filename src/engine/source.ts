// The source end of a migration: it runs the guest until the switch-over,
// loads pages from its memory, encodes them through the codec pipeline,
// charges the CPU that takes, and sends frames on its Channel; it serves the
// destination's page requests. It speaks to the destination only in frames.
// Strategies (precopy.ts, postcopy.ts, hybrid.ts) drive it through its
// methods and decide only which pages go when.

import { scanZeroPages } from "../codecs/zero.js";
import { PagemillError } from "../errors.js";
import { DirtyBitmap } from "../guest/bitmap.js";
import type { Guest, Workload } from "../guest/guest.js";
import { locatedIn, readPages, type PageMemory } from "../guest/pages.js";
import type { Channel } from "../net/channel.js";
import { Random } from "../random.js";
import { wallTime, type Clock } from "../clock.js";
import { PageBatch } from "../wasm/arena.js";
import { wasm } from "../wasm/module.js";
import { SwitchoverFrame, encodeSwitchover, type ControlMessage } from "../wire/frame.js";
import type { EncodedFrame } from "../wire/pipeline.js";
import { FrameDecoder } from "../wire/decoder.js";
import { Pipeline } from "../wire/pipeline.js";
import { ChannelThreads } from "../wire/threads.js";
import type { EncodeTask } from "../wire/worker.js";
import { countTraffic, newSourceCounters, newTrafficCounters, type AdaDecision, type CrtrOutcome, type DeadlineOutcome, type RoundRow, type SourceCounters, type TrafficCounters } from "./metrics.js";
import type { EndParts, EngineSettings, Phase } from "./options.js";
import { SwitchoverView } from "./frozen.js";
import { projectPrecopy } from "./projection.js";
import { EOS_BYTES, PAGE_HEADER_BYTES, qemuDeltaBytes, qemuPageBytes } from "./qemu.js";
import { XbzrleCodec } from "../codecs/xbzrle.js";
import { Encoding } from "../codecs/codec.js";
import { SourceDisk } from "./storage.js";
import type { Tasks } from "./tasks.js";

/** Fewest pages a frame under QEMU's rate limit holds (windowPages): a window's end is not sent a page a frame. */
const MIN_WINDOW_PAGES = 8;

/** Deterministic stand-in for CPU and device state (its bytes only need to survive the trip). */
export function stateBlob(size: number): Uint8Array {
  return new Random(0x9e3779b9).bytes(size);
}

export interface SourceParts extends EndParts {
  /** the running program, whose guest is migrated */
  readonly workload: Workload;
  /** The destination runs in another process: the switch-over record says where the guest stopped (its time, the wall clock). */
  readonly remote?: boolean;
  /** The program's disk, migrated with the memory (settings.disk describes it). */
  readonly disk?: Workload;
  /**
   * CR/TR's modelled replay (crtr.ts), which only one process holding both
   * ends can do: brings the destination's memory from the checkpoint to the
   * source's now (and its disk's); returns the pages and blocks it wrote.
   */
  readonly modelReplay?: () => { pages: number; blocks: number };
}

export class Source {
  readonly settings: EngineSettings;
  readonly workload: Workload;
  readonly guest: Guest;
  readonly clock: Clock;
  readonly channel: Channel;
  readonly pipeline: Pipeline;
  readonly counters: SourceCounters = newSourceCounters();
  readonly traffic: TrafficCounters = newTrafficCounters();
  /** The CPU and device state sent at switch-over. */
  readonly state: Uint8Array;
  /** The memory switch-over's frame, made ready with the state (sent once). */
  private readonly switchoverFrame: SwitchoverFrame;
  /** The disk and what its migration has done (storage.ts), when there is one. */
  readonly disk: SourceDisk | undefined;
  /** Clock time the migration started. */
  readonly t0: number;

  private readonly tasks: Tasks;
  private readonly report: () => void;
  /** Memory's parallel channels (settings.channels > 1). */
  private readonly channels: ChannelThreads | undefined;
  /** The next channel frame's sequence number (its own stream, as a pool numbers the frames it encodes). */
  private channelSequence = 0;
  /** Where the other channels read their share of a batch (shared memory, made on first use). */
  private channelPages: Uint8Array | undefined;
  private readonly batch: PageBatch;
  private readonly requestDecoder = new FrameDecoder();
  /** guest time = clock time + guestOffset while the guest runs here */
  private readonly guestOffset: number;
  private currentPhase: Phase = "setup";
  private currentRound = 0;
  private remaining: number;
  private stoppedAt = -1;
  private stoppedWall = 0;
  /** The migration's predicted end (clock seconds since the start; -1: not predicted yet). */
  private predictedEnd = -1;
  /** When the destination last heard how far the guest ran (sendProgress; another process only). */
  private progressAt = 0;
  /**
   * The switch-over content of pages the program changed after the stop:
   * one process holds one memory for both ends, and a real source keeps its
   * stopped memory. What this end sends, and what the destination checks.
   */
  readonly switchover: SwitchoverView;
  /** Page requests received and not yet served, from `requestsRead` on. */
  private readonly requests: number[] = [];
  private requestsRead = 0;
  private peerDone = false;
  /** Wakes a wait for the next request or the destination's "done". */
  private wake: (() => void) | undefined;
  private pageWake: (() => void) | undefined;
  private requestsEnded = false;
  private readonly remote: boolean;
  /** The last INFO frame the destination sent (its report, from another process). */
  peerInfo: string | undefined;
  /** SourceParts.modelReplay (undefined: the destination is in another process). */
  readonly modelReplay: (() => { pages: number; blocks: number }) | undefined;

  /** Wire bytes and clock time of the current measurement period (QEMU's bandwidth sampling). */
  private periodStart: number;
  private periodBytes = 0;
  /** bytes of the frame the channel is carrying now (not yet counted as carried) */
  private buffered = 0;
  /** bytes/s over the last complete period (0 until one completed) */
  private measured = 0;
  private currentRoundBytes = 0;
  /** Flavor qemu with maxBandwidth: bytes sent in the current measurement period, the rate limit's window. */
  private limitBytes = 0;
  /** Measurements taken (samplePeriod), so pre-copy can tell a window ended. */
  measurements = 0;
  /** Flavor qemu with codec xbzrle: the codec, whose mode follows ram.c's stages. */
  private readonly qemuXbzrle: XbzrleCodec | undefined;
  /** Flavor qemu: a page of the guest's RAM block went already (the next ones carry no block id). */
  private blockNamed = false;
  /** An adaptive compress stage's choices when the last round ended. */
  private choicesBefore: Record<string, number> = {};

  constructor(parts: SourceParts) {
    this.settings = parts.settings;
    this.workload = parts.workload;
    this.guest = parts.workload.guest;
    this.clock = parts.clock;
    this.channel = parts.channel;
    this.tasks = parts.tasks;
    this.report = parts.report ?? (() => {});
    this.remote = parts.remote ?? false;
    this.modelReplay = parts.modelReplay;
    this.switchover = new SwitchoverView(this.guest);
    this.state = stateBlob(this.settings.stateBytes);
    this.switchoverFrame = new SwitchoverFrame(this.state, this.settings.pageCount, this.remote);
    const qemu = this.settings.flavor === "qemu";
    // Frames in the channel's own memory where it reuses it (a TCP channel's pool). The channel's own method,
    // bound: a closure reading this.channel put the source's object shape into writePagesFrame's optimised
    // code, thrown away when one of its fields first held a fraction (end of round 1) and compiled again.
    this.pipeline = new Pipeline(this.settings.codec, 0, qemu ? { policy: "qemu" } : undefined, this.channel.frameBuffer?.bind(this.channel));
    // ram.c: XBZRLE stays off until the first pass is over.
    this.qemuXbzrle = qemu && this.pipeline.delta instanceof XbzrleCodec ? this.pipeline.delta : undefined;
    if (this.qemuXbzrle) this.qemuXbzrle.mode = "off";
    // This thread encodes one channel's share itself.
    if (this.settings.channels > 1) this.channels = ChannelThreads.shared(this.settings.channels - 1);
    this.batch = new PageBatch(this.settings.batchPages, this.settings.pageSize);
    if (parts.disk && !this.settings.disk) throw new RangeError("a disk was given, but the settings describe none (normaliseOptions takes its shape)");
    this.disk = parts.disk && new SourceDisk(parts.disk, this.settings.disk!, this.settings.codec, this.settings.pageSize, this.settings.cost);
    this.remaining = this.settings.pageCount;
    this.t0 = this.clock.now();
    this.periodStart = this.t0;
    this.guestOffset = this.workload.now - this.t0;
    if (this.settings.flavor === "qemu") this.counters.qemuTransferred = 0;
  }

  get phase(): Phase {
    return this.currentPhase;
  }
  get round(): number {
    return this.currentRound;
  }
  /** Pages the source still means to send (current estimate, for progress). */
  get remainingPages(): number {
    return this.remaining;
  }
  /** When the guest stopped here (-1: still running). */
  get stopAt(): number {
    return this.stoppedAt;
  }
  /** bytes/s measured over the last complete period (0 until one completed) */
  get bandwidth(): number {
    return this.measured;
  }
  /** Bytes of the frame the channel is carrying now. */
  get bufferedBytes(): number {
    return this.buffered;
  }
  /** Wire bytes of the current round. */
  get roundBytes(): number {
    return this.currentRoundBytes;
  }
  /** The destination said it holds every page: nothing more to push. */
  get destinationDone(): boolean {
    return this.peerDone;
  }

  /** Lets `seconds` of modelled CPU (or QEMU host) time pass (on a virtual clock; a real clock has spent them already). */
  charge(seconds: number): Promise<void> | void {
    if (this.clock.virtual) return this.clock.sleep(seconds);
  }

  /** Clock time since the migration started. */
  elapsed(): number {
    return this.clock.now() - this.t0;
  }

  // ------------------------------------------------------------ the guest

  /** Lets the guest run here up to now (no-op once stopped). */
  async runGuest(): Promise<void> {
    if (this.stoppedAt >= 0) return;
    const to = this.clock.now() + this.guestOffset;
    // A program that runs by itself (it has a stop step) keeps its own clock, ahead of this one's as
    // often as not: its advance() takes what it wrote, and must run every time. Gated on its clock
    // being behind, a threaded guest's writes reached the dirty log now and then, and a real
    // pre-copy of node-gc skipped 11 pages dirtied during round 1 where the emulation skips 1442.
    if (to > this.workload.now || this.workload.stop) await this.clock.settle(this.workload.advance(to));
    const disk = this.disk?.workload;
    if (disk && to > disk.now) await this.clock.settle(disk.advance(to));
  }

  /** Stops the guest: it runs up to now, then no more here. */
  async stopGuest(): Promise<void> {
    await this.runGuest();
    // Where the guest is about to stop, ahead of the switch-over record: a destination replaying the
    // program gets (nearly) there meanwhile. Handed over before the stop and not waited for: sent
    // inside the downtime it took 0.4-0.5 ms before the record could start, which the emulation's
    // downtime does not have; waited for before the stop, the wait for a frame still on the line left
    // the downtime, which in the emulation (and here now) the stop-and-copy spends queued behind it.
    // The replay of the little the guest runs on until the stop is waited for apart (replayWait).
    // (Its failure is the channel's, which the next send reports.)
    const progress = this.sendProgress();
    if (progress) {
      progress.catch(() => {});
      // One turn of the loop before the pause: on a free line the frame's record is sealed and written in
      // it (0.3-1.2 ms stamped, inside the downtime once that starts at the pause); behind a frame on the
      // line it waits, and the stop does not.
      await new Promise((resolve) => setImmediate(resolve));
    }
    // (No await for a workload without a stop step: the simulation's event order stays as it was.)
    const stopped = this.workload.stop ? await this.workload.stop() : undefined;
    this.stoppedAt = this.clock.now();
    // Where the program says it stopped (a thread pauses before this end sees it), else now.
    this.stoppedWall = typeof stopped === "number" ? stopped : wallTime();
    this.currentPhase = "downtime";
    if (this.qemuXbzrle) this.qemuXbzrle.mode = "final";
    // QEMU's stop takes this much before any RAM moves (qemu.ts's QemuHost).
    if (this.settings.qemuHost) await this.charge(this.settings.qemuHost.switchoverTime);
  }

  /** Records Ada-copy's decision. */
  setAdaptive(decision: AdaDecision): void {
    this.counters.adaptive = decision;
  }

  /** Pages/s the link carries: the measured bandwidth over the wire bytes of a page sent with content so far (0 before both are known). */
  pageSendRate(): number {
    const { normal } = this.counters;
    return normal > 0 && this.measured > 0 ? this.measured / (this.traffic.precopyBytes / normal) : 0;
  }

  /**
   * Predicts when the migration ends, from `pages` left to send at the rates
   * measured: with pre-copy's projection (`precopy`; bounded by the rounds
   * Xen's iteration cap leaves, each sending about as many), else the pages
   * at the send rate. Called at round ends and at the switch-over, so the
   * ETA moves when the rates do, not each time a round starts over.
   */
  predictEnd(pages: number, precopy: boolean): void {
    const rate = this.pageSendRate();
    if (!(rate > 0)) return;
    const capped = ((this.settings.maxIterations - this.currentRound + 1) * pages) / rate;
    const left = precopy ? Math.min(projectPrecopy(pages, this.counters.dirtyPagesRate, rate, this.downtimeLimit).seconds, capped) : pages / rate;
    this.predictedEnd = this.elapsed() + left;
  }

  /** Seconds left by the last prediction (NaN before the first). */
  eta(): number {
    return this.predictedEnd < 0 ? NaN : Math.max(0, this.predictedEnd - this.elapsed());
  }

  /** The downtime limit pre-copy's rule holds to now (settings.downtimeLimit, unless a deadline raised it). */
  get downtimeLimit(): number {
    return this.counters.deadline?.raised.at(-1)?.downtimeLimit ?? this.settings.downtimeLimit;
  }

  /** Records what checkpoint + trace/replay did (the outcome is filled in as it runs). */
  setCrtr(outcome: CrtrOutcome): void {
    this.counters.crtr = outcome;
  }

  /** Records what a deadline did (raised limits, a switch). */
  setDeadline(outcome: DeadlineOutcome): void {
    this.counters.deadline = outcome;
  }

  /** Sets the auto-converge throttle (percent) and records the step. */
  setThrottle(percent: number): void {
    this.counters.cpuThrottlePercentage = percent;
    this.counters.throttleSteps.push({ at: this.elapsed(), percent });
    this.workload.throttle = 1 - percent / 100;
    if (this.disk) this.disk.workload.throttle = 1 - percent / 100;
  }

  /** Starts (or restarts) the guest's dirty log. */
  clearDirtyLog(): void {
    this.guest.dirtyLog.clearRange();
  }

  /**
   * A dirty-log sync (QEMU's dirty-sync-count): adds the pages dirtied since
   * the last one to `into`, clears the log, and returns how many there were.
   */
  syncDirtyLog(into: DirtyBitmap): number {
    const dirtied = this.takeDirty(into);
    this.counters.dirtySyncCount++;
    if (this.qemuXbzrle) this.qemuXbzrle.cache.age = this.counters.dirtySyncCount;
    return dirtied;
  }

  /** Adds the pages dirtied since the last sync to `into` and clears the log, without counting a sync (the last look after the stop). */
  takeDirty(into: DirtyBitmap): number {
    const dirtied = this.guest.dirtyLog.count();
    into.syncFrom(this.guest.dirtyLog);
    return dirtied;
  }

  /** Records the dirty rate measured at a sync, pages/s. */
  setDirtyRate(pagesPerSecond: number): void {
    this.counters.dirtyPagesRate = pagesPerSecond;
  }

  /** Records QEMU's expected-downtime: the last estimate of the stop-and-copy's length. */
  setExpectedDowntime(seconds: number): void {
    this.counters.expectedDowntime = seconds;
  }

  /** Setup ends now (a strategy whose first step is not a page frame says when). */
  endSetup(): void {
    this.counters.setupTime = this.elapsed();
  }

  // ------------------------------------------------------------ sending

  /** A pre-copy round begins with `pages` to send: numbers it and tells the destination. */
  async beginRound(pages: number): Promise<void> {
    this.currentPhase = "precopy";
    this.currentRound++;
    this.currentRoundBytes = 0;
    this.remaining = pages;
    await this.sendControl({ type: "round-start", round: this.currentRound, pages });
  }

  /** Flavor qemu: the scan passed the end of memory once; ram.c turns XBZRLE on from here. */
  firstPassOver(): void {
    if (this.qemuXbzrle && this.currentPhase === "precopy" && this.qemuXbzrle.mode === "off") this.qemuXbzrle.mode = "on";
  }

  /** Sets the pages still to send (an estimate for progress). */
  setRemaining(pages: number): void {
    this.remaining = Math.max(0, pages);
  }

  /**
   * Encodes `pages` (one frame: at most batchPages, ascending) from this
   * end's memory, charges the CPU, and sends the frame. Returns the zero
   * pages among them.
   */
  async sendPages(list: ArrayLike<number>, urgent = false): Promise<number> {
    // One type of page list past here (pre-copy's rounds pass arrays, the stop-and-copy Uint32Arrays): the
    // encoding path's optimised code was thrown away and compiled again when the other kind first came.
    const pages = list instanceof Uint32Array ? list : Uint32Array.from(list);
    const n = pages.length;
    const { cost, pageSize } = this.settings;
    const frames = this.channels ? this.encodeOnChannels(pages) : [{ ...this.pipeline.encode(this.loadBatch(pages), pages, { bandwidth: this.linkBandwidth(), costs: cost }), pages: n }];
    let zero = 0;
    // The channels encode at once: the frames take the longest one's time, and the CPU of all.
    let cpu = 0;
    let used = 0;
    for (const encoded of frames) {
      const seconds = this.encodeSeconds(encoded, encoded.pages, pageSize);
      zero += encoded.zeroPages;
      cpu = Math.max(cpu, seconds);
      used += seconds;
    }
    if (this.disk?.indexesMemory) {
      // (With channels, this thread's batch holds its own share only.)
      const indexing = this.disk.indexMemory(this.channels ? this.loadBatch(pages) : this.batch, pages);
      cpu += indexing;
      used += indexing;
    }
    const c = this.counters;
    c.sourceCpu += used;
    c.duplicate += zero;
    c.pagesTransferred += n;
    if (c.qemuTransferred === undefined) c.normal += n - zero;
    else {
      // QEMU's normal pages are those sent whole; its XBZRLE pages count apart.
      let whole = 0;
      for (const { encodings, lengths } of frames) {
        for (let k = 0; k < encodings.length; k++) {
          if (encodings[k] === Encoding.XBZRLE) c.qemuTransferred += qemuDeltaBytes(lengths[k]!);
          else if (encodings[k] !== Encoding.ZERO) whole++;
        }
      }
      c.normal += whole;
      c.qemuTransferred += qemuPageBytes(whole, zero, pageSize, !this.blockNamed);
      this.blockNamed = true;
      // QEMU's migration thread while the guest runs, on its host (qemu.ts's QemuHost).
      const host = this.settings.qemuHost;
      if (host && this.currentPhase === "precopy") cpu += zero * host.zeroPageTime + (n - zero) * host.pageTime;
    }
    await this.charge(cpu);
    if (c.pagesTransferred === n && this.currentPhase === "precopy") c.setupTime = this.elapsed();
    for (const encoded of frames) await this.send(encoded.frame, urgent);
    // While the guest runs here, a destination in another process hears its time every period, so
    // its replay of the program keeps up (at a round's end alone, a round's replay fell in the downtime).
    if (this.remote && this.currentPhase === "precopy" && this.clock.now() - this.progressAt >= this.settings.bandwidthPeriod) void this.sendProgress()?.catch(() => {});
    return zero;
  }

  /** Loads `pages` (at most batchPages) into `into` from byte `at` as this end sends them: the memory, or a page's switch-over content. */
  private loadPages(pages: ArrayLike<number>, into: Uint8Array, at: number): void {
    readPages(this.guest.memory, this.settings.pageSize, pages, into, at);
    this.putSwitchoverContent(pages, into, at);
  }

  /** This thread's batch holding `pages` as this end sends them. */
  private loadBatch(pages: ArrayLike<number>): PageBatch {
    const batch = this.batch.load(this.guest.memory, pages);
    this.putSwitchoverContent(pages, wasm().heap.bytes(), batch.ptr);
    return batch;
  }

  /** Over pages `pages` read into `into` from byte `at`: the switch-over content of those the program changed since the stop. */
  private putSwitchoverContent(pages: ArrayLike<number>, into: Uint8Array, at: number): void {
    if (!this.switchover.size) return;
    const ps = this.settings.pageSize;
    for (let k = 0; k < pages.length; k++) {
      const content = this.switchover.changed(pages[k]!);
      if (content) into.set(content, at + k * ps);
    }
  }

  /**
   * The pages split into one frame per channel, in page order, all encoded
   * at once: the first share by this thread's pipeline, the others on the
   * channels' threads. While the guest runs here on a virtual clock (it
   * writes nothing until the frames are back), a thread reads its share
   * where it lies when the memory is shared (PageMemory.locate); otherwise
   * its share is loaded into channelPages for it. This thread is a channel
   * rather than waiting idle for the others, and waits for their frames
   * without giving up the turn: nothing else runs until the batch is encoded.
   */
  private encodeOnChannels(pages: ArrayLike<number>): (EncodedFrame & { pages: number })[] {
    const threads = this.channels!;
    const { pageSize: ps, codec } = this.settings;
    const n = pages.length;
    const per = Math.ceil(n / this.settings.channels);
    const bandwidth = this.linkBandwidth();
    const memory = this.guest.memory;
    const inPlace = memory.locate && this.clock.virtual && this.currentPhase === "precopy" && !this.switchover.size;
    const counts: number[] = [];
    let taken = 0;
    try {
      for (let first = per; first < n; first += per) {
        const count = Math.min(per, n - first);
        const indices = Uint32Array.from({ length: count }, (_, k) => pages[first + k]!);
        const task: EncodeTask = { indices, pageSize: ps, codec, bandwidth, sequence: this.channelSequence++ };
        if (inPlace) threads.post(counts.length, { ...task, located: memory.locate!(indices) });
        else {
          // Shared memory, reused batch after batch (every share is back before this returns).
          this.channelPages ??= new Uint8Array(new SharedArrayBuffer(this.settings.batchPages * ps));
          const bytes = this.channelPages.subarray(first * ps, (first + count) * ps);
          this.loadPages(indices, bytes, 0);
          threads.post(counts.length, { ...task, located: locatedIn(bytes, count, (k) => k * ps) });
        }
        counts.push(count);
      }
      const mine = Array.from({ length: Math.min(per, n) }, (_, k) => pages[k]!);
      const own = { ...this.pipeline.encode(this.loadBatch(mine), mine, { bandwidth, costs: this.settings.cost }), pages: mine.length };
      const frames = [own];
      for (let k = 0; k < counts.length; k++) {
        taken = k + 1;
        const { stats, ...encoded } = threads.take(k);
        this.pipeline.absorb(stats);
        frames.push({ ...encoded, pages: counts[k]! });
      }
      return frames;
    } finally {
      // On a failure, the threads still working are waited for, so the next batch finds them free.
      for (let k = taken; k < counts.length; k++) {
        try {
          threads.take(k);
        } catch {
          // Failed as well: the first failure is the one thrown.
        }
      }
    }
  }

  /** CPU seconds the pipeline's work on a frame of `n` pages took: the zero scan and each stage. */
  private encodeSeconds(encoded: EncodedFrame, n: number, pageSize: number): number {
    const { cost } = this.settings;
    const contentBytes = (n - encoded.zeroPages) * pageSize;
    let cpu = cost.zeroScanSeconds(n * pageSize);
    for (const work of encoded.work) cpu += cost.encodeSeconds(work, contentBytes);
    return cpu;
  }

  /**
   * Sends disk blocks `blocks` (ascending, at most batchBlocks) as they were
   * at switch-over: those the destination holds the content of as
   * references (with `dedup`, before the switch-over), the rest through the disk's
   * pipeline; charges the CPU.
   */
  async sendBlocks(blocks: number[], dedup: boolean): Promise<void> {
    const d = this.disk!;
    const { blockSize } = d.settings;
    const { refs, batch, send, cpu: digests } = d.prepare(blocks, dedup);
    let cpu = digests;
    let frame: Uint8Array | undefined;
    if (send.length) {
      const started = performance.now();
      const encoded = d.pipeline.encode(batch, send, { bandwidth: this.linkBandwidth(), costs: this.settings.cost });
      d.stats.encodeWallSeconds += (performance.now() - started) / 1000;
      cpu += this.encodeSeconds(encoded, send.length, blockSize);
      d.stats.blocksSent += send.length;
      d.stats.zeroBlocks += encoded.zeroPages;
      frame = encoded.frame;
    }
    this.counters.sourceCpu += cpu;
    await this.charge(cpu);
    // References may name blocks of this very frame: they go after it.
    if (frame) await this.sendDisk(frame);
    if (refs.length) await this.sendDisk(d.pipeline.control({ type: "refs", blockSize, refs }));
  }

  private sendDisk(frame: Uint8Array): Promise<void> {
    this.disk!.stats.bytes += frame.byteLength;
    return this.send(frame);
  }

  /** Zero scan of the whole disk, range by range (post-copy's first pass): sets the non-zero blocks in `into`; charges the scan. */
  async scanNonZeroBlocks(into: DirtyBitmap): Promise<void> {
    const d = this.disk!;
    const scan = new PageBatch(d.settings.batchBlocks, d.settings.blockSize);
    try {
      await this.scanNonZeroOf(d.guest.memory, scan, into);
    } finally {
      scan.dispose();
    }
  }

  /**
   * Sends every page of `pages` in frames (the stop-and-copy, or any full
   * drain), lowering the pages left as it goes.
   */
  async sendAll(pages: DirtyBitmap): Promise<void> {
    for (let cursor = 0; ; ) {
      const batch = pages.extract(cursor, this.settings.batchPages);
      if (batch.length === 0) return;
      cursor = batch[batch.length - 1]! + 1;
      await this.sendPages(batch);
      this.setRemaining(this.remaining - batch.length);
      this.report();
    }
  }

  /**
   * Zero scan of the whole guest (post-copy's first pass, which lets the
   * destination treat zero pages as present): sets the non-zero pages in
   * `into` and charges the scan.
   */
  scanNonZero(into: DirtyBitmap): Promise<void> {
    return this.scanNonZeroOf(this.guest.memory, this.batch, into);
  }

  /** The zero scan of `memory` through `batch`, range by range; ranges a sparse memory knows are zero are not read (the charge is the whole scan's). */
  private async scanNonZeroOf(memory: PageMemory, batch: PageBatch, into: DirtyBitmap): Promise<void> {
    const { pageSize: ps, pageCount } = memory;
    for (let first = 0; first < pageCount; first += batch.capacity) {
      const count = Math.min(batch.capacity, pageCount - first);
      let known = 0;
      while (known < count && memory.isZero(first + known)) known++;
      if (known === count) continue;
      const { flags } = scanZeroPages(batch.loadRange(memory, first, count));
      for (let k = 0; k < count; k++) if (!flags[k]) into.set(first + k);
    }
    const cpu = this.settings.cost.zeroScanSeconds(pageCount * ps);
    this.counters.sourceCpu += cpu;
    await this.charge(cpu);
  }

  /**
   * Tells a destination in another process how far the guest has run, so it
   * can replay its program that far while pre-copy goes on instead of inside
   * the downtime. Nothing in one process (undefined: the simulation's bytes
   * and event order stay as they were).
   *
   * The frame joins the one on the line and is not waited for (callers need
   * not await the promise, whose failure the next send reports): the
   * emulation sends none, and waiting for it to start on the line, i.e. for
   * the page frame before it to leave, held the source back a frame's time
   * at every period, so its checks of the stop rule fell a frame later in
   * the guest's run than the emulation's (node-gc: stop-and-copies of 335
   * and 1050 pages against the emulation's 600).
   */
  sendProgress(answer = false): Promise<void> | undefined {
    if (!this.remote) return undefined;
    this.progressAt = this.clock.now();
    const disk = this.disk?.workload;
    // `answer`: the destination says when its replay got there (before the migration's time starts).
    const json = JSON.stringify({ guestTime: this.workload.workTime, ...(disk && { diskTime: disk.workTime }), ...(answer && { answer }) });
    const frame = this.pipeline.control({ type: "info", json });
    this.count(frame);
    // Carried with the frame on the line: counted as carried when the next frame starts (send()).
    if (this.settings.maxBandwidth !== undefined) this.periodBytes += frame.byteLength;
    else this.buffered += frame.byteLength;
    return this.channel.send(frame);
  }

  /** Sends a control frame. */
  sendControl(message: ControlMessage): Promise<void> {
    return this.send(this.pipeline.control(message));
  }

  /** Counts a frame's bytes in the traffic of this phase and in the round's. */
  private count(frame: Uint8Array): void {
    const phase = this.currentPhase === "postcopy" || this.currentPhase === "downtime" ? this.currentPhase : "precopy";
    countTraffic(this.traffic, phase, frame.byteLength);
    this.currentRoundBytes += frame.byteLength;
  }

  private async send(frame: Uint8Array, urgent = false): Promise<void> {
    this.count(frame);
    await (urgent ? this.channel.sendUrgent!(frame) : this.channel.send(frame));
    // send() resolves when the channel takes the next frame, i.e. once the
    // one before has left: count that one as carried in this period. Under
    // QEMU's rate limit, what a window measures is what was handed to the
    // socket in it (ram.c's qemu_file_transferred): the frame itself.
    if (this.settings.maxBandwidth !== undefined) this.periodBytes += frame.byteLength;
    else this.periodBytes += this.buffered;
    this.buffered = frame.byteLength;
    if (this.currentPhase === "precopy" && this.settings.maxBandwidth !== undefined) await this.rateLimit(frame.byteLength);
  }

  /**
   * QEMU's migration_rate_limit: once the bytes of a window reach
   * maxBandwidth × window, wait for the window's end, where the bandwidth is
   * measured (migration_update_counters; QEMU's window is its measurement
   * period, here the period samplePeriod measures). Frames are cut to what
   * is left of the window (windowPages), so a window passes its allowance by
   * a few pages at most (QEMU's by one) and the bandwidth measured passes the
   * limit by no more; that excess counts in the next window, so the average
   * is maxBandwidth.
   */
  private async rateLimit(bytes: number): Promise<void> {
    const allowance = this.settings.maxBandwidth! * this.settings.bandwidthPeriod;
    this.limitBytes += bytes;
    if (this.limitBytes < allowance) return;
    await this.clock.waitUntil(this.periodStart + this.settings.bandwidthPeriod);
    // Forced: the window is over even when rounding leaves the span a hair short.
    this.samplePeriod(true);
  }

  /**
   * Pages the next pre-copy frame may hold: under QEMU's rate limit, those
   * whose pages and headers fit what is left of the window, MIN_WINDOW_PAGES
   * at least (a window's end is not sent a page a frame); otherwise
   * `batchPages`.
   */
  windowPages(): number {
    const { maxBandwidth, bandwidthPeriod, batchPages, pageSize } = this.settings;
    if (maxBandwidth === undefined || this.currentPhase !== "precopy") return batchPages;
    const left = maxBandwidth * bandwidthPeriod - this.limitBytes;
    return Math.min(batchPages, Math.max(MIN_WINDOW_PAGES, Math.ceil(left / (pageSize + PAGE_HEADER_BYTES))));
  }

  /**
   * Closes the measurement period when it is due: the wire rate over its
   * length (QEMU's migration_update_counters). Returns true when a new
   * measurement was taken.
   */
  samplePeriod(force = false): boolean {
    const now = this.clock.now();
    const span = now - this.periodStart;
    if (span <= 0 || (!force && span < this.settings.bandwidthPeriod)) return false;
    this.measured = this.periodBytes / span;
    this.counters.mbps = (this.measured * 8) / 1e6;
    this.periodStart = now;
    this.periodBytes = 0;
    // The rate limit's window ends with the measurement; its excess counts in the next one.
    if (this.settings.maxBandwidth !== undefined) this.limitBytes = Math.max(0, this.limitBytes - this.settings.maxBandwidth * span);
    this.measurements++;
    this.report();
    return true;
  }

  /**
   * The link's bandwidth now, bytes/s: the line rate when the channel knows
   * it, else the rate measured over the last period (0 before one ended).
   */
  linkBandwidth(): number {
    const bits = this.channel.bitsPerSecond;
    return bits !== undefined ? bits / 8 : this.measured;
  }

  /** Flavor qemu: the end-of-section markers `calls` ram_save_iterate calls end with. */
  countIterates(calls: number): void {
    if (this.counters.qemuTransferred !== undefined) this.counters.qemuTransferred += calls * EOS_BYTES;
  }

  /** Records a finished pre-copy round, with the pages per codec an adaptive codec chose in it. */
  addRound(row: Omit<RoundRow, "choices">): void {
    const now = this.pipeline.choices();
    let choices: Record<string, number> | undefined;
    if (now) {
      choices = {};
      for (const [codec, pages] of Object.entries(now)) choices[codec] = pages - (this.choicesBefore[codec] ?? 0);
      this.choicesBefore = { ...now };
    }
    this.counters.rounds.push({ ...row, choices });
  }

  /**
   * Sends the switch-over record: the state, and for post-copy the pages
   * the destination must wait for.
   */
  async sendSwitchover(pending: DirtyBitmap | undefined): Promise<void> {
    // From the first switch-over record on, the guest exists only across both ends: a cut link must not lose it.
    this.channel.survive?.();
    const d = this.disk;
    if (d) {
      // The disk's program runs on its own steps: it stopped at a work time of its own.
      const stop = this.remote ? { guestTime: d.workload.workTime, wallTime: this.stoppedWall } : undefined;
      const record = encodeSwitchover({ state: new Uint8Array(0), pending: d.pending?.toWords(), stop }, d.settings.blockCount);
      await this.sendDisk(d.pipeline.control({ type: "switch-over", state: record, disk: true }));
    }
    // Downtime runs from the guest's stop (before the stop-and-copy), on the wall clock both ends share.
    const stop = this.remote ? { guestTime: this.workload.workTime, wallTime: this.stoppedWall } : undefined;
    // Made ready with the state before the stop: only the record's head, the map and the checks are written now.
    await this.send(this.pipeline.controlFrame((sequence) => this.switchoverFrame.frame(sequence, { pending: pending?.toWords(), stop })));
  }

  /**
   * From here on the destination's program runs: frames go as post-copy
   * traffic, and the pipeline drops what a running destination cannot use.
   */
  startPostcopy(): void {
    this.pipeline.startPostcopy();
    this.disk?.pipeline.startPostcopy();
    this.disk?.stopDedup();
    this.currentPhase = "postcopy";
    if (this.qemuXbzrle) this.qemuXbzrle.mode = "off";
  }

  /** Counts `pages` pushed because they neighbour a fault (post-copy's pre-paging). */
  countPrepaged(pages: number): void {
    this.counters.prepagedPages += pages;
  }

  /** The next page request not yet served, oldest first. */
  nextRequest(): number | undefined {
    if (this.requestsRead < this.requests.length) return this.requests[this.requestsRead++];
    this.requests.length = 0;
    this.requestsRead = 0;
    return undefined;
  }

  /** Listens for page requests (post-copy) until the destination closes. */
  async serveRequests(): Promise<void> {
    for (;;) {
      const bytes = await this.channel.receive();
      if (!bytes) {
        this.requestsEnded = true;
        this.wakePageServer();
        return;
      }
      const frame = this.requestDecoder.decode(bytes);
      if (frame.type === "done") {
        this.peerDone = true;
        this.wakeUp();
        this.wakePageServer();
        continue;
      }
      if (frame.type === "info") {
        this.peerInfo = frame.json;
        continue;
      }
      if (frame.type !== "page-request") throw new PagemillError(`source got an unexpected ${frame.type} frame`);
      if (frame.disk) {
        if (!this.disk) throw new PagemillError("source got a request for disk blocks, but migrates no disk");
        for (const b of frame.pages) this.disk.requests.push(b);
        this.wakeUp();
        continue;
      }
      for (const p of frame.pages) this.requests.push(p);
      this.wakePageServer();
    }
  }

  /** The channel has a priority lane (sendUrgent): a request can be served the moment it arrives. */
  get urgentLane(): boolean {
    return this.channel.sendUrgent !== undefined;
  }

  /**
   * Resolves at the next page request, or when wakePageServer() is called
   * (the push ended); false once no more requests can come (the
   * destination is done or closed the connection).
   */
  async nextPageRequest(): Promise<boolean> {
    if (this.requestsRead >= this.requests.length && !this.peerDone && !this.requestsEnded) await new Promise<void>((wake) => (this.pageWake = wake));
    return this.requestsRead < this.requests.length || !(this.peerDone || this.requestsEnded);
  }

  wakePageServer(): void {
    const wake = this.pageWake;
    this.pageWake = undefined;
    wake?.();
  }

  private wakeUp(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** Resolves at the next disk block request or the destination's "done". */
  nextRequestOrDone(): Promise<void> {
    return new Promise((wake) => (this.wake = wake));
  }

  /** Starts serving page requests on the side. */
  listen(): void {
    this.tasks.spawn(this.serveRequests());
  }

  /** Releases WebAssembly memory. */
  dispose(): void {
    this.batch.dispose();
    this.switchoverFrame.dispose();
    this.disk?.dispose();
    this.requestDecoder.dispose();
    this.pipeline.dispose();
  }
}

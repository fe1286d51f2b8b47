// The destination end of a migration: it receives frames on its Channel,
// charges the decode, decodes pages into its own memory (zero at the start,
// as a fresh VM's) and resumes the program at the switch-over. When the
// switch-over leaves pages pending (post-copy), it runs the program from
// then on: an access to a page it does not hold is a fault, requested from
// the source while the program stalls; a write that replaces a whole page
// claims it without a fetch. Every page-state change of post-copy is here.
//
// In this process the program is simulated over the one guest memory both
// ends see (SharedGuest): its accesses at the destination go through
// `guest.hook`, and its writes are mirrored into the destination's memory. A
// page the program changes before the source has sent it is first preserved
// at the source (copy-on-write), so the source still sends, and the
// destination still checks, the content the page had at switch-over.
//
// A disk (storage.ts) is held the same way, block for page: its frames carry
// the DISK flag and decode into the disk's own memory with its own decoder;
// its switch-over frame (its pending map) comes just before memory's; its
// program's accesses fault, claim and wait as memory's do, in the same
// quanta. Disk-only here: a REFS frame's references are checked against the
// content this end holds before they are written (refused ones are asked
// for), and a read following the read of the block before it starts a
// prefetch of the next blocks this end lacks.

import { PagemillError, VerificationError } from "../errors.js";
import type { AccessKind, Workload } from "../guest/guest.js";
import { ChunkedPages } from "../guest/chunks.js";
import { FlatPages, sameBytes, type PageMemory } from "../guest/pages.js";
import type { Channel } from "../net/channel.js";
import type { Clock } from "../clock.js";
import { FrameFlags, FrameType, MAX_REQUEST_PAGES, frameTypeName, readFrameHeader, readPageEncodings, decodeSwitchover, type BlockRef, type SwitchoverRecord } from "../wire/frame.js";
import { md5 } from "../hash/md5.js";
import { xxh3 } from "../hash/xxhash.js";
import { CodecError } from "../errors.js";
import { FrameDecoder } from "../wire/decoder.js";
import { FrameEncoder } from "../wire/pipeline.js";
import { ENCODING_NAMES, type Encoding } from "../codecs/codec.js";
import { countTraffic, newDestinationCounters, newTrafficCounters, type DestinationCounters, type TrafficCounters } from "./metrics.js";
import type { EndParts, EngineSettings } from "./options.js";
import type { CostModel } from "../codecs/cost.js";
import type { Tasks } from "./tasks.js";

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

/**
 * What the destination sees of the source when both ends run in one process
 * over one guest: the program itself, and the source's switch-over content
 * to check every arrival against.
 */
export interface SharedGuest {
  /** The program; it runs here after a post-copy switch-over (absent, and no thread: only pre-copy can end here). */
  readonly workload?: Workload;
  /** The CPU and device state the source sends, to check it (absent: taken as it comes). */
  readonly state?: Uint8Array;
  /**
   * Before the program resumes here after a post-copy switch-over: bring it
   * to where the source stopped it (a destination in another process replays
   * the program to the stop). Frames wait until it is done.
   */
  prepare?(record: SwitchoverRecord): Promise<void>;
  /** The source's page `p` as at switch-over. */
  original(p: number): Uint8Array;
  /** The program is about to change page `p`, which the source has not sent yet. */
  preserve(p: number): void;
  /** Page `p` arrived as the source had it. */
  release(p: number): void;
  /** The program is about to change page `p` for the first time since the stop (held here or not). */
  firstChange?(p: number): void;
  /** An INFO frame from the source during the migration (a source in another process says how far its guest ran). */
  progress?(json: string): void;
  /** The program in a thread of its own with real demand paging, instead of `workload` in quanta here. */
  thread?: ProgramThread;
}

/**
 * A program that runs in a thread of its own after a post-copy switch-over
 * and blocks on each access to a page this end does not hold (./demand.ts):
 * the Destination keeps its memory and page states where the thread reads
 * them, tells it when pages arrive, and asks the source for those it faults on.
 */
export interface ProgramThread {
  /** The Destination's memory and page states (shared with the thread). */
  readonly received: Uint8Array;
  readonly pageState: Uint8Array;
  /** Lets the program run; `onFault` hears each page it blocks on, `onFailure` why it stopped. */
  resume(onFault: (page: number) => void, onFailure: (error: Error) => void): void;
  /** Pages became present. */
  arrived(): void;
  /** Stops the program once this end holds every page; resolves with the seconds it spent blocked. */
  finish(): Promise<{ faultStall: number }>;
}

const NONE: ReadonlySet<number> = new Set();

export interface DestinationParts extends EndParts {
  readonly shared: SharedGuest;
  /** Where the pages land (default: sparse memory of its own; a program thread's shared memory when there is one). */
  readonly memory?: PageMemory;
  /** Where the disk's blocks land (default: sparse memory of its own). */
  readonly diskMemory?: PageMemory;
  /** The disk, when one is migrated (settings.disk describes it): its program and the source's switch-over content of its blocks. */
  readonly disk?: SharedDisk;
}

/**
 * What the destination sees of the source's disk (as SharedGuest for
 * memory): the program's disk, when the program runs here (post-copy; a
 * destination in another process has none in pre-copy, and checks the disk
 * whole at the end).
 */
export type SharedDisk = Pick<SharedGuest, "original" | "preserve" | "release" | "firstChange" | "prepare"> & { readonly workload?: Workload };

/** The disk's counters at the destination (MigrationStats.disk). */
export interface DestinationDiskCounters {
  blockMisses: number;
  blockOverwrites: number;
  prefetchedBlocks: number;
  dedupRefused: number;
}

/** What this end holds of one memory-like object (memory, or the disk): its bytes and each page's PageState. */
class Held {
  readonly memory: PageMemory;
  readonly pageState: Uint8Array;
  readonly decoder = new FrameDecoder();
  /** CPU seconds to decode one page, by wire id (the settings' cost table), filled as ids come */
  private readonly decodeCost: number[] = [];
  present = 0;
  /** pages the program waits for in this quantum */
  readonly waiting = new Set<number>();
  /** pages to request at the end of this quantum (faults first, then prefetches) */
  readonly faults: number[] = [];
  readonly prefetches: number[] = [];
  /** pages the program changed in this quantum (copied in at its end) */
  readonly touched: number[] = [];

  constructor(
    readonly pageSize: number,
    readonly pageCount: number,
    readonly shared: Pick<SharedGuest, "original" | "preserve" | "release" | "firstChange">,
    readonly disk: boolean,
    /** where the memory and page states live, when a program thread reads them */
    buffers?: Pick<ProgramThread, "received" | "pageState">,
    memory?: PageMemory,
  ) {
    if (memory && (memory.pageCount !== pageCount || memory.pageSize !== pageSize)) {
      throw new RangeError(`destination memory has ${memory.pageCount} pages of ${memory.pageSize} B, the migration ${pageCount} of ${pageSize} B`);
    }
    if (memory && buffers) throw new RangeError("a destination with a program thread lands pages in the thread's memory: give no memory");
    this.memory = memory ?? (buffers ? new FlatPages(buffers.received, pageSize, true) : new ChunkedPages(pageCount, pageSize));
    this.pageState = buffers?.pageState ?? new Uint8Array(pageCount);
  }

  get complete(): boolean {
    return this.present === this.pageCount;
  }

  /**
   * Page `p` came before (or was here at the switch-over), so a copy that
   * comes now is a second one: the source sent a page on its priority lane
   * while the push's copy still waited for the line. The first was checked
   * as it came and the program may have changed the page since, which the
   * second would undo: it is not written. A page the program replaced whole
   * (OWNED) takes the source's copy when it comes, to check it.
   */
  readonly came = (p: number): boolean => (this.pageState[p]! & (PageState.PRESENT | PageState.OWNED)) === PageState.PRESENT;

  /** Pages not present. */
  missing(): number[] {
    const out: number[] = [];
    for (let p = 0; p < this.pageCount; p++) if (!(this.pageState[p]! & PageState.PRESENT)) out.push(p);
    return out;
  }

  /**
   * The modelled CPU seconds of decoding a frame of pages with wire ids `encodings`: per page, in frame
   * order, each id's cost looked up once. A method of its own, not a loop in Destination.receive: a loop
   * there made that whole function hot, and V8 compiled it (all it calls inlined) for 180 ms on a helper
   * thread of an uncapped TCP receiver, whose migration took 0.3 s.
   */
  decodeSeconds(encodings: Uint8Array, cost: CostModel): number {
    const costs = this.decodeCost;
    let cpu = 0;
    for (let k = 0; k < encodings.length; k++) {
      const id = encodings[k]!;
      cpu += costs[id] ??= cost.decodeSeconds(ENCODING_NAMES[id as Encoding] ?? "raw", this.pageSize);
    }
    return cpu;
  }

  /** Sets every page's state from a pending map (pending: missing; the rest present), and `missing` besides. */
  setPending(pending: BigUint64Array | undefined, missing: ReadonlySet<number>): void {
    this.present = pendingStates(this.pageState, pending, missing);
  }
}

/** The states of 8 pages from one byte of a pending map (bit set: missing), and how many that byte leaves missing. */
const BYTE_STATES = Array.from({ length: 256 }, (_, byte) => Uint8Array.from({ length: 8 }, (_, bit) => ((byte >> bit) & 1 ? 0 : PageState.PRESENT)));
const BYTE_MISSING = Uint8Array.from({ length: 256 }, (_, byte) => BYTE_STATES[byte]!.filter((s) => s === 0).length);

/**
 * Page states after a switch-over: pages set in `pending` missing, the pages
 * of `missing` requested, the rest present; returns how many are present.
 * Eight pages (a byte of the map) at a time, each page written once (a
 * program thread shares these states): this runs once, inside the
 * downtime, as code never run before, and a page at a time took 0.25 ms
 * for 3072 pages there.
 */
export function pendingStates(pageState: Uint8Array, pending: BigUint64Array | undefined, missing: ReadonlySet<number>): number {
  const pageCount = pageState.length;
  let absent = 0;
  if (!pending) pageState.fill(PageState.PRESENT);
  else {
    const map = new Uint8Array(pending.buffer, pending.byteOffset, Math.ceil(pageCount / 8));
    const whole = pageCount >>> 3;
    for (let k = 0; k < whole; k++) {
      const byte = map[k]!;
      pageState.set(BYTE_STATES[byte]!, k << 3);
      absent += BYTE_MISSING[byte]!;
    }
    for (let p = whole << 3; p < pageCount; p++) {
      const gone = (map[whole]! >> (p & 7)) & 1;
      pageState[p] = gone ? 0 : PageState.PRESENT;
      absent += gone;
    }
  }
  for (const p of missing) {
    if (pageState[p] === PageState.PRESENT) absent++;
    pageState[p] = PageState.REQUESTED;
  }
  return pageCount - absent;
}

export class Destination {
  readonly settings: EngineSettings;
  readonly clock: Clock;
  readonly channel: Channel;
  readonly counters: DestinationCounters = newDestinationCounters();
  readonly traffic: TrafficCounters = newTrafficCounters();
  /** The destination's memory (zero at the start, as a fresh VM's; sparse unless a program thread shares it). */
  readonly memory: PageMemory;
  /** The destination's disk (zero at the start, as a fresh volume's), when one is migrated. */
  readonly diskMemory: PageMemory | undefined;
  readonly diskCounters: DestinationDiskCounters = { blockMisses: 0, blockOverwrites: 0, prefetchedBlocks: 0, dedupRefused: 0 };
  /** Resolves when the program resumes here. */
  readonly resumed: Promise<void>;
  /** Resolves when this end holds every page. */
  readonly completed: Promise<void>;

  private readonly tasks: Tasks;
  private readonly shared: SharedGuest;
  private readonly report: () => void;
  /** page requests and "done" out */
  private readonly encoder = new FrameEncoder();
  private readonly mem: Held;
  private readonly disk: Held | undefined;
  private readonly sharedDisk: SharedDisk | undefined;
  /** Disk blocks whose reference this end refused, asked for and not yet here. */
  private readonly refetching = new Set<number>();
  /** The disk's switch-over frame has come (its blocks' states are set). */
  private diskSwitched = false;
  /** A pre-copy switch-over that waits for refused references' blocks. */
  private deferred: SwitchoverRecord | undefined;
  /** The disk block the program read last (prefetch's stream detection). */
  private lastRead = -2;
  private resumedAt = -1;
  private completedAt = -1;
  /** A post-copy switch-over left pages pending: the source expects "done" at the end. */
  private postcopy = false;
  private resumedWake!: () => void;
  private completeWake!: () => void;
  /** Where the source stopped the guest, when it said (a source in another process). */
  stop: SwitchoverRecord["stop"];
  /** The digest of its memory the source sent in its last "done", if any. */
  sourceDigest: { readonly name: string; readonly digest: Uint8Array } | undefined;
  private waitingWake: (() => void) | undefined;

  constructor(parts: DestinationParts) {
    this.settings = parts.settings;
    this.clock = parts.clock;
    this.channel = parts.channel;
    this.tasks = parts.tasks;
    this.shared = parts.shared;
    this.report = parts.report ?? (() => {});
    this.mem = new Held(this.settings.pageSize, this.settings.pageCount, this.shared, false, this.shared.thread, parts.memory);
    this.memory = this.mem.memory;
    const disk = this.settings.disk;
    if (disk && !parts.disk) throw new RangeError("the settings describe a disk, but no disk was given");
    this.sharedDisk = parts.disk;
    this.disk = disk && new Held(disk.blockSize, disk.blockCount, parts.disk!, true, undefined, parts.diskMemory);
    this.diskMemory = this.disk?.memory;
    this.resumed = new Promise((wake) => (this.resumedWake = wake));
    this.completed = new Promise((wake) => (this.completeWake = wake));
  }

  /** When the program resumed here (-1: not yet). */
  get resumeAt(): number {
    return this.resumedAt;
  }
  /** When the last page arrived (-1: not yet). */
  get completeAt(): number {
    return this.completedAt;
  }
  get complete(): boolean {
    return this.completedAt >= 0;
  }
  /** Pages this end does not hold yet (all of them until the switch-over says otherwise). */
  get missingPages(): number {
    return this.settings.pageCount - this.mem.present;
  }

  /** Every page (and block) is here. */
  private holdsAll(): boolean {
    return this.mem.complete && (!this.disk || this.disk.complete);
  }

  /** Lets `seconds` of modelled CPU time pass (on a virtual clock; a real clock has spent them already). */
  private charge(seconds: number): Promise<void> | void {
    if (this.clock.virtual) return this.clock.sleep(seconds);
  }

  /** Starts receiving on the side. */
  listen(): void {
    this.tasks.spawn(this.receive());
  }

  /** Receives, charges and decodes every frame until the source closes. */
  async receive(): Promise<void> {
    const { cost } = this.settings;
    for (;;) {
      const bytes = await this.channel.receive();
      if (!bytes) return;
      // The decode's CPU time passes before its pages land. Writing them into
      // memory and updating their page states is then one step, with no wait
      // between: otherwise the program could run, or the migration end, while
      // memory holds the source's copy of a page the program has replaced.
      const header = readFrameHeader(bytes);
      const held = header.flags & FrameFlags.DISK ? this.disk : this.mem;
      if (!held) throw new PagemillError("destination got a disk frame, but migrates no disk");
      // After a pre-copy switch-over the memory here is final (and may be hashed already): nothing may change it.
      if (this.resumedAt >= 0 && !this.postcopy && (header.type === FrameType.PAGES || header.type === FrameType.REFS)) {
        throw new PagemillError(`destination got a ${frameTypeName(header.type)} frame after the switch-over of a pre-copy migration`);
      }
      const encodings = readPageEncodings(bytes);
      if (encodings) {
        const cpu = held.decodeSeconds(encodings, cost);
        this.counters.destinationCpu += cpu;
        await this.charge(cpu);
      }
      const frame = held.decoder.decode(bytes, held.memory, { tagged: this.channel.authenticatesFrames, ...(this.checksArrivals(held) && { keep: held.came }) });
      if (frame.type === "switch-over") this.channel.survive?.();
      if (frame.type === "switch-over" && frame.disk) {
        const record = decodeSwitchover(frame.state, held.pageCount);
        if (record.pending && this.sharedDisk!.prepare) await this.sharedDisk!.prepare(record);
        held.setPending(record.pending, this.refetching);
        this.diskSwitched = true;
        continue;
      }
      if (frame.type === "switch-over") {
        const record = decodeSwitchover(frame.state, this.settings.pageCount);
        // (No await without a prepare step: the simulation's event order stays as it was.)
        if (record.pending && this.shared.prepare) await this.shared.prepare(record);
        // Pre-copy with references refused: the program resumes once their blocks are here.
        if (!record.pending && this.refetching.size) this.deferred = record;
        else this.resume(record);
        continue;
      }
      switch (frame.type) {
        case "pages":
          this.arrived(held, frame.indices);
          // Its pages are in memory now: an in-process channel may reuse the frame's bytes.
          this.channel.release?.(bytes);
          break;
        case "refs":
          await this.applyRefs(frame.blockSize, frame.refs);
          break;
        case "round-start":
        case "round-end":
          break;
        case "info":
          this.shared.progress?.(frame.json);
          break;
        case "done":
          if (frame.digestName !== "none") this.sourceDigest = { name: frame.digestName, digest: frame.digest };
          // The source has sent every page it had: any still missing is lost.
          if (!this.complete) {
            const missing = this.mem.missing();
            if (missing.length) throw new VerificationError(`the source finished, but ${missing.length} page(s) never arrived: ${missing.slice(0, 16).join(", ")}`, missing);
            const blocks = this.disk!.missing();
            throw new VerificationError(`the source finished, but ${blocks.length} disk block(s) never arrived: ${blocks.slice(0, 16).join(", ")}`, blocks);
          }
          break;
        default:
          throw new PagemillError(`destination got an unexpected ${frame.type} frame`);
      }
    }
  }

  private resume(record: SwitchoverRecord): void {
    const { state } = this.shared;
    if (state && (record.state.byteLength !== state.byteLength || !Buffer.from(record.state).equals(Buffer.from(state)))) {
      throw new VerificationError("the CPU/device state arrived different from the state sent", []);
    }
    const n = this.settings.pageCount;
    this.stop = record.stop;
    if (record.pending) {
      // Post-copy follows: everything not pending is in place.
      const { workload, thread } = this.shared;
      if (!workload && !thread) throw new PagemillError("a post-copy switch-over came, but this destination has no program to run");
      this.postcopy = true;
      this.mem.setPending(record.pending, NONE);
      this.tasks.spawn(thread ? this.runThread(thread) : this.runProgram());
    } else {
      this.mem.pageState.fill(PageState.PRESENT);
      this.mem.present = n;
    }
    this.resumedAt = this.clock.now();
    this.resumedWake();
    if (this.holdsAll()) this.finish();
  }

  /**
   * A REFS frame (disk dedup): each reference's content, where this end
   * holds it, is written to its block only when its MD5 and XXH3-64 both
   * match the frame's; refused blocks are asked for.
   */
  private async applyRefs(blockSize: number, refs: readonly BlockRef[]): Promise<void> {
    const disk = this.disk!;
    if (blockSize !== disk.pageSize) throw new CodecError("malformed", `refs frame for blocks of ${blockSize} B, the disk's are ${disk.pageSize} B`);
    const refused: number[] = [];
    for (const r of refs) {
      const from = r.space === "memory" ? this.mem : disk;
      if (r.block >= disk.pageCount) throw new CodecError("overrun", `refs frame: block ${r.block} is outside the disk (${disk.pageCount} blocks)`);
      if (r.ref >= from.pageCount) throw new CodecError("overrun", `refs frame: block ${r.block} refers to ${r.space} ${r.ref}, outside it (${from.pageCount})`);
      const content = from.pageSize === blockSize ? from.memory.page(r.ref) : undefined;
      if (content && Buffer.from(md5(content)).equals(Buffer.from(r.md5)) && xxh3(content) === r.xxh3) {
        disk.memory.write(r.block, content);
      } else refused.push(r.block);
    }
    if (refused.length === 0) return;
    this.diskCounters.dedupRefused += refused.length;
    for (const b of refused) this.refetching.add(b);
    await this.requestPages(disk, refused);
  }

  /** The program runs here on `held` (memory, or the disk): each page that comes is checked, and one that came before is kept (Held.came). */
  private checksArrivals(held: Held): boolean {
    return held.disk ? this.diskSwitched && this.sharedDisk!.workload !== undefined : this.resumedAt >= 0;
  }

  /** Bookkeeping for pages (or disk blocks) just decoded into `held`'s memory. */
  private arrived(held: Held, indices: Uint32Array): void {
    if (!this.checksArrivals(held)) {
      // Before the switch-over, or with no program here: the final state is checked at the end; a refused reference's block is here now.
      if (held.disk) for (const p of indices) this.refetching.delete(p);
      return;
    }
    const program = held.disk ? this.sharedDisk!.workload : this.shared.workload;
    for (const p of indices) {
      const state = held.pageState[p]!;
      if (held.came(p)) continue;
      if (!sameBytes(held.memory.page(p), held.shared.original(p))) {
        throw new VerificationError(`${held.disk ? "disk block" : "page"} ${p} arrived different from the source's copy at switch-over`, [p]);
      }
      held.shared.release(p);
      if (state & PageState.PRESENT) {
        // This end already holds the page (the program replaced it whole
        // while the source's copy was on the wire): the program's content wins.
        held.memory.write(p, program!.guest.page(p));
        held.pageState[p] = state & ~PageState.OWNED;
        continue;
      }
      held.pageState[p] = state | PageState.PRESENT;
      held.present++;
      if (held.disk) this.refetching.delete(p);
      if (held.waiting.delete(p) && this.waitsOver()) this.waitingWake?.();
    }
    if (!held.disk) this.shared.thread?.arrived();
    this.report();
    if (this.deferred && this.refetching.size === 0) {
      const record = this.deferred;
      this.deferred = undefined;
      this.resume(record);
    } else if (this.resumedAt >= 0 && this.holdsAll()) this.finish();
  }

  private waitsOver(): boolean {
    return this.mem.waiting.size === 0 && (!this.disk || this.disk.waiting.size === 0);
  }

  /**
   * Marks a page present without a transfer (whole-page overwrite). Until the
   * source's copy arrives, memory keeps the old version there (what an
   * XBZRLE delta in flight applies to); the program's content goes in on
   * arrival or at completion.
   */
  private claim(held: Held, p: number): void {
    held.pageState[p] = held.pageState[p]! | PageState.PRESENT | PageState.OWNED | PageState.CHECKED;
    held.present++;
    held.waiting.delete(p);
  }

  /** Resolves once every page (and block) the program waits for is present. */
  private waitForPages(): Promise<void> {
    for (const held of this.disk ? [this.mem, this.disk] : [this.mem]) {
      for (const p of held.waiting) if (held.pageState[p]! & PageState.PRESENT) held.waiting.delete(p);
    }
    if (this.waitsOver()) return Promise.resolve();
    return new Promise((wake) => (this.waitingWake = wake));
  }

  /** Sends page (or block) requests to the source. */
  private async requestPages(held: Held, pages: number[]): Promise<void> {
    for (let i = 0; i < pages.length; i += MAX_REQUEST_PAGES) {
      const chunk = pages.slice(i, i + MAX_REQUEST_PAGES);
      if (!held.disk) this.counters.postcopyRequests += chunk.length;
      const frame = this.encoder.control({ type: "page-request", pages: chunk, ...(held.disk ? { disk: true } : {}) });
      countTraffic(this.traffic, "postcopy", frame.byteLength);
      await this.channel.send(frame);
    }
  }

  /**
   * The program here, from resume until every page is here. It runs in
   * quanta of `faultQuantum` guest seconds: the accesses of a quantum that
   * fault are requested together and the quantum ends when they have all
   * arrived (a trace gives accesses per epoch, not their order within it, so
   * the faults of one quantum are taken as concurrent, as with several vCPUs
   * or asynchronous page faults).
   */
  private async runProgram(): Promise<void> {
    await this.resumed;
    const { clock, shared } = this;
    const workload = shared.workload!;
    const mem = this.mem;
    const { faultQuantum } = this.settings;
    const c = this.counters;
    const dc = this.diskCounters;
    const disk = this.disk;
    const diskProgram = this.sharedDisk?.workload;
    const helds = disk ? [mem, disk] : [mem];
    workload.throttle = 1;
    workload.guest.hook = this.accessHook(
      mem,
      workload,
      () => c.faults++,
      () => c.wholePageOverwrites++,
    );
    if (disk && diskProgram) {
      diskProgram.throttle = 1;
      diskProgram.guest.hook = this.accessHook(
        disk,
        diskProgram,
        () => dc.blockMisses++,
        () => dc.blockOverwrites++,
      );
    }
    try {
      while (!this.complete) {
        await clock.sleep(faultQuantum);
        if (this.complete) break;
        await clock.settle(workload.advance(workload.now + faultQuantum));
        if (diskProgram) await clock.settle(diskProgram.advance(diskProgram.now + faultQuantum));
        for (const held of helds) {
          if (held.faults.length || held.prefetches.length) await this.requestPages(held, [...held.faults.splice(0), ...held.prefetches.splice(0)]);
        }
        if (!this.waitsOver()) {
          const stalled = clock.now();
          await this.waitForPages();
          c.faultStall += clock.now() - stalled;
        }
        for (const held of helds) {
          const program = held.disk ? diskProgram! : workload;
          for (const p of held.touched) if (!(held.pageState[p]! & PageState.OWNED)) held.memory.write(p, program.guest.page(p));
          held.touched.length = 0;
        }
        if (this.holdsAll()) this.finish();
      }
    } finally {
      workload.guest.hook = undefined;
      if (diskProgram) diskProgram.guest.hook = undefined;
    }
  }

  /** The program in its own thread (ProgramThread), from resume until every page is here. */
  private async runThread(thread: ProgramThread): Promise<void> {
    const mem = this.mem;
    let failed!: (error: Error) => void;
    const failure = new Promise<never>((_, reject) => (failed = reject));
    thread.resume(
      (p) => {
        this.counters.faults++;
        const state = mem.pageState[p]!;
        if (state & (PageState.PRESENT | PageState.REQUESTED)) return;
        mem.pageState[p] = state | PageState.REQUESTED;
        this.tasks.spawn(this.requestPages(mem, [p]));
      },
      (error) => failed(error),
    );
    await Promise.race([this.completed, failure]);
    const { faultStall } = await thread.finish();
    this.counters.faultStall = faultStall;
  }

  /**
   * The program's access hook for `held` (memory or the disk): a page it
   * holds is used (checked against the source's before the first change); a
   * missing one is claimed on a whole-page write, else a fault the quantum
   * waits for. On the disk, reads also drive prefetching.
   */
  private accessHook(held: Held, program: Workload, onFault: () => void, onOverwrite: () => void): (p: number, kind: AccessKind) => void {
    const guest = program.guest;
    const prefetch = held.disk && this.settings.disk!.prefetch ? this.settings.disk!.prefetchWindow : 0;
    return (p: number, kind: AccessKind): void => {
      if (prefetch && kind === "read") this.prefetchAfter(held, p, prefetch);
      const state = held.pageState[p]!;
      if (state & PageState.PRESENT) {
        if (kind === "read") return;
        if (!(state & PageState.CHECKED)) {
          held.shared.firstChange?.(p);
          // Before the program first changes a page it holds, the page must be the source's.
          if (!sameBytes(held.memory.page(p), guest.page(p))) {
            throw new VerificationError(`${held.disk ? "disk block" : "page"} ${p} at the destination differs from the source's at switch-over`, [p]);
          }
          held.pageState[p] = state | PageState.CHECKED;
        }
        held.touched.push(p);
        return;
      }
      // Missing: the source must still send what the page held at switch-over.
      if (kind !== "read") {
        held.shared.firstChange?.(p);
        held.shared.preserve(p);
      }
      if (kind === "overwrite") {
        onOverwrite();
        this.claim(held, p);
        held.touched.push(p);
        return;
      }
      onFault();
      if (kind === "write") held.touched.push(p);
      if (!(state & PageState.REQUESTED)) {
        held.pageState[p] = state | PageState.REQUESTED;
        held.faults.push(p);
      }
      held.waiting.add(p);
    };
  }

  /** A read of block `b` right after one of b − 1 is a sequential stream: ask for the next `window` blocks this end lacks. */
  private prefetchAfter(held: Held, b: number, window: number): void {
    const sequential = b === this.lastRead + 1;
    this.lastRead = b;
    if (!sequential) return;
    for (let q = b + 1; q <= b + window && q < held.pageCount; q++) {
      const state = held.pageState[q]!;
      if (state & (PageState.PRESENT | PageState.REQUESTED)) continue;
      held.pageState[q] = state | PageState.REQUESTED;
      held.prefetches.push(q);
      this.diskCounters.prefetchedBlocks++;
    }
  }

  /**
   * This end holds every page: the migration is complete. After post-copy
   * the source hears so in a "done" frame (no digest: memory keeps changing
   * under the running program; the end check compares pages).
   */
  private finish(): void {
    if (this.complete) return;
    // The source waits for this after post-copy, and after a deduplicated disk's pre-copy (refused references).
    if (this.postcopy || this.settings.disk?.dedup) {
      const frame = this.encoder.control({ type: "done", memoryBytes: this.memory.byteLength, digestName: "none", digest: new Uint8Array(0) });
      countTraffic(this.traffic, "postcopy", frame.byteLength);
      this.tasks.spawn(this.channel.send(frame));
    }
    for (const held of this.disk ? [this.mem, this.disk] : [this.mem]) {
      const program = held.disk ? this.sharedDisk!.workload : this.shared.workload;
      for (let p = 0; p < held.pageCount; p++) {
        if (held.pageState[p]! & PageState.OWNED) held.memory.write(p, program!.guest.page(p));
      }
    }
    this.completedAt = this.clock.now();
    this.report();
    this.completeWake();
  }

  /** Sends an INFO frame to the source (a destination in another process reports how it ended). */
  async sendInfo(json: string): Promise<void> {
    const frame = this.encoder.control({ type: "info", json });
    countTraffic(this.traffic, "postcopy", frame.byteLength);
    await this.channel.send(frame);
  }

  /**
   * The program's slowdown here (post-copy): time from resume until `end`,
   * over the part of it the program was not stalled on faults.
   */
  slowdown(end: number): number {
    const span = end - this.resumedAt;
    return span > this.counters.faultStall ? span / (span - this.counters.faultStall) : 1;
  }

  /** Releases WebAssembly memory and the access hook. */
  dispose(): void {
    if (this.shared.workload) this.shared.workload.guest.hook = undefined;
    if (this.sharedDisk?.workload) this.sharedDisk.workload.guest.hook = undefined;
    this.mem.decoder.dispose();
    this.disk?.decoder.dispose();
  }
}

// Guests: the memory an engine migrates, and the contract of the workloads
// that change it while the engine runs.
//
// ## API (stable: the engines are written against it)
//
//   const guest = new Guest(pageCount, pageSize = 4096, memory?)
//     guest.memory    the pages, a PageMemory (./pages.ts): sparse chunks
//                     (ChunkedPages) by default, so a guest costs the pages it
//                     holds; a Uint8Array given (page i at byte i·pageSize,
//                     e.g. over a SharedArrayBuffer) is used in place. Plain
//                     JavaScript memory, not WebAssembly memory (guests can be
//                     GiBs); load pages into a PageBatch with
//                     `batch.load(guest.memory, indices)`.
//     guest.page(i)   a view of page i to read (no copy).
//     guest.dirtyLog  DirtyBitmap: bit i is set when page i was written since
//                     the engine last synced. Each round the engine calls
//                     `bitmap.syncFrom(guest.dirtyLog)`, which ORs the log into
//                     its own bitmap and clears the log (KVM's dirty log).
//     guest.hook      optional `(page, kind) => void`, called *before* an
//                     access takes effect, in time order: "read" (the program
//                     reads the page), "write" (modifies part of it: needs the
//                     old content, so a post-copy destination must fetch it
//                     first), "overwrite" (replaces every word: no fetch needed,
//                     the "whole-page overwrite" of fractional hybrid-copy).
//                     Once the workload's access is done, guest.memory holds
//                     the page's new content. A workload writes through the
//                     view `guest.beginWrite(page, whole)` returns.
//     guest.writes / guest.overwrites / guest.reads   running totals.
//     guest.dispose() frees the dirty log.
//
//   interface Workload (src/guest/workloads.ts has the implementations)
//     workload.guest     the Guest it writes to.
//     workload.now       virtual time (s) it has been advanced to; starts at 0.
//     workload.workTime  time (s) it actually ran: `now` less throttled time.
//     workload.throttle  fraction of time it may run, 0..1 (1 by default). An
//                        engine's auto-converge lowers it; a workload throttled
//                        to 0.25 does in 4 s what it did in 1 s.
//     await workload.advance(to)   applies every write (and read) due in
//                        (now, to], marking pages dirty and calling the hook;
//                        returns an AdvanceReport. `to` below `now` is a
//                        RangeError; calls must not overlap (await each one,
//                        or it throws a PagemillError). Deterministic: the
//                        same seed gives the same memory and the same access
//                        sequence however the time is split into advance()
//                        calls.
//     await workload.close()       releases files or streams it holds.
//
//   Workloads (./workloads.ts): PoissonWorkload (uniform, hot-cold, Zipf),
//   SweepWorkload, IdleWorkload, TraceReplay.open(path); syntheticGuest() and
//   syntheticImage() for model guests. Traces: ./pagetrace.ts (TraceReader,
//   TraceWriter); recording: ./recorder.ts.
//
// Virtual time is in seconds (a float). Real-clock engines pass elapsed
// seconds; the workload never reads a clock itself.

import { checkBytes, checkInteger, checkPageSize } from "../errors.js";
import { DirtyBitmap, MAX_BITMAP_PAGES } from "./bitmap.js";
import { ChunkedPages } from "./chunks.js";
import { FlatPages, type PageMemory } from "./pages.js";
import { Owned } from "../wasm/owned.js";

/** What an access does to a page; see the module comment. */
export type AccessKind = "read" | "write" | "overwrite";

/** Called before each access takes effect (page index, kind). */
export type AccessHook = (page: number, kind: AccessKind) => void;


export class Guest extends Owned {
  readonly pageSize: number;
  readonly pageCount: number;
  /** Every page. */
  readonly memory: PageMemory;
  /** Pages written since the last `syncFrom` by an engine. */
  readonly dirtyLog: DirtyBitmap;
  /** Optional observer of every access, called before it takes effect. */
  hook: AccessHook | undefined;
  /**
   * Called before a write changes page `page` (after the hook): an
   * in-process destination that reads pages through to this memory keeps
   * the page's content first (src/engine/mirror.ts). Every change to the
   * memory goes through beginWrite, write or clear for this reason.
   */
  beforeChange: ((page: number) => void) | undefined;
  /** Write accesses that needed the old content, since creation. */
  writes = 0;
  /** Write accesses that replaced the whole page. */
  overwrites = 0;
  /** Read accesses. */
  reads = 0;

  /**
   * A guest of `pageCount` pages. `memory` (a PageMemory of that shape, or
   * pageCount·pageSize bytes) is adopted without a copy; by default the
   * guest starts all zero in sparse chunks.
   * `init()` must have completed (the dirty log lives in WebAssembly memory).
   */
  constructor(pageCount: number, pageSize = 4096, memory?: Uint8Array | PageMemory) {
    super();
    checkPageSize(pageSize);
    checkInteger("pageCount", pageCount, 0, MAX_BITMAP_PAGES);
    if (memory !== undefined && memory.byteLength !== pageCount * pageSize) {
      throw new RangeError(`memory has ${memory.byteLength} bytes, expected pageCount·pageSize = ${pageCount * pageSize}`);
    }
    if (memory !== undefined && !(memory instanceof Uint8Array) && memory.pageSize !== pageSize) {
      throw new RangeError(`memory has ${memory.pageSize} B pages, the guest ${pageSize} B`);
    }
    this.pageSize = pageSize;
    this.pageCount = pageCount;
    this.memory = memory instanceof Uint8Array ? new FlatPages(memory, pageSize) : (memory ?? new ChunkedPages(pageCount, pageSize));
    this.dirtyLog = new DirtyBitmap(pageCount);
  }

  /** Bytes of memory. */
  get bytes(): number {
    return this.memory.byteLength;
  }

  /** A view of page `index` to read (a write through it bypasses the hook and the dirty log, and may change nothing: see PageMemory.page). */
  page(index: number): Uint8Array {
    this.live();
    return this.memory.page(index);
  }

  /**
   * Starts a write to `page`: calls the hook ("overwrite" when `whole`, else
   * "write"), marks the page dirty and returns a view of the page, where the
   * caller then puts the new content.
   */
  beginWrite(page: number, whole: boolean): Uint8Array {
    this.noteWrite(page, whole);
    return this.memory.writable(page);
  }

  /** Replaces page `page` with zeros: an overwrite (a sparse memory holds nothing more for it). */
  clear(page: number): void {
    this.noteWrite(page, true);
    this.memory.zero(page);
  }

  private noteWrite(page: number, whole: boolean): void {
    this.live();
    this.checkPage(page);
    if (whole) this.overwrites++;
    else this.writes++;
    this.hook?.(page, whole ? "overwrite" : "write");
    this.dirtyLog.set(page);
    this.beforeChange?.(page);
  }

  /** Records a read of `page` (memory does not change). */
  read(page: number): void {
    this.live();
    this.checkPage(page);
    this.reads++;
    this.hook?.(page, "read");
  }

  /** Replaces page `page` with `content` (pageSize bytes): an overwrite. */
  write(page: number, content: Uint8Array): void {
    this.live();
    checkBytes("content", content);
    if (content.byteLength !== this.pageSize) {
      throw new RangeError(`content has ${content.byteLength} bytes, pageSize is ${this.pageSize}`);
    }
    this.noteWrite(page, true);
    this.memory.write(page, content);
  }

  protected release(): void {
    this.dirtyLog.dispose();
  }

  private checkPage(page: number): void {
    if (!Number.isInteger(page) || page < 0 || page >= this.pageCount) {
      throw new RangeError(`page ${page} is outside the guest (0..${this.pageCount - 1})`);
    }
  }
}

/** What one `advance` did. */
export interface AdvanceReport {
  /** Time the workload ran in the interval (s): (to − now before the call) · throttle. */
  readonly ran: number;
  /** Write accesses that needed the old content. */
  readonly writes: number;
  /** Write accesses that replaced the whole page. */
  readonly overwrites: number;
  /** Read accesses. */
  readonly reads: number;
}

/** A program running in a guest; see the module comment. */
export interface Workload {
  readonly name: string;
  readonly guest: Guest;
  readonly now: number;
  readonly workTime: number;
  /** Page writes per second of work time: what a model expects to make, or the most a trace replay can. */
  readonly writeRate?: number;
  /**
   * A program that runs by itself on the real clock: where its clock is now
   * (`now` is where its last step got to, which lags while a step runs).
   */
  clockTime?(): number;
  throttle: number;
  advance(to: number): Promise<AdvanceReport>;
  /**
   * The engine stops the guest here (the switch-over). A program that runs
   * by itself (not advanced by the engine) pauses, and brings the dirty log
   * up to date; models and traces need nothing. Resolves with the wall clock
   * (seconds since the epoch) at which the program stopped, where that is
   * earlier than the call's end (the downtime starts there).
   */
  stop?(): Promise<number | void>;
  close(): Promise<void>;
}

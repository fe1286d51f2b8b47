// A guest whose program cannot log its writes: any memory a program owns (a
// WebAssembly.Memory, a SharedArrayBuffer another thread writes), with its
// dirty pages found by hashing. Each scan copies every page out of the live
// memory, takes its XXH3 (the batch kernel), and compares it with the page's
// digest from the scan before: a page whose digest changed is copied into
// the guest's memory (a snapshot) and marked dirty.
//
// The engine reads the snapshot, never the live memory, so what it sends is
// exactly what was hashed: a page torn by a write during the copy hashes as
// the torn copy, differs from the next scan's, and goes again. When the
// engine stops the guest, stop() pauses the program (the caller's hook) and
// scans once more, so the stop-and-copy sends every page that differs from
// what the destination holds. Only a change that keeps a page's 64-bit
// digest (a collision) could go unseen here; the end check (every page's
// XXH3 under another, random seed, at both ends) would then fail the
// migration, not pass it.

import { wallTime } from "../clock.js";
import { PagemillError } from "../errors.js";
import { xxh3Pages } from "../hash/xxhash.js";
import { PageBatch } from "../wasm/arena.js";
import { Guest, type AdvanceReport, type Workload } from "./guest.js";

/** Memory a program owns and keeps writing: a WebAssembly.Memory (shared or not), a SharedArrayBuffer, or bytes. */
export type ProgramMemory = WebAssembly.Memory | SharedArrayBuffer | ArrayBuffer | Uint8Array;

export interface HashTrackingOptions {
  /** Bytes per page (default 4096); the memory's size must be a multiple. */
  readonly pageSize?: number;
  /** Stops the program's writes (e.g. sets a flag its thread checks, and waits until it has stopped). */
  readonly pause?: () => void | Promise<void>;
  /** Lets the program write again (a migration that failed). */
  readonly resume?: () => void | Promise<void>;
  /** Least time between scans while the program runs, s (default: four times the last scan's length, at least 10 ms). */
  readonly scanInterval?: number;
}

/** Pages hashed per kernel call. */
const SCAN_PAGES = 256;

export function programBytes(memory: ProgramMemory): Uint8Array {
  if (memory instanceof WebAssembly.Memory) return new Uint8Array(memory.buffer);
  if (memory instanceof Uint8Array) return memory;
  if (memory instanceof ArrayBuffer || (typeof SharedArrayBuffer !== "undefined" && memory instanceof SharedArrayBuffer)) return new Uint8Array(memory);
  throw new TypeError("memory must be a WebAssembly.Memory, a SharedArrayBuffer, an ArrayBuffer or a Uint8Array");
}

/** A Workload over memory a program writes on its own (see the module comment). */
export class HashTrackedWorkload implements Workload {
  readonly name = "program memory (dirty pages found by hashing)";
  readonly guest: Guest;
  throttle = 1;
  /** Whole-memory scans so far, and the pages they found changed. */
  scans = 0;
  changedPages = 0;
  private readonly live: Uint8Array;
  private readonly source: ProgramMemory;
  private readonly digests: BigUint64Array;
  private readonly batch: PageBatch;
  private clockNow = 0;
  private lastScanAt = -Infinity;
  private lastScanSeconds = 0;
  private paused = false;

  constructor(
    memory: ProgramMemory,
    private readonly options: HashTrackingOptions = {},
  ) {
    const pageSize = options.pageSize ?? 4096;
    this.source = memory;
    this.live = programBytes(memory);
    if (this.live.byteLength === 0 || this.live.byteLength % pageSize !== 0) {
      throw new RangeError(`the program's memory has ${this.live.byteLength} bytes, not a positive multiple of the ${pageSize}-byte page`);
    }
    if (options.scanInterval !== undefined && !(options.scanInterval >= 0 && Number.isFinite(options.scanInterval))) {
      throw new RangeError(`scanInterval must be a finite number of seconds >= 0, got ${options.scanInterval}`);
    }
    this.guest = new Guest(this.live.byteLength / pageSize, pageSize);
    this.digests = new BigUint64Array(this.guest.pageCount);
    this.batch = new PageBatch(SCAN_PAGES, pageSize);
    // The first scan fills the snapshot: every page counts as changed.
    this.scan(true);
  }

  get now(): number {
    return this.clockNow;
  }

  get workTime(): number {
    return this.clockNow;
  }

  /** The program runs by itself: time passes, and the dirty log is brought up to date when a scan is due. */
  async advance(to: number): Promise<AdvanceReport> {
    if (!(to >= this.clockNow) || !Number.isFinite(to)) throw new RangeError(`advance(to): to must be finite and >= now (${this.clockNow}), got ${to}`);
    const from = this.clockNow;
    this.clockNow = to;
    const before = this.changedPages;
    const interval = this.options.scanInterval ?? Math.max(0.01, 4 * this.lastScanSeconds);
    if (!this.paused && performance.now() / 1000 - this.lastScanAt >= interval) this.scan();
    return { ran: to - from, writes: this.changedPages - before, overwrites: 0, reads: 0 };
  }

  /** The engine stops the guest: the program pauses, and a last scan finds everything it wrote. */
  async stop(): Promise<number | void> {
    if (this.paused) return;
    await this.options.pause?.();
    // Stopped here: the last scan is inside the downtime.
    const stopped = wallTime();
    this.paused = true;
    this.scan();
    return stopped;
  }

  /** Lets a paused program write again (the migration failed; the program carries on here). */
  async resume(): Promise<void> {
    if (!this.paused) return;
    this.paused = false;
    await this.options.resume?.();
  }

  async close(): Promise<void> {
    this.batch.dispose();
    this.guest.dispose();
  }

  /** Hashes every page of the live memory; a page whose digest changed is copied into the snapshot and marked dirty. */
  scan(first = false): number {
    const started = performance.now();
    const { pageSize, pageCount } = this.guest;
    // A shared WebAssembly.Memory grows into a new buffer (the view keeps its length); a plain one detaches the old.
    const size = this.source instanceof WebAssembly.Memory ? this.source.buffer.byteLength : this.live.byteLength;
    if (size !== pageCount * pageSize) throw new PagemillError(`the program's memory changed size during the migration (${pageCount * pageSize} → ${size} bytes)`);
    const snapshot = this.guest.memory;
    let changed = 0;
    xxh3Pages(this.live, this.batch, 0n, (from, digests) => {
      const copies = this.batch.bytes();
      for (let k = 0; k < digests.length; k++) {
        const p = from + k;
        if (!first && digests[k] === this.digests[p]) continue;
        this.digests[p] = digests[k]!;
        snapshot.write(p, copies, k * pageSize);
        this.guest.dirtyLog.set(p);
        changed++;
      }
    });
    this.scans++;
    if (!first) this.changedPages += changed;
    this.lastScanAt = performance.now() / 1000;
    this.lastScanSeconds = (this.lastScanAt * 1000 - started) / 1000;
    return changed;
  }
}

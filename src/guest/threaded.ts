// A guest whose program runs in a worker thread, on the real clock, writing
// at its own rate while the engine copies its memory: the engine's end of
// it (ThreadedWorkload) and the worker's (runThreaded, in ./guest-thread.ts).
//
// The worker opens the workload (any Workload a module's function opens),
// and loops: advance to the time elapsed (less time paused), then copy the
// pages the step wrote into the shared memory and set their bits in the
// shared dirty log, in that order. The engine reads pages from the shared
// memory and takes the dirty log word by word (Atomics.exchange); a page it
// reads while the worker copies it is torn, but its bit is set after the
// copy, so the next sync sends it again, and at the stop the worker has
// finished its step and paused: nothing is lost.

import { Worker } from "node:worker_threads";
import { PagemillError } from "../errors.js";
import { Guest, type AdvanceReport, type Workload } from "./guest.js";
import { checkFitsInMemory } from "./chunks.js";

/** Atomics.waitAsync (Node 16 on; not in this TypeScript's lib): `value` is a promise, or the outcome when there was no wait. */
const waitAsync = (Atomics as unknown as { waitAsync(array: Int32Array, index: number, value: number, timeoutMs: number): { value: Promise<string> | string } }).waitAsync;

/**
 * Waits while `array[index]` holds `value` (another thread's answer to come): blocking up to `blockMs`
 * first, which sees the answer within microseconds where waitAsync's wake comes through the event loop
 * 0.3-1 ms later (stamped, inside the downtime), then with the loop turning, calling `check` (which
 * throws the other thread's failure) before each wait.
 */
export async function waitWhile(array: Int32Array, index: number, value: number, blockMs: number, check: () => void): Promise<void> {
  Atomics.wait(array, index, value, blockMs);
  while (Atomics.load(array, index) === value) {
    check();
    await waitAsync(array, index, value, 5).value;
  }
}

/** Where the worker finds the workload: `(await import(module))[name](...args)` opens it. */
export interface WorkloadSpec {
  readonly module: string;
  readonly name: string;
  readonly args: readonly unknown[];
}

/**
 * control[0]: what the worker should do, numbered: (n << 2) | RUN, PAUSE or STOP, so that a pause asked
 * right after a resume is a value the worker waits on no longer, even if it has not woken from the last
 * pause yet; control[1]: 1 while it is paused (stop() clears it first: the last pause's 1 may still be there).
 */
export const RUN = 0;
export const PAUSE = 1;
export const STOP = 2;
/** Slots of the shared Float64Array: the workload's now and workTime and when it last paused (the worker's: wall ms), the throttle (the engine's). */
export const NOW = 0;
export const WORK = 1;
export const THROTTLE = 2;
export const PAUSED = 3;

export interface ThreadShared {
  readonly memory: SharedArrayBuffer;
  readonly dirty: SharedArrayBuffer;
  readonly control: SharedArrayBuffer;
  readonly clock: SharedArrayBuffer;
}

/** The engine's end of a guest whose program runs in a worker thread (see the module comment). */
export class ThreadedWorkload implements Workload {
  readonly name: string;
  readonly guest: Guest;
  private readonly dirty: Int32Array;
  private readonly control: Int32Array;
  private readonly clock: Float64Array;
  /** workTime at the last advance() or stop(): where the next report's interval starts. */
  private lastWork = 0;
  /** ms the program was paused before the current pause, and when that one began (wall ms) */
  private pausedMs = 0;
  private pausedAt: number | undefined;
  /** Commands sent to the worker so far: numbers each one (see control[0]). */
  private commands = 0;
  private failure: Error | undefined;
  /** Throws the thread's failure, if it failed. */
  private readonly checkAlive = (): void => {
    if (this.failure) throw this.failure;
  };

  private constructor(
    private readonly worker: Worker,
    shape: { name: string; pageCount: number; pageSize: number },
    shared: ThreadShared,
    /** the wall clock (ms since the epoch) when the program's clock started */
    private readonly startedAt: number,
  ) {
    this.name = `${shape.name} (in a worker thread)`;
    this.guest = new Guest(shape.pageCount, shape.pageSize, new Uint8Array(shared.memory));
    this.dirty = new Int32Array(shared.dirty);
    this.control = new Int32Array(shared.control);
    this.clock = new Float64Array(shared.clock);
    worker.on("error", (error) => (this.failure = new PagemillError(`the guest's thread failed: ${error.message}`, { cause: error })));
  }

  /** Starts the workload `spec` opens in a worker thread; resolves once it runs there. */
  static async start(spec: WorkloadSpec): Promise<ThreadedWorkload> {
    const worker = new Worker(new URL("./guest-thread.js", import.meta.url), { workerData: spec });
    const message = <T>(): Promise<T> =>
      new Promise((resolve, reject) => {
        const fail = (error: Error): void => reject(new PagemillError(`the guest's thread failed to start: ${error.message}`, { cause: error }));
        worker.once("error", fail);
        worker.once("message", (value: T) => {
          worker.off("error", fail);
          resolve(value);
        });
      });
    const shape = await message<{ name: string; pageCount: number; pageSize: number }>();
    try {
      // A thread shares its guest flat (every page backed): refused here rather than halfway through allocating it.
      checkFitsInMemory(`a guest thread's shared memory (${shape.pageCount} pages, every one held)`, shape.pageCount * shape.pageSize);
    } catch (error) {
      await worker.terminate();
      throw error;
    }
    const shared: ThreadShared = {
      memory: new SharedArrayBuffer(shape.pageCount * shape.pageSize),
      dirty: new SharedArrayBuffer(Math.ceil(shape.pageCount / 32) * 4),
      control: new SharedArrayBuffer(8),
      clock: new SharedArrayBuffer(4 * 8),
    };
    new Float64Array(shared.clock)[THROTTLE] = 1;
    worker.postMessage(shared);
    const { startedAt } = await message<{ startedAt: number }>();
    return new ThreadedWorkload(worker, shape, shared, startedAt);
  }

  get now(): number {
    return this.clock[NOW]!;
  }

  get workTime(): number {
    return this.clock[WORK]!;
  }

  /** The program's clock: the wall time since it started, less the time it was paused. */
  clockTime(): number {
    const now = performance.timeOrigin + performance.now();
    return (now - this.startedAt - this.pausedMs - (this.pausedAt === undefined ? 0 : now - this.pausedAt)) / 1000;
  }

  get throttle(): number {
    return this.clock[THROTTLE]!;
  }

  set throttle(value: number) {
    this.clock[THROTTLE] = value;
  }

  /** The program runs by itself: this takes what it wrote since the last call into the dirty log. */
  async advance(): Promise<AdvanceReport> {
    this.checkAlive();
    const from = this.lastWork;
    const to = (this.lastWork = this.workTime);
    const writes = this.takeDirty();
    return { ran: to - from, writes, overwrites: 0, reads: 0 };
  }

  /** Pauses the program (its current step finishes first) and takes its last writes; resolves with the wall clock (s) at which it paused. */
  async stop(): Promise<number> {
    if (this.pausedAt !== undefined) return this.pausedAt / 1000;
    Atomics.store(this.control, 1, 0);
    this.command(PAUSE);
    // Between steps (most of the time) the worker pauses at once: blocking for up to a millisecond sees it;
    // a step still running is waited for with the loop turning.
    await waitWhile(this.control, 1, 0, 1, this.checkAlive);
    // Paused when the worker says: from there the program runs no more.
    this.pausedAt = this.clock[PAUSED]!;
    this.lastWork = this.workTime;
    this.takeDirty();
    return this.pausedAt / 1000;
  }

  /** Lets a paused program run on (a migration that failed). */
  resume(): void {
    if (this.pausedAt !== undefined) this.pausedMs += performance.timeOrigin + performance.now() - this.pausedAt;
    this.pausedAt = undefined;
    this.command(RUN);
  }

  async close(): Promise<void> {
    this.command(STOP);
    await this.worker.terminate();
    this.guest.dispose();
  }

  private command(what: number): void {
    Atomics.store(this.control, 0, (++this.commands << 2) | what);
    Atomics.notify(this.control, 0);
  }

  private takeDirty(): number {
    let pages = 0;
    const log = this.guest.dirtyLog;
    for (let w = 0; w < this.dirty.length; w++) {
      if (this.dirty[w] === 0) continue;
      let bits = Atomics.exchange(this.dirty, w, 0) >>> 0;
      while (bits) {
        const low = bits & -bits;
        log.set(w * 32 + (31 - Math.clz32(low)));
        bits = (bits ^ low) >>> 0;
        pages++;
      }
    }
    return pages;
  }
}

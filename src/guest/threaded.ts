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

/** control[0]: RUN, or STOP (the worker ends); control[GATE]: the step gate. */
export const RUN = 0;
export const STOP = 1;
/**
 * The step gate, the one word a pause and a resume change. The worker takes it for each step (OPEN ->
 * STEPPING) and opens it after. stop() holds it: when open, the program is paused there and then,
 * between steps, with no wait for the worker to wake and say so (HELD); during a step, it asks
 * (ASKED), and the worker holds it at the step's end (HELD). resume() opens it. A pause and its resume
 * are states of this word alone, so a worker slow to wake never acts on a pause that is over.
 */
export const GATE = 1;
const OPEN = 0;
const STEPPING = 1;
const ASKED = 2;
/** (The worker waits on this value while the program is paused.) */
export const HELD = 3;
/**
 * Slots of the shared Float64Array: the workload's now and workTime (the worker's); when the program
 * last paused, wall ms (the end that held the gate); the throttle and the ms the program was paused
 * before its last resume (the engine's).
 */
export const NOW = 0;
export const WORK = 1;
export const THROTTLE = 2;
export const PAUSED = 3;
export const PAUSED_MS = 4;

/**
 * stop()'s hold on the gate: true when the program was between steps and is paused now; false when a
 * step is running and was asked to pause at its end.
 */
export function holdGate(control: Int32Array): boolean {
  for (;;) {
    const gate = Atomics.compareExchange(control, GATE, OPEN, HELD);
    if (gate === OPEN) return true;
    if (gate !== STEPPING) throw new PagemillError(`the guest's step gate is ${gate === HELD ? "held" : "asked"} already: a second pause`);
    // (The step may have ended meanwhile: then the gate is open, and held on the next turn.)
    if (Atomics.compareExchange(control, GATE, STEPPING, ASKED) === STEPPING) return false;
  }
}

/** The worker takes the gate for a step; false while the program is paused. */
export function enterStep(control: Int32Array): boolean {
  return Atomics.compareExchange(control, GATE, OPEN, STEPPING) === OPEN;
}

/** The worker's step ended: the gate opens, or, when a pause was asked meanwhile, is held from now (its time in `clock`). */
export function endStep(control: Int32Array, clock: Float64Array): void {
  if (Atomics.compareExchange(control, GATE, STEPPING, OPEN) === STEPPING) return;
  clock[PAUSED] = performance.timeOrigin + performance.now();
  Atomics.store(control, GATE, HELD);
  Atomics.notify(control, GATE);
}

/** resume(): steps may start again (a worker waiting on the held gate wakes). */
export function openGate(control: Int32Array): void {
  Atomics.store(control, GATE, OPEN);
  Atomics.notify(control, GATE);
}

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
      control: new SharedArrayBuffer(2 * 4),
      clock: new SharedArrayBuffer(5 * 8),
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
    // Taken before the gate is held: the downtime counts from no later than the pause.
    const asked = performance.timeOrigin + performance.now();
    // Between steps (most of the time) the program is not running, and holding the gate pauses it there:
    // waiting instead for its thread to wake and say so, and for this one to wake in turn, took 0.2-1 ms
    // (more when other threads held both cores: stamped, inside the downtime, which starts here).
    if (holdGate(this.control)) this.clock[PAUSED] = asked;
    // A step is running: the worker pauses at its end (blocking for up to a millisecond sees that; a
    // longer step is waited for with the loop turning), at the time it says.
    else await waitWhile(this.control, GATE, ASKED, 1, this.checkAlive);
    this.pausedAt = this.clock[PAUSED]!;
    this.lastWork = this.workTime;
    this.takeDirty();
    return this.pausedAt / 1000;
  }

  /** Lets a paused program run on (a migration that failed). */
  resume(): void {
    if (this.pausedAt === undefined) return;
    this.pausedMs += performance.timeOrigin + performance.now() - this.pausedAt;
    this.pausedAt = undefined;
    // The worker's clock leaves out the same pauses as clockTime().
    this.clock[PAUSED_MS] = this.pausedMs;
    openGate(this.control);
  }

  async close(): Promise<void> {
    Atomics.store(this.control, 0, STOP);
    // Between steps, or paused.
    Atomics.notify(this.control, 0);
    Atomics.notify(this.control, GATE);
    await this.worker.terminate();
    this.guest.dispose();
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

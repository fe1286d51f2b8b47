// Real demand paging at a destination in another process: the program runs
// in a worker thread after a post-copy switch-over, and an access to a page
// this end does not hold blocks that thread until the page arrives, as a
// vCPU blocks on a userfaultfd fault. This is the main thread's end
// (DemandPagedProgram); the worker's is ./demand-thread.ts.
//
// Before the switch-over the worker replays the program (the same trace or
// seeded model the source runs) up to where the source's stopped, so the
// worker's copy holds the source's memory at the stop. Shared with the main
// thread:
// - `memory`: the program's memory, the worker's own copied in after each
//   step (pages it wrote); the main thread checks each page that arrives
//   against it (the worker cannot have changed a page it does not hold);
// - `received` and `pageState`: the Destination's memory and page states;
//   the worker reads a page's state before each access, and before it first
//   changes a page it holds checks the page against `received` and takes its
//   digest at the stop (StopDigest);
// - `control`: the arrival count the blocked worker waits on (the main
//   thread adds one after pages became present) and the run state (two
//   Int32s), then when the program resumed (a Float64, wall ms).
// After the switch-over the program runs on the real clock, less the time
// it spent blocked (a blocked vCPU does no work). Every access to a missing
// page faults, whole-page overwrites too: the destination cannot tell one
// from a partial write before it happens, as with userfaultfd.

import { Worker } from "node:worker_threads";
import { PagemillError, VerificationError } from "../errors.js";
import { waitWhile, type WorkloadSpec } from "../guest/threaded.js";
import type { ProgramThread } from "./destination.js";

/**
 * control[ARRIVALS]: bumped after pages became present; control[STATE]: RUNNING, FINISHING, REPLAYING (the
 * switch-over's replay asked for) or HELD (replayed to the stop, waiting for resume()).
 */
export const ARRIVALS = 0;
export const STATE = 1;
export const RUNNING = 0;
export const FINISHING = 1;
export const HELD = 2;
export const REPLAYING = 3;
/**
 * How long (ms) the main thread blocks for the switch-over's replay (to the stop, from the guest's time in
 * the last progress frame: well under a millisecond's work) before it waits with its loop turning.
 */
const HOLD_WAIT_MS = 20;
/** Byte offset in `control` of the Float64 the worker writes as the program resumes. */
export const RESUMED_AT = 8;

/** What the worker gets at the start. */
export interface DemandThreadData {
  readonly spec: WorkloadSpec;
  readonly memory: SharedArrayBuffer;
  readonly received: SharedArrayBuffer;
  readonly pageState: SharedArrayBuffer;
  /** Int32 [ARRIVALS, STATE], then a Float64 at RESUMED_AT: the wall clock (ms) at which the program resumed (0 before) */
  readonly control: SharedArrayBuffer;
  /** the end check's XXH3 seed (decimal) */
  readonly seed: string;
}

/** Messages from the worker. */
export type DemandThreadMessage =
  | { readonly type: "opened"; readonly pageCount: number; readonly pageSize: number }
  | { readonly type: "replayed"; readonly workTime: number }
  | { readonly type: "fault"; readonly page: number }
  | { readonly type: "failed"; readonly message: string; readonly verification: boolean; readonly page?: number }
  | { readonly type: "finished"; readonly faults: number; readonly stall: number; readonly pages: Uint32Array; readonly digests: BigUint64Array };

/** Messages to the worker: replay to `to`; `hold`: then wait for resume() (control[STATE] leaving HELD) and run. */
export type DemandThreadCommand = { readonly type: "replay"; readonly to: number; readonly hold: boolean };

/** The main thread's end of a program run with demand paging in a worker (see the module comment). */
export class DemandPagedProgram implements ProgramThread {
  /** The program's memory (after the switch-over, as of its last step). */
  readonly memory: Uint8Array;
  readonly received: Uint8Array;
  readonly pageState: Uint8Array;
  /** Once finish() is done: each page's digest (under the seed) taken before the program first changed it here. */
  readonly taken = new Map<number, bigint>();
  /** Resolves when the program has stopped after finish() (rejects when the thread failed). */
  readonly finished: Promise<void>;
  private finishedWake!: () => void;
  private readonly control: Int32Array;
  private readonly resumedAt: Float64Array;
  private replaying: Promise<unknown> = Promise.resolve();
  private failure: Error | undefined;
  /** Throws the thread's failure, if it failed. */
  private readonly checkAlive = (): void => {
    if (this.failure) throw this.failure;
  };
  private onFailure: ((error: Error) => void) | undefined;
  private onFault: ((page: number) => void) | undefined;
  private readonly waiters: { type: DemandThreadMessage["type"]; resolve: (m: DemandThreadMessage) => void; reject: (e: Error) => void }[] = [];

  private constructor(
    private readonly worker: Worker,
    data: DemandThreadData,
  ) {
    this.memory = new Uint8Array(data.memory);
    this.received = new Uint8Array(data.received);
    this.pageState = new Uint8Array(data.pageState);
    this.control = new Int32Array(data.control, 0, 2);
    this.resumedAt = new Float64Array(data.control, RESUMED_AT, 1);
    this.finished = new Promise((wake) => (this.finishedWake = wake));
    worker.on("message", (m: DemandThreadMessage) => this.message(m));
    worker.on("error", (error) => this.fail(new PagemillError(`the destination's program thread failed: ${error.message}`, { cause: error })));
  }

  /**
   * Starts the program `spec` opens in a worker, for a guest of `pageCount`
   * pages of `pageSize` bytes (a program of another shape is refused);
   * resolves once it is open, at its start.
   */
  static async start(spec: WorkloadSpec, shape: { pageSize: number; pageCount: number }, seed: bigint): Promise<DemandPagedProgram> {
    const bytes = shape.pageCount * shape.pageSize;
    const data: DemandThreadData = {
      spec,
      memory: new SharedArrayBuffer(bytes),
      received: new SharedArrayBuffer(bytes),
      pageState: new SharedArrayBuffer(shape.pageCount),
      control: new SharedArrayBuffer(RESUMED_AT + 8),
      seed: seed.toString(),
    };
    const worker = new Worker(new URL("./demand-thread.js", import.meta.url), { workerData: data });
    const program = new DemandPagedProgram(worker, data);
    try {
      const opened = (await program.next("opened")) as Extract<DemandThreadMessage, { type: "opened" }>;
      if (opened.pageSize !== shape.pageSize || opened.pageCount !== shape.pageCount) {
        throw new PagemillError(`the program started here has ${opened.pageCount} pages of ${opened.pageSize} B, the source's ${shape.pageCount} of ${shape.pageSize}`);
      }
    } catch (error) {
      await worker.terminate();
      throw error;
    }
    return program;
  }

  /**
   * Replays the program up to work time `workTime` (no further than the
   * source's has run), after any replay asked for before. `hold` (the
   * switch-over's replay, to the stop): the thread says it is held, and then
   * waits for resume(), through shared memory, not messages: a message's way
   * through the receiving thread's event loop took 0.1-0.3 ms (resume) and
   * 0.6-1.0 ms ("replayed") of the downtime.
   */
  replayTo(workTime: number, hold = false): Promise<void> {
    const done = this.replaying.then(async () => {
      if (!hold) {
        this.worker.postMessage({ type: "replay", to: workTime, hold } satisfies DemandThreadCommand);
        await this.next("replayed");
        return;
      }
      // The thread says it is held through shared memory, not a message: "replayed" reached this (idle)
      // thread 0.6-1.0 ms after it was posted (stamped, hybrid), inside the downtime. The replay left is
      // short (the guest's time since its last progress frame): a blocking wait sees it end at once.
      this.checkAlive();
      Atomics.store(this.control, STATE, REPLAYING);
      this.worker.postMessage({ type: "replay", to: workTime, hold } satisfies DemandThreadCommand);
      await waitWhile(this.control, STATE, REPLAYING, HOLD_WAIT_MS, this.checkAlive);
      this.checkAlive();
    });
    this.replaying = done.catch(() => {});
    return done;
  }

  resume(onFault: (page: number) => void, onFailure: (error: Error) => void): void {
    this.onFault = onFault;
    this.onFailure = onFailure;
    if (this.failure) return onFailure(this.failure);
    if (Atomics.load(this.control, STATE) !== HELD) throw new PagemillError("resume() before the program was replayed to the stop and held (replayTo(workTime, true))");
    Atomics.store(this.control, STATE, RUNNING);
    Atomics.notify(this.control, STATE);
  }

  /** The wall clock (s since the epoch) at which the program ran again after resume(), as the thread saw it; undefined before. */
  get resumedWallTime(): number | undefined {
    const at = this.resumedAt[0]!;
    return at > 0 ? at / 1000 : undefined;
  }

  arrived(): void {
    Atomics.add(this.control, ARRIVALS, 1);
    Atomics.notify(this.control, ARRIVALS);
  }

  async finish(): Promise<{ faultStall: number }> {
    Atomics.store(this.control, STATE, FINISHING);
    Atomics.notify(this.control, STATE);
    const done = (await this.next("finished")) as Extract<DemandThreadMessage, { type: "finished" }>;
    done.pages.forEach((p, k) => this.taken.set(p, done.digests[k]!));
    this.finishedWake();
    return { faultStall: done.stall };
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }

  private next(type: DemandThreadMessage["type"]): Promise<DemandThreadMessage> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ type, resolve, reject }));
  }

  private message(m: DemandThreadMessage): void {
    if (m.type === "fault") return this.onFault?.(m.page);
    if (m.type === "failed") {
      const error = m.verification ? new VerificationError(m.message, m.page === undefined ? [] : [m.page]) : new PagemillError(`the destination's program: ${m.message}`);
      return this.fail(error);
    }
    const k = this.waiters.findIndex((w) => w.type === m.type);
    if (k >= 0) this.waiters.splice(k, 1)[0]!.resolve(m);
  }

  private fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    for (const w of this.waiters.splice(0)) w.reject(error);
    this.onFailure?.(error);
  }
}

// The worker's end of a DemandPagedProgram (./demand.ts, whose module
// comment this follows): opens the program, replays it as told, and after
// the switch-over runs it on the real clock, blocking on every access to a
// page the destination does not hold yet.

import { parentPort, workerData } from "node:worker_threads";
import { VerificationError } from "../errors.js";
import { xxh3 } from "../hash/xxhash.js";
import type { Workload } from "../guest/guest.js";
import { init } from "../wasm/module.js";
import { ARRIVALS, FINISHING, HELD, RESUMED_AT, STATE, type DemandThreadCommand, type DemandThreadData, type DemandThreadMessage } from "./demand.js";
import { PageState } from "./destination.js";

const port = parentPort!;
const data = workerData as DemandThreadData;
const post = (m: DemandThreadMessage): void => port.postMessage(m);

await init();
let workload: Workload;
try {
  workload = await ((await import(data.spec.module))[data.spec.name] as (...args: unknown[]) => Promise<Workload>)(...data.spec.args);
} catch (error) {
  post({ type: "failed", message: `cannot open the program: ${(error as Error).message}`, verification: false });
  // The main thread ends this thread once it reads the failure. Throwing here would race that message with an
  // "error" event, which may arrive first and lose the reason's wording; so wait to be terminated.
  setInterval(() => {}, 2 ** 30);
  await new Promise<never>(() => {});
  throw error; // not reached; ends this path for the compiler
}
const { guest } = workload;
const ps = guest.pageSize;
const shared = new Uint8Array(data.memory);
const received = new Uint8Array(data.received);
const pageState = new Uint8Array(data.pageState);
const control = new Int32Array(data.control, 0, 2);
const resumedAt = new Float64Array(data.control, RESUMED_AT, 1);
const seed = BigInt(data.seed);
if (shared.byteLength === guest.memory.byteLength) guest.memory.readRange(0, guest.pageCount, shared, 0);
// Open only once the memory is in place: the destination answers that it is ready then, and the copy
// (40 ms for node-gc's 58 MiB) ran on into the migration, beside a post-copy's switch-over record.
post({ type: "opened", pageCount: guest.pageCount, pageSize: ps });

// Pages a step wrote, copied into the shared memory after it.
const touched = new Uint8Array(guest.pageCount);
const written: number[] = [];
const note = (p: number): void => {
  if (touched[p]) return;
  touched[p] = 1;
  written.push(p);
};
const publish = (): void => {
  for (const p of written) {
    shared.set(guest.page(p), p * ps);
    touched[p] = 0;
  }
  written.length = 0;
};

// After the switch-over: pages checked (and digested) before their first change, and time blocked.
const changed = new Uint8Array(guest.pageCount);
const digestPages: number[] = [];
const digests: bigint[] = [];
let faults = 0;
let stall = 0;

/** Blocks until page `p` is here. */
function fault(p: number): void {
  faults++;
  post({ type: "fault", page: p });
  const since = performance.now();
  for (;;) {
    const seen = Atomics.load(control, ARRIVALS);
    if (Atomics.load(pageState, p) & PageState.PRESENT) break;
    Atomics.wait(control, ARRIVALS, seen);
  }
  stall += performance.now() - since;
}

function demandHook(p: number, kind: "read" | "write" | "overwrite"): void {
  if (!(Atomics.load(pageState, p) & PageState.PRESENT)) fault(p);
  if (kind === "read") return;
  note(p);
  if (changed[p]) return;
  changed[p] = 1;
  // Before the program first changes a page here, the page must be the source's at the stop.
  const mine = guest.page(p);
  if (!Buffer.from(mine.buffer, mine.byteOffset, ps).equals(Buffer.from(received.buffer, received.byteOffset + p * ps, ps))) {
    throw new VerificationError(`page ${p} at the destination differs from the source's at switch-over`, [p]);
  }
  digestPages.push(p);
  digests.push(xxh3(mine, seed));
}

function failed(error: unknown): void {
  const e = error as Error;
  post({ type: "failed", message: e.message, verification: e instanceof VerificationError, ...(e instanceof VerificationError && e.pages[0] !== undefined ? { page: e.pages[0] } : {}) });
}

async function replay(to: number, hold: boolean): Promise<void> {
  guest.hook = (p, kind) => {
    if (kind !== "read") note(p);
  };
  if (to > workload.workTime) await workload.advance(workload.now + (to - workload.workTime));
  publish();
  if (!hold) return post({ type: "replayed", workTime: workload.workTime });
  Atomics.store(control, STATE, HELD);
  Atomics.notify(control, STATE);
  // At the stop: the program runs the moment the main thread lets it (resume()).
  while (Atomics.load(control, STATE) === HELD) Atomics.wait(control, STATE, HELD);
  // Running again from here: the downtime ends here, not when the main thread said so (a thread waiting for a core runs later).
  resumedAt[0] = performance.timeOrigin + performance.now();
  await run();
}

async function run(): Promise<void> {
  guest.hook = demandHook;
  const started = performance.now();
  const base = workload.now;
  while (Atomics.load(control, STATE) !== FINISHING) {
    await workload.advance(Math.max(workload.now, base + (performance.now() - started - stall) / 1000));
    publish();
    // About a millisecond between steps, as a program between bursts; finishing wakes it at once.
    Atomics.wait(control, STATE, Atomics.load(control, STATE), 1);
  }
  publish();
  post({ type: "finished", faults, stall: stall / 1000, pages: Uint32Array.from(digestPages), digests: BigUint64Array.from(digests) });
}

let work = Promise.resolve();
port.on("message", (command: DemandThreadCommand) => {
  work = work.then(() => replay(command.to, command.hold)).catch(failed);
});

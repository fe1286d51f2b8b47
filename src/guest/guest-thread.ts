// The worker's end of a ThreadedWorkload (./threaded.ts): opens the
// workload, then runs it on the real clock, publishing each step's writes.

import { parentPort, workerData } from "node:worker_threads";
import { init } from "../wasm/module.js";
import type { Workload } from "./guest.js";
import { GATE, HELD, NOW, PAUSED_MS, RUN, STOP, THROTTLE, WORK, endStep, enterStep, type ThreadShared, type WorkloadSpec } from "./threaded.js";

const port = parentPort!;
const spec = workerData as WorkloadSpec;
await init();
const open = (await import(spec.module))[spec.name] as (...args: unknown[]) => Promise<Workload>;
const workload = await open(...spec.args);
const { guest } = workload;
const shared = await new Promise<ThreadShared>((resolve) => {
  port.once("message", resolve);
  port.postMessage({ name: workload.name, pageCount: guest.pageCount, pageSize: guest.pageSize });
});
const live = new Uint8Array(shared.memory);
const dirty = new Int32Array(shared.dirty);
const control = new Int32Array(shared.control);
const clock = new Float64Array(shared.clock);
guest.memory.readRange(0, guest.pageCount, live, 0);

// Pages the current step writes (marked before each write takes effect; copied once it has). Each
// one's dirty bit is set as it is first written too, as a hypervisor's log has it: a step can take
// tens of milliseconds (a trace's burst of a thousand pages on a busy core), and a sync meanwhile saw
// none of it, so the stop rule passed and the stop then waited for the whole burst. The bit set again
// after the copy sends the page again if the engine took it before.
const touched = new Uint8Array(guest.pageCount);
const written: number[] = [];
guest.hook = (page, kind) => {
  if (kind === "read" || touched[page]) return;
  touched[page] = 1;
  written.push(page);
  Atomics.or(dirty, page >> 5, 1 << (page & 31));
};

const started = performance.now();
port.postMessage({ startedAt: performance.timeOrigin + started });
// A program that never writes (writeRate 0: the idle model) has no step worth a wake-up each
// millisecond (a thousand a second, this thread's CPU counted in the sender's): it steps every
// IDLE_STEP_MS, which only moves its time on; the time the engine reads (workTime, at a stop too) is
// up to that old. (A pause needs no wake-up: stop() holds the gate between steps.)
const IDLE_STEP_MS = 20;
const between = workload.writeRate === 0 ? IDLE_STEP_MS : 1;
for (;;) {
  if (Atomics.load(control, 0) === STOP) break;
  // Paused (the engine, or this thread at the end of the last step, holds the gate): until resumed or closed.
  if (!enterStep(control)) {
    Atomics.wait(control, GATE, HELD);
    continue;
  }
  workload.throttle = clock[THROTTLE]!;
  await workload.advance(Math.max(workload.now, (performance.now() - started - clock[PAUSED_MS]!) / 1000));
  const ps = guest.pageSize;
  for (const p of written) {
    live.set(guest.page(p), p * ps);
    Atomics.or(dirty, p >> 5, 1 << (p & 31));
    touched[p] = 0;
  }
  written.length = 0;
  clock[NOW] = workload.now;
  clock[WORK] = workload.workTime;
  endStep(control, clock);
  // About a millisecond between steps, as a program between bursts of writes (a pause needs no wake-up).
  Atomics.wait(control, 0, RUN, between);
}
await workload.close();

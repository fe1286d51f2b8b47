// Runs the program (program.mjs) until told to pause or stop.
import { workerData } from "node:worker_threads";

const { module, memory, control, stepsPerMs } = workerData;
const { run } = new WebAssembly.Instance(module, { env: { memory } }).exports;
for (;;) {
  const state = Atomics.load(control, 0);
  if (state === 2) break;
  if (state === 1) {
    Atomics.store(control, 1, 1);
    Atomics.notify(control, 1);
    Atomics.wait(control, 0, 1);
    continue;
  }
  run(stepsPerMs);
  // About a millisecond between bursts: the program writes at a steady rate.
  Atomics.wait(control, 0, 0, 1);
}

// The program whose memory migrates: a WebAssembly module that keeps
// incrementing counters in its (shared) memory, run in a worker thread.
// Its whole state lives in that memory: memory[0] is the number of steps
// done, memory[4] its random generator's state, memory[8] the mask that
// picks a counter, and the counters start at byte 4096.
import { Worker } from "node:worker_threads";
import binaryen from "binaryen";

const WAT = `(module
 (import "env" "memory" (memory 1 65536 shared))
 (func (export "run") (param $n i32)
  (local $x i32) (local $at i32)
  (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (local.get $n)))
  (local.set $x (i32.load (i32.const 4)))
  (block $done
   (loop $step
    (br_if $done (i32.eqz (local.get $n)))
    (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1664525)) (i32.const 1013904223)))
    (local.set $at (i32.add (i32.const 4096) (i32.and (local.get $x) (i32.load (i32.const 8)))))
    (i32.store (local.get $at) (i32.add (i32.load (local.get $at)) (i32.const 1)))
    (local.set $n (i32.sub (local.get $n) (i32.const 1)))
    (br $step)))
  (i32.store (i32.const 4) (local.get $x))))`;

/** The program, compiled. */
export function compile() {
  const module = binaryen.parseText(WAT);
  module.setFeatures(binaryen.Features.All);
  const bytes = module.emitBinary();
  module.dispose();
  return new WebAssembly.Module(bytes);
}

/** A shared memory of `bytes`, its counters filled, the program's state set to write within `hotBytes` of them. */
export function newMemory(bytes, hotBytes) {
  const memory = new WebAssembly.Memory({ initial: bytes / 65536, maximum: 65536, shared: true });
  const words = new Uint32Array(memory.buffer);
  let x = 12345;
  for (let i = 1024; i < words.length; i++) words[i] = x = (Math.imul(x, 1103515245) + 12345) >>> 0;
  words[0] = 0;
  words[1] = 1;
  words[2] = (hotBytes - 1) & ~3;
  return memory;
}

/** Steps the program has made (its own counter, in its memory). */
export function steps(memory) {
  return new Uint32Array(memory.buffer)[0];
}

/** Resolves once the program has made `target` steps. */
export async function reach(memory, target) {
  while (steps(memory) < target) await new Promise((resolve) => setTimeout(resolve, 5));
}

/**
 * Runs the program in a worker thread over `memory`, about `stepsPerMs`
 * steps a millisecond, until stop(). pause() resolves once the program has
 * stopped writing; resume() lets it go on.
 */
export function start(module, memory, stepsPerMs = 2000) {
  // control[0]: 0 run, 1 pause, 2 stop; control[1]: 1 while the worker is paused.
  const control = new Int32Array(new SharedArrayBuffer(8));
  const worker = new Worker(new URL("./worker.mjs", import.meta.url), { workerData: { module, memory, control, stepsPerMs } });
  const exited = new Promise((resolve, reject) => {
    worker.once("error", reject);
    worker.once("exit", resolve);
  });
  const tell = (state) => {
    Atomics.store(control, 0, state);
    Atomics.notify(control, 0);
  };
  return {
    async pause() {
      tell(1);
      while (Atomics.load(control, 1) !== 1) await Atomics.waitAsync(control, 1, 0, 100).value;
    },
    resume() {
      Atomics.store(control, 1, 0);
      tell(0);
    },
    async stop() {
      tell(2);
      await exited;
    },
  };
}

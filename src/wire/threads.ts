// Channel threads for an engine (QEMU's multifd in one process): each thread
// encodes a share of a batch while the migration's thread encodes its own,
// and the migration's thread takes the frames back as soon as they are
// done. A task goes over a MessagePort and a flag in shared memory wakes the
// thread; the migration's thread waits on the flag (Atomics.wait) and reads
// the result from the port directly, so no event-loop turn, task queue or
// promise lies between a batch and its frames (measured: a thread pool's
// hand-off cost the migration's thread about 110 µs a task, this about 20).
//
//   const threads = ChannelThreads.shared(1);   // kept for the process
//   threads.post(0, task);                      // starts thread 0
//   ... encode this thread's share ...
//   const result = threads.take(0);             // waits for its frame
//
// Threads are started once per count and kept, idle, for every later
// migration (they do not hold the process open).

import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from "node:worker_threads";
import { PagemillError } from "../errors.js";
import type { EncodeResult, EncodeTask } from "./worker.js";

/** The flag's states: the thread sleeps until POSTED, raises DONE when the result is on the port. */
const FLAG_IDLE = 0;
export const FLAG_POSTED = 1;
export const FLAG_DONE = 2;

/**
 * Waits until word 0 of `flag` is `wanted`, asleep until the other side
 * changes it (measured: spinning first only helped on an idle machine, and
 * on two busy cores a spinning thread kept the one it waited for off the
 * CPU); gives up after `timeoutMs` (false).
 */
export function awaitFlag(flag: Int32Array, wanted: number, timeoutMs = Infinity): boolean {
  const deadline = performance.now() + timeoutMs;
  for (let state = Atomics.load(flag, 0); state !== wanted; state = Atomics.load(flag, 0)) {
    const left = deadline - performance.now();
    if (left <= 0) return false;
    Atomics.wait(flag, 0, state, Math.min(1000, left));
  }
  return true;
}

/** A task's failure as a thread reports it. */
export interface ThreadError {
  readonly name: string;
  readonly message: string;
}

/** How long a frame may take before the thread is taken for lost. */
const ANSWER_TIMEOUT_MS = 60_000;

/**
 * A thread's compiled file in src/wire: built, it sits beside this module;
 * run from TypeScript (vitest, tsx), threads still need JavaScript, so they
 * load the built copy from dist/ (`npm run build:ts` first; `npm test` does it).
 */
export function compiledBeside(file: string): URL {
  const here = import.meta.url;
  return here.endsWith(".ts") ? new URL(`../../dist/wire/${file}`, here) : new URL(`./${file}`, here);
}

class ChannelThread {
  private readonly flag = new Int32Array(new SharedArrayBuffer(4));
  private readonly port: MessagePort;
  private readonly worker: Worker;
  private posted = false;
  /** Why the thread can take no more tasks (it stopped, or gave no frame in time). */
  failure: PagemillError | undefined;

  constructor(readonly index: number) {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(compiledBeside("thread.js"), { workerData: { flag: this.flag, port: port2 }, transferList: [port2] });
    // Kept for the next post rather than thrown from the event loop (an 'error' with no listener ends the process).
    this.worker.on("error", (error) => (this.failure ??= new PagemillError(`channel thread ${this.index} failed: ${error.message}`)));
    this.worker.on("exit", (code) => (this.failure ??= new PagemillError(`channel thread ${this.index} stopped (exit code ${code})`)));
    this.worker.unref();
    this.port.unref();
  }

  post(task: EncodeTask): void {
    if (this.failure) throw this.failure;
    if (this.posted) throw new PagemillError(`channel thread ${this.index} still has a task`);
    this.port.postMessage(task);
    this.posted = true;
    Atomics.store(this.flag, 0, FLAG_POSTED);
    Atomics.notify(this.flag, 0);
  }

  take(): EncodeResult {
    if (!this.posted) throw new PagemillError(`channel thread ${this.index} has no task`);
    if (!awaitFlag(this.flag, FLAG_DONE, ANSWER_TIMEOUT_MS)) {
      // Its task may still be under way: the thread takes no other (the next post says why).
      this.posted = false;
      this.failure = new PagemillError(`channel thread ${this.index} gave no frame in ${ANSWER_TIMEOUT_MS / 1000} s`);
      throw this.failure;
    }
    // The thread leaves its answer on the port before raising the flag.
    const answer = receiveMessageOnPort(this.port)?.message as { result?: EncodeResult; error?: ThreadError } | undefined;
    Atomics.store(this.flag, 0, FLAG_IDLE);
    this.posted = false;
    if (answer?.result) return answer.result;
    const error = answer?.error;
    throw new PagemillError(`channel thread ${this.index}: ${error ? `${error.name}: ${error.message}` : "no answer on its port"}`);
  }
}

/** The process's channel threads, by count. */
const sharedThreads = new Map<number, ChannelThreads>();

export class ChannelThreads {
  private readonly threads: ChannelThread[];

  private constructor(count: number) {
    this.threads = Array.from({ length: count }, (_, k) => new ChannelThread(k));
  }

  /** `count` threads of the process, started on first use and kept (a set with a thread that failed is replaced). */
  static shared(count: number): ChannelThreads {
    let threads = sharedThreads.get(count);
    if (!threads || threads.threads.some((thread) => thread.failure)) sharedThreads.set(count, (threads = new ChannelThreads(count)));
    return threads;
  }

  /** Starts thread `k` on `task` (copied to it; its pages are read where they lie). */
  post(k: number, task: EncodeTask): void {
    this.threads[k]!.post(task);
  }

  /** Thread `k`'s frame, waiting for it: a task's error is thrown here. */
  take(k: number): EncodeResult {
    return this.threads[k]!.take();
  }
}

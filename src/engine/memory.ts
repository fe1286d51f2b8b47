// Live migration of any memory a program owns, between two processes: the
// program keeps running (in another thread, or between this thread's
// awaits) while its pages are copied; its dirty pages are found by hashing
// (src/guest/hashed.ts), so it needs no write log. Pre-copy: rounds of
// changed pages until what is left fits the downtime limit, then the
// program pauses (the caller's hook), the rest goes, and the destination
// checks the whole memory against the source's SHA-256.

import { HashTrackedWorkload, programBytes, type HashTrackingOptions, type ProgramMemory } from "../guest/hashed.js";
import { PagemillError } from "../errors.js";
import { init } from "../wasm/module.js";
import type { Channel } from "../net/channel.js";
import type { MigrationStats } from "./metrics.js";
import type { EngineOptions } from "./options.js";
import { receiveMigration, type DestinationReport } from "./remote.js";
import { sendMigration } from "./remote.js";

export interface SendMemoryOptions extends HashTrackingOptions, Pick<EngineOptions, "codec" | "downtimeLimit" | "maxIterations" | "batchPages"> {
  /** Device or program state sent with the switch-over, bytes (default 0: the memory is everything). */
  readonly stateBytes?: number;
}

export interface MemoryStats extends MigrationStats {
  /** whole-memory scans for changed pages, and the pages they found changed after the first */
  readonly scans: number;
  readonly changedPages: number;
}

/**
 * Migrates `memory` (which a program may keep writing) to receiveMemory() at
 * the other end of `channel`. `options.pause` must stop the program's
 * writes (it is called once, at the switch-over); on a failure
 * `options.resume` lets it go on here. Resolves once the destination has
 * verified every page. (Initialises pagemill's kernels when that was not done.)
 */
export async function sendMemory(memory: ProgramMemory, channel: Channel, options: SendMemoryOptions = {}): Promise<MemoryStats> {
  await init();
  const workload = new HashTrackedWorkload(memory, options);
  try {
    const stats = await sendMigration("precopy", workload, channel, {
      codec: options.codec,
      downtimeLimit: options.downtimeLimit,
      maxIterations: options.maxIterations,
      batchPages: options.batchPages,
      stateBytes: options.stateBytes ?? 0,
    });
    return { ...stats, scans: workload.scans, changedPages: workload.changedPages };
  } catch (error) {
    await workload.resume();
    throw error;
  } finally {
    await workload.close();
  }
}

export interface ReceiveMemoryOptions {
  /** Where the memory goes: a WebAssembly.Memory grows to fit; other memory must be large enough. Default: a new Uint8Array. */
  readonly into?: ProgramMemory;
  /** Largest memory accepted, bytes (default 4 GiB). */
  readonly maxBytes?: number;
}

export interface ReceivedMemory {
  /** the migrated bytes, verified (a view of `into` when one was given) */
  readonly memory: Uint8Array;
  readonly report: DestinationReport;
}

/** The destination end of sendMemory(): receives, verifies, and copies the memory into `options.into`. */
export async function receiveMemory(channel: Channel, options: ReceiveMemoryOptions = {}): Promise<ReceivedMemory> {
  await init();
  const received = await receiveMigration(channel, { maxGuestBytes: options.maxBytes });
  const { pages, report } = received;
  const { into } = options;
  if (into === undefined) return { memory: received.memory, report };
  if (into instanceof WebAssembly.Memory && into.buffer.byteLength < pages.byteLength) {
    into.grow(Math.ceil((pages.byteLength - into.buffer.byteLength) / 65536));
  }
  const target = programBytes(into);
  if (target.byteLength < pages.byteLength) throw new PagemillError(`the memory received has ${pages.byteLength} bytes; the memory to put it in has ${target.byteLength}`);
  // Straight from the received pages, with no flat copy between.
  pages.readRange(0, pages.pageCount, target, 0);
  return { memory: target.subarray(0, pages.byteLength), report };
}

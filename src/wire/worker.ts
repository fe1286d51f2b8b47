// A parallel channel's thread (run by piscina from src/wire/channels.ts):
// its own WebAssembly instance, codecs and batch, kept from task to task.
// Pages arrive in a transferred buffer (or are read where they lie in shared
// memory); the frame goes back transferred. The engine's channel threads
// (thread.ts) run the same encodeTask.

import { Piscina } from "piscina";
import { CostModel } from "../codecs/cost.js";
import { readLocated, type PageLocations } from "../guest/pages.js";
import { PageBatch } from "../wasm/arena.js";
import { init, wasm } from "../wasm/module.js";
import { buildPipeline, encodeFrameContent, frameWork, newWireStats, type EncodedFrame, type PipelineCodecs, type WireStats } from "./pipeline.js";

// No top-level await: piscina first tries require() on the file, and Node 20
// cannot require a module graph that awaits at top level (it then trips an
// internal assertion when import() retries the half-loaded module).
export const ready = init();

export interface EncodeTask {
  /** indices.length whole pages, back to back (moved here); or else */
  readonly pages?: Uint8Array;
  /** where they lie in shared memory, to read them there */
  readonly located?: PageLocations;
  readonly indices: Uint32Array;
  readonly pageSize: number;
  /** "raw" or a compress codec of the registry */
  readonly codec: string;
  /** bytes/s of the link the frames will cross (0: not known), for an adaptive codec */
  readonly bandwidth: number;
  readonly sequence: number;
}

export interface EncodeResult extends EncodedFrame {
  /** this frame's counters, to be added to the pool's */
  readonly stats: WireStats;
}

let batch: PageBatch | undefined;
let costs: CostModel | undefined;
const pipelines = new Map<string, PipelineCodecs>();
/** Per pipeline: its adaptive codec's choices after the last task. */
const chosen = new Map<string, Record<string, number>>();

/** Hands the result back with the frame's buffer transferred, not copied. */
class Transferred {
  constructor(private readonly result: EncodeResult) {}
  get [Piscina.transferableSymbol](): ArrayBuffer[] {
    return [this.result.frame.buffer as ArrayBuffer];
  }
  get [Piscina.valueSymbol](): EncodeResult {
    return this.result;
  }
}

/** Encodes one task's frame on this thread (after `ready`): the work both the pool's tasks and a channel thread's loop do. */
export function encodeTask(task: EncodeTask): EncodeResult {
  const count = task.indices.length;
  if (!batch || batch.capacity < count || batch.pageSize !== task.pageSize) {
    batch?.dispose();
    batch = new PageBatch(Math.max(count, 1), task.pageSize);
  }
  let codecs = pipelines.get(task.codec);
  if (!codecs) {
    codecs = buildPipeline(task.codec);
    pipelines.set(task.codec, codecs);
  }
  codecs.compress?.setLink?.({ bandwidth: task.bandwidth, costs: (costs ??= new CostModel()) });
  const stats = newWireStats();
  if (task.pages) batch.set(task.pages);
  else {
    readLocated(task.located!, task.pageSize, wasm().heap.bytes(), batch.ptr);
    batch.count = count;
  }
  const { frame, encodings, lengths, zeroPages } = encodeFrameContent(batch, task.indices, codecs, stats, task.sequence);
  const choices = codecs.compress?.stats.choices;
  if (choices) {
    // An adaptive codec counts its choices itself, over every task: this frame's are the difference.
    const before = chosen.get(task.codec) ?? {};
    stats.choices = Object.fromEntries(Object.entries(choices).map(([codec, pages]) => [codec, pages - (before[codec] ?? 0)]));
    chosen.set(task.codec, { ...choices });
  }
  return { frame, stats, ...frameWork(codecs, zeroPages), encodings: encodings.slice(), lengths: lengths.slice() };
}

export default async function encode(task: EncodeTask): Promise<unknown> {
  await ready;
  return Piscina.move(new Transferred(encodeTask(task)) as never);
}

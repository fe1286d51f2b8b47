// A parallel channel's thread (run by piscina from src/wire/channels.ts):
// its own WebAssembly instance, codecs and batch, kept from task to task.
// Pages arrive in a transferred buffer; the frame goes back the same way.
// A verify task decodes a frame and compares it with the pages where they
// lie now (a receive thread's work, for a destination in this process: see
// SentFrames in src/engine/mirror.ts).

import { Piscina } from "piscina";
import { CostModel } from "../codecs/cost.js";
import { readLocated, type PageLocations } from "../guest/pages.js";
import { PageBatch } from "../wasm/arena.js";
import { init, wasm } from "../wasm/module.js";
import { FrameDecoder } from "./decoder.js";
import { buildPipeline, encodeFrameContent, frameWork, newWireStats, type EncodedFrame, type PipelineCodecs, type WireStats } from "./pipeline.js";

// No top-level await: piscina first tries require() on the file, and Node 20
// cannot require a module graph that awaits at top level (it then trips an
// internal assertion when import() retries the half-loaded module).
const ready = init();

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

/** Does `frame` decode to exactly the pages `located` holds now? */
export interface VerifyTask {
  readonly frame: Uint8Array;
  readonly located: PageLocations;
  readonly pageSize: number;
}

export interface EncodeResult extends EncodedFrame {
  /** this frame's counters, to be added to the pool's */
  readonly stats: WireStats;
}

let batch: PageBatch | undefined;
let decoded: PageBatch | undefined;
let decoder: FrameDecoder | undefined;
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

export default async function run(task: EncodeTask | VerifyTask): Promise<unknown> {
  await ready;
  return "frame" in task ? verify(task) : encode(task);
}

/** This thread's batch, for `count` pages of `pageSize` bytes. */
function pagesBatch(count: number, pageSize: number): PageBatch {
  if (!batch || batch.capacity < count || batch.pageSize !== pageSize) {
    batch?.dispose();
    batch = new PageBatch(Math.max(count, 1), pageSize);
  }
  return batch;
}

function encode(task: EncodeTask): unknown {
  const count = task.indices.length;
  const batch = pagesBatch(count, task.pageSize);
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
  const { frame, encodings, lengths } = encodeFrameContent(batch, task.indices, codecs, stats, task.sequence);
  const choices = codecs.compress?.stats.choices;
  if (choices) {
    // An adaptive codec counts its choices itself, over every task: this frame's are the difference.
    const before = chosen.get(task.codec) ?? {};
    stats.choices = Object.fromEntries(Object.entries(choices).map(([codec, pages]) => [codec, pages - (before[codec] ?? 0)]));
    chosen.set(task.codec, { ...choices });
  }
  return Piscina.move(new Transferred({ frame, stats, ...frameWork(codecs, encodings), encodings: encodings.slice(), lengths: lengths.slice() }) as never);
}

function verify(task: VerifyTask): boolean {
  const count = task.located.buffer.length;
  const pages = pagesBatch(count, task.pageSize);
  readLocated(task.located, task.pageSize, wasm().heap.bytes(), pages.ptr);
  pages.count = count;
  if (!decoded || decoded.capacity < pages.count || decoded.pageSize !== pages.pageSize) {
    decoded?.dispose();
    decoded = new PageBatch(pages.capacity, pages.pageSize);
  }
  (decoder ??= new FrameDecoder()).decode(task.frame, decoded);
  const length = pages.count * pages.pageSize;
  const heap = Buffer.from(wasm().heap.bytes().buffer);
  return heap.compare(heap, pages.ptr, pages.ptr + length, decoded.ptr, decoded.ptr + length) === 0;
}

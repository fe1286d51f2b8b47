// The encoding pipeline: the codecs a spec names ("raw", "lz4",
// "dedup+xbzrle+mecom"), at most one per stage, and the run of a batch of
// pages through them into one PAGES frame (the frame's layout is frame.ts's;
// decoding is decoder.ts's). Every caller that turns a spec into codecs — the
// engine's source, `pagemill pack`, the worker channels, `pagemill bench` —
// builds it here, and the CLI checks a spec here without making any codec.
//
//   encodeFrame(batch, pageIndices, codecs, stats, sequence = stats.frames): Uint8Array
//       One PAGES frame for the batch's loaded pages; pageIndices[k] is the
//       guest page of slot k (distinct). Per page, in this order: zero (one
//       zeroScan over the batch) → codecs.dedup (sees every page) →
//       codecs.delta (XBZRLE: pages it has cached) → codecs.compress (lz4,
//       wkdm, mecom) → raw. Each stage is one encodeBatch call over the pages
//       still unsent (docs/wire-format.md, "The encoder's pipeline"); with
//       no stage, one kernel call lays the frame out (writeRawPagesFrame). The
//       caller's batch is read, never changed. Codec instances carry state
//       (XBZRLE cache, dedup index): one set per stream. Returns a new buffer
//       the caller owns. stats.frames counts frames: a single stream may
//       leave `sequence` to it.
//   new FrameEncoder(codecs) → .pages(batch, indices) / .control(message)
//       The same with the stream's sequence numbers and stats kept.
//   new Pipeline(spec) → .encode(batch, pages, link): EncodedFrame
//       A stream's stages built from a spec, with what each frame held and
//       what its encoding cost; .report() at the end.

import { addCodecStats, countEncoded, Encoding, newCodecStats, type CodecStats, type EncodedBatch, type EncodedInPlace, type LinkConditions, type PageCodec, type XbzrleStats } from "../codecs/codec.js";
import type { XbzrleCacheOptions } from "../codecs/xbzrle.js";
import { codecEntry, codecNames, type CodecEntry } from "../codecs/registry.js";
import { scanZeroPages } from "../codecs/zero.js";
import { checkArrayLike, checkInstance, checkInteger, checkObject } from "../errors.js";
import { PageBatch, Scratch } from "../wasm/arena.js";
import { wasm } from "../wasm/module.js";
import { encodeControl, maxFramePages, writePagesFrame, writeRawPagesFrame, type ControlMessage, type FrameAllocator, type FramePart } from "./frame.js";

/** The codecs of the pipeline's stages; any may be absent (then pages go on to the next). */
export interface PipelineCodecs {
  readonly dedup?: PageCodec;
  readonly delta?: PageCodec;
  readonly compress?: PageCodec;
}

/** The pipeline's counters: CodecStats over every page sent, plus framing. */
export interface WireStats extends CodecStats {
  /** frames written (PAGES and control) */
  frames: number;
  /** bytes of those frames, headers and checks included */
  frameBytes: number;
  /** control frames among them */
  controlFrames: number;
}

export function newWireStats(): WireStats {
  return { ...newCodecStats(), frames: 0, frameBytes: 0, controlFrames: 0 };
}

/** Adds the counters of `from` to `into`. */
export function addWireStats(into: WireStats, from: WireStats): void {
  addCodecStats(into, from);
  into.frames += from.frames;
  into.frameBytes += from.frameBytes;
  into.controlFrames += from.controlFrames;
}

// ---------------------------------------------------------------- encoding

/**
 * Staging memory for encoding: pages that moved on past a stage, and the
 * frame being built. Encoding a frame is synchronous and the frame leaves
 * as a copy, so one per thread serves every stream (see `scratch()`): no
 * stream holds linear memory between frames.
 */
class EncoderScratch {
  private stage: PageBatch | undefined;
  readonly frame = new Scratch();

  stageBatch(capacity: number, pageSize: number): PageBatch {
    if (!this.stage || this.stage.capacity < capacity || this.stage.pageSize !== pageSize) {
      this.stage?.dispose();
      this.stage = new PageBatch(capacity, pageSize);
    }
    return this.stage;
  }
}

function checkIndices(pageIndices: ArrayLike<number>, count: number): Uint32Array {
  checkArrayLike("pageIndices", pageIndices);
  if (pageIndices.length !== count) {
    throw new RangeError(`pageIndices.length ${pageIndices.length} != batch.count ${count}`);
  }
  const out = new Uint32Array(count);
  let ascending = true;
  for (let k = 0; k < count; k++) {
    const p = pageIndices[k]!;
    if (!Number.isInteger(p) || p < 0 || p > 0xffffffff) throw new RangeError(`pageIndices[${k}] = ${p} is not a page index (0..2^32-1)`);
    if (k > 0 && p <= out[k - 1]!) ascending = false;
    out[k] = p;
  }
  // Engines send pages in ascending order, which proves them distinct; otherwise sort a copy.
  if (!ascending) {
    const sorted = out.slice().sort();
    for (let k = 1; k < count; k++) {
      if (sorted[k] === sorted[k - 1]) throw new RangeError(`pageIndices: page ${sorted[k]} appears twice in one batch`);
    }
  }
  return out;
}

/**
 * One stage: one encode call over the holder's loaded pages, its answer
 * checked. A codec that can leaves its payload in WebAssembly memory: the
 * frame is written before any stage's codec runs again.
 */
function runStage(codec: PageCodec, holder: PageBatch, stageIndices: Uint32Array, count: number, ps: number): EncodedBatch | EncodedInPlace {
  const encoded = codec.encodeInPlace?.(holder, stageIndices) ?? codec.encodeBatch(holder, stageIndices);
  if (encoded.count !== count || encoded.pageSize !== ps) {
    throw new RangeError(`codec ${codec.name} returned ${encoded.count} pages of ${encoded.pageSize} B for ${count} of ${ps} B`);
  }
  for (let i = 0; i < count; i++) {
    if (encoded.encodings[i] !== Encoding.RAW && encoded.lengths[i]! > ps) {
      throw new RangeError(`codec ${codec.name} produced ${encoded.lengths[i]} B for a ${ps} B page`);
    }
  }
  return encoded;
}

/** Slot k's FramePart: page i of a stage's answer. */
function stagePart(index: number, encoded: EncodedBatch | EncodedInPlace, i: number): FramePart {
  const encoding = encoded.encodings[i]!;
  const length = encoded.lengths[i]!;
  if ("ptr" in encoded) return { index, encoding, length, data: undefined, from: encoded.ptr + encoded.offsets[i]! };
  return { index, encoding, length, data: encoded.data, from: encoded.offsets[i]! };
}

/** The slots 0..n-1 that are not in `remaining` (ascending). */
function slotsNotIn(remaining: number[], n: number): number[] {
  const out: number[] = [];
  for (let k = 0, r = 0; k < n; k++) {
    if (remaining[r] === k) r++;
    else out.push(k);
  }
  return out;
}

/** One frame's pages as encoded: the per-frame result every caller reads (nobody diffs counters). */
export interface FrameContent {
  readonly frame: Uint8Array;
  /** wire id of the frame's k-th page */
  readonly encodings: Uint8Array;
  /** payload bytes of the frame's k-th page */
  readonly lengths: Uint32Array;
  /** pages that went raw although a codec stage tried them */
  readonly notFit: number;
  /** pages that went as zero flags */
  readonly zeroPages: number;
}

function checkCodecs(codecs: PipelineCodecs): void {
  checkObject("codecs", codecs, "PipelineCodecs");
  for (const stage of ["dedup", "delta", "compress"] as const) {
    if (codecs[stage] !== undefined && typeof codecs[stage]?.encodeBatch !== "function") throw new TypeError(`codecs.${stage} must be a PageCodec`);
  }
}

/** Runs the batch's pages through the stages (see the module comment) and writes the frame. */
function encodePages(batch: PageBatch, pageIndices: ArrayLike<number>, codecs: PipelineCodecs, scratch: EncoderScratch, sequence: number, flags = 0, allocate?: FrameAllocator): FrameContent {
  checkInstance("batch", batch, PageBatch);
  checkCodecs(codecs);
  const n = batch.count;
  const ps = batch.pageSize;
  checkInteger("batch.count", n, 0, maxFramePages(ps));
  checkInteger("sequence", sequence, 0, 0xffffffff);
  const indices = checkIndices(pageIndices, n);
  if (!codecs.dedup && !codecs.delta && !codecs.compress) {
    // No stage: every page goes zero or raw, laid out by one kernel call.
    return { ...writeRawPagesFrame(scratch.frame, sequence, ps, batch.ptr, indices, flags, allocate), notFit: 0 };
  }
  const { heap } = wasm();

  // parts[k]: how slot k goes out. Frames list pages in slot order, so that
  // a dedup reference resolves against the pages before it (see the format).
  const parts: FramePart[] = new Array(n);
  const zero = n > 0 ? scanZeroPages(batch).flags : new Uint8Array(0);
  // Slots (of the caller's batch) still unsent, ascending.
  let remaining: number[] = [];
  if (codecs.dedup && n > 0) {
    // Dedup sees every page, zero ones too: its index must learn what each
    // location now holds, however the page travels.
    const encoded = runStage(codecs.dedup, batch, indices, n, ps);
    for (let k = 0; k < n; k++) {
      const encoding = encoded.encodings[k]!;
      if (zero[k]) parts[k] = { index: indices[k]!, encoding: Encoding.ZERO, length: 0, data: undefined, from: 0 };
      else if (encoding === Encoding.RAW) remaining.push(k);
      else parts[k] = stagePart(indices[k]!, encoded, k);
    }
  } else {
    for (let k = 0; k < n; k++) {
      if (zero[k]) parts[k] = { index: indices[k]!, encoding: Encoding.ZERO, length: 0, data: undefined, from: 0 };
      else remaining.push(k);
    }
  }
  let holder: PageBatch = batch;
  let packed = false; // true once `remaining[i]` sits at slot i of the stage batch
  const tried = Boolean(codecs.dedup || codecs.delta || codecs.compress);

  for (const codec of [codecs.delta, codecs.compress]) {
    // Pages an earlier stage sent never reach this one, yet the destination
    // now holds them: a codec that remembers what was sent (a delta codec's
    // base pages) must not keep an older version.
    codec?.sentElsewhere?.(batch, indices, slotsNotIn(remaining, n));
    if (!codec || remaining.length === 0) continue;
    if (remaining.length !== n || packed) {
      const stage = scratch.stageBatch(remaining.length, ps);
      const mem = heap.bytes();
      if (!packed) {
        // Copy runs of consecutive slots from the caller's batch.
        for (let i = 0; i < remaining.length; ) {
          let run = 1;
          while (i + run < remaining.length && remaining[i + run] === remaining[i]! + run) run++;
          const src = batch.ptr + remaining[i]! * ps;
          mem.copyWithin(stage.ptr + i * ps, src, src + run * ps);
          i += run;
        }
      }
      stage.count = remaining.length;
      holder = stage;
      packed = true;
    }
    const stageIndices = new Uint32Array(remaining.length);
    for (let i = 0; i < remaining.length; i++) stageIndices[i] = indices[remaining[i]!]!;
    const encoded = runStage(codec, holder, stageIndices, remaining.length, ps);
    const next: number[] = [];
    // Positions (in the holder) of the pages going on, to pack them forward.
    const keep: number[] = [];
    for (let i = 0; i < remaining.length; i++) {
      const encoding = encoded.encodings[i]!;
      const k = remaining[i]!;
      if (encoding === Encoding.RAW) {
        next.push(k);
        keep.push(i);
      } else {
        parts[k] = stagePart(indices[k]!, encoded, i);
      }
    }
    if (packed && next.length < remaining.length) {
      const mem = heap.bytes();
      keep.forEach((pos, i) => {
        if (pos !== i) mem.copyWithin(holder.ptr + i * ps, holder.ptr + pos * ps, holder.ptr + (pos + 1) * ps);
      });
      holder.count = next.length;
    }
    remaining = next;
  }
  remaining.forEach((k, i) => {
    const slot = packed ? i : k;
    parts[k] = { index: indices[k]!, encoding: Encoding.RAW, length: ps, data: undefined, from: holder.ptr + slot * ps };
  });

  const frame = writePagesFrame(scratch.frame, sequence, ps, parts, flags, allocate);
  const encodings = new Uint8Array(n);
  const lengths = new Uint32Array(n);
  let zeroPages = 0;
  parts.forEach((p, k) => {
    encodings[k] = p.encoding;
    lengths[k] = p.length;
    if (p.encoding === Encoding.ZERO) zeroPages++;
  });
  return { frame, encodings, lengths, notFit: tried ? remaining.length : 0, zeroPages };
}

/** Adds one PAGES frame to the stream's counters. */
function countFrame(stats: WireStats, content: FrameContent, pageSize: number): void {
  const { encodings, lengths, frame } = content;
  countEncoded(stats, { pageSize, count: encodings.length, encodings, offsets: new Uint32Array(encodings.length), lengths }, content.notFit);
  stats.frames++;
  stats.frameBytes += frame.byteLength;
}

let threadScratch: EncoderScratch | undefined;
const scratch = (): EncoderScratch => (threadScratch ??= new EncoderScratch());

/**
 * Encodes the batch's loaded pages as one PAGES frame (see the module
 * comment). Returns the frame; `stats` counts it.
 */
export function encodeFrame(batch: PageBatch, pageIndices: ArrayLike<number>, codecs: PipelineCodecs, stats: WireStats, sequence: number = stats.frames): Uint8Array {
  return encodeFrameContent(batch, pageIndices, codecs, stats, sequence).frame;
}

/** encodeFrame(), with how each page went: the frame, its pages' wire ids and payload bytes. */
export function encodeFrameContent(batch: PageBatch, pageIndices: ArrayLike<number>, codecs: PipelineCodecs, stats: WireStats, sequence: number = stats.frames): FrameContent {
  const content = encodePages(batch, pageIndices, codecs, scratch(), sequence);
  countFrame(stats, content, batch.pageSize);
  return content;
}

/**
 * An encoder for one stream: numbers its frames and keeps its stats. `flags`: its PAGES frames' (FrameFlags);
 * `allocate`: where its PAGES frames are written (default: a fresh buffer each).
 */
export class FrameEncoder {
  readonly stats = newWireStats();
  constructor(
    readonly codecs: PipelineCodecs = {},
    readonly flags = 0,
    private readonly allocate?: FrameAllocator,
  ) {}
  /** Next sequence number. */
  get sequence(): number {
    return this.stats.frames;
  }
  pages(batch: PageBatch, pageIndices: ArrayLike<number>): Uint8Array {
    return this.content(batch, pageIndices).frame;
  }
  /** One PAGES frame with what it holds. */
  content(batch: PageBatch, pageIndices: ArrayLike<number>): FrameContent {
    const content = encodePages(batch, pageIndices, this.codecs, scratch(), this.stats.frames, this.flags, this.allocate);
    countFrame(this.stats, content, batch.pageSize);
    return content;
  }
  control(message: ControlMessage): Uint8Array {
    return this.controlFrame((sequence) => encodeControl(message, sequence));
  }
  /** A control frame `build` makes with the next sequence number (one made ready ahead: SwitchoverFrame). */
  controlFrame(build: (sequence: number) => Uint8Array): Uint8Array {
    const frame = build(this.stats.frames);
    this.stats.frames++;
    this.stats.controlFrames++;
    this.stats.frameBytes += frame.byteLength;
    return frame;
  }
}

// ---------------------------------------------------------------- stages from a spec

/** A pipeline's stages, as built (any may be absent: pages go on to the next). */
export type PipelineStages = { -readonly [K in keyof PipelineCodecs]: PipelineCodecs[K] };

/**
 * The registry entries a spec names, in order, checked: every stage is a
 * registered codec, none is empty, no two serve one stage. "raw" names no
 * stage. A RangeError says what was wrong.
 */
export function pipelineEntries(spec: string): CodecEntry[] {
  const parts = spec.split("+").map((s) => s.trim());
  if (parts.some((s) => s === "")) throw new RangeError(`codec '${spec}' names an empty stage (say 'raw' for no codec)`);
  const entries: CodecEntry[] = [];
  for (const name of parts.filter((s) => s !== "raw")) {
    const entry = codecEntry(name);
    if (!entry) throw new RangeError(`unknown codec '${name}' (have: ${codecNames().join(", ") || "none"})`);
    if (entries.some((e) => e.role === entry.role)) throw new RangeError(`codec '${spec}' has two ${entry.role} stages`);
    entries.push(entry);
  }
  return entries;
}

/** Fresh codecs for the stages `spec` names (see pipelineEntries), told about the link when one is given. */
export function buildPipeline(spec: string, link?: LinkConditions, xbzrle?: XbzrleCacheOptions): PipelineStages {
  const stages: PipelineStages = {};
  for (const entry of pipelineEntries(spec)) stages[entry.role] = entry.create(xbzrle);
  if (link) for (const codec of Object.values(stages)) codec?.setLink?.(link);
  return stages;
}

/** Frees every stage's codec. */
export function disposePipeline(stages: PipelineCodecs): void {
  for (const codec of Object.values(stages)) codec?.dispose();
}

/** One PAGES frame as the pipeline made it. */
export interface EncodedFrame {
  readonly frame: Uint8Array;
  /** pages of the frame that went as zero flags */
  readonly zeroPages: number;
  /** the codecs whose CPU time encoding it took (each stage's `work`, "raw" left out) */
  readonly work: readonly string[];
  /** how each page went (wire id) and its payload bytes, in the order of the pages given */
  readonly encodings: Uint8Array;
  readonly lengths: Uint32Array;
}

/** What encoding a frame with `codecs` took, just after: its zero pages (FrameContent.zeroPages) and each stage's work. */
export function frameWork(codecs: PipelineCodecs, zeroPages: number): Pick<EncodedFrame, "zeroPages" | "work"> {
  const work: string[] = [];
  for (const codec of [codecs.dedup, codecs.delta, codecs.compress]) {
    // An adaptive codec is charged for the codecs it ran; raw is no encoding work.
    for (const name of codec ? (codec.work ?? codec.name).split("+") : []) if (name !== "raw") work.push(name);
  }
  return { zeroPages, work };
}

/** What a pipeline reports at the end of a stream. */
export interface PipelineReport {
  /** every page sent, per wire id, and the frames around them */
  readonly codecStats: WireStats;
  /** raw bytes of pages sent with content per byte of their payload */
  readonly compressionRatio: number;
  /** the delta stage's cache in QEMU's terms, when it has one */
  readonly xbzrleCache: XbzrleStats | undefined;
}

/**
 * One stream's encoding side: the stages a spec names, the frame encoder
 * that numbers the stream's frames, and its counters.
 */
export class Pipeline {
  readonly spec: string;
  private readonly stages: PipelineStages;
  /** every codec built, including stages dropped since */
  private readonly built: PageCodec[];
  private readonly encoder: FrameEncoder;
  /** Frames encoded on parallel channels were counted in (absorb). */
  private absorbed = false;

  /**
   * `flags`: its PAGES frames' (FrameFlags.DISK for a disk's stream); `xbzrle`: the delta stage's cache;
   * `allocate`: memory for its PAGES frames (a channel's frameBuffer).
   */
  constructor(spec: string, flags = 0, xbzrle?: XbzrleCacheOptions, allocate?: FrameAllocator) {
    this.spec = spec;
    this.stages = buildPipeline(spec, undefined, xbzrle);
    this.built = Object.values(this.stages).filter((c) => c !== undefined);
    this.encoder = new FrameEncoder(this.stages, flags, allocate);
  }

  /** Encodes the batch's loaded pages (guest pages `pages`) as one PAGES frame for a link in `link`'s state. */
  encode(batch: PageBatch, pages: ArrayLike<number>, link: LinkConditions): EncodedFrame {
    for (const codec of this.built) codec.setLink?.(link);
    const { frame, encodings, lengths, zeroPages } = this.encoder.content(batch, pages);
    return { frame, ...frameWork(this.stages, zeroPages), encodings, lengths };
  }

  /** The delta stage's codec (XBZRLE), if the spec has one. */
  get delta(): PageCodec | undefined {
    return this.stages.delta;
  }

  /** A control frame, numbered in this stream. */
  control(message: ControlMessage): Uint8Array {
    return this.encoder.control(message);
  }

  /** A control frame made by `build` with this stream's next number (FrameEncoder.controlFrame). */
  controlFrame(build: (sequence: number) => Uint8Array): Uint8Array {
    return this.encoder.controlFrame(build);
  }

  /** An adaptive compress stage's running count of pages per codec it chose (on the channels too, once frames were absorbed). */
  choices(): Readonly<Record<string, number>> | undefined {
    const own = this.stages.compress?.stats.choices;
    if (!this.absorbed) return own;
    const all = { ...this.encoder.stats.choices };
    for (const [codec, pages] of Object.entries(own ?? {})) all[codec] = (all[codec] ?? 0) + pages;
    return all;
  }

  /** Counts a PAGES frame of this stream that parallel channels encoded (src/wire/channels.ts), with its counters. */
  absorb(stats: WireStats): void {
    addWireStats(this.encoder.stats, stats);
    this.absorbed = true;
  }

  /**
   * The destination's program runs from now on and may change any page it
   * holds: stages whose output names another page of the destination (dedup)
   * stop. A delta stage stays: its base is the same page, which the program
   * cannot have touched before it arrives.
   */
  startPostcopy(): void {
    for (const role of ["dedup", "delta", "compress"] as const) {
      if (this.stages[role]?.referencesOtherPages) this.stages[role] = undefined;
    }
  }

  /** The stream's figures so far. */
  report(pageSize: number): PipelineReport {
    const codecStats = { ...this.encoder.stats };
    const contentIn = (codecStats.pages - (codecStats.byEncoding.zero ?? 0)) * pageSize;
    const choices = this.choices();
    if (choices) codecStats.choices = { ...choices };
    let xbzrleCache: XbzrleStats | undefined;
    for (const codec of this.built) xbzrleCache = codec.cacheReport?.(codecStats, pageSize) ?? xbzrleCache;
    return { codecStats, compressionRatio: codecStats.outputBytes > 0 ? contentIn / codecStats.outputBytes : 1, xbzrleCache };
  }

  dispose(): void {
    for (const codec of this.built) codec.dispose();
  }
}

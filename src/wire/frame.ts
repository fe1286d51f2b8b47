// Frames: the unit pages travel in between an engine and a channel, and the
// pipeline that turns a batch of pages into one (docs/wire-format.md is the
// grammar; this file follows it).
//
// ## API (stable: engines, channels and the CLI are written against it)
//
//   encodeFrame(batch, pageIndices, codecs, stats, sequence = stats.frames): Uint8Array
//       One PAGES frame for the batch's loaded pages; pageIndices[k] is the
//       guest page of slot k (distinct). Per page, in this order: zero (one
//       zeroScan over the batch) → codecs.dedup (sees every page) →
//       codecs.delta (XBZRLE: pages it has cached) → codecs.compress (lz4,
//       wkdm, mecom) → raw. Each stage is one encodeBatch call over the pages
//       still unsent (docs/wire-format.md, "The encoder's pipeline"); the
//       caller's batch is read, never changed. Codec instances carry state
//       (XBZRLE cache, dedup index): one set per stream. Returns a new buffer the caller owns (transfer
//       it, write it, keep it). stats.frames counts frames: a single stream
//       may leave `sequence` to it.
//   encodeControl(message, sequence): Uint8Array
//       A control frame: { type: "round-start" | "round-end", round, pages },
//       { type: "switch-over", state }, { type: "page-request", pages },
//       { type: "done", memoryBytes, digestName, digest }.
//   new FrameEncoder(codecs) → .pages(batch, indices) / .control(message)
//       The two above with the stream's sequence numbers and stats kept.
//   decodeFrame(bytes, destination?, decoders?): Frame
//       Checks the header, the length, the frame check and every table entry,
//       decodes the pages into staging memory, and only then writes them:
//       a rejected frame (CodecError with a code) leaves the destination as
//       it was. destination: guest memory (Uint8Array, page i at i·pageSize),
//       a PageBatch (slot k ← the frame's k-th page), or none (the pages come
//       back in `frame.pages`, in frame order). XBZRLE pages are applied to
//       the page the destination holds (guest memory or slot). `decoders`
//       gives the codec per wire id (default: one of each from the registry).
//   new FrameDecoder(decoders?) → .decode(bytes, destination?)
//       The same with its own staging memory (one per stream or thread).
//   readFrameHeader(bytes): FrameHeader
//       Checks and reads the 28-byte header alone (stream splitters use it
//       to learn a frame's length before buffering it).

import { countEncoded, Encoding, ENCODING_NAMES, newCodecStats, type CodecStats, type EncodedBatch, type PageCodec } from "../codecs/codec.js";
import { decoderFor } from "../codecs/registry.js";
import { scanZeroPages } from "../codecs/zero.js";
import { CodecError, PagemillError, checkArrayLike, checkBytes, checkInstance, checkInteger, checkObject, checkPageSize } from "../errors.js";
import { PageBatch, Scratch } from "../wasm/arena.js";
import { wasm } from "../wasm/module.js";
import { Owned } from "../wasm/owned.js";

/** "PMFR" read as a little-endian u32. */
export const FRAME_MAGIC = 0x52464d50;
export const FRAME_VERSION = 1;
export const HEADER_BYTES = 28;
/** The frame check that ends every frame. */
export const CHECK_BYTES = 4;
/** One page-table entry: index u32, encoding u8, length u24. */
export const ENTRY_BYTES = 8;
export const MAX_FRAME_PAGES = 16384;
/** Most page bytes (count × pageSize) one PAGES frame may carry. */
export const MAX_FRAME_PAGE_BYTES = 64 * 2 ** 20;
export const MAX_STATE_BYTES = 64 * 2 ** 20;
export const MAX_REQUEST_PAGES = 16384;
export const MAX_DIGEST_NAME = 16;
export const MAX_DIGEST_BYTES = 64;
/** The most bytes any frame can take: what a reader may have to buffer. */
export const MAX_FRAME_BYTES = HEADER_BYTES + MAX_FRAME_PAGES * ENTRY_BYTES + MAX_FRAME_PAGE_BYTES + CHECK_BYTES;

export const FrameType = {
  PAGES: 1,
  ROUND_START: 2,
  ROUND_END: 3,
  SWITCHOVER: 4,
  PAGE_REQUEST: 5,
  DONE: 6,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export interface FrameHeader {
  readonly type: FrameType;
  readonly sequence: number;
  readonly pageSize: number;
  readonly count: number;
  readonly bodyLength: number;
  /** HEADER_BYTES + bodyLength + CHECK_BYTES */
  readonly frameLength: number;
}

export type ControlMessage =
  | { readonly type: "round-start" | "round-end"; readonly round: number; readonly pages: number }
  | { readonly type: "switch-over"; readonly state: Uint8Array }
  | { readonly type: "page-request"; readonly pages: ArrayLike<number> }
  | { readonly type: "done"; readonly memoryBytes: number; readonly digestName: string; readonly digest: Uint8Array };

export interface PagesFrame {
  readonly type: "pages";
  readonly sequence: number;
  readonly pageSize: number;
  readonly count: number;
  /** guest page of the frame's k-th page */
  readonly indices: Uint32Array;
  /** wire id of the frame's k-th page */
  readonly encodings: Uint8Array;
  /** payload bytes of the frame's k-th page */
  readonly lengths: Uint32Array;
  /** the decoded pages in frame order, when no destination was given */
  readonly pages?: Uint8Array;
}

export type Frame =
  | PagesFrame
  | { readonly type: "round-start" | "round-end"; readonly sequence: number; readonly round: number; readonly pages: number }
  | { readonly type: "switch-over"; readonly sequence: number; readonly state: Uint8Array }
  | { readonly type: "page-request"; readonly sequence: number; readonly pages: Uint32Array }
  | {
      readonly type: "done";
      readonly sequence: number;
      readonly memoryBytes: number;
      readonly digestName: string;
      readonly digest: Uint8Array;
    };

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

/** Where decoded pages go: guest memory, a batch (frame order), or nowhere (returned). */
export type PageDestination = Uint8Array | PageBatch | undefined;

/** The codec that decodes each wire id that needs one (wkdm, lz4, xbzrle). */
export type FrameDecoders = Partial<Record<Encoding, PageCodec>>;

/** xxHash32 (seed 0) of `len` bytes at `ptr` in linear memory: the header and frame checks. */
function frameCheck(ptr: number, len: number): number {
  return wasm().kernels.xxh32(ptr, len, 0) >>> 0;
}

const TYPE_NAMES: Record<FrameType, Frame["type"]> = {
  1: "pages",
  2: "round-start",
  3: "round-end",
  4: "switch-over",
  5: "page-request",
  6: "done",
};

// ---------------------------------------------------------------- encoding

/** Per-thread staging for the encoder: pages that moved on past a stage, and the frame being built. */
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

let encoderScratch: EncoderScratch | undefined;

/** One page of the frame being built: where its payload comes from. */
interface Part {
  index: number;
  encoding: number;
  length: number;
  /** payload in JavaScript memory (codec output), or undefined */
  data: Uint8Array | undefined;
  /** offset in `data`, or in linear memory when `data` is undefined */
  from: number;
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

/** Most pages of `pageSize` bytes one PAGES frame may carry. */
export function maxFramePages(pageSize: number): number {
  checkPageSize(pageSize);
  return Math.min(MAX_FRAME_PAGES, Math.floor(MAX_FRAME_PAGE_BYTES / pageSize));
}

/** One stage: one encodeBatch call over the holder's loaded pages, its answer checked. */
function runStage(codec: PageCodec, holder: PageBatch, stageIndices: Uint32Array, count: number, ps: number): EncodedBatch {
  const encoded = codec.encodeBatch(holder, stageIndices);
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

/**
 * Encodes the batch's loaded pages as one PAGES frame (see the module
 * comment for the stage order). Returns the frame; `stats` counts it.
 */
/** The slots 0..n-1 that are not in `remaining` (ascending). */
function slotsNotIn(remaining: number[], n: number): number[] {
  const out: number[] = [];
  for (let k = 0, r = 0; k < n; k++) {
    if (remaining[r] === k) r++;
    else out.push(k);
  }
  return out;
}

export function encodeFrame(
  batch: PageBatch,
  pageIndices: ArrayLike<number>,
  codecs: PipelineCodecs,
  stats: WireStats,
  sequence: number = stats.frames,
): Uint8Array {
  checkInstance("batch", batch, PageBatch);
  checkObject("codecs", codecs, "PipelineCodecs");
  for (const stage of ["dedup", "delta", "compress"] as const) {
    if (codecs[stage] !== undefined && typeof codecs[stage]?.encodeBatch !== "function") throw new TypeError(`codecs.${stage} must be a PageCodec`);
  }
  const n = batch.count;
  const ps = batch.pageSize;
  checkInteger("batch.count", n, 0, maxFramePages(ps));
  checkInteger("sequence", sequence, 0, 0xffffffff);
  const indices = checkIndices(pageIndices, n);
  const { heap } = wasm();
  const scratch = (encoderScratch ??= new EncoderScratch());

  // parts[k]: how slot k goes out. Frames list pages in slot order, so that
  // a dedup reference resolves against the pages before it (see the format).
  const parts: Part[] = new Array(n);
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
      else parts[k] = { index: indices[k]!, encoding, length: encoded.lengths[k]!, data: encoded.data, from: encoded.offsets[k]! };
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
    // Pages an earlier stage sent (zero, dedup) never reach the delta codec,
    // yet the destination now holds them: a delta codec must not keep an
    // older version as the base of its next delta.
    if (codec && codec === codecs.delta && codec.sentElsewhere) codec.sentElsewhere(batch, indices, slotsNotIn(remaining, n));
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
        parts[k] = { index: indices[k]!, encoding, length: encoded.lengths[i]!, data: encoded.data, from: encoded.offsets[i]! };
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

  let payloadBytes = 0;
  for (const part of parts) payloadBytes += part.length;
  const bodyLength = n * ENTRY_BYTES + payloadBytes;
  const total = HEADER_BYTES + bodyLength + CHECK_BYTES;
  const at = scratch.frame.reserve(total);
  writeHeader(at, FrameType.PAGES, sequence, ps, n, bodyLength);
  const dv = heap.view();
  const mem = heap.bytes();
  let entry = at + HEADER_BYTES;
  let payload = entry + n * ENTRY_BYTES;
  const encodings = new Uint8Array(n);
  const lengths = new Uint32Array(n);
  // Payloads lying back to back in one source (a codec's output, or batch
  // memory for raw pages) are copied as one run; empty ones never break a run.
  let source: Uint8Array | undefined;
  let from = 0;
  let end = 0;
  const flush = (): void => {
    if (end === from) return;
    if (source) mem.set(source.subarray(from, end), payload);
    else mem.copyWithin(payload, from, end);
    payload += end - from;
  };
  for (let k = 0; k < n; k++) {
    const p = parts[k]!;
    dv.setUint32(entry, p.index, true);
    dv.setUint32(entry + 4, p.encoding | (p.length << 8), true);
    entry += ENTRY_BYTES;
    encodings[k] = p.encoding;
    lengths[k] = p.length;
    if (p.length === 0) continue;
    if (p.data === source && p.from === end && end > from) {
      end += p.length;
      continue;
    }
    flush();
    source = p.data;
    from = p.from;
    end = p.from + p.length;
  }
  flush();
  dv.setUint32(at + total - CHECK_BYTES, frameCheck(at, total - CHECK_BYTES), true);
  const frame = mem.slice(at, at + total);

  const summary: EncodedBatch = { pageSize: ps, count: n, encodings, offsets: new Uint32Array(n), lengths, data: frame };
  countEncoded(stats, summary, tried ? remaining.length : 0);
  stats.frames++;
  stats.frameBytes += total;
  return frame;
}

/** Writes the 28-byte header at `at` in linear memory, with its check. */
function writeHeader(at: number, type: FrameType, sequence: number, pageSize: number, count: number, bodyLength: number): void {
  const dv = wasm().heap.view();
  dv.setUint32(at, FRAME_MAGIC, true);
  dv.setUint8(at + 4, FRAME_VERSION);
  dv.setUint8(at + 5, type);
  dv.setUint16(at + 6, 0, true);
  dv.setUint32(at + 8, sequence, true);
  dv.setUint32(at + 12, pageSize, true);
  dv.setUint32(at + 16, count, true);
  dv.setUint32(at + 20, bodyLength, true);
  dv.setUint32(at + 24, frameCheck(at, 24), true);
}

let controlScratch: Scratch | undefined;

/** Encodes one control frame (see ControlMessage); checks every field, naming it. */
export function encodeControl(message: ControlMessage, sequence: number): Uint8Array {
  checkObject("message", message, "a ControlMessage");
  checkInteger("sequence", sequence, 0, 0xffffffff);
  let type: FrameType;
  let count = 0;
  let body: Uint8Array;
  switch (message.type) {
    case "round-start":
    case "round-end": {
      checkInteger("round", message.round, 0, 0xffffffff);
      checkInteger("pages", message.pages, 0, 0xffffffff);
      type = message.type === "round-start" ? FrameType.ROUND_START : FrameType.ROUND_END;
      body = new Uint8Array(8);
      const dv = new DataView(body.buffer);
      dv.setUint32(0, message.round, true);
      dv.setUint32(4, message.pages, true);
      break;
    }
    case "switch-over":
      if (!(message.state instanceof Uint8Array)) throw new TypeError("state must be a Uint8Array");
      checkInteger("state.byteLength", message.state.byteLength, 0, MAX_STATE_BYTES);
      type = FrameType.SWITCHOVER;
      body = message.state;
      break;
    case "page-request": {
      checkArrayLike("pages", message.pages);
      count = message.pages.length;
      checkInteger("pages.length", count, 0, MAX_REQUEST_PAGES);
      type = FrameType.PAGE_REQUEST;
      body = new Uint8Array(4 * count);
      const dv = new DataView(body.buffer);
      for (let k = 0; k < count; k++) {
        const p = message.pages[k]!;
        if (!Number.isInteger(p) || p < 0 || p > 0xffffffff) throw new RangeError(`pages[${k}] = ${p} is not a page index (0..2^32-1)`);
        dv.setUint32(4 * k, p, true);
      }
      break;
    }
    case "done": {
      checkInteger("memoryBytes", message.memoryBytes, 0, Number.MAX_SAFE_INTEGER);
      const name = message.digestName;
      if (typeof name !== "string" || !/^[\x21-\x7e]{1,16}$/.test(name)) {
        throw new RangeError(`digestName must be 1..${MAX_DIGEST_NAME} printable ASCII characters, got ${JSON.stringify(name)}`);
      }
      checkBytes("digest", message.digest);
      checkInteger("digest.byteLength", message.digest.byteLength, 0, MAX_DIGEST_BYTES);
      type = FrameType.DONE;
      body = new Uint8Array(10 + name.length + message.digest.byteLength);
      const dv = new DataView(body.buffer);
      dv.setBigUint64(0, BigInt(message.memoryBytes), true);
      body[8] = name.length;
      for (let i = 0; i < name.length; i++) body[9 + i] = name.charCodeAt(i);
      body[9 + name.length] = message.digest.byteLength;
      body.set(message.digest, 10 + name.length);
      break;
    }
    default:
      throw new RangeError(`unknown control message type ${JSON.stringify((message as { type: unknown }).type)}`);
  }
  const total = HEADER_BYTES + body.byteLength + CHECK_BYTES;
  const { heap } = wasm();
  const at = (controlScratch ??= new Scratch()).reserve(total);
  writeHeader(at, type, sequence, 0, count, body.byteLength);
  heap.bytes().set(body, at + HEADER_BYTES);
  heap.view().setUint32(at + total - CHECK_BYTES, frameCheck(at, total - CHECK_BYTES), true);
  return heap.bytes().slice(at, at + total);
}

/** An encoder for one stream: numbers its frames and keeps its stats. */
export class FrameEncoder {
  readonly stats = newWireStats();
  constructor(readonly codecs: PipelineCodecs = {}) {}
  /** Next sequence number. */
  get sequence(): number {
    return this.stats.frames;
  }
  pages(batch: PageBatch, pageIndices: ArrayLike<number>): Uint8Array {
    return encodeFrame(batch, pageIndices, this.codecs, this.stats);
  }
  control(message: ControlMessage): Uint8Array {
    const frame = encodeControl(message, this.stats.frames);
    this.stats.frames++;
    this.stats.controlFrames++;
    this.stats.frameBytes += frame.byteLength;
    return frame;
  }
}

// ---------------------------------------------------------------- decoding

let headerScratch: Scratch | undefined;

/**
 * Reads and checks the header at the start of `bytes` (at least HEADER_BYTES
 * of them): check value, magic, version, type, flags, and every length
 * against the limits and the type. Throws CodecError.
 */
export function readFrameHeader(bytes: Uint8Array): FrameHeader {
  checkBytes("bytes", bytes);
  if (bytes.byteLength < HEADER_BYTES) {
    throw new CodecError("truncated", `frame header needs ${HEADER_BYTES} bytes, got ${bytes.byteLength}`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  if (dv.getUint32(0, true) !== FRAME_MAGIC) throw new CodecError("malformed", "not a pagemill frame: bad magic");
  const { heap } = wasm();
  const at = (headerScratch ??= new Scratch()).reserve(HEADER_BYTES);
  heap.bytes().set(bytes.subarray(0, 24), at);
  if (frameCheck(at, 24) !== dv.getUint32(24, true)) throw new CodecError("checksum", "frame header check does not match");
  const version = dv.getUint8(4);
  if (version !== FRAME_VERSION) throw new CodecError("malformed", `frame version ${version} is not ${FRAME_VERSION}`);
  const type = dv.getUint8(5);
  if (type < FrameType.PAGES || type > FrameType.DONE) throw new CodecError("malformed", `unknown frame type ${type}`);
  const flags = dv.getUint16(6, true);
  if (flags !== 0) throw new CodecError("malformed", `reserved flags ${flags} are not 0`);
  const sequence = dv.getUint32(8, true);
  const pageSize = dv.getUint32(12, true);
  const count = dv.getUint32(16, true);
  const bodyLength = dv.getUint32(20, true);
  const name = TYPE_NAMES[type as FrameType];
  const fail = (what: string): never => {
    throw new CodecError("length", `${name} frame: ${what}`);
  };
  if (type === FrameType.PAGES) {
    if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) fail(`page size ${pageSize} is not a power of two 512..65536`);
    if (count > maxFramePages(pageSize)) fail(`${count} pages of ${pageSize} B pass the limit of ${maxFramePages(pageSize)}`);
    if (bodyLength < count * ENTRY_BYTES || bodyLength > count * (ENTRY_BYTES + pageSize)) {
      fail(`body length ${bodyLength} is impossible for ${count} pages of ${pageSize} B`);
    }
  } else {
    if (pageSize !== 0) fail(`page size ${pageSize} is not 0`);
    if (type === FrameType.PAGE_REQUEST) {
      if (count > MAX_REQUEST_PAGES) fail(`${count} indices pass the limit of ${MAX_REQUEST_PAGES}`);
      if (bodyLength !== 4 * count) fail(`body length ${bodyLength} is not 4 × ${count}`);
    } else if (count !== 0) {
      fail(`count ${count} is not 0`);
    }
    if ((type === FrameType.ROUND_START || type === FrameType.ROUND_END) && bodyLength !== 8) fail(`body length ${bodyLength} is not 8`);
    if (type === FrameType.SWITCHOVER && bodyLength > MAX_STATE_BYTES) fail(`state of ${bodyLength} B passes the limit of ${MAX_STATE_BYTES}`);
    if (type === FrameType.DONE && (bodyLength < 11 || bodyLength > 10 + MAX_DIGEST_NAME + MAX_DIGEST_BYTES)) {
      fail(`body length ${bodyLength} is outside 11..${10 + MAX_DIGEST_NAME + MAX_DIGEST_BYTES}`);
    }
  }
  return { type: type as FrameType, sequence, pageSize, count, bodyLength, frameLength: HEADER_BYTES + bodyLength + CHECK_BYTES };
}

/**
 * The wire id of each page of a pages frame, read from its entry table
 * without decoding (what a receiver needs to cost the decode before the pages
 * land); undefined for the other frame types. Throws CodecError.
 */
export function readPageEncodings(bytes: Uint8Array): Uint8Array | undefined {
  const header = readFrameHeader(bytes);
  if (header.type !== FrameType.PAGES) return undefined;
  const table = HEADER_BYTES + header.count * ENTRY_BYTES;
  if (bytes.byteLength < table) throw new CodecError("truncated", `pages frame ${header.sequence}: entry table cut at ${bytes.byteLength} B`);
  const encodings = new Uint8Array(header.count);
  for (let k = 0; k < header.count; k++) encodings[k] = bytes[HEADER_BYTES + k * ENTRY_BYTES + 4]!;
  return encodings;
}

/** Payload length of the wire ids that have one fixed length (-1: the page size). */
const FIXED_LENGTHS: Partial<Record<number, number>> = {
  [Encoding.RAW]: -1,
  [Encoding.ZERO]: 0,
  [Encoding.SAME_VALUE]: 4,
  [Encoding.DEDUP]: 4,
};

/** Wire ids decoded by a codec (the others are decoded here). */
const CODEC_ENCODINGS: readonly Encoding[] = [Encoding.WKDM, Encoding.LZ4, Encoding.XBZRLE];

/** A frame decoder with its own staging memory and codecs. */
export class FrameDecoder extends Owned {
  private readonly decoders: FrameDecoders;
  private readonly input: Scratch;
  private readonly staging = new Map<Encoding, PageBatch>();

  /** `decoders`: the codec per wire id; the ones not given come from the registry when first needed. */
  constructor(decoders: FrameDecoders = {}) {
    super();
    this.decoders = { ...decoders };
    this.input = new Scratch();
  }

  private decoderOf(encoding: Encoding): PageCodec | undefined {
    return (this.decoders[encoding] ??= decoderFor(encoding));
  }

  private stagingBatch(encoding: Encoding, count: number, pageSize: number): PageBatch {
    let batch = this.staging.get(encoding);
    if (!batch || batch.capacity < count || batch.pageSize !== pageSize) {
      batch?.dispose();
      batch = new PageBatch(count, pageSize);
      this.staging.set(encoding, batch);
    }
    return batch;
  }

  /** Decodes one whole frame (exactly its bytes); see decodeFrame. */
  decode(bytes: Uint8Array, destination?: PageDestination): Frame {
    this.live();
    checkBytes("bytes", bytes);
    bytes = wasm().heap.outside(bytes);
    const header = readFrameHeader(bytes);
    const name = TYPE_NAMES[header.type];
    if (bytes.byteLength < header.frameLength) {
      throw new CodecError("truncated", `${name} frame of ${header.frameLength} B cut at ${bytes.byteLength} B`);
    }
    if (bytes.byteLength > header.frameLength) {
      throw new CodecError("length", `${name} frame of ${header.frameLength} B given ${bytes.byteLength} B`);
    }
    const { heap } = wasm();
    const checked = header.frameLength - CHECK_BYTES;
    const at = this.input.reserve(checked);
    heap.bytes().set(bytes.subarray(0, checked), at);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (frameCheck(at, checked) !== dv.getUint32(checked, true)) {
      throw new CodecError("checksum", `${name} frame ${header.sequence}: frame check does not match`);
    }
    const body = HEADER_BYTES;
    const sequence = header.sequence;
    switch (header.type) {
      case FrameType.PAGES:
        return this.decodePages(bytes, dv, header, destination);
      case FrameType.ROUND_START:
      case FrameType.ROUND_END:
        return { type: name as "round-start" | "round-end", sequence, round: dv.getUint32(body, true), pages: dv.getUint32(body + 4, true) };
      case FrameType.SWITCHOVER:
        return { type: "switch-over", sequence, state: bytes.slice(body, body + header.bodyLength) };
      case FrameType.PAGE_REQUEST: {
        const pages = new Uint32Array(header.count);
        for (let k = 0; k < header.count; k++) pages[k] = dv.getUint32(body + 4 * k, true);
        return { type: "page-request", sequence, pages };
      }
      case FrameType.DONE:
        return readDone(bytes, dv, header);
    }
  }

  private decodePages(bytes: Uint8Array, dv: DataView, header: FrameHeader, destination: PageDestination): PagesFrame {
    const { count: n, pageSize: ps, sequence } = header;
    const fail = (code: "length" | "malformed" | "overrun", what: string, k?: number): never => {
      throw new CodecError(code, `pages frame ${sequence}${k === undefined ? "" : `, entry ${k}`}: ${what}`);
    };
    let destPages: number;
    if (destination === undefined) destPages = Infinity;
    else if (destination instanceof PageBatch) {
      if (destination.pageSize !== ps) throw new RangeError(`destination batch has ${destination.pageSize} B pages, the frame ${ps} B`);
      if (destination.capacity < n) throw new RangeError(`destination batch holds ${destination.capacity} pages, the frame has ${n}`);
      destPages = Infinity;
    } else if (destination instanceof Uint8Array) {
      wasm().heap.checkOutside("destination", destination);
      destPages = Math.floor(destination.byteLength / ps);
    } else throw new TypeError("destination must be a Uint8Array, a PageBatch or undefined");

    const indices = new Uint32Array(n);
    const encodings = new Uint8Array(n);
    const offsets = new Uint32Array(n);
    const lengths = new Uint32Array(n);
    const entryOf = new Map<number, number>(); // page index → its entry
    /** dedup entry k → the entry it copies from (-1: the destination's page) */
    const sources = new Map<number, number>();
    let offset = HEADER_BYTES + n * ENTRY_BYTES;
    const end = HEADER_BYTES + header.bodyLength;
    for (let k = 0; k < n; k++) {
      const e = HEADER_BYTES + k * ENTRY_BYTES;
      const index = dv.getUint32(e, true);
      const word = dv.getUint32(e + 4, true);
      const encoding = word & 0xff;
      const length = word >>> 8;
      if (encoding > Encoding.DEDUP) fail("malformed", `unknown wire id ${encoding}`, k);
      if (encoding === Encoding.WKDM && ps !== 4096) fail("malformed", `wkdm pages are 4096 B, the frame's ${ps} B`, k);
      const want = FIXED_LENGTHS[encoding] === -1 ? ps : FIXED_LENGTHS[encoding];
      // An XBZRLE delta of an unchanged page is empty; every other codec payload has bytes.
      const least = encoding === Encoding.XBZRLE ? 0 : 1;
      if (want !== undefined ? length !== want : length < least || length > ps) {
        fail("length", `payload of ${length} B is not allowed for ${ENCODING_NAMES[encoding as Encoding]} pages of ${ps} B`, k);
      }
      if (length > end - offset) fail("length", `payload of ${length} B runs past the body`, k);
      if (index >= destPages) fail("overrun", `page ${index} is outside the destination (${destPages} pages)`, k);
      if (entryOf.has(index)) fail("malformed", `page ${index} appears twice`, k);
      if (encoding === Encoding.DEDUP) {
        // Copies the page named, as it stands after the entries before this one.
        const from = dv.getUint32(offset, true);
        const earlier = entryOf.get(from);
        if (earlier !== undefined) sources.set(k, earlier);
        else if (from < destPages && destination instanceof Uint8Array) sources.set(k, -1);
        else if (destination instanceof Uint8Array) fail("overrun", `dedup reference to page ${from}, outside the destination (${destPages} pages)`, k);
        else fail("malformed", `dedup reference to page ${from}, which is not earlier in the frame (no guest memory given)`, k);
      }
      entryOf.set(index, k);
      indices[k] = index;
      encodings[k] = encoding;
      offsets[k] = offset;
      lengths[k] = length;
      offset += length;
    }
    if (offset !== end) fail("length", `payloads end at ${offset}, the body at ${end}`);

    // Group the codec-encoded pages by wire id; check a decoder exists for each.
    const groups = new Map<Encoding, number[]>();
    for (let k = 0; k < n; k++) {
      const encoding = encodings[k] as Encoding;
      if (!CODEC_ENCODINGS.includes(encoding)) continue;
      let group = groups.get(encoding);
      if (!group) {
        if (!this.decoderOf(encoding)) fail("malformed", `no decoder for wire id ${encoding} was given`, k);
        groups.set(encoding, (group = []));
      }
      group.push(k);
    }

    // Decode each group into its staging batch: nothing is written to the destination yet.
    const staged = new Map<number, number>(); // frame entry → linear-memory offset of its decoded page
    for (const [encoding, members] of groups) {
      const batch = this.stagingBatch(encoding, members.length, ps);
      const groupIndices = Uint32Array.from(members, (k) => indices[k]!);
      if (encoding === Encoding.XBZRLE) this.preload(batch, members, groupIndices, destination);
      // Hand the codec only the span of the frame holding this group's payloads.
      let from = Infinity;
      let to = 0;
      for (const k of members) {
        from = Math.min(from, offsets[k]!);
        to = Math.max(to, offsets[k]! + lengths[k]!);
      }
      const encoded: EncodedBatch = {
        pageSize: ps,
        count: members.length,
        encodings: Uint8Array.from(members, (k) => encodings[k]!),
        offsets: Uint32Array.from(members, (k) => offsets[k]! - from),
        lengths: Uint32Array.from(members, (k) => lengths[k]!),
        data: bytes.subarray(from, to),
      };
      try {
        this.decoderOf(encoding)!.decodeBatch(encoded, batch, groupIndices);
      } catch (err) {
        if (err instanceof CodecError) {
          const cause = err.message.replace(/^page \d+: /, "");
          throw new CodecError(err.code, `${ENCODING_NAMES[encoding]} pages of frame ${sequence}: ${cause}`, err.page);
        }
        throw err;
      }
      members.forEach((k, i) => staged.set(k, batch.ptr + i * ps));
    }

    // Every page decoded: write them.
    let pages: Uint8Array | undefined;
    let target: Uint8Array;
    let base = 0;
    if (destination === undefined) target = pages = new Uint8Array(n * ps);
    else if (destination instanceof PageBatch) {
      target = wasm().heap.bytes();
      base = destination.ptr;
    } else target = destination;
    const mem = wasm().heap.bytes();
    for (let k = 0; k < n; k++) {
      const to = destination instanceof Uint8Array ? indices[k]! * ps : base + k * ps;
      switch (encodings[k]) {
        case Encoding.ZERO:
          target.fill(0, to, to + ps);
          break;
        case Encoding.SAME_VALUE:
          target.set(bytes.subarray(offsets[k]!, offsets[k]! + 4), to);
          for (let filled = 4; filled < ps; filled *= 2) target.copyWithin(to + filled, to, to + filled);
          break;
        case Encoding.RAW:
          target.set(bytes.subarray(offsets[k]!, offsets[k]! + ps), to);
          break;
        case Encoding.DEDUP: {
          // Entries are written in order, so the page copied is as it stands after the ones before.
          const j = sources.get(k)!;
          const from = j < 0 ? dv.getUint32(offsets[k]!, true) * ps : destination instanceof Uint8Array ? indices[j]! * ps : base + j * ps;
          target.copyWithin(to, from, from + ps);
          break;
        }
        default: {
          const from = staged.get(k)!;
          target.set(mem.subarray(from, from + ps), to);
        }
      }
    }
    if (destination instanceof PageBatch) destination.count = n;
    return { type: "pages", sequence, pageSize: ps, count: n, indices, encodings, lengths, ...(pages ? { pages } : {}) };
  }

  /** XBZRLE deltas apply to the page the destination holds: put it in the staging slots. */
  private preload(batch: PageBatch, members: number[], groupIndices: Uint32Array, destination: PageDestination): void {
    if (destination instanceof Uint8Array) {
      batch.load(destination, groupIndices);
    } else if (destination instanceof PageBatch) {
      const mem = wasm().heap.bytes();
      const ps = batch.pageSize;
      members.forEach((k, i) => mem.copyWithin(batch.ptr + i * ps, destination.ptr + k * ps, destination.ptr + (k + 1) * ps));
      batch.count = members.length;
    } else {
      throw new CodecError("malformed", "xbzrle pages need the destination's current pages: give a destination");
    }
  }

  /** Releases the staging memory. */
  protected release(): void {
    this.input.dispose();
    for (const batch of this.staging.values()) batch.dispose();
    this.staging.clear();
  }
}

function readDone(bytes: Uint8Array, dv: DataView, header: FrameHeader): Frame {
  const body = HEADER_BYTES;
  const fail = (what: string): never => {
    throw new CodecError("malformed", `done frame ${header.sequence}: ${what}`);
  };
  const memoryBytes = dv.getBigUint64(body, true);
  if (memoryBytes > BigInt(Number.MAX_SAFE_INTEGER)) fail(`memory size ${memoryBytes} is too large`);
  const nameLength = bytes[body + 8]!;
  if (nameLength < 1 || nameLength > MAX_DIGEST_NAME) fail(`digest name length ${nameLength} is outside 1..${MAX_DIGEST_NAME}`);
  if (body + 10 + nameLength > body + header.bodyLength) fail("digest name runs past the body");
  let digestName = "";
  for (let i = 0; i < nameLength; i++) {
    const c = bytes[body + 9 + i]!;
    if (c < 0x21 || c > 0x7e) fail(`digest name byte ${c} is not printable ASCII`);
    digestName += String.fromCharCode(c);
  }
  const digestLength = bytes[body + 9 + nameLength]!;
  if (10 + nameLength + digestLength !== header.bodyLength) {
    throw new CodecError("length", `done frame ${header.sequence}: digest of ${digestLength} B does not fill the ${header.bodyLength} B body`);
  }
  if (digestLength > MAX_DIGEST_BYTES) fail(`digest of ${digestLength} B passes ${MAX_DIGEST_BYTES}`);
  const start = body + 10 + nameLength;
  return { type: "done", sequence: header.sequence, memoryBytes: Number(memoryBytes), digestName, digest: bytes.slice(start, start + digestLength) };
}

let defaultDecoder: FrameDecoder | undefined;

/**
 * Decodes one frame into `destination` (see the module comment), with this
 * thread's default decoder and the registry's codecs, or `decoders` given.
 */
export function decodeFrame(bytes: Uint8Array, destination?: PageDestination, decoders?: FrameDecoders): Frame {
  if (decoders) {
    const decoder = new FrameDecoder(decoders);
    try {
      return decoder.decode(bytes, destination);
    } finally {
      decoder.dispose();
    }
  }
  return (defaultDecoder ??= new FrameDecoder()).decode(bytes, destination);
}

/** The bytes a switch-over frame carries: the engine's own record around the device state. */
export interface SwitchoverRecord {
  /** CPU and device state */
  readonly state: Uint8Array;
  /** pages the destination must not use yet (post-copy follows); undefined for pre-copy */
  readonly pending: BigUint64Array | undefined;
}

// Switch-over record: u32 version (1) | u32 pageCount (0: no pending map) |
// u32 stateLength | state | pageCount bits of pending map (u64 words, LE).
const RECORD_VERSION = 1;

/** The body of a SWITCHOVER frame for `record` (a pending map, when there is one, covers `pageCount` pages). */
export function encodeSwitchover(record: SwitchoverRecord, pageCount: number): Uint8Array {
  const words = record.pending ? record.pending.length : 0;
  const out = new Uint8Array(12 + record.state.byteLength + 8 * words);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, RECORD_VERSION, true);
  dv.setUint32(4, record.pending ? pageCount : 0, true);
  dv.setUint32(8, record.state.byteLength, true);
  out.set(record.state, 12);
  if (record.pending) out.set(new Uint8Array(record.pending.buffer, record.pending.byteOffset, 8 * words), 12 + record.state.byteLength);
  return out;
}

/** The record a SWITCHOVER frame's body holds, checked against the guest's `pageCount`; a PagemillError names what is wrong. */
export function decodeSwitchover(bytes: Uint8Array, pageCount: number): SwitchoverRecord {
  const fail = (what: string): never => {
    throw new PagemillError(`switch-over record: ${what}`);
  };
  if (bytes.byteLength < 12) fail(`${bytes.byteLength} bytes is shorter than its 12-byte head`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) !== RECORD_VERSION) fail(`version ${dv.getUint32(0, true)} is not ${RECORD_VERSION}`);
  const mapPages = dv.getUint32(4, true);
  const stateLength = dv.getUint32(8, true);
  if (mapPages !== 0 && mapPages !== pageCount) fail(`pending map of ${mapPages} pages for a guest of ${pageCount}`);
  const words = mapPages ? Math.ceil(mapPages / 64) : 0;
  if (bytes.byteLength !== 12 + stateLength + 8 * words) fail(`length ${bytes.byteLength} is not 12 + ${stateLength} + ${8 * words}`);
  const state = bytes.slice(12, 12 + stateLength);
  let pending: BigUint64Array | undefined;
  if (words) {
    pending = new BigUint64Array(words);
    new Uint8Array(pending.buffer).set(bytes.subarray(12 + stateLength));
  }
  return { state, pending };
}

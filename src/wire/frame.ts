// The frame grammar (docs/wire-format.md is its specification): the header,
// the body layout of each frame type, their checks, and the control frames.
// What fills a PAGES frame (the codec pipeline) is src/wire/pipeline.ts; what
// decodes one into memory is src/wire/decoder.ts. Nothing here knows a codec:
// a payload's rules come from the codec that decodes it (PayloadRule).
//
//   encodeControl(message, sequence): Uint8Array
//       A control frame: { type: "round-start" | "round-end", round, pages },
//       { type: "switch-over", state }, { type: "page-request", pages },
//       { type: "done", memoryBytes, digestName, digest }.
//   writePagesFrame(scratch, sequence, pageSize, parts, flags?, allocate?): Uint8Array
//       A PAGES frame from its entries and where each payload lies (in
//       memory from `allocate` when given).
//   writeRawPagesFrame(scratch, sequence, pageSize, pagesPtr, indices, flags?, allocate?)
//       The same for pages loaded in linear memory, each sent zero or raw.
//   readFrameHeader(bytes): FrameHeader
//       Checks and reads the 28-byte header alone (stream splitters use it
//       to learn a frame's length before buffering it).
//   readPagesTable(bytes, header, rules, pageLimit) / readControl(bytes, header)
//       A checked frame's entry table, or its control message.
//   readPageEncodings(bytes): the wire id of each page, without decoding.
//   encodeSwitchover / decodeSwitchover: the engine's record in a SWITCHOVER body.

import { Encoding, ENCODING_NAMES } from "../codecs/codec.js";
import { CodecError, PagemillError, checkArrayLike, checkBytes, checkInteger, checkObject, checkPageSize } from "../errors.js";
import { xxh3 } from "../hash/xxhash.js";
import { Scratch } from "../wasm/arena.js";
import { wasm } from "../wasm/module.js";
import { Owned } from "../wasm/owned.js";

/** "PMFR" read as a little-endian u32. */
export const FRAME_MAGIC = 0x52464d50;
export const FRAME_VERSION = 2;
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
/** Most bytes of an INFO frame's JSON text. */
export const MAX_INFO_BYTES = 64 * 1024;
/** The most bytes any frame can take: what a reader may have to buffer. */
export const MAX_FRAME_BYTES = HEADER_BYTES + MAX_FRAME_PAGES * ENTRY_BYTES + MAX_FRAME_PAGE_BYTES + CHECK_BYTES;

export const FrameType = {
  PAGES: 1,
  ROUND_START: 2,
  ROUND_END: 3,
  SWITCHOVER: 4,
  PAGE_REQUEST: 5,
  DONE: 6,
  INFO: 7,
  REFS: 8,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/**
 * Header flags. DISK: the frame is about the disk's blocks, not memory's
 * pages (PAGES, PAGE_REQUEST, SWITCHOVER and REFS frames; the others carry no
 * flag). A disk is a second stream of pages on the same link.
 */
export const FrameFlags = { DISK: 1 } as const;
/** Frame types that may carry the DISK flag. */
const DISK_TYPES: readonly number[] = [1, 4, 5, 8];
/** One REFS entry: block u32, ref u32, space u32 (0 disk, 1 memory), MD5 16 B, XXH3-64 8 B. */
export const REF_BYTES = 36;

export interface FrameHeader {
  readonly type: FrameType;
  /** FrameFlags */
  readonly flags: number;
  readonly sequence: number;
  readonly pageSize: number;
  readonly count: number;
  readonly bodyLength: number;
  /** HEADER_BYTES + bodyLength + CHECK_BYTES */
  readonly frameLength: number;
}

/**
 * A block sent as a reference to content the destination holds (FlimCD's
 * dedup): the block's MD5, which the source found among the digests of what
 * it sent, and the block's own XXH3-64, a second, independent digest. The
 * destination writes the referenced content only when both digests of it
 * match (so an MD5 collision cannot corrupt the disk: it would need one of
 * XXH3-64 on the same pair too) and asks for the block otherwise.
 */
export interface BlockRef {
  readonly block: number;
  /** where the content is: "disk" (a block) or "memory" (a page of the same size) */
  readonly space: "disk" | "memory";
  readonly ref: number;
  readonly md5: Uint8Array;
  readonly xxh3: bigint;
}

export type ControlMessage =
  | { readonly type: "round-start" | "round-end"; readonly round: number; readonly pages: number }
  | { readonly type: "switch-over"; readonly state: Uint8Array; readonly disk?: boolean }
  | { readonly type: "page-request"; readonly pages: ArrayLike<number>; readonly disk?: boolean }
  | { readonly type: "refs"; readonly blockSize: number; readonly refs: readonly BlockRef[] }
  | { readonly type: "done"; readonly memoryBytes: number; readonly digestName: string; readonly digest: Uint8Array }
  | { readonly type: "info"; readonly json: string };

export interface PagesFrame {
  readonly type: "pages";
  /** the pages are disk blocks (FrameFlags.DISK) */
  readonly disk?: true;
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
  | { readonly type: "switch-over"; readonly sequence: number; readonly state: Uint8Array; readonly disk?: true }
  | { readonly type: "page-request"; readonly sequence: number; readonly pages: Uint32Array; readonly disk?: true }
  | { readonly type: "refs"; readonly sequence: number; readonly blockSize: number; readonly refs: BlockRef[] }
  | {
      readonly type: "done";
      readonly sequence: number;
      readonly memoryBytes: number;
      readonly digestName: string;
      readonly digest: Uint8Array;
    }
  | { readonly type: "info"; readonly sequence: number; readonly json: string };

const TYPE_NAMES: Record<FrameType, Frame["type"]> = {
  1: "pages",
  2: "round-start",
  3: "round-end",
  4: "switch-over",
  5: "page-request",
  6: "done",
  7: "info",
  8: "refs",
};

/** The name of a frame type, as Frame["type"] spells it. */
export function frameTypeName(type: FrameType): Frame["type"] {
  return TYPE_NAMES[type];
}

/** Most pages of `pageSize` bytes one PAGES frame may carry. */
export function maxFramePages(pageSize: number): number {
  checkPageSize(pageSize);
  return Math.min(MAX_FRAME_PAGES, Math.floor(MAX_FRAME_PAGE_BYTES / pageSize));
}

/**
 * The low 32 bits of XXH3-64 (seed 0) of `len` bytes at `at` of `bytes`: the
 * header and frame checks. XXH3 rather than xxHash32 (frame version 1): every
 * frame is hashed twice, and XXH3 runs 2.6x faster here (22 vs 8.5 GB/s on a
 * 1 MiB frame), which was a fifth of an in-process migration's CPU. Frames
 * built in linear memory are hashed where they lie.
 */
export function checkValue(bytes: Uint8Array, at: number, len: number): number {
  const { heap, kernels } = wasm();
  const hash = heap.holds(bytes) ? kernels.xxh3(bytes.byteOffset + at, len, 0n) : xxh3(bytes.subarray(at, at + len));
  return Number(BigInt.asUintN(32, hash));
}

/** Writes the 28-byte header at `at` of `bytes`, with its check. */
function writeHeader(bytes: Uint8Array, at: number, type: FrameType, sequence: number, pageSize: number, count: number, bodyLength: number, flags = 0): void {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  dv.setUint32(at, FRAME_MAGIC, true);
  dv.setUint8(at + 4, FRAME_VERSION);
  dv.setUint8(at + 5, type);
  dv.setUint16(at + 6, flags, true);
  dv.setUint32(at + 8, sequence, true);
  dv.setUint32(at + 12, pageSize, true);
  dv.setUint32(at + 16, count, true);
  dv.setUint32(at + 20, bodyLength, true);
  dv.setUint32(at + 24, checkValue(bytes, at, 24), true);
}

/** Writes the frame check of the `total`-byte frame at `at`. */
function sealFrame(bytes: Uint8Array, at: number, total: number): void {
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setUint32(at + total - CHECK_BYTES, checkValue(bytes, at, total - CHECK_BYTES), true);
}

// ---------------------------------------------------------------- PAGES body

/** One page of a PAGES frame being written: its entry, and where its payload lies. */
export interface FramePart {
  index: number;
  encoding: number;
  length: number;
  /** payload in JavaScript memory (codec output), or undefined: in linear memory */
  data: Uint8Array | undefined;
  /** offset in `data`, or in linear memory when `data` is undefined */
  from: number;
}

/** Memory for a frame of `bytes` bytes, which the writer fills whole (a channel's pooled buffers, say). */
export type FrameAllocator = (bytes: number) => Uint8Array;

/**
 * Writes a PAGES frame of `parts` (frame order) into memory the caller owns
 * (from `allocate` when given). The header and entry table are built in
 * `scratch`; each payload is copied into the frame once, straight from where
 * it lies (runs of payloads back to back in one source go as one copy;
 * empty ones never break a run), and the frame check is computed as the
 * parts go, over payloads in linear memory where they lie (batch memory for
 * raw pages): building the whole frame in linear memory to hash it, then
 * copying it out, copied every page twice.
 */
export function writePagesFrame(scratch: Scratch, sequence: number, pageSize: number, parts: readonly FramePart[], flags = 0, allocate?: FrameAllocator): Uint8Array {
  const n = parts.length;
  // Runs of payloads back to back in one source; those in JavaScript memory are staged after the table for the check.
  const runs: { data: Uint8Array | undefined; from: number; end: number }[] = [];
  let staged = 0;
  for (const p of parts) {
    if (p.length === 0) continue;
    const last = runs.at(-1);
    if (last && p.data === last.data && p.from === last.end) last.end += p.length;
    else runs.push({ data: p.data, from: p.from, end: p.from + p.length });
    if (p.data) staged += p.length;
  }
  let payloadBytes = 0;
  for (const part of parts) payloadBytes += part.length;
  const table = HEADER_BYTES + n * ENTRY_BYTES;
  const bodyLength = n * ENTRY_BYTES + payloadBytes;
  const total = HEADER_BYTES + bodyLength + CHECK_BYTES;
  const out = allocate ? allocate(total) : new Uint8Array(total);
  if (!(out instanceof Uint8Array) || out.byteLength !== total) throw new RangeError(`the frame allocator gave ${out instanceof Uint8Array ? `${out.byteLength} B` : "no Uint8Array"} for a ${total} B frame`);
  // (Both may grow linear memory: before any view of it is taken.)
  const state = frameCheckState();
  const at = scratch.reserve(table + staged);
  const { heap, kernels } = wasm();
  const mem = heap.bytes();
  const dv = heap.view();
  writeHeader(mem, at, FrameType.PAGES, sequence, pageSize, n, bodyLength, flags);
  let entry = at + HEADER_BYTES;
  for (const p of parts) {
    dv.setUint32(entry, p.index, true);
    dv.setUint32(entry + 4, p.encoding | (p.length << 8), true);
    entry += ENTRY_BYTES;
  }
  out.set(mem.subarray(at, at + table));
  kernels.xxh3Reset(state, 0n);
  kernels.xxh3Update(state, at, table);
  let written = table;
  let stage = at + table;
  for (const { data, from, end } of runs) {
    const length = end - from;
    if (data) {
      const bytes = data.subarray(from, end);
      out.set(bytes, written);
      mem.set(bytes, stage);
      kernels.xxh3Update(state, stage, length);
      stage += length;
    } else {
      out.set(mem.subarray(from, end), written);
      kernels.xxh3Update(state, from, length);
    }
    written += length;
  }
  new DataView(out.buffer, out.byteOffset, out.byteLength).setUint32(total - CHECK_BYTES, Number(BigInt.asUintN(32, kernels.xxh3Digest(state))), true);
  return out;
}

/** A PAGES frame of the raw codec as writeRawPagesFrame made it, with each page's wire id and payload bytes. */
export interface RawPagesFrame {
  readonly frame: Uint8Array;
  readonly encodings: Uint8Array;
  readonly lengths: Uint32Array;
  readonly zeroPages: number;
}

/**
 * The PAGES frame writePagesFrame would make for `count` pages loaded at
 * `pagesPtr` in linear memory (guest pages `indices`, distinct), each sent
 * zero or raw: the frame with no codec. One kernel call finds the zero pages
 * and lays out the body after the header in `scratch` (the entry table, then
 * the non-zero pages packed, a copy within memory the batch was just loaded
 * into), which is hashed where it lies and copied out once (into memory from
 * `allocate` when given). Per frame the JavaScript does the same few steps
 * whatever its pages: a loop over them here made V8 compile the frame
 * writer and its caller for 110 ms of a sender's 0.5 s (--trace-opt).
 */
export function writeRawPagesFrame(scratch: Scratch, sequence: number, pageSize: number, pagesPtr: number, indices: Uint32Array, flags = 0, allocate?: FrameAllocator): RawPagesFrame {
  const n = indices.length;
  // Header and body at most every page raw; then the indices, the lengths (u32, 4-aligned: the body is) and the wire ids.
  const most = HEADER_BYTES + n * (ENTRY_BYTES + pageSize);
  const at = scratch.reserve(most + 9 * n);
  const { heap, kernels } = wasm();
  const mem = heap.bytes();
  const indicesAt = at + most;
  const lengthsAt = indicesAt + 4 * n;
  const encodingsAt = lengthsAt + 4 * n;
  new Uint32Array(mem.buffer, indicesAt, n).set(indices);
  const raw = kernels.rawFrameBody(pagesPtr, pageSize, n, indicesAt, at + HEADER_BYTES, encodingsAt, lengthsAt);
  const bodyLength = n * ENTRY_BYTES + raw * pageSize;
  const total = HEADER_BYTES + bodyLength + CHECK_BYTES;
  const out = allocate ? allocate(total) : new Uint8Array(total);
  if (!(out instanceof Uint8Array) || out.byteLength !== total) throw new RangeError(`the frame allocator gave ${out instanceof Uint8Array ? `${out.byteLength} B` : "no Uint8Array"} for a ${total} B frame`);
  writeHeader(mem, at, FrameType.PAGES, sequence, pageSize, n, bodyLength, flags);
  out.set(mem.subarray(at, at + total - CHECK_BYTES));
  new DataView(out.buffer, out.byteOffset, out.byteLength).setUint32(total - CHECK_BYTES, checkValue(mem, at, total - CHECK_BYTES), true);
  return { frame: out, encodings: mem.slice(encodingsAt, encodingsAt + n), lengths: new Uint32Array(mem.buffer.slice(lengthsAt, lengthsAt + 4 * n)), zeroPages: n - raw };
}

/** The streaming XXH3 state of writePagesFrame's check, in this thread's linear memory. */
let checkState: { heap: unknown; ptr: number } | undefined;
function frameCheckState(): number {
  const { heap, kernels } = wasm();
  if (checkState?.heap !== heap) checkState = { heap, ptr: heap.alloc(kernels.xxhStateSize()) };
  return checkState.ptr;
}

/** What the grammar allows a codec-decoded wire id's payloads (the codec declares it). */
export interface PayloadRule {
  /** the codec's name, for messages */
  readonly name: string;
  /** page sizes its pages may have; undefined: any */
  readonly pageSizes?: readonly number[];
  /** an empty payload is a page (XBZRLE: unchanged) */
  readonly emptyPayloads?: boolean;
}

/** A PAGES frame's entry table, checked. */
export interface PagesTable {
  readonly indices: Uint32Array;
  readonly encodings: Uint8Array;
  /** offset of entry k's payload in the frame */
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
}

/** Payload length of the wire ids that have one fixed length (-1: the page size). */
const FIXED_LENGTHS: Partial<Record<number, number>> = {
  [Encoding.RAW]: -1,
  [Encoding.ZERO]: 0,
  [Encoding.SAME_VALUE]: 4,
  [Encoding.DEDUP]: 4,
};

/**
 * Reads and checks the entry table of a PAGES frame whose header and frame
 * check were checked: every wire id known, every payload length allowed
 * (`ruleOf` gives a codec's rule; none: 1..pageSize bytes), payloads filling
 * the body exactly, each page once and below `pageLimit`. Throws CodecError.
 */
export function readPagesTable(bytes: Uint8Array, header: FrameHeader, ruleOf: (encoding: Encoding) => PayloadRule | undefined, pageLimit: number): PagesTable {
  const { count: n, pageSize: ps, sequence } = header;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (code: "length" | "malformed" | "overrun", what: string, k?: number): never => {
    throw new CodecError(code, `pages frame ${sequence}${k === undefined ? "" : `, entry ${k}`}: ${what}`);
  };
  const indices = new Uint32Array(n);
  const encodings = new Uint8Array(n);
  const offsets = new Uint32Array(n);
  const lengths = new Uint32Array(n);
  // Pages come in ascending order from every encoder here; a table that does not is checked for repeats with a set.
  let seen: Set<number> | undefined;
  let offset = HEADER_BYTES + n * ENTRY_BYTES;
  const end = HEADER_BYTES + header.bodyLength;
  for (let k = 0; k < n; k++) {
    const e = HEADER_BYTES + k * ENTRY_BYTES;
    const index = dv.getUint32(e, true);
    const word = dv.getUint32(e + 4, true);
    const encoding = word & 0xff;
    const length = word >>> 8;
    if (encoding > Encoding.DEDUP) fail("malformed", `unknown wire id ${encoding}`, k);
    const fixed = FIXED_LENGTHS[encoding];
    if (fixed === undefined) {
      const rule = ruleOf(encoding as Encoding);
      if (rule?.pageSizes && !rule.pageSizes.includes(ps)) fail("malformed", `${rule.name} pages are ${rule.pageSizes.join(" or ")} B, the frame's ${ps} B`, k);
      if (length < (rule?.emptyPayloads ? 0 : 1) || length > ps) {
        fail("length", `payload of ${length} B is not allowed for ${ENCODING_NAMES[encoding as Encoding]} pages of ${ps} B`, k);
      }
    } else if (length !== (fixed === -1 ? ps : fixed)) {
      fail("length", `payload of ${length} B is not allowed for ${ENCODING_NAMES[encoding as Encoding]} pages of ${ps} B`, k);
    }
    if (length > end - offset) fail("length", `payload of ${length} B runs past the body`, k);
    if (index >= pageLimit) fail("overrun", `page ${index} is outside the destination (${pageLimit} pages)`, k);
    if (seen || (k > 0 && index <= indices[k - 1]!)) {
      seen ??= new Set(indices.subarray(0, k));
      if (seen.has(index)) fail("malformed", `page ${index} appears twice`, k);
      seen.add(index);
    }
    indices[k] = index;
    encodings[k] = encoding;
    offsets[k] = offset;
    lengths[k] = length;
    offset += length;
  }
  if (offset !== end) fail("length", `payloads end at ${offset}, the body at ${end}`);
  return { indices, encodings, offsets, lengths };
}

// ---------------------------------------------------------------- control frames

/** Encodes one control frame (see ControlMessage); checks every field, naming it. */
export function encodeControl(message: ControlMessage, sequence: number): Uint8Array {
  checkObject("message", message, "a ControlMessage");
  checkInteger("sequence", sequence, 0, 0xffffffff);
  let type: FrameType;
  let count = 0;
  let body: Uint8Array;
  let pageSize = 0;
  const flags = "disk" in message && message.disk ? FrameFlags.DISK : 0;
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
    case "refs": {
      checkPageSize(message.blockSize, "blockSize");
      checkArrayLike("refs", message.refs);
      count = message.refs.length;
      checkInteger("refs.length", count, 0, MAX_REQUEST_PAGES);
      type = FrameType.REFS;
      pageSize = message.blockSize;
      body = new Uint8Array(REF_BYTES * count);
      const dv = new DataView(body.buffer);
      message.refs.forEach((r, k) => {
        const at = REF_BYTES * k;
        checkInteger(`refs[${k}].block`, r.block, 0, 0xffffffff);
        checkInteger(`refs[${k}].ref`, r.ref, 0, 0xffffffff);
        if (r.space !== "disk" && r.space !== "memory") throw new RangeError(`refs[${k}].space must be "disk" or "memory", got ${JSON.stringify(r.space)}`);
        if (!(r.md5 instanceof Uint8Array) || r.md5.byteLength !== 16) throw new RangeError(`refs[${k}].md5 must be 16 bytes`);
        dv.setUint32(at, r.block, true);
        dv.setUint32(at + 4, r.ref, true);
        dv.setUint32(at + 8, r.space === "memory" ? 1 : 0, true);
        body.set(r.md5, at + 12);
        dv.setBigUint64(at + 28, r.xxh3, true);
      });
      return sealed(type, sequence, pageSize, count, body, FrameFlags.DISK);
    }
    case "info": {
      if (typeof message.json !== "string") throw new TypeError("json must be a string");
      body = new TextEncoder().encode(message.json);
      checkInteger("json's UTF-8 length", body.byteLength, 0, MAX_INFO_BYTES);
      type = FrameType.INFO;
      break;
    }
    default:
      throw new RangeError(`unknown control message type ${JSON.stringify((message as { type: unknown }).type)}`);
  }
  return sealed(type, sequence, pageSize, count, body, flags);
}

function sealed(type: FrameType, sequence: number, pageSize: number, count: number, body: Uint8Array, flags: number): Uint8Array {
  const total = HEADER_BYTES + body.byteLength + CHECK_BYTES;
  const frame = new Uint8Array(total);
  writeHeader(frame, 0, type, sequence, pageSize, count, body.byteLength, flags);
  frame.set(body, HEADER_BYTES);
  sealFrame(frame, 0, total);
  return frame;
}

// ---------------------------------------------------------------- reading

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
  if (checkValue(bytes, 0, 24) !== dv.getUint32(24, true)) throw new CodecError("checksum", "frame header check does not match");
  const version = dv.getUint8(4);
  if (version !== FRAME_VERSION) throw new CodecError("malformed", `frame version ${version} is not ${FRAME_VERSION}`);
  const type = dv.getUint8(5);
  if (type < FrameType.PAGES || type > FrameType.REFS) throw new CodecError("malformed", `unknown frame type ${type}`);
  const flags = dv.getUint16(6, true);
  if (flags & ~FrameFlags.DISK || (flags && !DISK_TYPES.includes(type))) throw new CodecError("malformed", `flags ${flags} are not allowed on a frame of type ${type}`);
  const sequence = dv.getUint32(8, true);
  const pageSize = dv.getUint32(12, true);
  const count = dv.getUint32(16, true);
  const bodyLength = dv.getUint32(20, true);
  const name = TYPE_NAMES[type as FrameType];
  const fail = (what: string): never => {
    throw new CodecError("length", `${name} frame: ${what}`);
  };
  if (type === FrameType.REFS) {
    if (!(flags & FrameFlags.DISK)) fail("a refs frame must carry the disk flag");
    if (pageSize < 4096 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) fail(`block size ${pageSize} is not a power of two 4096..65536`);
    if (count > MAX_REQUEST_PAGES) fail(`${count} references pass the limit of ${MAX_REQUEST_PAGES}`);
    if (bodyLength !== REF_BYTES * count) fail(`body length ${bodyLength} is not ${REF_BYTES} × ${count}`);
  } else if (type === FrameType.PAGES) {
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
    if (type === FrameType.INFO && bodyLength > MAX_INFO_BYTES) fail(`info of ${bodyLength} B passes the limit of ${MAX_INFO_BYTES}`);
    if (type === FrameType.DONE && (bodyLength < 11 || bodyLength > 10 + MAX_DIGEST_NAME + MAX_DIGEST_BYTES)) {
      fail(`body length ${bodyLength} is outside 11..${10 + MAX_DIGEST_NAME + MAX_DIGEST_BYTES}`);
    }
  }
  return { type: type as FrameType, flags, sequence, pageSize, count, bodyLength, frameLength: HEADER_BYTES + bodyLength + CHECK_BYTES };
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

/** The message of a checked control frame (any type but PAGES). Throws CodecError. */
export function readControl(bytes: Uint8Array, header: FrameHeader): Exclude<Frame, PagesFrame> {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const body = HEADER_BYTES;
  const sequence = header.sequence;
  const disk = header.flags & FrameFlags.DISK ? ({ disk: true } as const) : {};
  switch (header.type) {
    case FrameType.ROUND_START:
    case FrameType.ROUND_END:
      return { type: TYPE_NAMES[header.type] as "round-start" | "round-end", sequence, round: dv.getUint32(body, true), pages: dv.getUint32(body + 4, true) };
    case FrameType.SWITCHOVER:
      // A view, not a copy: the largest control frame, read inside the downtime (a fresh copy of 256 KiB, 0.15-0.4 ms here).
      return { type: "switch-over", sequence, state: bytes.subarray(body, body + header.bodyLength), ...disk };
    case FrameType.PAGE_REQUEST: {
      const pages = new Uint32Array(header.count);
      for (let k = 0; k < header.count; k++) pages[k] = dv.getUint32(body + 4 * k, true);
      return { type: "page-request", sequence, pages, ...disk };
    }
    case FrameType.REFS: {
      const refs: BlockRef[] = [];
      for (let k = 0; k < header.count; k++) {
        const at = body + REF_BYTES * k;
        const space = dv.getUint32(at + 8, true);
        if (space > 1) throw new CodecError("malformed", `refs frame ${sequence}, entry ${k}: space ${space} is not 0 (disk) or 1 (memory)`);
        refs.push({ block: dv.getUint32(at, true), ref: dv.getUint32(at + 4, true), space: space ? "memory" : "disk", md5: bytes.slice(at + 12, at + 28), xxh3: dv.getBigUint64(at + 28, true) });
      }
      return { type: "refs", sequence, blockSize: header.pageSize, refs };
    }
    case FrameType.DONE:
      return readDone(bytes, dv, header);
    case FrameType.INFO:
      try {
        return { type: "info", sequence, json: new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(body, body + header.bodyLength)) };
      } catch {
        throw new CodecError("malformed", `info frame ${sequence}: its text is not UTF-8`);
      }
    default:
      throw new CodecError("malformed", `frame ${sequence} is a pages frame, not a control frame`);
  }
}

function readDone(bytes: Uint8Array, dv: DataView, header: FrameHeader): Exclude<Frame, PagesFrame> {
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

/** The bytes a switch-over frame carries: the engine's own record around the device state. */
export interface SwitchoverRecord {
  /** CPU and device state */
  readonly state: Uint8Array;
  /** pages the destination must not use yet (post-copy follows); undefined for pre-copy */
  readonly pending: BigUint64Array | undefined;
  /**
   * Where the guest stopped, for a destination in another process: the
   * guest's work time (s it ran, throttled time not counted) and the wall
   * clock (s since the Unix epoch).
   * Absent when both ends share one clock.
   */
  readonly stop?: { readonly guestTime: number; readonly wallTime: number };
}

// Switch-over record: u32 version | u32 pageCount (0: no pending map) |
// u32 stateLength | [version 2: f64 guestTime | f64 wallTime] | state |
// pageCount bits of pending map (u64 words, LE). Version 1 has no stop times.
const HEAD_BYTES = [0, 12, 28];

/** The body of a SWITCHOVER frame for `record` (a pending map, when there is one, covers `pageCount` pages). */
export function encodeSwitchover(record: SwitchoverRecord, pageCount: number): Uint8Array {
  const head = HEAD_BYTES[record.stop ? 2 : 1]!;
  const out = new Uint8Array(head + record.state.byteLength + 8 * (record.pending?.length ?? 0));
  out.set(record.state, head);
  writeSwitchover(out, 0, record.state.byteLength, record, pageCount);
  return out;
}

/**
 * Writes a switch-over record around its state, which lies at `at` + its
 * head's length already: the head and the pending map. Returns the
 * record's length.
 */
function writeSwitchover(bytes: Uint8Array, at: number, stateLength: number, record: Omit<SwitchoverRecord, "state">, pageCount: number): number {
  const words = record.pending ? record.pending.length : 0;
  const version = record.stop ? 2 : 1;
  const head = HEAD_BYTES[version]!;
  const dv = new DataView(bytes.buffer, bytes.byteOffset + at);
  dv.setUint32(0, version, true);
  dv.setUint32(4, record.pending ? pageCount : 0, true);
  dv.setUint32(8, stateLength, true);
  if (record.stop) {
    dv.setFloat64(12, record.stop.guestTime, true);
    dv.setFloat64(20, record.stop.wallTime, true);
  }
  if (record.pending) bytes.set(new Uint8Array(record.pending.buffer, record.pending.byteOffset, 8 * words), at + head + stateLength);
  return head + stateLength + 8 * words;
}

/**
 * A SWITCHOVER frame made ready while the guest still runs: the state lies
 * in its memory from the start, in linear memory where the check is
 * computed, so the switch-over writes only the record's head, the pending
 * map (of `pageCount` pages), the header and the checks, and copies the
 * frame once into memory also made ready. Encoding the record at the stop
 * (encodeSwitchover, then encodeControl) allocated and copied the state
 * twice and staged it into fresh linear memory to hash it: 0.4-1.9 ms for
 * 256 KiB in traced runs here, inside the downtime. `stop`: the records will carry the
 * stop times (version 2). frame() gives the same bytes as
 * encodeControl({ type: "switch-over", state: encodeSwitchover(...) }).
 */
export class SwitchoverFrame extends Owned {
  private readonly scratch = new Scratch();
  private readonly at: number;
  private readonly head: number;
  private readonly stateLength: number;
  /** where frame() copies the frame: its pages touched once here, not at the stop */
  private readonly out: Uint8Array;

  constructor(
    state: Uint8Array,
    private readonly pageCount: number,
    private readonly stop: boolean,
  ) {
    super();
    checkBytes("state", state);
    checkInteger("state.byteLength", state.byteLength, 0, MAX_STATE_BYTES);
    this.stateLength = state.byteLength;
    this.head = HEAD_BYTES[stop ? 2 : 1]!;
    const most = HEADER_BYTES + this.head + state.byteLength + 8 * Math.ceil(pageCount / 64) + CHECK_BYTES;
    this.at = this.scratch.reserve(most);
    const mem = wasm().heap.bytes();
    mem.set(state, this.at + HEADER_BYTES + this.head);
    // The frame check over a long frame runs XXH3's long-input path, which a migration may not have
    // run before: its first call runs baseline code (0.36 ms over 256 KiB, 0.025 ms once optimised),
    // inside the downtime. Run once now, before the stop, it is optimised by then.
    checkValue(mem, this.at, most - CHECK_BYTES);
    this.out = new Uint8Array(most).fill(0);
  }

  /** The frame, numbered `sequence`, for a stop at `record.stop` (given exactly when `stop` was) with `record.pending` pages to come. Once only: the frame's memory is the caller's. */
  frame(sequence: number, record: Omit<SwitchoverRecord, "state">): Uint8Array {
    this.live();
    if (Boolean(record.stop) !== this.stop) throw new RangeError(`this switch-over frame was made ${this.stop ? "with" : "without"} the stop's times`);
    if (record.pending && record.pending.length !== Math.ceil(this.pageCount / 64)) throw new RangeError(`pending map of ${record.pending.length} words for ${this.pageCount} pages`);
    const mem = wasm().heap.bytes();
    const length = writeSwitchover(mem, this.at + HEADER_BYTES, this.stateLength, record, this.pageCount);
    const total = HEADER_BYTES + length + CHECK_BYTES;
    writeHeader(mem, this.at, FrameType.SWITCHOVER, sequence, 0, 0, length);
    sealFrame(mem, this.at, total);
    const frame = this.out.subarray(0, total);
    frame.set(mem.subarray(this.at, this.at + total));
    this.dispose();
    return frame;
  }

  protected release(): void {
    this.scratch.dispose();
  }
}

/** The record a SWITCHOVER frame's body holds (its state a view of `bytes`), checked against the guest's `pageCount`; a PagemillError names what is wrong. */
export function decodeSwitchover(bytes: Uint8Array, pageCount: number): SwitchoverRecord {
  const fail = (what: string): never => {
    throw new PagemillError(`switch-over record: ${what}`);
  };
  if (bytes.byteLength < 12) fail(`${bytes.byteLength} bytes is shorter than its 12-byte head`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(0, true);
  if (version !== 1 && version !== 2) fail(`version ${version} is not 1 or 2`);
  const head = HEAD_BYTES[version]!;
  if (bytes.byteLength < head) fail(`${bytes.byteLength} bytes is shorter than its ${head}-byte head`);
  const mapPages = dv.getUint32(4, true);
  const stateLength = dv.getUint32(8, true);
  if (mapPages !== 0 && mapPages !== pageCount) fail(`pending map of ${mapPages} pages for a guest of ${pageCount}`);
  const words = mapPages ? Math.ceil(mapPages / 64) : 0;
  if (bytes.byteLength !== head + stateLength + 8 * words) fail(`length ${bytes.byteLength} is not ${head} + ${stateLength} + ${8 * words}`);
  let stop: SwitchoverRecord["stop"];
  if (version === 2) {
    stop = { guestTime: dv.getFloat64(12, true), wallTime: dv.getFloat64(20, true) };
    if (!(Number.isFinite(stop.guestTime) && stop.guestTime >= 0 && Number.isFinite(stop.wallTime))) fail(`stop times ${stop.guestTime}, ${stop.wallTime} are not finite times`);
  }
  // A view: the caller's record (a frame's body) holds it already.
  const state = bytes.subarray(head, head + stateLength);
  let pending: BigUint64Array | undefined;
  if (words) {
    pending = new BigUint64Array(words);
    new Uint8Array(pending.buffer).set(bytes.subarray(head + stateLength));
  }
  return { state, pending, ...(stop ? { stop } : {}) };
}

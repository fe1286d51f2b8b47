// The one reader of the batch codec kernels' results (assembly/table.ts): the
// page table an encode kernel writes becomes an EncodedBatch, an EncodedBatch
// becomes the page table a decode kernel reads, and a decode kernel's
// rejection record becomes a CodecError naming the codec, the page and the
// reason. LZ4, WKdm, MECOM, XBZRLE and dedup go through it; the zero scan's
// flags are already an encodings column (1 ZERO, 0 RAW).

import { CodecError, type CodecErrorCode } from "../errors.js";
import { Scratch } from "../wasm/arena.js";
import { wasm } from "../wasm/module.js";
import { ENCODING_NAMES, Encoding, countEncoded, type CodecStats, type EncodedBatch, type EncodedInPlace } from "./codec.js";

/** What a decode kernel returns when it rejected a page. */
const REJECTED = -2;
/** The rejection record: u32 page, i32 reason, i32 detail. */
const RECORD_BYTES = 12;

const align64 = (n: number): number => Math.ceil(n / 64) * 64;

/** Up to this many pages, a decode's tables are copied entry by entry: a typed-array set() has a fixed cost that dominates for a page or a few (the single-page functions). */
const SMALL_BATCH = 8;

/** Bytes of the page table for `count` pages (offsets, lengths, wire ids), rounded up to 64. */
function pageTableBytes(count: number): number {
  return align64(9 * Math.max(1, count));
}

/** A decode kernel: (dataPtr, dataLen, tablePtr, count, pagesPtr, pageSize, errPtr) → 0 or REJECTED. */
export type DecodeKernel = (dataPtr: number, dataLen: number, tablePtr: number, count: number, pagesPtr: number, pageSize: number, errPtr: number) => number;

/** What a message about a rejected page may cite: its table entry, the data, the slot. */
export interface RejectionContext {
  readonly encoding?: number;
  readonly offset?: number;
  readonly length?: number;
  readonly dataLength?: number;
  /** bytes the page decodes into */
  readonly capacity: number;
  /** wire ids the decoder takes */
  readonly accepts?: readonly Encoding[];
}

type Explain = (detail: number, at: RejectionContext) => string;

/** Every reason a kernel gives (assembly/table.ts numbers them): its name, the CodecError code, the message. */
const REASONS: Record<number, readonly [string, CodecErrorCode, Explain]> = {
  1: ["extent", "length", (_, { offset = 0, length = 0, dataLength }) => `payload [${offset}, ${offset + length}) lies outside the ${dataLength} data bytes`],
  2: ["encoding", "malformed", (_, { encoding, accepts = [] }) => `wire id ${encoding} is ${neither(accepts.map((e) => ENCODING_NAMES[e]))}`],
  3: ["raw-length", "length", (_, { length, capacity }) => `raw payload of ${length} bytes, not ${capacity}`],
  4: ["zero-length", "length", (_, { length }) => `zero page carries a payload (${length} bytes)`],
  5: ["same-value-length", "length", (_, { length }) => `same-value payload of ${length} bytes, not 4`],
  6: ["wkdm-short-stream", "truncated", () => "WKdm stream is shorter than 4 bytes"],
  7: ["wkdm-sparse-length", "length", () => "sparse (MZV) stream is not 4 + 6·n bytes"],
  8: ["wkdm-sparse-offset", "malformed", () => "sparse (MZV) record offset is past the page, not word-aligned or not above the previous one"],
  9: ["wkdm-short-header", "truncated", () => "WKdm stream is shorter than its 268 bytes of header and tags"],
  10: ["wkdm-header-order", "malformed", () => "header offsets are not in order (67 <= new <= slots <= low bits)"],
  11: ["wkdm-header-past-end", "truncated", () => "header declares more bytes than the stream holds"],
  12: ["wkdm-header-short-of-end", "length", () => "header declares fewer bytes than the stream holds"],
  13: ["wkdm-tag-counts", "malformed", () => "tag counts disagree with the header's area sizes"],
  14: ["lz4-overrun", "overrun", (_, { capacity }) => `LZ4 block decodes to more than ${capacity} bytes`],
  15: ["lz4-offset", "malformed", () => "LZ4 block has a match offset of 0 or before the start of the output"],
  16: ["lz4-truncated", "truncated", () => "LZ4 block ends inside a sequence"],
  17: ["lz4-short", "length", (bytes, { capacity }) => `LZ4 block decodes to ${bytes} bytes, not ${capacity}`],
  18: ["xbzrle-truncated", "truncated", (at) => `the XBZRLE delta ends inside a run (delta byte ${at})`],
  19: ["xbzrle-overrun", "overrun", (at) => `an XBZRLE run passes the end of the page (delta byte ${at})`],
  20: ["xbzrle-malformed", "malformed", (at) => `an XBZRLE run is empty or its length passes 14 bits (delta byte ${at})`],
};

/** "neither a nor b", "not a, b or c". */
function neither(names: readonly string[]): string {
  if (names.length === 2) return `neither ${names[0]} nor ${names[1]}`;
  return `not ${names.slice(0, -1).join(", ")} or ${names.at(-1)}`;
}

/**
 * The CodecError for a page `codec`'s kernel rejected with `reason` and
 * `detail`: its code and message by the reason, naming the codec and the
 * reason (error.codec, error.reason, and the message's end).
 */
export function rejection(codec: string, reason: number, detail: number, page: number | undefined, at: RejectionContext): CodecError {
  const known = REASONS[reason];
  const [name, code, message] = known ? [known[0], known[1], known[2](detail, at)] : [`unknown-${reason}`, "malformed" as const, `unknown kernel reason ${reason}`];
  return new CodecError(code, `${message} (${codec}: ${name})`, page, { codec, reason: name });
}

/** The CodecError for lz4Decompress's negative `status` on a block of `capacity` bytes of room. */
export function lz4Rejection(status: number, capacity: number): CodecError {
  // LZ4's reasons are 13 minus the status, as in assembly/table.ts (LZ4_REASON_BASE).
  return rejection("lz4", 13 - status, 0, undefined, { capacity });
}

const ONE_OFFSET = Uint32Array.of(0);
const ONE_LENGTH = new Uint32Array(1);
const ONE_ENCODING = new Uint8Array(1);

/**
 * A batch of one page of wire id `encoding` whose payload is all of `data`,
 * for the single-page functions' decode calls. Its tables are shared: valid
 * until the next call.
 */
export function onePage(encoding: Encoding, data: Uint8Array, pageSize: number): EncodedBatch {
  ONE_LENGTH[0] = data.length;
  ONE_ENCODING[0] = encoding;
  return { pageSize, count: 1, encodings: ONE_ENCODING, offsets: ONE_OFFSET, lengths: ONE_LENGTH, data };
}

/** The page name of a single-page function's errors: none. */
export const unnamed = (): undefined => undefined;

/** `encoded` with its payload copied out of WebAssembly memory, safe to keep. */
export function copied(encoded: EncodedInPlace): EncodedBatch {
  const { pageSize, count, encodings, offsets, lengths, ptr, dataLength } = encoded;
  return { pageSize, count, encodings, offsets, lengths, data: wasm().heap.bytes().slice(ptr, ptr + dataLength) };
}

/**
 * One codec's memory for its batch kernels (payload, page table, rejection
 * record, in one scratch region) and the reading of what they leave there.
 */
export class KernelTables {
  private readonly scratch = new Scratch();
  private tablePtr = 0;
  private outPtr = 0;

  /** Where the last reserve() put the page table and the payload. */
  get table(): number {
    return this.tablePtr;
  }
  get out(): number {
    return this.outPtr;
  }

  /** `codec`: the name errors give; `accepts`: the wire ids its decoder takes. */
  constructor(
    readonly codec: string,
    private readonly accepts: readonly Encoding[],
  ) {}

  /**
   * Reserves room for an encode call over `count` pages writing at most
   * `payloadBytes` (at `out`, its page table at `table`), after `extraBytes`
   * for the codec's own use, whose address it returns. Valid until the next
   * reserve or decode.
   */
  reserve(count: number, payloadBytes: number, extraBytes = 0): number {
    const extra = this.scratch.reserve(align64(extraBytes) + pageTableBytes(count) + Math.max(1, payloadBytes));
    this.tablePtr = extra + align64(extraBytes);
    this.outPtr = this.tablePtr + pageTableBytes(count);
    return extra;
  }

  /**
   * What the encode kernel left at reserve()'s addresses, `used` payload
   * bytes, counted into `stats` (a RAW page counts as not fit). The payload
   * stays where it is: `copied` gives the EncodedBatch that owns a copy.
   */
  encoded(pageSize: number, count: number, used: number, stats: CodecStats): EncodedInPlace {
    const { heap } = wasm();
    const at = this.tablePtr >>> 2;
    const offsets = heap.u32().slice(at, at + count);
    const lengths = heap.u32().slice(at + count, at + 2 * count);
    const encodings = heap.bytes().slice(this.tablePtr + 8 * count, this.tablePtr + 9 * count);
    let raw = 0;
    for (let k = 0; k < count; k++) if (encodings[k] === Encoding.RAW) raw++;
    const encoded = { pageSize, count, encodings, offsets, lengths, ptr: this.outPtr, dataLength: used };
    countEncoded(stats, encoded, raw);
    return encoded;
  }

  /**
   * Page k's payload length in the table the last encode call of `count`
   * pages wrote, or -1 when it went RAW (the single-page functions' answer;
   * one read of memory, as they are called per page).
   */
  lengthOrRaw(count: number, k: number): number {
    const view = wasm().heap.view();
    if (view.getUint8(this.tablePtr + 8 * count + k) === Encoding.RAW) return -1;
    return view.getUint32(this.tablePtr + 4 * (count + k), true);
  }

  /**
   * Runs `kernel` over `encoded` (its table and payload copied in), decoding
   * into the `pageSize`-byte slots at `pagesPtr` (a PageBatch's or another
   * scratch's: the call reuses this object's memory, so a payload the last
   * encode left in place is gone after it). Throws the CodecError for a rejected page, naming it `page(k)`.
   * `accepts` overrides the constructor's for the message. Returns the
   * record's detail (XBZRLE: the bytes its last delta reached).
   */
  decode(encoded: EncodedBatch, pagesPtr: number, pageSize: number, kernel: DecodeKernel, page: (k: number) => number | undefined, accepts = this.accepts): number {
    const { count, data, offsets, lengths, encodings } = encoded;
    const table = this.scratch.reserve(pageTableBytes(count) + RECORD_BYTES + Math.max(1, data.length));
    const errPtr = table + pageTableBytes(count);
    const dataPtr = errPtr + RECORD_BYTES;
    const { heap } = wasm();
    const u32 = heap.u32();
    const bytes = heap.bytes();
    const words = table >>> 2;
    if (count <= SMALL_BATCH) {
      for (let k = 0; k < count; k++) {
        u32[words + k] = offsets[k]!;
        u32[words + count + k] = lengths[k]!;
        bytes[table + 8 * count + k] = encodings[k]!;
      }
    } else {
      u32.set(offsets.subarray(0, count), words);
      u32.set(lengths.subarray(0, count), words + count);
      bytes.set(encodings.subarray(0, count), table + 8 * count);
    }
    bytes.set(data, dataPtr);
    // The record through the u32 view already at hand (`| 0` reads it signed): each view fetched costs a read of memory.buffer.
    const record = errPtr >>> 2;
    u32[record] = u32[record + 1] = u32[record + 2] = 0;
    const status = kernel(dataPtr, data.length, table, count, pagesPtr, pageSize, errPtr);
    if (status !== REJECTED) return u32[record + 2]! | 0;
    const k = u32[record]!;
    const context = { encoding: encodings[k], offset: offsets[k], length: lengths[k], dataLength: data.length, capacity: pageSize, accepts };
    throw rejection(this.codec, u32[record + 1]! | 0, u32[record + 2]! | 0, page(k), context);
  }

  dispose(): void {
    this.scratch.dispose();
  }
}

// WKdm: XNU's 16-word dictionary compressor (WKdm_new layout, byte-identical
// to XNU's WKdm_compress_new). The format and the kernels are described in
// assembly/wkdm.ts. WKdm is word-based: it works on 4096-byte pages only
// (1024 32-bit words); any other page size is a RangeError.
//
// On the wire (PageCodec): a page WKdm compresses travels as WKDM, a page of
// one repeated 32-bit word as SAME_VALUE (4-byte little-endian payload), or
// ZERO when that word is 0, and a page that WKdm cannot shrink as RAW.

import { CodecError, checkBytes, checkInstance, checkInteger, type CodecErrorCode } from "../errors.js";
import { PageBatch, Scratch } from "../wasm/arena.js";
import { wasm } from "../wasm/module.js";
import { Encoding, checkDecodeArguments, countEncoded, newCodecStats, type CodecStats, type EncodedBatch, type PageCodec } from "./codec.js";
import { Owned } from "../wasm/owned.js";

/** The only page size WKdm works on. */
export const WKDM_PAGE_SIZE = 4096;

/**
 * Longest stream the decoder can accept: header and tags, 1024 missed words,
 * 128 words of slots and 342 of low bits (no encoder writes one this long).
 */
export const WKDM_MAX_STREAM_BYTES = 4 * (67 + 1024 + 128 + 342);

/** Bytes the batch compressor's output region needs for `count` pages (the kernel's scratch runs past the last payload). */
export function wkdmCompressBound(count: number): number {
  checkInteger("count", count, 0, 2 ** 20);
  return count * WKDM_PAGE_SIZE + 64;
}

const TABLE_ENTRY_BYTES = 16;

/** Why the decoder kernel rejected a page, by the reason number it reports. */
const REJECTIONS: Record<number, readonly [CodecErrorCode, string]> = {
  1: ["truncated", "payload lies past the end of the encoded data"],
  2: ["malformed", "wire id is not one WKdm produces (raw, zero, same-value, wkdm)"],
  3: ["length", "raw payload is not 4096 bytes"],
  4: ["length", "zero page carries a payload"],
  5: ["length", "same-value payload is not 4 bytes"],
  6: ["truncated", "WKdm stream is shorter than 4 bytes"],
  7: ["length", "sparse (MZV) stream is not 4 + 6·n bytes"],
  8: ["malformed", "sparse (MZV) record offset is past the page, not word-aligned or not above the previous one"],
  9: ["truncated", "WKdm stream is shorter than its 268 bytes of header and tags"],
  10: ["malformed", "header offsets are not in order (67 <= new <= slots <= low bits)"],
  11: ["truncated", "header declares more bytes than the stream holds"],
  12: ["length", "header declares fewer bytes than the stream holds"],
  13: ["malformed", "tag counts disagree with the header's area sizes"],
};

function checkWkdmPageSize(size: number, name: string): void {
  if (size !== WKDM_PAGE_SIZE) {
    throw new RangeError(`${name} must be ${WKDM_PAGE_SIZE}: WKdm works on pages of 1024 32-bit words, got ${size}`);
  }
}

/**
 * Copies an encoded batch (table and data) into `scratch` and decodes its
 * pages, in one kernel call, into the 4096-byte slots at `pagesPtr`. Throws a
 * CodecError naming the first page the kernel rejects (`pageName` of its slot).
 */
function runDecode(scratch: Scratch, data: Uint8Array, encodings: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, pagesPtr: number, pageName: (k: number) => number | undefined): void {
  const { kernels, heap } = wasm();
  const count = encodings.length;
  const metaBytes = 8 + 8 * count + ((count + 3) & ~3);
  const base = scratch.reserve(metaBytes + data.byteLength);
  const errPtr = base;
  const offsetsPtr = base + 8;
  const lengthsPtr = offsetsPtr + 4 * count;
  const encodingsPtr = lengthsPtr + 4 * count;
  const dataPtr = base + metaBytes;
  const u32 = heap.u32();
  u32.set(offsets, offsetsPtr >>> 2);
  u32.set(lengths, lengthsPtr >>> 2);
  const bytes = heap.bytes();
  bytes.set(encodings, encodingsPtr);
  bytes.set(data, dataPtr);
  const status = kernels.wkdmDecompressBatch(dataPtr, data.byteLength, encodingsPtr, offsetsPtr, lengthsPtr, count, pagesPtr, errPtr);
  if (status === 0) return;
  const k = heap.u32()[errPtr >>> 2]!;
  const reason = heap.u32()[(errPtr >>> 2) + 1]!;
  const [code, message] = REJECTIONS[reason] ?? (["malformed", `rejected (reason ${reason})`] as const);
  throw new CodecError(code, message, pageName(k));
}

/**
 * XNU's WKdm_new as a PageCodec over batches of 4096-byte pages (WKdm is
 * word-based; other page sizes are a RangeError): one kernel call per batch
 * each way. Pages that do not fit go RAW and count in `stats.notFit`.
 */
export class WkdmCodec extends Owned implements PageCodec {
  readonly name = "wkdm";
  readonly encoding = Encoding.WKDM;
  readonly pageSizes = [WKDM_PAGE_SIZE];
  readonly stats: CodecStats = newCodecStats();
  private readonly output = new Scratch();
  private readonly table = new Scratch();
  private readonly input = new Scratch();

  encodeBatch(batch: PageBatch): EncodedBatch {
    this.live();
    checkInstance("batch", batch, PageBatch);
    checkWkdmPageSize(batch.pageSize, "batch.pageSize");
    const count = batch.count;
    const outPtr = this.output.reserve(wkdmCompressBound(count));
    const tablePtr = this.table.reserve(count * TABLE_ENTRY_BYTES);
    const { kernels, heap } = wasm();
    // A budget of 4095 bytes: a page WKdm would pack into exactly 4096 goes RAW (same size, cheaper to decode).
    const used = kernels.wkdmCompressBatch(batch.ptr, count, WKDM_PAGE_SIZE - 1, outPtr, tablePtr, 1);
    const table = heap.i32();
    const encodings = new Uint8Array(count);
    const offsets = new Uint32Array(count);
    const lengths = new Uint32Array(count);
    let notFit = 0;
    for (let k = 0, at = tablePtr >>> 2; k < count; k++, at += 4) {
      const status = table[at]!;
      offsets[k] = table[at + 1]!;
      lengths[k] = table[at + 2]!;
      if (status > 0) encodings[k] = Encoding.WKDM;
      else if (status === 0) encodings[k] = table[at + 3] === 0 ? Encoding.ZERO : Encoding.SAME_VALUE;
      else {
        encodings[k] = Encoding.RAW;
        notFit++;
      }
    }
    const data = heap.bytes().slice(outPtr, outPtr + used);
    const encoded: EncodedBatch = { pageSize: WKDM_PAGE_SIZE, count, encodings, offsets, lengths, data };
    countEncoded(this.stats, encoded, notFit);
    return encoded;
  }

  decodeBatch(encoded: EncodedBatch, batch: PageBatch, pageIndices?: ArrayLike<number>): void {
    this.live();
    checkDecodeArguments(encoded, batch);
    checkWkdmPageSize(batch.pageSize, "batch.pageSize");
    const count = encoded.count;
    if (encoded.pageSize !== WKDM_PAGE_SIZE) throw new CodecError("malformed", `encoded page size ${encoded.pageSize} is not WKdm's ${WKDM_PAGE_SIZE}`);
    if (encoded.encodings.length !== count || encoded.offsets.length !== count || encoded.lengths.length !== count) {
      throw new CodecError("length", `encoded batch of ${count} pages has ${encoded.encodings.length} encodings, ${encoded.offsets.length} offsets, ${encoded.lengths.length} lengths`);
    }
    runDecode(this.input, encoded.data, encoded.encodings, encoded.offsets, encoded.lengths, batch.ptr, (k) => pageIndices?.[k] ?? k);
    batch.count = count;
  }

  protected release(): void {
    this.output.dispose();
    this.table.dispose();
    this.input.dispose();
  }
}

let singleScratch: Scratch | undefined;
let singleInput: Scratch | undefined;

/**
 * Compresses one 4096-byte page into `out` with XNU's WKdm_compress_new, the
 * budget being `out.byteLength` (at most 4096). Returns the bytes written;
 * 0 for a page of one repeated 32-bit word (nothing is written: the value is
 * the page's first word, and the caller keeps it); -1 when XNU would refuse
 * the page with that budget. The budget is XNU's `bytes_budget`, not a
 * capacity: XNU gives up as soon as its running estimate (268 bytes of header
 * and tags, then 4 per dictionary miss) reaches the budget, so a stream is
 * refused when `out` is exactly its length, and may be with some bytes more.
 * To compress whatever fits in n bytes, pass a 4096-byte `out` and compare the
 * result with n.
 */
export function wkdmCompress(page: Uint8Array, out: Uint8Array): number {
  checkBytes("page", page);
  checkBytes("out", out);
  const { kernels, heap } = wasm();
  heap.checkOutside("out", out);
  page = heap.outside(page);
  checkWkdmPageSize(page.byteLength, "page.byteLength");
  singleScratch ??= new Scratch();
  const pagePtr = singleScratch.reserve(WKDM_PAGE_SIZE + TABLE_ENTRY_BYTES + wkdmCompressBound(1));
  const tablePtr = pagePtr + WKDM_PAGE_SIZE;
  const outPtr = tablePtr + TABLE_ENTRY_BYTES;
  heap.bytes().set(page, pagePtr);
  kernels.wkdmCompressBatch(pagePtr, 1, Math.min(out.byteLength, WKDM_PAGE_SIZE), outPtr, tablePtr, 0);
  const status = heap.i32()[tablePtr >>> 2]!;
  if (status > 0) out.set(heap.bytes().subarray(outPtr, outPtr + status));
  return status;
}

/**
 * Decompresses one WKdm stream (exactly `src.byteLength` bytes, default or
 * sparse form) into the first 4096 bytes of `out`. Throws CodecError on
 * malformed input. A single-value page (wkdmCompress returned 0) has no
 * stream: the caller fills it with its value.
 */
export function wkdmDecompress(src: Uint8Array, out: Uint8Array): void {
  checkBytes("src", src);
  checkBytes("out", out);
  wasm().heap.checkOutside("out", out);
  src = wasm().heap.outside(src);
  if (out.byteLength < WKDM_PAGE_SIZE) throw new RangeError(`out.byteLength must be at least ${WKDM_PAGE_SIZE}, got ${out.byteLength}`);
  if (src.byteLength > WKDM_MAX_STREAM_BYTES) {
    throw new CodecError("length", `WKdm stream of ${src.byteLength} bytes is longer than any valid one (${WKDM_MAX_STREAM_BYTES})`);
  }
  singleScratch ??= new Scratch();
  singleInput ??= new Scratch();
  const pagePtr = singleScratch.reserve(WKDM_PAGE_SIZE);
  runDecode(singleInput, src, Uint8Array.of(Encoding.WKDM), Uint32Array.of(0), Uint32Array.of(src.byteLength), pagePtr, () => undefined);
  out.set(wasm().heap.bytes().subarray(pagePtr, pagePtr + WKDM_PAGE_SIZE));
}

let hitScratch: Scratch | undefined;

/**
 * Dictionary hit rate of each loaded page of `batch` (4096-byte pages): the
 * fraction of sampled words that are zero or match WKdm's 16-word dictionary
 * exactly or in their high 22 bits, sampling one 16-word block in every
 * `stride` (1 = every word; the default 4 reads a quarter of each page).
 * MECOM's measure of "strong regularity". One kernel call for the batch.
 */
export function wkdmHitRates(batch: PageBatch, stride = 4): Float32Array {
  checkInstance("batch", batch, PageBatch);
  checkWkdmPageSize(batch.pageSize, "batch.pageSize");
  checkInteger("stride", stride, 1, 64);
  hitScratch ??= new Scratch();
  const hitsPtr = hitScratch.reserve(4 * batch.count);
  const { kernels, heap } = wasm();
  const sampled = kernels.wkdmHitRateBatch(batch.ptr, batch.count, stride, hitsPtr);
  const hits = heap.u32().subarray(hitsPtr >>> 2, (hitsPtr >>> 2) + batch.count);
  const rates = new Float32Array(batch.count);
  for (let k = 0; k < batch.count; k++) rates[k] = hits[k]! / sampled;
  return rates;
}

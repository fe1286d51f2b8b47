// WKdm: XNU's 16-word dictionary compressor (WKdm_new layout, byte-identical
// to XNU's WKdm_compress_new). The format and the kernels are described in
// assembly/wkdm.ts. WKdm is word-based: it works on 4096-byte pages only
// (1024 32-bit words); any other page size is a RangeError.
//
// On the wire (PageCodec): a page WKdm compresses travels as WKDM, a page of
// one repeated 32-bit word as SAME_VALUE (4-byte little-endian payload), or
// ZERO when that word is 0, and a page that WKdm cannot shrink as RAW.

import { CodecError, checkBytes, checkInstance, checkInteger } from "../errors.js";
import { PageBatch, Scratch } from "../wasm/arena.js";
import { wasm } from "../wasm/module.js";
import { Encoding, checkDecodeArguments, newCodecStats, type CodecStats, type EncodedBatch, type EncodedInPlace, type PageCodec } from "./codec.js";
import { KernelTables, copied, onePage, unnamed } from "./kernel-result.js";
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

/** The wire ids WKdm's decoder takes. */
const WKDM_ENCODINGS = [Encoding.RAW, Encoding.ZERO, Encoding.SAME_VALUE, Encoding.WKDM];

function checkWkdmPageSize(size: number, name: string): void {
  if (size !== WKDM_PAGE_SIZE) {
    throw new RangeError(`${name} must be ${WKDM_PAGE_SIZE}: WKdm works on pages of 1024 32-bit words, got ${size}`);
  }
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
  private readonly tables = new KernelTables("wkdm", WKDM_ENCODINGS);

  encodeBatch(batch: PageBatch): EncodedBatch {
    return copied(this.encodeInPlace(batch));
  }

  encodeInPlace(batch: PageBatch): EncodedInPlace {
    this.live();
    checkInstance("batch", batch, PageBatch);
    checkWkdmPageSize(batch.pageSize, "batch.pageSize");
    const count = batch.count;
    this.tables.reserve(count, wkdmCompressBound(count));
    // A budget of 4095 bytes: a page WKdm would pack into exactly 4096 goes RAW (same size, cheaper to decode).
    const used = wasm().kernels.wkdmCompressBatch(batch.ptr, count, WKDM_PAGE_SIZE - 1, this.tables.out, this.tables.table);
    return this.tables.encoded(WKDM_PAGE_SIZE, count, used, this.stats);
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
    this.tables.decode(encoded, batch.ptr, WKDM_PAGE_SIZE, wasm().kernels.wkdmDecompressBatch, (k) => pageIndices?.[k] ?? k);
    batch.count = count;
  }

  protected release(): void {
    this.tables.dispose();
  }
}

/** The single-page functions' kernel memory, and the page they decode into. */
let single: KernelTables | undefined;
let singlePage: Scratch | undefined;

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
  single ??= new KernelTables("wkdm", WKDM_ENCODINGS);
  const pagePtr = single.reserve(1, wkdmCompressBound(1), WKDM_PAGE_SIZE);
  const outPtr = single.out;
  heap.bytes().set(page, pagePtr);
  kernels.wkdmCompressBatch(pagePtr, 1, Math.min(out.byteLength, WKDM_PAGE_SIZE), outPtr, single.table);
  const length = single.lengthOrRaw(1, 0);
  // 0 or 4 bytes are a page of one repeated word (ZERO, SAME_VALUE): WKdm's shortest stream is 10 bytes.
  if (length <= 4) return Math.min(length, 0);
  out.set(heap.bytes().subarray(outPtr, outPtr + length));
  return length;
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
  singlePage ??= new Scratch();
  single ??= new KernelTables("wkdm", WKDM_ENCODINGS);
  const pagePtr = singlePage.reserve(WKDM_PAGE_SIZE);
  single.decode(onePage(Encoding.WKDM, src, WKDM_PAGE_SIZE), pagePtr, WKDM_PAGE_SIZE, wasm().kernels.wkdmDecompressBatch, unnamed);
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

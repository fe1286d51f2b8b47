// LZ4: the batch page codec and the single-block API, over the kernels in
// assembly/lz4.ts. Blocks are standard LZ4 blocks (any LZ4 decoder reads
// them) and byte-identical to LZ4 1.9's LZ4_compress_default.

import { CodecError, checkInstance, checkBytes, checkInteger, type CodecErrorCode } from "../errors.js";
import { PageBatch, Scratch } from "../wasm/arena.js";
import { wasm } from "../wasm/module.js";
import { Encoding, checkDecodeArguments, countEncoded, newCodecStats, type CodecStats, type EncodedBatch, type PageCodec } from "./codec.js";
import { Owned } from "../wasm/owned.js";

/**
 * Largest input of the single-block API, in bytes (1 GiB). The input and its
 * output both live in WebAssembly memory (at most 4 GiB), which bounds it;
 * the LZ4 format itself allows up to 0x7E000000 bytes.
 */
export const LZ4_MAX_INPUT_SIZE = 2 ** 30;

// Kernel status codes (assembly/lz4.ts).
const OVERRUN = -1;
const MALFORMED = -2;
const TRUNCATED = -3;

/** Worst-case block size for `n` input bytes: a buffer this large always fits. */
export function lz4CompressBound(n: number): number {
  checkInteger("n", n, 0, LZ4_MAX_INPUT_SIZE);
  return n + Math.floor(n / 255) + 16;
}

function decodeFailure(status: number, capacity: number, page?: number): CodecError {
  const [code, message]: [CodecErrorCode, string] =
    status === OVERRUN
      ? ["overrun", `LZ4 block decodes to more than ${capacity} bytes`]
      : status === MALFORMED
        ? ["malformed", "LZ4 block has a match offset of 0 or before the start of the output"]
        : status === TRUNCATED
          ? ["truncated", "LZ4 block ends inside a sequence"]
          : ["malformed", `LZ4 decoder status ${status}`];
  return new CodecError(code, message, page);
}


/** Largest `src` and `out` of lz4DecompressBlock: lengths cross into the kernels as 32-bit values. */
const MAX_DECODE_LENGTH = 2 ** 31 - 1;
/** Scratch above this many bytes is given back after the call rather than kept for the next. */
const KEEP_SCRATCH_BYTES = 16 << 20;

let blockScratch: Scratch | undefined;

function releaseIfLarge(bytes: number): void {
  if (bytes > KEEP_SCRATCH_BYTES) blockScratch?.dispose();
}

/**
 * Compresses `src` (0..LZ4_MAX_INPUT_SIZE bytes) into one LZ4 block in `out`.
 * Returns the block's length, or 0 when it does not fit in `out` (an `out`
 * of lz4CompressBound(src.length) bytes always fits).
 */
export function lz4CompressBlock(src: Uint8Array, out: Uint8Array): number {
  checkBytes("src", src);
  checkBytes("out", out);
  checkInteger("src.length", src.length, 0, LZ4_MAX_INPUT_SIZE);
  const room = Math.min(out.length, lz4CompressBound(src.length));
  const { kernels, heap } = wasm();
  heap.checkOutside("out", out);
  src = heap.outside(src);
  blockScratch ??= new Scratch();
  const srcPtr = blockScratch.reserve(Math.max(1, src.length + room));
  const dstPtr = srcPtr + src.length;
  heap.bytes().set(src, srcPtr);
  const written = kernels.lz4Compress(srcPtr, src.length, dstPtr, room) >>> 0;
  out.set(heap.bytes().subarray(dstPtr, dstPtr + written));
  releaseIfLarge(src.length + room);
  return written;
}

/**
 * Decodes the LZ4 block `src` into `out`; returns the bytes written. Throws
 * CodecError: "overrun" when the block decodes to more than out.length bytes,
 * "malformed" for an offset outside the output, "truncated" when the block
 * ends inside a sequence. Bytes of `out` past the returned length, and all of
 * it after an error, are unspecified.
 */
export function lz4DecompressBlock(src: Uint8Array, out: Uint8Array): number {
  checkBytes("src", src);
  checkBytes("out", out);
  checkInteger("src.length", src.length, 0, MAX_DECODE_LENGTH);
  checkInteger("out.length", out.length, 0, MAX_DECODE_LENGTH);
  const { kernels, heap } = wasm();
  heap.checkOutside("out", out);
  src = heap.outside(src);
  blockScratch ??= new Scratch();
  const srcPtr = blockScratch.reserve(Math.max(1, src.length + out.length));
  const dstPtr = srcPtr + src.length;
  heap.bytes().set(src, srcPtr);
  const status = kernels.lz4Decompress(srcPtr, src.length, dstPtr, out.length);
  if (status >= 0) out.set(heap.bytes().subarray(dstPtr, dstPtr + status));
  releaseIfLarge(src.length + out.length);
  if (status < 0) throw decodeFailure(status, out.length);
  return status;
}

/**
 * LZ4 over a whole batch: one kernel call compresses every page into its own
 * block; a page whose block would not be shorter than the page goes RAW.
 */
export class Lz4Codec extends Owned implements PageCodec {
  readonly name = "lz4";
  readonly encoding = Encoding.LZ4;
  readonly stats: CodecStats = newCodecStats();
  private readonly payload = new Scratch();
  private readonly tables = new Scratch();

  encodeBatch(batch: PageBatch): EncodedBatch {
    this.live();
    checkInstance("batch", batch, PageBatch);
    const { kernels, heap } = wasm();
    const { count, pageSize } = batch;
    const outPtr = this.payload.reserve(Math.max(1, count) * pageSize);
    const lengthsPtr = this.tables.reserve(4 * Math.max(1, count));
    const total = kernels.lz4CompressBatch(batch.ptr, pageSize, count, outPtr, lengthsPtr) >>> 0;
    const table = heap.i32().subarray(lengthsPtr >>> 2, (lengthsPtr >>> 2) + count);
    const encodings = new Uint8Array(count);
    const offsets = new Uint32Array(count);
    const lengths = new Uint32Array(count);
    let at = 0;
    let notFit = 0;
    for (let k = 0; k < count; k++) {
      const len = table[k]!;
      offsets[k] = at;
      if (len < 0) {
        encodings[k] = Encoding.RAW;
        lengths[k] = pageSize;
        notFit++;
      } else {
        encodings[k] = Encoding.LZ4;
        lengths[k] = len;
      }
      at += lengths[k]!;
    }
    const encoded: EncodedBatch = { pageSize, count, encodings, offsets, lengths, data: heap.bytes().slice(outPtr, outPtr + total) };
    countEncoded(this.stats, encoded, notFit);
    return encoded;
  }

  decodeBatch(encoded: EncodedBatch, batch: PageBatch): void {
    this.live();
    checkDecodeArguments(encoded, batch);
    const { count, pageSize, encodings, offsets, lengths, data } = encoded;
    if (pageSize !== batch.pageSize) throw new RangeError(`encoded.pageSize ${pageSize} != batch.pageSize ${batch.pageSize}`);
    const kernelLengths = new Int32Array(count);
    for (let k = 0; k < count; k++) {
      const end = offsets[k]! + lengths[k]!;
      if (end > data.length) {
        throw new CodecError("length", `payload [${offsets[k]}, ${end}) lies outside the ${data.length} data bytes`, k);
      }
      if (encodings[k] === Encoding.RAW) {
        if (lengths[k] !== pageSize) throw new CodecError("length", `raw payload of ${lengths[k]} bytes, not ${pageSize}`, k);
        kernelLengths[k] = -1;
      } else if (encodings[k] === Encoding.LZ4) {
        kernelLengths[k] = lengths[k]!;
      } else {
        throw new CodecError("malformed", `encoding ${encodings[k]} is neither lz4 nor raw`, k);
      }
    }
    const { kernels, heap } = wasm();
    const dataPtr = this.payload.reserve(Math.max(1, data.length));
    const tablePtr = this.tables.reserve(12 * Math.max(1, count));
    const words = tablePtr >>> 2;
    const i32 = heap.i32();
    i32.set(offsets, words);
    i32.set(kernelLengths, words + count);
    heap.bytes().set(data, dataPtr);
    const failed = kernels.lz4DecompressBatch(dataPtr, data.length, tablePtr, tablePtr + 4 * count, count, batch.ptr, pageSize, tablePtr + 8 * count);
    if (failed > 0) {
      const results = heap.i32().subarray(words + 2 * count, words + 3 * count);
      const k = results.findIndex((r) => r !== pageSize);
      const status = results[k]!;
      if (status >= 0) throw new CodecError("length", `LZ4 block decodes to ${status} bytes, not ${pageSize}`, k);
      throw decodeFailure(status, pageSize, k);
    }
    batch.count = count;
  }

  protected release(): void {
    this.payload.dispose();
    this.tables.dispose();
  }
}

// LZ4: the batch page codec and the single-block API, over the kernels in
// assembly/lz4.ts. Blocks are standard LZ4 blocks (any LZ4 decoder reads
// them) and byte-identical to LZ4 1.9's LZ4_compress_default.

import { checkInstance, checkBytes, checkInteger } from "../errors.js";
import { PageBatch, Scratch } from "../wasm/arena.js";
import { wasm } from "../wasm/module.js";
import { Encoding, checkDecodeArguments, newCodecStats, type CodecStats, type EncodedBatch, type EncodedInPlace, type PageCodec } from "./codec.js";
import { KernelTables, copied, lz4Rejection } from "./kernel-result.js";
import { Owned } from "../wasm/owned.js";

/**
 * Largest input of the single-block API, in bytes (1 GiB). The input and its
 * output both live in WebAssembly memory (at most 4 GiB), which bounds it;
 * the LZ4 format itself allows up to 0x7E000000 bytes.
 */
export const LZ4_MAX_INPUT_SIZE = 2 ** 30;

/** Worst-case block size for `n` input bytes: a buffer this large always fits. */
export function lz4CompressBound(n: number): number {
  checkInteger("n", n, 0, LZ4_MAX_INPUT_SIZE);
  return n + Math.floor(n / 255) + 16;
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
  if (status < 0) throw lz4Rejection(status, out.length);
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
  private readonly tables = new KernelTables("lz4", [Encoding.LZ4, Encoding.RAW]);

  encodeBatch(batch: PageBatch): EncodedBatch {
    return copied(this.encodeInPlace(batch));
  }

  encodeInPlace(batch: PageBatch): EncodedInPlace {
    this.live();
    checkInstance("batch", batch, PageBatch);
    const { count, pageSize } = batch;
    this.tables.reserve(count, count * pageSize);
    const used = wasm().kernels.lz4CompressBatch(batch.ptr, pageSize, count, this.tables.out, this.tables.table);
    return this.tables.encoded(pageSize, count, used, this.stats);
  }

  decodeBatch(encoded: EncodedBatch, batch: PageBatch, pageIndices?: ArrayLike<number>): void {
    this.live();
    checkDecodeArguments(encoded, batch);
    if (encoded.pageSize !== batch.pageSize) throw new RangeError(`encoded.pageSize ${encoded.pageSize} != batch.pageSize ${batch.pageSize}`);
    this.tables.decode(encoded, batch.ptr, batch.pageSize, wasm().kernels.lz4DecompressBatch, (k) => pageIndices?.[k] ?? k);
    batch.count = encoded.count;
  }

  protected release(): void {
    this.tables.dispose();
  }
}

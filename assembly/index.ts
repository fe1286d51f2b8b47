// The one WebAssembly module of pagemill: every kernel family, re-exported.
// Kernels take pointers and counts into linear memory, return status codes
// (>= 0 ok, -1 does not fit, -2 malformed) and never trap on data. The batch
// codec kernels share one page table and rejection record (./table). Memory is
// managed from TypeScript (src/wasm/heap.ts), above `heapBase()`.

export { zeroScan, rawFrameBody } from "./zero";
export { bitmapCount, bitmapExtract, bitmapNextSet, bitmapFill, bitmapOr, bitmapAndNot, bitmapSync } from "./bitmap";
export { wkdmCompressBatch, wkdmDecompressBatch, wkdmHitRateBatch } from "./wkdm";
export { xbzrleEncodeBatch, xbzrleDecodeBatch } from "./xbzrle";
export { lz4Compress, lz4CompressBatch, lz4Decompress, lz4DecompressBatch } from "./lz4";
export { xxh32, xxh32Batch, xxh32Reset, xxh32Update, xxh32Digest, xxh64, xxh64Batch, xxh64Reset, xxh64Update, xxh64Digest, xxh3, xxh3Batch, xxh3Reset, xxh3Update, xxh3Digest, xxhStateSize } from "./xxhash";
export { pagesEqual, dedupPackBatch } from "./dedup";
export { mecomEncodeBatch, mecomDecodeBatch, mecomEvidenceBytes } from "./mecom";
export { md5Batch, md5Init, md5Update, md5Final } from "./md5";

/** First byte of linear memory free for the TypeScript heap (past static data). */
export function heapBase(): usize {
  return (__heap_base + 63) & ~(<usize>63);
}

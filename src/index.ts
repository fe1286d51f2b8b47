// pagemill's public API. Call `await init()` once; everything after is synchronous.

export { init, initSync } from "./wasm/module.js";
export { PageBatch, type PageSource } from "./wasm/arena.js";
export { PagemillError, CodecError, type CodecErrorCode } from "./errors.js";
export { scanZeroPages, isZeroPage, type ZeroScan } from "./codecs/zero.js";
export { Lz4Codec, lz4CompressBlock, lz4CompressBound, lz4DecompressBlock, LZ4_MAX_INPUT_SIZE } from "./codecs/lz4.js";
export { DirtyBitmap, MAX_BITMAP_PAGES } from "./guest/bitmap.js";

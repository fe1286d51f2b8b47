// pagemill/browser: the kernels, codecs and hashes without anything of
// Node's (files, streams, zlib, worker threads), so a browser loads it as an
// ES module with no bundler. `await init()` fetches build/pagemill.wasm
// beside dist/ (or pass the module's bytes).

export { init, initSync } from "./wasm/module.js";
export { PageBatch, type PageSource } from "./wasm/arena.js";
export { PagemillError, CodecError, DisposedError, type CodecErrorCode } from "./errors.js";
export { scanZeroPages, isZeroPage, type ZeroScan } from "./codecs/zero.js";
export { ImageSurvey, surveyImage, type SurveyReport, type CodecSurvey } from "./codecs/survey.js";
export { Encoding, ENCODING_NAMES, type EncodedBatch, type PageCodec, type CodecStats } from "./codecs/codec.js";
export { WkdmCodec, wkdmCompress, wkdmDecompress, wkdmCompressBound } from "./codecs/wkdm.js";
export { Lz4Codec, lz4CompressBlock, lz4CompressBound, lz4DecompressBlock } from "./codecs/lz4.js";
export { MecomCodec } from "./codecs/mecom.js";
export { xbzrleEncode, xbzrleDecode, XbzrleCodec } from "./codecs/xbzrle.js";
export { codecNames, codecNamesFor, createCodec } from "./codecs/registry.js";
export { xxh32, xxh64, xxh3, xxh32Batch, xxh64Batch, xxh3Batch, Xxh32Hasher, Xxh64Hasher, Xxh3Hasher } from "./hash/xxhash.js";
export { md5, md5Batch, Md5 } from "./hash/md5.js";
export { toHex, hex32, hex64 } from "./hash/digest.js";
export { DedupIndex, DuplicateCounter } from "./hash/dedup.js";

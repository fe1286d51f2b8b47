// pagemill's public API. Call `await init()` once; everything after is synchronous.

export { init, initSync } from "./wasm/module.js";
export { PageBatch, type PageSource } from "./wasm/arena.js";
export { PagemillError, CodecError, type CodecErrorCode } from "./errors.js";
export { scanZeroPages, isZeroPage, type ZeroScan } from "./codecs/zero.js";
export { WkdmCodec, wkdmCompress, wkdmDecompress, wkdmCompressBound, wkdmHitRates, WKDM_PAGE_SIZE, WKDM_MAX_STREAM_BYTES } from "./codecs/wkdm.js";
export { Lz4Codec, lz4CompressBlock, lz4CompressBound, lz4DecompressBlock, LZ4_MAX_INPUT_SIZE } from "./codecs/lz4.js";
export {
  xbzrleEncode,
  xbzrleDecode,
  XbzrleCache,
  XbzrleCodec,
  XBZRLE_MAX_RUN,
  XBZRLE_DEFAULT_CACHE_SIZE,
  type XbzrleCacheOptions,
  type XbzrleCounters,
} from "./codecs/xbzrle.js";
export { DirtyBitmap, MAX_BITMAP_PAGES } from "./guest/bitmap.js";
export { xxh32, xxh64, xxh3, xxh32Batch, xxh64Batch, xxh3Batch, Xxh32Hasher, Xxh64Hasher, Xxh3Hasher, type Seed64, type BatchDigestOptions } from "./hash/xxhash.js";
export { toHex, hex32, hex64 } from "./hash/digest.js";
export { DedupIndex, DedupCodec, DuplicateCounter, MAX_LOCATION, type DedupIndexOptions, type DedupCodecOptions, type DedupCounters, type FastDigest } from "./hash/dedup.js";
export { md5, md5Batch, Md5, MD5_BYTES } from "./hash/md5.js";
export { codecNames, codecNamesFor, codecEntry, createCodec, decoderFor, type CodecEntry } from "./codecs/registry.js";
export {
  encodeFrame,
  encodeControl,
  decodeFrame,
  readFrameHeader,
  maxFramePages,
  newWireStats,
  FrameEncoder,
  FrameDecoder,
  FrameType,
  FRAME_MAGIC,
  FRAME_VERSION,
  HEADER_BYTES,
  MAX_FRAME_PAGES,
  MAX_FRAME_PAGE_BYTES,
  MAX_FRAME_BYTES,
  MAX_STATE_BYTES,
  MAX_REQUEST_PAGES,
  type Frame,
  type PagesFrame,
  type FrameHeader,
  type ControlMessage,
  type PipelineCodecs,
  type WireStats,
  type PageDestination,
  type FrameDecoders,
} from "./wire/frame.js";
export { FrameSplitter, createEncodeStream, createDecodeStream, FrameEncoderStream, FrameDecoderStream, type EncodeInput, type EncodeStreamOptions, type DecodeStreamOptions } from "./wire/stream.js";
export { ParallelEncoder, MAX_CHANNELS, type ChannelOptions } from "./wire/channels.js";

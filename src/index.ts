// pagemill's public API. Call `await init()` once; everything after is synchronous.

export { init, initSync } from "./wasm/module.js";
export { PageBatch, type PageSource } from "./wasm/arena.js";
export { PagemillError, CodecError, DisposedError, VerificationError, type CodecErrorCode } from "./errors.js";
export { scanZeroPages, isZeroPage, type ZeroScan } from "./codecs/zero.js";
export { ImageSurvey, surveyImage, type SurveyReport, type CodecSurvey } from "./codecs/survey.js";
export { Encoding, ENCODING_NAMES, newCodecStats, type EncodedBatch, type PageCodec, type CodecStats, type XbzrleStats } from "./codecs/codec.js";
export { WkdmCodec, wkdmCompress, wkdmDecompress, wkdmCompressBound, wkdmHitRates, WKDM_PAGE_SIZE, WKDM_MAX_STREAM_BYTES } from "./codecs/wkdm.js";
export { Lz4Codec, lz4CompressBlock, lz4CompressBound, lz4DecompressBlock, LZ4_MAX_INPUT_SIZE } from "./codecs/lz4.js";
export { AutoCodec, AUTO_CHOICES, type AutoChoice } from "./codecs/auto.js";
export { MecomCodec, MECOM_DEFAULT_THRESHOLD, MECOM_DEFAULT_STRIDE, type MecomOptions } from "./codecs/mecom.js";
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
export { Guest, type AccessKind, type AccessHook, type AdvanceReport, type Workload } from "./guest/guest.js";
export { ChunkedPages, MAX_CHUNKED_PAGES, MAX_DEFAULT_CHUNKS, defaultPagesPerChunk, MemoryLimitError, checkFitsInMemory, memoryLimit } from "./guest/chunks.js";
export { FlatPages, zeroPage, asPageMemory, differingPages, flatBytes, sameBytes, type PageMemory } from "./guest/pages.js";
export {
  TraceReader,
  TraceWriter,
  TraceError,
  applyEpoch,
  replayTrace,
  TRACE_MAGIC,
  type TraceErrorCode,
  type TraceHeader,
  type TraceMeta,
  type TraceRegion,
  type RegionKind,
  type TraceEpoch,
  type TraceWriterOptions,
  type OpenTraceOptions,
} from "./guest/pagetrace.js";
export {
  fillSynthetic,
  POPULATED_REGION_PAGES,
  PoissonWorkload,
  SweepWorkload,
  IdleWorkload,
  TraceReplay,
  ContentWriter,
  ContentStats,
  syntheticImage,
  syntheticGuest,
  CONTENT_MODELS,
  IMAGE_PROFILES,
  TRACE_CHANGED_BYTES,
  DEFAULT_READS,
  NO_READS,
  type ContentModel,
  type ImageProfile,
  type ProfileName,
  type Popularity,
  type PoissonOptions,
  type SweepOptions,
  type ReadModel,
  type TraceReplayOptions,
  type SyntheticImageOptions,
} from "./guest/workloads.js";
export { recordProcess, recordFile, writableMappings, RecordError, type RecordOptions, type RecordResult, type PassInfo, type RecordErrorCode } from "./guest/recorder.js";
export { xxh32, xxh64, xxh3, xxh32Batch, xxh64Batch, xxh3Batch, Xxh32Hasher, Xxh64Hasher, Xxh3Hasher, type Seed64, type BatchDigestOptions } from "./hash/xxhash.js";
export { toHex, hex32, hex64 } from "./hash/digest.js";
export { DedupIndex, DuplicateCounter, MAX_LOCATION, type DedupIndexOptions, type DedupCounters, type FastDigest } from "./hash/dedup.js";
export { DedupCodec, type DedupCodecOptions } from "./codecs/dedup.js";
export { md5, md5Batch, Md5, MD5_BYTES } from "./hash/md5.js";
export { codecNames, codecNamesFor, codecEntry, createCodec, decoderFor, type CodecEntry } from "./codecs/registry.js";
export {
  encodeControl,
  readFrameHeader,
  maxFramePages,
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
} from "./wire/frame.js";
export {
  encodeFrame,
  newWireStats,
  FrameEncoder,
  Pipeline,
  buildPipeline,
  disposePipeline,
  pipelineEntries,
  type PipelineCodecs,
  type WireStats,
  type EncodedFrame,
  type PipelineReport,
  type PipelineStages,
} from "./wire/pipeline.js";
export { decodeFrame, FrameDecoder, type PageDestination, type FrameDecoders } from "./wire/decoder.js";
export { FrameSplitter, createEncodeStream, createDecodeStream, FrameEncoderStream, FrameDecoderStream, type EncodeInput, type EncodeStreamOptions, type DecodeStreamOptions } from "./wire/stream.js";
export { ParallelEncoder, MAX_CHANNELS, type ChannelOptions } from "./wire/channels.js";
export { VirtualClock, RealClock, DeadlockError, type Clock } from "./clock.js";
export { Inbox, ChannelClosedError, type Channel } from "./net/channel.js";
export { SimulatedLink, RateSchedule, type LinkOptions, type RateStep } from "./net/link.js";
export { LoopbackPair, type LoopbackOptions } from "./net/loopback.js";
export { CostModel, CostTableError, DEFAULT_COSTS, loadCostTable, parseCostTable, type CostTable, type CodecCost } from "./codecs/cost.js";
export { normaliseOptions, type EngineOptions, type EngineSettings, type MigrationOptions, type MigrationProgress, type Phase } from "./engine/options.js";
export { Source, type SourceParts } from "./engine/source.js";
export { Destination, PageState, type DestinationParts, type SharedGuest } from "./engine/destination.js";
export { Tasks } from "./engine/tasks.js";
export { migrate, simulate, simulationCost, SimulationCostError, DEFAULT_MAX_TIME, MAX_SIMULATED_WRITES, STRATEGIES, STRATEGY_NAMES, type LinkSpec, type SimulationOptions, type Strategy } from "./engine/migrate.js";
export { verifyMemory } from "./engine/verify.js";
export { sendMigration, receiveMigration, REMOTE_PROTOCOL, type MigrationInfo, type DestinationReport, type SendOptions, type ReceiveOptions, type ReceiveResult } from "./engine/remote.js";
export { sendMemory, receiveMemory, type SendMemoryOptions, type ReceiveMemoryOptions, type ReceivedMemory, type MemoryStats } from "./engine/memory.js";
export { HashTrackedWorkload, type HashTrackingOptions, type ProgramMemory } from "./guest/hashed.js";
export {
  connectChannel,
  listenChannel,
  TcpChannel,
  TcpListener,
  NetworkError,
  AuthenticationError,
  ProtocolError,
  TCP_PROTOCOL_VERSION,
  DEFAULT_TIMEOUT,
  DEFAULT_RECOVER_TIMEOUT,
  type TcpOptions,
  type Recovery,
} from "./net/tcp.js";
export { CuttingProxy } from "./net/faults.js";
export type { MigrationStats, RoundRow, StopReason, StrategyName, ThrottleStep, SourceCounters, DestinationCounters, TrafficCounters } from "./engine/metrics.js";
export { Random } from "./random.js";

// The contract every page codec keeps, and the registry of wire ids.
//
// A codec encodes a whole PageBatch in one call and returns an EncodedBatch:
// per page, the encoding actually used (a wire id), and its payload. An
// encoder never fails on data: a page it cannot shrink comes back as RAW and
// is counted. A decoder checks every length before it writes and throws a
// CodecError naming the page and the cause.

import { CodecError, checkInstance, checkInteger, checkObject } from "../errors.js";
import { PageBatch } from "../wasm/arena.js";

/** Wire ids: how one page travels. Stable: they appear in frames and files. */
export const Encoding = {
  /** the page bytes as they are */
  RAW: 0,
  /** all zero: no payload */
  ZERO: 1,
  /** one 32-bit value repeated: 4-byte payload, little-endian */
  SAME_VALUE: 2,
  /** WKdm_new compressed words (4 KiB pages) */
  WKDM: 3,
  /** one LZ4 block */
  LZ4: 4,
  /** QEMU XBZRLE delta against the last version sent */
  XBZRLE: 5,
  /** reference to content the destination already holds */
  DEDUP: 6,
} as const;
export type Encoding = (typeof Encoding)[keyof typeof Encoding];

export const ENCODING_NAMES: Record<Encoding, string> = {
  0: "raw",
  1: "zero",
  2: "same-value",
  3: "wkdm",
  4: "lz4",
  5: "xbzrle",
  6: "dedup",
};

/** Encoded pages of one batch, owned by JavaScript (safe to keep and send). */
export interface EncodedBatch {
  readonly pageSize: number;
  readonly count: number;
  /** encodings[k]: the wire id page k was encoded with */
  readonly encodings: Uint8Array;
  /** offsets[k], lengths[k]: page k's payload within `data` */
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  readonly data: Uint8Array;
}

/**
 * An EncodedBatch whose payload is still in the codec's WebAssembly memory:
 * `dataLength` bytes at `ptr` (offsets are from `ptr`). Valid only until the
 * codec's next call: the pipeline writes it into the frame before then.
 */
export interface EncodedInPlace extends Omit<EncodedBatch, "data"> {
  readonly ptr: number;
  readonly dataLength: number;
}

/** Counters every codec keeps; adaptive choices read only from these. */
export interface CodecStats {
  /** pages given to encodeBatch */
  pages: number;
  /** bytes of those pages */
  inputBytes: number;
  /** payload bytes produced (excluding any framing) */
  outputBytes: number;
  /** pages that came out RAW because the codec could not shrink them */
  notFit: number;
  /** pages per wire id actually used */
  byEncoding: Record<string, number>;
  /** payload bytes per wire id actually used */
  bytesByEncoding: Record<string, number>;
  /** an adaptive codec (auto): pages it gave to each codec it chose among */
  choices?: Record<string, number>;
}

export function newCodecStats(): CodecStats {
  return { pages: 0, inputBytes: 0, outputBytes: 0, notFit: 0, byEncoding: {}, bytesByEncoding: {} };
}

/** Adds one encoded batch to the stats (call once per encodeBatch). */
export function countEncoded(stats: CodecStats, encoded: Omit<EncodedBatch, "data">, notFit: number): void {
  stats.pages += encoded.count;
  stats.inputBytes += encoded.count * encoded.pageSize;
  stats.notFit += notFit;
  for (let k = 0; k < encoded.count; k++) {
    const name = ENCODING_NAMES[encoded.encodings[k] as Encoding] ?? String(encoded.encodings[k]);
    stats.byEncoding[name] = (stats.byEncoding[name] ?? 0) + 1;
    stats.bytesByEncoding[name] = (stats.bytesByEncoding[name] ?? 0) + encoded.lengths[k]!;
    stats.outputBytes += encoded.lengths[k]!;
  }
}

/** Adds the counters of `from` to `into` (stats of several encoders of one stream, e.g. worker channels). */
export function addCodecStats(into: CodecStats, from: CodecStats): void {
  into.pages += from.pages;
  into.inputBytes += from.inputBytes;
  into.outputBytes += from.outputBytes;
  into.notFit += from.notFit;
  const add = (to: Record<string, number>, counts: Record<string, number>): void => {
    for (const [name, n] of Object.entries(counts)) to[name] = (to[name] ?? 0) + n;
  };
  add(into.byEncoding, from.byEncoding);
  add(into.bytesByEncoding, from.bytesByEncoding);
  if (from.choices) add((into.choices ??= {}), from.choices);
}

/**
 * Checks decodeBatch's arguments before a codec reads them or reserves
 * scratch: a PageBatch, and an EncodedBatch whose four tables are typed
 * arrays covering its count, which fits the batch (CodecError "length" when
 * the tables are short). Other errors name the field.
 */
export function checkDecodeArguments(encoded: EncodedBatch, batch: PageBatch): void {
  checkInstance("batch", batch, PageBatch);
  checkObject("encoded", encoded, "an EncodedBatch");
  checkInstance("encoded.encodings", encoded.encodings, Uint8Array);
  checkInstance("encoded.offsets", encoded.offsets, Uint32Array);
  checkInstance("encoded.lengths", encoded.lengths, Uint32Array);
  checkInstance("encoded.data", encoded.data, Uint8Array);
  const { count, encodings, offsets, lengths } = encoded;
  checkInteger("encoded.count", count, 0, batch.capacity);
  if (!(count <= Math.min(encodings.length, offsets.length, lengths.length))) {
    throw new CodecError("length", `tables of ${encodings.length}/${offsets.length}/${lengths.length} entries for ${count} pages`);
  }
}

/** CPU seconds of a codec's work on `bytes` of page input (src/engine/cost.ts CostModel is one). */
export interface CodecCosts {
  encodeSeconds(codec: string, bytes: number): number;
  decodeSeconds(codec: string, bytes: number): number;
}

/** What the engine tells a codec that adapts to the link it feeds. */
export interface LinkConditions {
  /** bytes/s the link carries now (0: not known yet) */
  readonly bandwidth: number;
  readonly costs: CodecCosts;
}

export interface PageCodec {
  /** Short name, as the CLI spells it ("lz4", "wkdm", "mecom", ...). */
  readonly name: string;
  /** The wire id this codec produces when it succeeds (MECOM: several, per page). */
  readonly encoding: Encoding;
  readonly stats: CodecStats;
  /**
   * Encodes the batch's loaded pages. `pageIndices[k]` is the guest page of
   * slot k (codecs with memory of earlier pages, XBZRLE and dedup, key on it).
   */
  encodeBatch(batch: PageBatch, pageIndices?: ArrayLike<number>): EncodedBatch;
  /**
   * encodeBatch without copying the payload out of WebAssembly memory (see
   * EncodedInPlace: it is overwritten by this codec's next call). Codecs
   * whose kernels write their output there offer it; others leave it out.
   */
  encodeInPlace?(batch: PageBatch, pageIndices?: ArrayLike<number>): EncodedInPlace;
  /**
   * Decodes every page of `encoded` into slots 0.. of `batch` (setting its
   * count), after checking every page; throws CodecError naming the page.
   */
  decodeBatch(encoded: EncodedBatch, batch: PageBatch, pageIndices?: ArrayLike<number>): void;
  /**
   * Slots `slots` of `batch` (guest pages `pageIndices[slot]`) went out through
   * another stage (zero, dedup), so the destination now holds them as they
   * are. A codec that remembers what was sent (XBZRLE's cache) updates its
   * memory; others leave this out.
   */
  sentElsewhere?(batch: PageBatch, pageIndices: ArrayLike<number>, slots: ArrayLike<number>): void;
  // What a codec needs from the pipeline around it, declared (absent: no):

  /**
   * A payload may name another page the destination holds (dedup). Once the
   * destination's program runs and can change those pages, the pipeline
   * drops the stage; a frame decoder decodes such pages last, with
   * `destination` reading a named page as it stands before the entry.
   */
  readonly referencesOtherPages?: boolean;
  /** Set by a frame decoder for a codec that references other pages: page `page` as the batch's `slot`-th page sees it. */
  destination?: ((page: number, slot: number) => Uint8Array | undefined) | undefined;
  /** Decoding applies to the page the destination holds now (a delta): the decoder preloads it into the slot. */
  readonly decodesOntoCurrent?: boolean;
  /** The page sizes its pages may have (WKdm: 4096); absent: any. */
  readonly pageSizes?: readonly number[];
  /** An empty payload is a valid page (an XBZRLE delta of an unchanged page). */
  readonly emptyPayloads?: boolean;
  /**
   * The link this codec's output crosses, as the engine knows it now (called
   * before each batch). A codec that picks its method by the link (auto)
   * takes it; others leave this out.
   */
  setLink?(link: LinkConditions): void;
  /**
   * What the last encodeBatch's CPU time is charged as, for an adaptive
   * codec: the codecs it ran, joined by "+" ("raw", "lz4", "lz4+mecom").
   * Absent: `name`.
   */
  readonly work?: string;
  /**
   * A delta codec's page cache in QEMU's xbzrle-cache terms, given what the
   * frames carried (`sent`, the pipeline's counters): the engine reports it
   * as the migration's xbzrleCache. Codecs without such a cache leave this out.
   */
  cacheReport?(sent: CodecStats, pageSize: number): XbzrleStats;
  /** Releases WebAssembly memory the codec holds. */
  dispose(): void;
}

/** QEMU's xbzrle-cache counters (query-migrate). */
export interface XbzrleStats {
  /** xbzrle-cache.pages: pages sent as XBZRLE deltas */
  pages: number;
  /** xbzrle-cache.bytes: bytes of those deltas */
  bytes: number;
  /** xbzrle-cache.cache-miss: pages the codec could not delta-encode */
  cacheMiss: number;
  /** xbzrle-cache.cache-miss-rate: cacheMiss / pages given to the codec */
  cacheMissRate: number;
  /** xbzrle-cache.encoding-rate: raw bytes per delta byte of the delta-encoded pages */
  encodingRate: number;
  /** xbzrle-cache.overflow: deltas that did not fit and went raw */
  overflow: number;
}

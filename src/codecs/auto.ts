// `auto`: per batch, the codec among raw, LZ4 and MECOM with which the batch
// gets across soonest on the link it feeds. Compression pays on a slow link
// and costs on a fast one; which one is "fast" depends on the codecs' speeds
// (the cost table) and the link's bandwidth now, both given by the engine
// through setLink before each batch.
//
// A stream's stages overlap (the source encodes a batch while the link
// carries the one before, and the destination decodes the one before that),
// so a batch costs the slowest of its encode, wire and decode times; auto
// picks the codec with the smallest such time. A costlier codec (raw, then
// LZ4, then MECOM) must beat a cheaper one by MARGIN: the estimate leaves
// out the zero scan and framing every codec shares, which can tip a batch
// whose stages are nearly even towards its encoder.
// Wire time needs the output size before encoding: each compressor's ratio
// (output over input bytes) is a running average of the batches it encoded;
// one never measured borrows the other's (MECOM's bytes are at most LZ4's,
// and close). A compressor not measured for STALE_AFTER batches, that could
// win were it to compress perfectly, encodes the next batch, so a stream
// whose pages change character is noticed (at most one batch in STALE_AFTER).

import { checkInstance, checkObject } from "../errors.js";
import { PageBatch } from "../wasm/arena.js";
import { Owned } from "../wasm/owned.js";
import { Encoding, countEncoded, newCodecStats, type CodecStats, type EncodedBatch, type LinkConditions, type PageCodec } from "./codec.js";
import { Lz4Codec } from "./lz4.js";
import { MecomCodec } from "./mecom.js";

export const AUTO_CHOICES = ["raw", "lz4", "mecom"] as const;
export type AutoChoice = (typeof AUTO_CHOICES)[number];
type Compressor = Exclude<AutoChoice, "raw">;

/** Batches after which a compressor's ratio counts as stale. */
const STALE_AFTER = 32;
/** Weight of the newest batch in a ratio's running average. */
const RATIO_WEIGHT = 0.25;
/** How much faster a costlier codec's batch must be expected to be. */
const MARGIN = 0.01;
/** The ratio assumed before any compressor has run (LZ4 on typical memory pages). */
const PRIOR_RATIO = 0.5;

/** Seconds a batch of `bytes` page input takes through `codec`: the slowest of encode, wire, decode. */
export function batchSeconds(codec: AutoChoice, bytes: number, ratio: number, link: LinkConditions): number {
  const encode = codec === "raw" ? 0 : link.costs.encodeSeconds(codec, bytes);
  const decode = codec === "raw" ? 0 : link.costs.decodeSeconds(codec, bytes);
  const wire = (ratio * bytes) / link.bandwidth;
  return Math.max(encode, wire, decode);
}

export class AutoCodec extends Owned implements PageCodec {
  readonly name = "auto";
  /** Its main wire id; pages also go as RAW, ZERO, SAME_VALUE and WKDM. */
  readonly encoding = Encoding.LZ4;
  readonly stats: CodecStats = { ...newCodecStats(), choices: { raw: 0, lz4: 0, mecom: 0 } };
  /** the codec the last batch went through */
  choice: AutoChoice = "lz4";
  private link: LinkConditions | undefined;
  private readonly compressors: Record<Compressor, PageCodec> = { lz4: new Lz4Codec(), mecom: new MecomCodec() };
  private readonly ratio: Record<Compressor, number> = { lz4: Number.NaN, mecom: Number.NaN };
  /** batches since each compressor last ran (never: stale from the start, so each is measured early) */
  private readonly idle: Record<Compressor, number> = { lz4: STALE_AFTER, mecom: STALE_AFTER };

  setLink(link: LinkConditions): void {
    this.live();
    checkObject("link", link, "a LinkConditions");
    if (!(link.bandwidth >= 0 && Number.isFinite(link.bandwidth))) throw new RangeError(`link.bandwidth must be a finite number of bytes/s >= 0, got ${link.bandwidth}`);
    checkObject("link.costs", link.costs, "a CodecCosts");
    this.link = link;
  }

  /** The ratio `codec` is expected to achieve. */
  private expectedRatio(codec: AutoChoice): number {
    if (codec === "raw") return 1;
    const other: Compressor = codec === "lz4" ? "mecom" : "lz4";
    const own = this.ratio[codec];
    if (!Number.isNaN(own)) return own;
    return Number.isNaN(this.ratio[other]) ? PRIOR_RATIO : this.ratio[other];
  }

  /** The codec for a batch of `bytes` page input (LZ4 while the link is not known). */
  private choose(bytes: number): AutoChoice {
    const link = this.link;
    if (!link || !(link.bandwidth > 0) || bytes === 0) return "lz4";
    let best: AutoChoice = "raw";
    let bestTime = batchSeconds("raw", bytes, 1, link);
    for (const codec of ["lz4", "mecom"] as const) {
      const time = batchSeconds(codec, bytes, this.expectedRatio(codec), link);
      if (time < bestTime * (1 - MARGIN)) {
        best = codec;
        bestTime = time;
      }
    }
    // Look again at a compressor not measured lately that could still win.
    for (const codec of ["lz4", "mecom"] as const) {
      if (codec === best || this.idle[codec] < STALE_AFTER) continue;
      if (batchSeconds(codec, bytes, 0, link) < bestTime) return codec;
    }
    return best;
  }

  encodeBatch(batch: PageBatch, pageIndices?: ArrayLike<number>): EncodedBatch {
    this.live();
    checkInstance("batch", batch, PageBatch);
    const { count, pageSize } = batch;
    const bytes = count * pageSize;
    const choice = this.choose(bytes);
    this.choice = choice;
    let encoded: EncodedBatch;
    let notFit = 0;
    if (choice === "raw") {
      const offsets = new Uint32Array(count);
      for (let k = 0; k < count; k++) offsets[k] = k * pageSize;
      encoded = { pageSize, count, encodings: new Uint8Array(count), offsets, lengths: new Uint32Array(count).fill(pageSize), data: batch.bytes().slice() };
    } else {
      const codec = this.compressors[choice];
      const before = codec.stats.notFit;
      encoded = codec.encodeBatch(batch, pageIndices);
      notFit = codec.stats.notFit - before;
      if (bytes > 0) {
        const measured = encoded.data.length / bytes;
        const old = this.ratio[choice];
        this.ratio[choice] = Number.isNaN(old) ? measured : old + RATIO_WEIGHT * (measured - old);
      }
    }
    for (const codec of ["lz4", "mecom"] as const) this.idle[codec] = codec === choice ? 0 : this.idle[codec] + 1;
    this.stats.choices![choice] = (this.stats.choices![choice] ?? 0) + count;
    countEncoded(this.stats, encoded, notFit);
    return encoded;
  }

  /** Every wire id auto sends is one MECOM decodes (LZ4 and raw pages included). */
  decodeBatch(encoded: EncodedBatch, batch: PageBatch, pageIndices?: ArrayLike<number>): void {
    this.live();
    this.compressors.mecom.decodeBatch(encoded, batch, pageIndices);
  }

  protected release(): void {
    this.compressors.lz4.dispose();
    this.compressors.mecom.dispose();
  }
}

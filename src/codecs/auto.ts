// `auto`: per batch, the codec among raw, LZ4 and MECOM with which the batch
// gets across soonest on the link it feeds. Compression pays on a slow link
// and costs on a fast one; which one is "fast" depends on the codecs' speeds
// (the cost table) and the link's bandwidth now, both given by the engine
// through setLink before each batch.
//
// A stream's stages overlap (the source encodes a batch while the link
// carries the one before, and the destination decodes the one before that),
// so a batch costs the slowest of its encode, wire and decode times; auto
// picks the codec with the smallest such time. The estimate leaves out the
// zero scan and framing of the whole frame, and the destination is charged
// per wire id, not per codec: so encode and decode count CPU_HEADROOM times
// their table figures (a codec is taken to be CPU-bound a little before the
// table says), and a costlier codec (raw, then LZ4, then MECOM) must beat a
// cheaper one by MARGIN.
// Wire time needs the output size before encoding. LZ4's ratio (output over
// input bytes) is a running average over the batches sent compressed, and
// MECOM's is LZ4's times MECOM's bytes over LZ4's on the same pages: a
// stream's batches differ far more than the two codecs do on one batch, so
// that factor is measured on batches encoded both ways, which go out as
// whichever finishes first, their CPU charged for both (`work`). Measuring
// costs CPU, so it happens only where the answer could change the choice:
// a batch is encoded both ways when LZ4's ratio is known, MECOM compressing
// perfectly would beat the choice, and the factor is older than STALE_AFTER
// batches (or unknown);
// a batch that would go raw goes through LZ4 when LZ4, compressing
// perfectly, would beat raw and LZ4's ratio is that old.

import { checkInstance, checkObject } from "../errors.js";
import { PageBatch } from "../wasm/arena.js";
import { Owned } from "../wasm/owned.js";
import { Encoding, countEncoded, newCodecStats, type CodecStats, type EncodedBatch, type EncodedInPlace, type LinkConditions, type PageCodec } from "./codec.js";
import { copied } from "./kernel-result.js";
import { Lz4Codec } from "./lz4.js";
import { MecomCodec } from "./mecom.js";

export const AUTO_CHOICES = ["raw", "lz4", "mecom"] as const;
export type AutoChoice = (typeof AUTO_CHOICES)[number];
type Compressor = Exclude<AutoChoice, "raw">;

/** Batches after which a compressor's ratio counts as stale. */
const STALE_AFTER = 32;
/** Weight of the newest batch in a ratio's running average. */
const RATIO_WEIGHT = 0.25;
/** Factor on encode and decode times when choosing (see the module comment). */
const CPU_HEADROOM = 1.25;
/** How much faster a costlier codec's batch must be expected to be. */
const MARGIN = 0.01;
/** The ratio assumed before any compressor has run (LZ4 on typical memory pages). */
const PRIOR_RATIO = 0.5;

/**
 * Seconds a batch of `bytes` page input takes through `codec`: the slowest of
 * encode and decode (each × `cpuFactor`) and wire time at `ratio`.
 */
export function batchSeconds(codec: AutoChoice, bytes: number, ratio: number, link: LinkConditions, cpuFactor = 1): number {
  const encode = codec === "raw" ? 0 : cpuFactor * link.costs.encodeSeconds(codec, bytes);
  const decode = codec === "raw" ? 0 : cpuFactor * link.costs.decodeSeconds(codec, bytes);
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
  /** what the last batch's CPU time is charged as: the codecs it ran, joined by "+" */
  work = "lz4";
  private link: LinkConditions | undefined;
  private readonly compressors: Record<Compressor, Lz4Codec | MecomCodec> = { lz4: new Lz4Codec(), mecom: new MecomCodec() };
  /** LZ4's output over input bytes, recently */
  private lz4Ratio = Number.NaN;
  /** MECOM's bytes over LZ4's on the same pages, recently */
  private mecomOverLz4 = Number.NaN;
  /** batches since the last one encoded both ways, and since the last one compressed (stale from the start) */
  private sincePaired = STALE_AFTER;
  private sinceCompressed = STALE_AFTER;

  setLink(link: LinkConditions): void {
    this.live();
    checkObject("link", link, "a LinkConditions");
    if (!(link.bandwidth >= 0 && Number.isFinite(link.bandwidth))) throw new RangeError(`link.bandwidth must be a finite number of bytes/s >= 0, got ${link.bandwidth}`);
    checkObject("link.costs", link.costs, "a CodecCosts");
    this.link = link;
  }

  /** The codec for a batch of `bytes` page input at the ratios given (LZ4 while the link is not known). */
  private choose(bytes: number, ratio: Record<Compressor, number>): AutoChoice {
    const link = this.link;
    if (!link || !(link.bandwidth > 0) || bytes === 0) return "lz4";
    let best: AutoChoice = "raw";
    let bestTime = batchSeconds("raw", bytes, 1, link, CPU_HEADROOM);
    for (const codec of ["lz4", "mecom"] as const) {
      const time = batchSeconds(codec, bytes, ratio[codec], link, CPU_HEADROOM);
      if (time < bestTime * (1 - MARGIN)) {
        best = codec;
        bestTime = time;
      }
    }
    return best;
  }

  /** The ratios expected of each compressor now. */
  private expected(): Record<Compressor, number> {
    const lz4 = Number.isNaN(this.lz4Ratio) ? PRIOR_RATIO : this.lz4Ratio;
    return { lz4, mecom: lz4 * (Number.isNaN(this.mecomOverLz4) ? 1 : this.mecomOverLz4) };
  }

  /** Runs compressor `codec` on the batch. */
  private compress(codec: Compressor, batch: PageBatch): { encoded: EncodedInPlace; notFit: number } {
    const compressor = this.compressors[codec];
    const before = compressor.stats.notFit;
    const encoded = compressor.encodeInPlace(batch);
    return { encoded, notFit: compressor.stats.notFit - before };
  }

  encodeBatch(batch: PageBatch): EncodedBatch {
    return copied(this.encodeInPlace(batch));
  }

  /** The payload is the chosen compressor's, in its memory, or the batch's own pages when raw. */
  encodeInPlace(batch: PageBatch): EncodedInPlace {
    this.live();
    checkInstance("batch", batch, PageBatch);
    const { count, pageSize } = batch;
    const bytes = count * pageSize;
    const average = (old: number, now: number): number => (Number.isNaN(old) ? now : old + RATIO_WEIGHT * (now - old));
    let result: { encoded: EncodedInPlace; notFit: number } | undefined;
    const link = this.link;
    const expected = this.expected();
    let choice = this.choose(bytes, expected);
    this.sincePaired++;
    this.sinceCompressed++;
    this.work = choice;
    if (link && link.bandwidth > 0 && bytes > 0) {
      const chosen = batchSeconds(choice, bytes, choice === "raw" ? 1 : expected[choice], link, CPU_HEADROOM);
      const couldWin = (codec: Compressor): boolean => batchSeconds(codec, bytes, 0, link, CPU_HEADROOM) < chosen * (1 - MARGIN);
      // LZ4's ratio comes first: with it known, fewer batches need both ways.
      if (!Number.isNaN(this.lz4Ratio) && choice !== "mecom" && this.sincePaired > STALE_AFTER && couldWin("mecom")) {
        // Both ways on the same pages, then the one that gets across first.
        const byLz4 = this.compress("lz4", batch);
        const byMecom = this.compress("mecom", batch);
        const lz4 = byLz4.encoded.dataLength / bytes;
        const mecom = byMecom.encoded.dataLength / bytes;
        this.lz4Ratio = average(this.lz4Ratio, lz4);
        this.mecomOverLz4 = average(this.mecomOverLz4, mecom / lz4);
        this.sincePaired = 0;
        this.sinceCompressed = 0;
        choice = this.choose(bytes, { lz4, mecom });
        result = choice === "lz4" ? byLz4 : choice === "mecom" ? byMecom : undefined;
        this.work = "lz4+mecom";
      } else if (choice === "raw" && this.sinceCompressed > STALE_AFTER && couldWin("lz4")) {
        choice = "lz4";
        this.work = choice;
      }
    }
    if (choice !== "raw" && !result) {
      result = this.compress(choice, batch);
      const measured = result.encoded.dataLength / Math.max(1, bytes);
      if (bytes > 0) this.lz4Ratio = average(this.lz4Ratio, choice === "lz4" ? measured : measured / (Number.isNaN(this.mecomOverLz4) ? 1 : this.mecomOverLz4));
      this.sinceCompressed = 0;
    }
    this.choice = choice;
    let encoded: EncodedInPlace;
    if (result) encoded = result.encoded;
    else {
      const offsets = new Uint32Array(count);
      for (let k = 0; k < count; k++) offsets[k] = k * pageSize;
      encoded = { pageSize, count, encodings: new Uint8Array(count), offsets, lengths: new Uint32Array(count).fill(pageSize), ptr: batch.ptr, dataLength: bytes };
    }
    this.stats.choices![choice] = (this.stats.choices![choice] ?? 0) + count;
    countEncoded(this.stats, encoded, result?.notFit ?? 0);
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

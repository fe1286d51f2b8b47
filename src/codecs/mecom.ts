// MECOM (seed 002): adaptive compression that classifies each page and sends
// each class with its own algorithm, over a whole batch in one kernel call
// (assembly/mecom.ts):
//
//   zero → ZERO · one repeated word → SAME_VALUE · strong regularity → WKDM
//   or LZ4, by evidence · weak regularity → LZ4 · neither shrinks → RAW
//
// Strong regularity = the WKdm dictionary hit rate of a sample of the page
// (one 16-word block in `stride`) at or above `threshold` (0.75 with stride
// 4, from the curve scripts/mecom-curve.js measured on the shared traces).
// The rate alone does not decide WKdm: fitted on three traces it sent
// PostgreSQL pages to WKdm that LZ4 compresses far better. Strong pages fall
// into classes by rate, and each class goes to WKdm only while its recent
// pages, compressed both ways now and then, came out smaller from WKdm than
// from LZ4 (docs/mecom.md has the rule and the evidence). That state lives
// in the codec: one instance per stream.

import { checkInstance, checkInteger } from "../errors.js";
import { PageBatch, Scratch } from "../wasm/arena.js";
import { wasm } from "../wasm/module.js";
import { Encoding, checkDecodeArguments, newCodecStats, type CodecStats, type EncodedBatch, type EncodedInPlace, type PageCodec } from "./codec.js";
import { KernelTables, copied } from "./kernel-result.js";
import { WKDM_PAGE_SIZE } from "./wkdm.js";
import { Owned } from "../wasm/owned.js";

export const MECOM_DEFAULT_THRESHOLD = 0.75;
export const MECOM_DEFAULT_STRIDE = 8;

/** The wire ids MECOM sends (WKDM for 4096-byte pages only). */
const MECOM_ENCODINGS = [Encoding.ZERO, Encoding.SAME_VALUE, Encoding.WKDM, Encoding.LZ4, Encoding.RAW];

export interface MecomOptions {
  /** dictionary hit rate (0..1) at which a page counts as strongly regular; above 1 disables WKdm */
  threshold?: number;
  /** sample one 16-word block in every `stride` (1..64) when measuring the hit rate */
  stride?: number;
}

export class MecomCodec extends Owned implements PageCodec {
  readonly name = "mecom";
  /** MECOM's main wire id; pages also go as ZERO, SAME_VALUE, WKDM and RAW. */
  readonly encoding = Encoding.LZ4;
  readonly stats: CodecStats = newCodecStats();
  readonly threshold: number;
  readonly stride: number;
  private readonly minHits: number;
  private readonly tables = new KernelTables("mecom", MECOM_ENCODINGS);
  /** The kernel's per-class record of what WKdm and LZ4 achieved (carried across batches). */
  private readonly evidence = new Scratch();
  private readonly evidenceBytes: number;

  constructor(options: MecomOptions = {}) {
    super();
    const threshold = options.threshold ?? MECOM_DEFAULT_THRESHOLD;
    if (!(threshold >= 0)) throw new RangeError(`threshold must be a number >= 0, got ${threshold}`);
    this.stride = options.stride ?? MECOM_DEFAULT_STRIDE;
    checkInteger("stride", this.stride, 1, 64);
    this.threshold = threshold;
    const sampled = 16 * Math.ceil(64 / this.stride);
    this.minHits = threshold > 1 ? 1 << 30 : Math.ceil(threshold * sampled);
    const { kernels, heap } = wasm();
    this.evidenceBytes = kernels.mecomEvidenceBytes();
    const at = this.evidence.reserve(this.evidenceBytes);
    heap.bytes().fill(0, at, at + this.evidenceBytes);
  }

  encodeBatch(batch: PageBatch): EncodedBatch {
    return copied(this.encodeInPlace(batch));
  }

  encodeInPlace(batch: PageBatch): EncodedInPlace {
    this.live();
    checkInstance("batch", batch, PageBatch);
    const { count, pageSize } = batch;
    this.tables.reserve(count, count * pageSize + 64);
    const used = wasm().kernels.mecomEncodeBatch(batch.ptr, pageSize, count, this.tables.out, this.tables.table, this.minHits, this.stride, this.evidence.reserve(this.evidenceBytes));
    return this.tables.encoded(pageSize, count, used, this.stats);
  }

  decodeBatch(encoded: EncodedBatch, batch: PageBatch, pageIndices?: ArrayLike<number>): void {
    this.live();
    checkDecodeArguments(encoded, batch);
    const { pageSize } = encoded;
    if (pageSize !== batch.pageSize) throw new RangeError(`encoded.pageSize ${pageSize} != batch.pageSize ${batch.pageSize}`);
    const accepts = pageSize === WKDM_PAGE_SIZE ? MECOM_ENCODINGS : MECOM_ENCODINGS.filter((e) => e !== Encoding.WKDM);
    this.tables.decode(encoded, batch.ptr, pageSize, wasm().kernels.mecomDecodeBatch, (k) => pageIndices?.[k] ?? k, accepts);
    batch.count = encoded.count;
  }

  protected release(): void {
    this.tables.dispose();
    this.evidence.dispose();
  }
}

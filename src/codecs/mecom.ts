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

import { CodecError, checkInstance, checkInteger } from "../errors.js";
import { PageBatch, Scratch } from "../wasm/arena.js";
import { wasm } from "../wasm/module.js";
import { Encoding, checkDecodeArguments, countEncoded, newCodecStats, type CodecStats, type EncodedBatch, type PageCodec } from "./codec.js";
import { lz4DecompressBlock } from "./lz4.js";
import { wkdmDecompress } from "./wkdm.js";
import { Owned } from "../wasm/owned.js";

export const MECOM_DEFAULT_THRESHOLD = 0.75;
export const MECOM_DEFAULT_STRIDE = 8;

export interface MecomOptions {
  /** dictionary hit rate (0..1) at which a page counts as strongly regular; above 1 disables WKdm */
  threshold?: number;
  /** sample one 16-word block in every `stride` (1..64) when measuring the hit rate */
  stride?: number;
}

const TABLE_ENTRY_BYTES = 12;

export class MecomCodec extends Owned implements PageCodec {
  readonly name = "mecom";
  /** MECOM's main wire id; pages also go as ZERO, SAME_VALUE, WKDM and RAW. */
  readonly encoding = Encoding.LZ4;
  readonly stats: CodecStats = newCodecStats();
  readonly threshold: number;
  readonly stride: number;
  private readonly minHits: number;
  private readonly output = new Scratch();
  private readonly table = new Scratch();
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
    this.live();
    checkInstance("batch", batch, PageBatch);
    const { count, pageSize } = batch;
    const outPtr = this.output.reserve(count * pageSize + 64);
    const tablePtr = this.table.reserve(Math.max(1, count) * TABLE_ENTRY_BYTES);
    const { kernels, heap } = wasm();
    const used = kernels.mecomEncodeBatch(batch.ptr, pageSize, count, outPtr, tablePtr, this.minHits, this.stride, this.evidence.reserve(this.evidenceBytes));
    const table = heap.u32();
    const encodings = new Uint8Array(count);
    const offsets = new Uint32Array(count);
    const lengths = new Uint32Array(count);
    let raw = 0;
    for (let k = 0, at = tablePtr >>> 2; k < count; k++, at += 3) {
      encodings[k] = table[at]!;
      offsets[k] = table[at + 1]!;
      lengths[k] = table[at + 2]!;
      if (encodings[k] === Encoding.RAW) raw++;
    }
    const encoded: EncodedBatch = { pageSize, count, encodings, offsets, lengths, data: heap.bytes().slice(outPtr, outPtr + used) };
    countEncoded(this.stats, encoded, raw);
    return encoded;
  }

  decodeBatch(encoded: EncodedBatch, batch: PageBatch, pageIndices?: ArrayLike<number>): void {
    this.live();
    checkDecodeArguments(encoded, batch);
    const { count, pageSize, encodings, offsets, lengths, data } = encoded;
    if (pageSize !== batch.pageSize) throw new RangeError(`encoded.pageSize ${pageSize} != batch.pageSize ${batch.pageSize}`);
    const tablePtr = this.table.reserve(Math.max(1, count) * TABLE_ENTRY_BYTES);
    const dataPtr = this.output.reserve(Math.max(1, data.length));
    const { kernels, heap } = wasm();
    const table = heap.u32();
    for (let k = 0, at = tablePtr >>> 2; k < count; k++, at += 3) {
      table[at] = encodings[k]!;
      table[at + 1] = offsets[k]!;
      table[at + 2] = lengths[k]!;
    }
    heap.bytes().set(data, dataPtr);
    const failed = kernels.mecomDecodeBatch(dataPtr, data.length, tablePtr, count, batch.ptr, pageSize);
    if (failed >= 0) throw explain(encoded, failed, pageIndices?.[failed] ?? failed);
    batch.count = count;
  }

  protected release(): void {
    this.output.dispose();
    this.table.dispose();
    this.evidence.dispose();
  }
}

/** The CodecError for page k, which the kernel rejected (the error path only). */
function explain(encoded: EncodedBatch, k: number, page: number): CodecError {
  const { pageSize, encodings, offsets, lengths, data } = encoded;
  const offset = offsets[k]!;
  const length = lengths[k]!;
  const encoding = encodings[k]!;
  if (offset + length > data.length) return new CodecError("length", `payload [${offset}, ${offset + length}) lies outside the ${data.length} data bytes`, page);
  const payload = data.subarray(offset, offset + length);
  const expect: Record<number, number> = { [Encoding.ZERO]: 0, [Encoding.SAME_VALUE]: 4, [Encoding.RAW]: pageSize };
  if (encoding in expect) return new CodecError("length", `payload of ${length} bytes for wire id ${encoding}, which takes ${expect[encoding]}`, page);
  try {
    if (encoding === Encoding.LZ4) {
      const n = lz4DecompressBlock(payload, new Uint8Array(pageSize));
      return new CodecError("length", `LZ4 block decodes to ${n} bytes, not ${pageSize}`, page);
    }
    if (encoding === Encoding.WKDM && pageSize === 4096) wkdmDecompress(payload, new Uint8Array(pageSize));
  } catch (err) {
    if (err instanceof CodecError) return new CodecError(err.code, err.message, page);
    throw err;
  }
  return new CodecError("malformed", `wire id ${encoding} is not one MECOM produces for ${pageSize}-byte pages`, page);
}

// DedupCodec: the PageCodec of deduplication, on top of hash/dedup.ts's
// DedupIndex. A page whose content the destination already holds travels as
// Encoding.DEDUP with a 4-byte little-endian payload, the page index to copy
// from; any other page travels RAW and is remembered at its own index. A
// reference names the destination's page as it stands after every earlier
// page of the stream, earlier slots of the same batch included (the decoder
// copies from those slots).

import { CodecError, checkInstance } from "../errors.js";
import { Encoding, checkDecodeArguments, newCodecStats, type CodecStats, type EncodedBatch, type EncodedInPlace, type PageCodec } from "./codec.js";
import { KernelTables, copied } from "./kernel-result.js";
import { DedupIndex, checkLocations, type DedupIndexOptions } from "../hash/dedup.js";
import { PageBatch } from "../wasm/arena.js";
import { wasm } from "../wasm/module.js";
import { Owned } from "../wasm/owned.js";

export interface DedupCodecOptions extends DedupIndexOptions {
  /**
   * Decoder side: the destination's current content of `page` (unitSize
   * bytes), or undefined when it has none. Needed to decode references to
   * pages outside the batch being decoded.
   */
  destination?: (page: number) => Uint8Array | undefined;
}

const REF_BYTES = 4;

/** The PageCodec of deduplication: DEDUP references to pages the destination holds, RAW otherwise. */
export class DedupCodec extends Owned implements PageCodec {
  readonly name = "dedup";
  readonly encoding = Encoding.DEDUP;
  readonly referencesOtherPages = true;
  readonly stats: CodecStats = newCodecStats();
  /** The source side's index (pre-seed it with `index.remember` when the destination starts with content). */
  readonly index: DedupIndex;
  /**
   * Decoder side: the content of page `page` as the batch's `slot`-th page
   * sees it (see DedupCodecOptions.destination, which sets it); a frame
   * decoder sets it for each frame.
   */
  destination: ((page: number, slot: number) => Uint8Array | undefined) | undefined;
  /** The encoder's kernel memory (decoding copies from the destination in JavaScript). */
  private readonly tables = new KernelTables("dedup", [Encoding.DEDUP, Encoding.RAW]);

  constructor(options: DedupCodecOptions = {}) {
    super();
    this.index = new DedupIndex(options);
    this.destination = options.destination;
  }

  /** Encodes the loaded pages; `pageIndices[k]` is slot k's page (default k). */
  encodeBatch(batch: PageBatch, pageIndices?: ArrayLike<number>): EncodedBatch {
    return copied(this.encodeInPlace(batch, pageIndices));
  }

  encodeInPlace(batch: PageBatch, pageIndices?: ArrayLike<number>): EncodedInPlace {
    this.live();
    checkInstance("batch", batch, PageBatch);
    const n = batch.count;
    const ps = batch.pageSize;
    const locations = pageIndices ?? Array.from({ length: n }, (_, k) => k);
    const refs = this.index.dedupe(batch, locations);
    const refsPtr = this.tables.reserve(n, n * ps, 4 * n);
    wasm().heap.i32().set(refs.subarray(0, n), refsPtr >>> 2);
    const used = wasm().kernels.dedupPackBatch(batch.ptr, ps, n, refsPtr, this.tables.out, this.tables.table);
    return this.tables.encoded(ps, n, used, this.stats);
  }

  /** Decodes into slots 0.. of `batch`; a reference is copied from an earlier slot naming that page, else from the destination. */
  decodeBatch(encoded: EncodedBatch, batch: PageBatch, pageIndices?: ArrayLike<number>): void {
    this.live();
    checkDecodeArguments(encoded, batch);
    const n = encoded.count;
    const ps = batch.pageSize;
    if (encoded.pageSize !== ps) throw new RangeError(`encoded.pageSize ${encoded.pageSize} != batch.pageSize ${ps}`);
    const locations = pageIndices ?? Array.from({ length: n }, (_, k) => k);
    checkLocations(locations, n, "pageIndices");
    const data = encoded.data;
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const latestSlot = new Map<number, number>();
    for (let k = 0; k < n; k++) {
      const offset = encoded.offsets[k]!;
      const length = encoded.lengths[k]!;
      if (offset + length > data.length) throw new CodecError("truncated", `payload [${offset}, ${offset + length}) runs past the data (${data.length} bytes)`, k);
      const slot = batch.ptr + k * ps;
      const encoding = encoded.encodings[k]!;
      if (encoding === Encoding.RAW) {
        if (length !== ps) throw new CodecError("length", `raw payload of ${length} bytes, expected ${ps}`, k);
        wasm().heap.bytes().set(data.subarray(offset, offset + ps), slot);
      } else if (encoding === Encoding.DEDUP) {
        if (length !== REF_BYTES) throw new CodecError("length", `dedup payload of ${length} bytes, expected ${REF_BYTES}`, k);
        const from = view.getUint32(offset, true);
        const earlier = latestSlot.get(from);
        const mem = wasm().heap.bytes();
        if (earlier !== undefined) {
          mem.copyWithin(slot, batch.ptr + earlier * ps, batch.ptr + (earlier + 1) * ps);
        } else {
          const content = this.destination?.(from, k);
          if (!(content instanceof Uint8Array) || content.length !== ps) {
            throw new CodecError("malformed", `reference to page ${from}, which the destination does not hold`, k);
          }
          wasm().heap.bytes().set(content, slot);
        }
      } else {
        throw new CodecError("malformed", `encoding ${encoding} is not raw or dedup`, k);
      }
      latestSlot.set(locations[k]!, k);
    }
    batch.count = n;
  }

  protected release(): void {
    this.tables.dispose();
    this.index.dispose();
  }
}

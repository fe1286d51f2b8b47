// Decoding frames into memory: the receiving half of the pipeline.
//
//   decodeFrame(bytes, destination?, decoders?): Frame
//       Checks the header, the length, the frame check and every table entry
//       (frame.ts), decodes the pages into staging memory, and only then
//       writes them: a rejected frame (CodecError with a code) leaves the
//       destination as it was. destination: guest memory (Uint8Array, page i
//       at i·pageSize), a PageBatch (slot k ← the frame's k-th page), or none
//       (the pages come back in `frame.pages`, in frame order). `decoders`
//       gives the codec per wire id (default: one of each from the registry).
//   new FrameDecoder(decoders?) → .decode(bytes, destination?)
//       The same with its own staging memory (one per stream or thread).
//
// Zero, same-value and raw pages are the grammar's own; every other wire id
// is decoded by its codec, group by group, in what the codec declares it
// needs: the page the destination holds now (a delta codec), or the content
// of other pages as they stand before the entry (dedup).

import { Encoding, ENCODING_NAMES, type EncodedBatch, type PageCodec } from "../codecs/codec.js";
import { decoderFor } from "../codecs/registry.js";
import { CodecError, checkBytes } from "../errors.js";
import { FlatPages, isPageMemory, type PageMemory } from "../guest/pages.js";
import { PageBatch, Scratch } from "../wasm/arena.js";
import { wasm } from "../wasm/module.js";
import { Owned } from "../wasm/owned.js";
import { CHECK_BYTES, FrameFlags, FrameType, checkValue, frameTypeName, readControl, readFrameHeader, readPagesTable, type Frame, type FrameHeader, type PagesFrame, type PagesTable } from "./frame.js";

/** Where decoded pages go: guest memory (a PageMemory, or a Uint8Array of whole pages), a batch (frame order), or nowhere (returned). */
export type PageDestination = PageMemory | Uint8Array | PageBatch | undefined;

/** The codec that decodes each wire id that needs one (wkdm, lz4, xbzrle, dedup). */
export type FrameDecoders = Partial<Record<Encoding, PageCodec>>;

/** Wire ids the grammar decodes itself; the others go to their codec. */
const OWN_ENCODINGS: readonly number[] = [Encoding.RAW, Encoding.ZERO, Encoding.SAME_VALUE];

/** A frame decoder with its own staging memory and codecs. */
export class FrameDecoder extends Owned {
  private readonly decoders: FrameDecoders;
  private readonly input: Scratch;
  private readonly staging = new Map<Encoding, PageBatch>();

  /** `decoders`: the codec per wire id; the ones not given come from the registry when first needed. */
  constructor(decoders: FrameDecoders = {}) {
    super();
    this.decoders = { ...decoders };
    this.input = new Scratch();
  }

  private decoderOf(encoding: Encoding): PageCodec | undefined {
    return (this.decoders[encoding] ??= decoderFor(encoding));
  }

  private stagingBatch(encoding: Encoding, count: number, pageSize: number): PageBatch {
    let batch = this.staging.get(encoding);
    if (!batch || batch.capacity < count || batch.pageSize !== pageSize) {
      batch?.dispose();
      batch = new PageBatch(count, pageSize);
      this.staging.set(encoding, batch);
    }
    return batch;
  }

  /**
   * Decodes one whole frame (exactly its bytes); see decodeFrame.
   * `options.tagged`: the frame arrived under a cryptographic tag over
   * exactly these bytes (Channel.authenticatesFrames), which any damage the
   * frame check would catch fails first: the check is not computed again
   * (copying the frame into linear memory to hash it was a tenth of a TCP
   * receiver's CPU). The header's own check is still read.
   * `options.keep`: pages of guest memory `destination` keeps as they are
   * (decoded, not written): a post-copy destination's pages that came
   * before, which its program may have changed since.
   */
  decode(bytes: Uint8Array, destination?: PageDestination, options: { tagged?: boolean; keep?: (page: number) => boolean } = {}): Frame {
    this.live();
    checkBytes("bytes", bytes);
    bytes = wasm().heap.outside(bytes);
    const header = readFrameHeader(bytes);
    const name = frameTypeName(header.type);
    if (bytes.byteLength < header.frameLength) {
      throw new CodecError("truncated", `${name} frame of ${header.frameLength} B cut at ${bytes.byteLength} B`);
    }
    if (bytes.byteLength > header.frameLength) {
      throw new CodecError("length", `${name} frame of ${header.frameLength} B given ${bytes.byteLength} B`);
    }
    if (!options.tagged) this.check(bytes, header);
    return header.type === FrameType.PAGES ? this.decodePages(bytes, header, destination, options.keep) : readControl(bytes, header);
  }

  /** The frame check: hashed in place, the frame copied into linear memory once. */
  private check(bytes: Uint8Array, header: FrameHeader): void {
    const checked = header.frameLength - CHECK_BYTES;
    const at = this.input.reserve(checked);
    const mem = wasm().heap.bytes();
    mem.set(bytes.subarray(0, checked), at);
    if (checkValue(mem, at, checked) !== new DataView(bytes.buffer, bytes.byteOffset).getUint32(checked, true)) {
      throw new CodecError("checksum", `${frameTypeName(header.type)} frame ${header.sequence}: frame check does not match`);
    }
  }

  private decodePages(bytes: Uint8Array, header: FrameHeader, into: PageDestination, keep?: (page: number) => boolean): PagesFrame {
    const { count: n, pageSize: ps, sequence } = header;
    let pageLimit: number;
    let destination: PageMemory | PageBatch | undefined;
    if (into === undefined) pageLimit = Infinity;
    else if (into instanceof PageBatch) {
      if (into.pageSize !== ps) throw new RangeError(`destination batch has ${into.pageSize} B pages, the frame ${ps} B`);
      if (into.capacity < n) throw new RangeError(`destination batch holds ${into.capacity} pages, the frame has ${n}`);
      pageLimit = Infinity;
      destination = into;
    } else if (into instanceof Uint8Array) {
      wasm().heap.checkOutside("destination", into);
      pageLimit = Math.floor(into.byteLength / ps);
      destination = new FlatPages(into.subarray(0, pageLimit * ps), ps);
    } else if (isPageMemory(into)) {
      if (into.pageSize !== ps) throw new RangeError(`destination memory has ${into.pageSize} B pages, the frame ${ps} B`);
      pageLimit = into.pageCount;
      destination = into;
    } else throw new TypeError("destination must be a PageMemory, a Uint8Array, a PageBatch or undefined");

    const table = readPagesTable(bytes, header, (encoding) => this.decoderOf(encoding), pageLimit);
    const { indices, encodings, offsets, lengths } = table;
    const frame = { type: "pages", sequence, pageSize: ps, count: n, indices, encodings, lengths, ...(header.flags & FrameFlags.DISK ? { disk: true as const } : {}) } as const;

    const groups = this.codecGroups(encodings, sequence);

    // Decode each group into its staging batch: nothing is written to the
    // destination yet. Codecs that read other pages go last, so every page
    // they may name is decoded.
    const staged = new Uint32Array(n); // frame entry → linear-memory offset of its decoded page (codec-decoded entries)
    const order = [...groups.keys()].sort((a, b) => Number(this.decoderOf(a)!.referencesOtherPages ?? false) - Number(this.decoderOf(b)!.referencesOtherPages ?? false));
    for (const encoding of order) {
      const members = groups.get(encoding)!;
      const codec = this.decoderOf(encoding)!;
      const batch = this.stagingBatch(encoding, members.length, ps);
      const groupIndices = Uint32Array.from(members, (k) => indices[k]!);
      if (codec.decodesOntoCurrent) this.preload(batch, members, groupIndices, destination);
      if (codec.referencesOtherPages) codec.destination = this.resolver(bytes, table, members, staged, destination, ps, sequence);
      // Hand the codec only the span of the frame holding this group's payloads.
      let from = Infinity;
      let to = 0;
      for (const k of members) {
        from = Math.min(from, offsets[k]!);
        to = Math.max(to, offsets[k]! + lengths[k]!);
      }
      const encoded: EncodedBatch = {
        pageSize: ps,
        count: members.length,
        encodings: Uint8Array.from(members, (k) => encodings[k]!),
        offsets: Uint32Array.from(members, (k) => offsets[k]! - from),
        lengths: Uint32Array.from(members, (k) => lengths[k]!),
        data: bytes.subarray(from, to),
      };
      try {
        codec.decodeBatch(encoded, batch, groupIndices);
      } catch (err) {
        if (err instanceof CodecError && !err.message.startsWith("pages frame ")) {
          const cause = err.message.replace(/^page \d+: /, "");
          const rejected = err.codec === undefined ? undefined : { codec: err.codec, reason: err.reason ?? "" };
          throw new CodecError(err.code, `${ENCODING_NAMES[encoding]} pages of frame ${sequence}: ${cause}`, err.page, rejected);
        }
        throw err;
      } finally {
        if (codec.referencesOtherPages) codec.destination = undefined;
      }
      for (let i = 0; i < members.length; i++) staged[members[i]!] = batch.ptr + i * ps;
    }

    // Every page decoded: write them.
    const mem = wasm().heap.bytes();
    let pages: Uint8Array | undefined;
    if (destination === undefined || destination instanceof PageBatch) {
      const base = destination === undefined ? 0 : destination.ptr;
      const target = destination === undefined ? (pages = new Uint8Array(n * ps)) : mem;
      for (let k = 0; k < n; k++) {
        const to = base + k * ps;
        switch (encodings[k]) {
          case Encoding.ZERO:
            target.fill(0, to, to + ps);
            break;
          case Encoding.SAME_VALUE:
            fillSameValue(target, to, bytes.subarray(offsets[k]!, offsets[k]! + 4), ps);
            break;
          case Encoding.RAW:
            target.set(bytes.subarray(offsets[k]!, offsets[k]! + ps), to);
            break;
          default: {
            const from = staged[k]!;
            target.set(mem.subarray(from, from + ps), to);
          }
        }
      }
      if (destination) destination.count = n;
    } else landPages(destination, table, bytes, mem, staged, ps, keep);
    return pages ? { ...frame, pages } : frame;
  }

  /**
   * The frame's codec-decoded entries grouped by wire id, each with a decoder (checked). Apart from
   * decodePages, as landPages is.
   */
  private codecGroups(encodings: Uint8Array, sequence: number): Map<Encoding, number[]> {
    const groups = new Map<Encoding, number[]>();
    for (let k = 0; k < encodings.length; k++) {
      const encoding = encodings[k] as Encoding;
      if (OWN_ENCODINGS.includes(encoding)) continue;
      let group = groups.get(encoding);
      if (!group) {
        if (!this.decoderOf(encoding)) throw new CodecError("malformed", `pages frame ${sequence}, entry ${k}: no decoder for wire id ${encoding} was given`);
        groups.set(encoding, (group = []));
      }
      group.push(k);
    }
    return groups;
  }

  /**
   * How a codec that names other pages (dedup) reads page `page` for the
   * group's `slot`-th entry: as it stands after the frame's entries before
   * that one — an earlier entry's decoded content, else the destination's
   * page. Refusals name the frame and the entry.
   */
  private resolver(
    bytes: Uint8Array,
    table: PagesTable,
    members: readonly number[],
    staged: Uint32Array,
    destination: PageMemory | PageBatch | undefined,
    ps: number,
    sequence: number,
  ): (page: number, slot: number) => Uint8Array {
    const entryOf = new Map<number, number>();
    table.indices.forEach((index, k) => entryOf.set(index, k));
    return (page, slot) => {
      const k = members[slot]!;
      const e = entryOf.get(page);
      if (e !== undefined && e < k) {
        const offset = table.offsets[e]!;
        switch (table.encodings[e]) {
          case Encoding.ZERO:
            return new Uint8Array(ps);
          case Encoding.SAME_VALUE:
            return fillSameValue(new Uint8Array(ps), 0, bytes.subarray(offset, offset + 4), ps);
          case Encoding.RAW:
            return bytes.subarray(offset, offset + ps);
          default: {
            // Codec-decoded entries are staged by now (the referencing codec resolves its own group's).
            const at = staged[e]!;
            return wasm().heap.bytes().subarray(at, at + ps);
          }
        }
      }
      if (destination === undefined || destination instanceof PageBatch) {
        throw new CodecError("malformed", `pages frame ${sequence}, entry ${k}: dedup reference to page ${page}, which is not earlier in the frame (no guest memory given)`);
      }
      if (page >= destination.pageCount) {
        throw new CodecError("overrun", `pages frame ${sequence}, entry ${k}: dedup reference to page ${page}, outside the destination (${destination.pageCount} pages)`);
      }
      return destination.page(page);
    };
  }

  /** A delta codec applies to the page the destination holds: put it in the staging slots. */
  private preload(batch: PageBatch, members: number[], groupIndices: Uint32Array, destination: PageMemory | PageBatch | undefined): void {
    if (destination === undefined) {
      throw new CodecError("malformed", "xbzrle pages need the destination's current pages: give a destination");
    } else if (destination instanceof PageBatch) {
      const mem = wasm().heap.bytes();
      const ps = batch.pageSize;
      members.forEach((k, i) => mem.copyWithin(batch.ptr + i * ps, destination.ptr + k * ps, destination.ptr + (k + 1) * ps));
      batch.count = members.length;
    } else {
      batch.load(destination, groupIndices);
    }
  }

  /** Releases the staging memory. */
  protected release(): void {
    this.input.dispose();
    for (const batch of this.staging.values()) batch.dispose();
    this.staging.clear();
  }
}

/**
 * Writes a checked frame's pages into guest memory, but those `keep` says it keeps: entry k's payload
 * at `table.offsets[k]` of `bytes`, or, decoded by a codec, at `staged[k]` of linear memory `mem`. Apart from decodePages: the loop over
 * the pages inside it made V8 compile that whole function (21-42 ms per uncapped TCP receiver, --trace-opt).
 */
function landPages(destination: PageMemory, table: PagesTable, bytes: Uint8Array, mem: Uint8Array, staged: Uint32Array, ps: number, keep?: (page: number) => boolean): void {
  const { indices, encodings, offsets } = table;
  for (let k = 0; k < indices.length; k++) {
    const page = indices[k]!;
    if (keep?.(page)) continue;
    switch (encodings[k]) {
      case Encoding.ZERO:
        destination.zero(page);
        break;
      case Encoding.SAME_VALUE:
        fillSameValue(destination.writable(page), 0, bytes.subarray(offsets[k]!, offsets[k]! + 4), ps);
        break;
      case Encoding.RAW:
        destination.write(page, bytes, offsets[k]!);
        break;
      default:
        destination.write(page, mem, staged[k]!);
    }
  }
}

/** Fills `pageSize` bytes at `to` with the 4-byte `value` repeated; returns `target`. */
function fillSameValue(target: Uint8Array, to: number, value: Uint8Array, pageSize: number): Uint8Array {
  target.set(value, to);
  for (let filled = 4; filled < pageSize; filled *= 2) target.copyWithin(to + filled, to, to + filled);
  return target;
}

let defaultDecoder: FrameDecoder | undefined;

/**
 * Decodes one frame into `destination` (see the module comment), with this
 * thread's default decoder and the registry's codecs, or `decoders` given.
 */
export function decodeFrame(bytes: Uint8Array, destination?: PageDestination, decoders?: FrameDecoders): Frame {
  if (decoders) {
    const decoder = new FrameDecoder(decoders);
    try {
      return decoder.decode(bytes, destination);
    } finally {
      decoder.dispose();
    }
  }
  return (defaultDecoder ??= new FrameDecoder()).decode(bytes, destination);
}

/** True when bytes [at, at + size) of `bytes` are all zero (one memcmp against a zero page). */

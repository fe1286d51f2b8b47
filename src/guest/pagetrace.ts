// pagetrace v1 (../shared/formats/pagetrace.md): the recorded memory of a
// program, page by page, and every page it changed, epoch by epoch.
//
//   gzip( header | meta | image | epoch record × epochCount )
//   header  "PTRACE1\0", u32 pageSize, pageCount, epochCount, intervalMicros, metaLength (LE)
//   meta    metaLength bytes of UTF-8 JSON
//   image   pageCount · pageSize bytes: memory at time 0
//   epoch   u32 epoch (1, 2, ...), elapsedMicros, dirtyCount,
//           dirtyCount × u32 ascending page indices, dirtyCount × pageSize XOR deltas
//
// The reader streams: it holds the image and one epoch, never more. Every
// broken rule is a TraceError naming the file, the offset in the decompressed
// stream of the field at fault, and a code. The writer spools epoch records
// to a temporary file (the header needs the epoch count, which a recorder
// learns only at the end), after the time-0 image, and compresses the whole
// at `close()`.

import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, open, rm, stat, type FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, createGzip } from "node:zlib";
import { PagemillError, checkInteger, checkPageSize } from "../errors.js";
import { writeAtomically } from "../files.js";
import type { PageMemory } from "./pages.js";

export const TRACE_MAGIC = "PTRACE1\0";
/** Bytes of the fixed header before the meta JSON. */
export const TRACE_HEADER_BYTES = 28;
/** Largest meta the reader accepts (a corrupt length must not allocate GiBs). */
export const MAX_META_BYTES = 16 << 20;
/**
 * The shortest interval between epochs this reader accepts (1 ms). Replay
 * loops a trace by its interval: an interval of 0 never advances time, and
 * one of a few microseconds makes a second of guest time a million passes.
 * Recordings take snapshots milliseconds apart at the least.
 */
export const MIN_INTERVAL_MICROS = 1000;
/** Largest image the reader accepts: one Uint8Array (4 GiB). */
export const MAX_IMAGE_BYTES = 2 ** 32;

/** Which rule a trace broke. */
export type TraceErrorCode =
  | "io" // the file cannot be opened or read
  | "gzip" // the compressed stream is not valid gzip
  | "magic" // the first 8 bytes are not "PTRACE1\0"
  | "page-size" // pageSize is not a power of two in [512, 65536]
  | "truncated" // the stream ends inside a field
  | "meta" // meta is not a UTF-8 JSON object, or its regions disagree with pageCount
  | "limit" // the image or meta is larger, or the interval shorter, than this reader accepts
  | "epoch" // an epoch record is out of sequence (number or time)
  | "index" // a dirty count or page index is out of range or out of order
  | "delta" // a delta is all zero
  | "trailing"; // bytes follow the last epoch record

/** A pagetrace that breaks the format; names the file, the decompressed offset and the rule. */
export class TraceError extends PagemillError {
  readonly code: TraceErrorCode;
  readonly file: string;
  readonly offset: number;
  constructor(code: TraceErrorCode, file: string, offset: number, message: string) {
    super(`${file}: offset ${offset}: ${message}`);
    this.code = code;
    this.file = file;
    this.offset = offset;
  }
}

/** One writable mapping whose pages were concatenated into the image. */
export interface TraceRegion {
  /** Hex address, e.g. "0x55d0c0000000". */
  start: string;
  pages: number;
  perms?: string;
  name?: string;
  /** What memory it is (`pagemill record` says): "private", "shared-anonymous", "shmem" or "file-shared". */
  kind?: RegionKind;
}

/**
 * private: a private writable mapping (heap, stack, anonymous, a file's
 * copy-on-write pages); shared-anonymous: MAP_SHARED|MAP_ANONYMOUS or SysV
 * shared memory (PostgreSQL's shared buffers, Python's mmap.mmap(-1, n));
 * shmem: memfd or /dev/shm (QEMU's memory-backend-memfd); file-shared: a
 * shared mapping of a file on disk.
 */
export type RegionKind = "private" | "shared-anonymous" | "shmem" | "file-shared";

/** The JSON after the header. Unknown keys are kept and ignored. */
export interface TraceMeta {
  program?: string;
  captured?: string;
  method?: string;
  regions?: TraceRegion[];
  [key: string]: unknown;
}

export interface TraceHeader {
  readonly pageSize: number;
  readonly pageCount: number;
  readonly epochCount: number;
  readonly intervalMicros: number;
  readonly meta: TraceMeta;
}

/**
 * One epoch record. `deltas` is the reader's buffer, reused for the next
 * epoch (copy it to keep it); `pages` is the epoch's own.
 */
export interface TraceEpoch {
  readonly epoch: number;
  readonly elapsedMicros: number;
  /** Dirty pages, strictly ascending. */
  readonly pages: Uint32Array;
  /** pages.length · pageSize bytes: new content XOR old, in the order of `pages`. */
  readonly deltas: Uint8Array;
}

/** Pulls exact byte counts out of a gunzip stream, tracking the decompressed offset. */
class InflatedSource {
  offset = 0;
  private chunk: Buffer = Buffer.alloc(0);
  private at = 0;
  private readonly raw: ReturnType<typeof createReadStream>;
  private readonly chunks: AsyncIterator<Buffer>;
  private ended = false;

  constructor(private readonly path: string) {
    this.raw = createReadStream(path, { highWaterMark: 1 << 20 });
    const gunzip = createGunzip({ chunkSize: 1 << 18 });
    this.raw.on("error", (err) => gunzip.destroy(err));
    this.chunks = (this.raw.pipe(gunzip) as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  /** Compressed bytes read from disk so far. */
  get compressedBytes(): number {
    return this.raw.bytesRead;
  }

  /** Reads exactly `n` bytes into `dst` (from 0); `what` names the field for errors. */
  async read(dst: Uint8Array, n: number, what: string): Promise<void> {
    const start = this.offset;
    let have = 0;
    while (have < n) {
      if (this.at === this.chunk.length && !(await this.next(start, what, n, have))) {
        throw new TraceError("truncated", this.path, start, `truncated stream: ${what} needs ${n} bytes, ${have} left`);
      }
      const take = Math.min(n - have, this.chunk.length - this.at);
      dst.set(this.chunk.subarray(this.at, this.at + take), have);
      this.at += take;
      have += take;
      this.offset += take;
    }
  }

  /** True when no decompressed byte is left. */
  async atEnd(): Promise<boolean> {
    return this.at === this.chunk.length && !(await this.next(this.offset, "end of stream", 0, 0));
  }

  /** Bytes decompressed but not consumed yet. */
  get pending(): number {
    return this.chunk.length - this.at;
  }

  close(): void {
    this.raw.destroy();
    void this.chunks.return?.();
  }

  private async next(fieldStart: number, what: string, n: number, have: number): Promise<boolean> {
    if (this.ended) return false;
    let result: IteratorResult<Buffer>;
    try {
      result = await this.chunks.next();
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.syscall) {
        const why = e.code === "ENOENT" ? "no such file" : e.code === "EACCES" ? "permission denied" : e.code === "EISDIR" ? "is a directory" : e.message;
        throw new TraceError("io", this.path, this.offset, `cannot read: ${why}`);
      }
      if (e.code === "Z_BUF_ERROR" || /unexpected end/i.test(e.message)) {
        throw new TraceError("truncated", this.path, fieldStart, `truncated gzip stream: ${what} needs ${n} bytes, ${have} left`);
      }
      throw new TraceError("gzip", this.path, this.offset, `bad gzip data: ${e.message}`);
    }
    if (result.done) {
      this.ended = true;
      return false;
    }
    this.chunk = result.value;
    this.at = 0;
    return true;
  }
}

function u32At(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
}

/** A 32-bit-word view of `bytes` when it is aligned, for word-wise loops. */
function words(bytes: Uint8Array): Int32Array | undefined {
  return bytes.byteOffset % 4 === 0 && bytes.byteLength % 4 === 0
    ? new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2)
    : undefined;
}

/** True when bytes [from, from + length) of `bytes` are all zero. */
function isZeroRange(bytes: Uint8Array, w: Int32Array | undefined, from: number, length: number): boolean {
  if (w) {
    for (let i = from >>> 2, end = (from + length) >>> 2; i < end; i++) if (w[i] !== 0) return false;
    return true;
  }
  for (let i = from, end = from + length; i < end; i++) if (bytes[i] !== 0) return false;
  return true;
}

/**
 * dst[at .. at + words) ^= src[from .. from + words), 32-bit words, `words` a
 * multiple of 4 (unrolled: V8 runs this ~2x faster than the plain loop).
 */
export function xorWords(dst: Int32Array, at: number, src: Int32Array, from: number, words: number): void {
  for (let i = 0; i < words; i += 4) {
    dst[at + i]! ^= src[from + i]!;
    dst[at + i + 1]! ^= src[from + i + 1]!;
    dst[at + i + 2]! ^= src[from + i + 2]!;
    dst[at + i + 3]! ^= src[from + i + 3]!;
  }
}

/**
 * XORs one epoch's deltas into `image` (pageCount · pageSize bytes): the
 * memory at the end of the previous epoch becomes the memory at its end.
 */
export function applyEpoch(image: Uint8Array, pageSize: number, epoch: Pick<TraceEpoch, "pages" | "deltas">): void {
  const { pages, deltas } = epoch;
  if (deltas.byteLength !== pages.length * pageSize) {
    throw new RangeError(`deltas has ${deltas.byteLength} bytes, expected ${pages.length} pages of ${pageSize}`);
  }
  const limit = Math.floor(image.byteLength / pageSize);
  const iw = words(image);
  const dw = words(deltas);
  for (let k = 0; k < pages.length; k++) {
    const p = pages[k]!;
    if (p >= limit) throw new RangeError(`pages[${k}] = ${p} is outside the image (${limit} pages)`);
    if (iw && dw) {
      xorWords(iw, (p * pageSize) >>> 2, dw, (k * pageSize) >>> 2, pageSize >>> 2);
    } else {
      const a = p * pageSize;
      const b = k * pageSize;
      for (let i = 0; i < pageSize; i++) image[a + i]! ^= deltas[b + i]!;
    }
  }
}

export interface OpenTraceOptions {
  /** Read past the image without keeping it (`reader.image` is then empty): to stream the epochs again. */
  skipImage?: boolean;
  /**
   * Stream the image into this memory instead, 4 MiB at a time, leaving its
   * zero pages unwritten (a sparse memory holds only the image's data;
   * `reader.image` is then empty). Its shape must be the trace's.
   */
  into?: (header: TraceHeader) => PageMemory;
}

/**
 * A pagetrace being read: header, meta and image are read by `open`; the
 * epochs stream from `epochs()`, which can be iterated once.
 */
export class TraceReader {
  /** Memory at time 0 (the reader never modifies it). */
  readonly image: Uint8Array;
  private started = false;

  private constructor(
    readonly path: string,
    readonly header: TraceHeader,
    image: Uint8Array,
    private readonly source: InflatedSource,
    /** The memory options.into gave, holding the image. */
    readonly memory?: PageMemory,
  ) {
    this.image = image;
  }

  /** Opens `path` and reads its header, meta and image. */
  static async open(path: string, options: OpenTraceOptions = {}): Promise<TraceReader> {
    const source = new InflatedSource(path);
    try {
      const head = new Uint8Array(TRACE_HEADER_BYTES);
      await source.read(head, 8, "magic");
      const magic = Buffer.from(head.subarray(0, 8));
      if (magic.toString("latin1") !== TRACE_MAGIC) {
        throw new TraceError("magic", path, 0, `wrong magic ${JSON.stringify(magic.toString("latin1"))} (expected "PTRACE1\\0")`);
      }
      await source.read(head.subarray(8), 20, "header");
      const pageSize = u32At(head, 8);
      const pageCount = u32At(head, 12);
      const epochCount = u32At(head, 16);
      const intervalMicros = u32At(head, 20);
      const metaLength = u32At(head, 24);
      if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
        throw new TraceError("page-size", path, 8, `pageSize ${pageSize} is not a power of two between 512 and 65536`);
      }
      if (intervalMicros < MIN_INTERVAL_MICROS) {
        throw new TraceError("limit", path, 20, `intervalMicros ${intervalMicros} is below the ${MIN_INTERVAL_MICROS} µs this reader accepts (epochs at least 1 ms apart)`);
      }
      if (metaLength > MAX_META_BYTES) {
        throw new TraceError("limit", path, 24, `metaLength ${metaLength} is larger than ${MAX_META_BYTES} bytes`);
      }
      if (pageCount * pageSize > MAX_IMAGE_BYTES) {
        throw new TraceError("limit", path, 12, `image of ${pageCount} pages of ${pageSize} B is larger than 4 GiB`);
      }
      const metaOffset = source.offset;
      const metaBytes = new Uint8Array(metaLength);
      await source.read(metaBytes, metaLength, "meta");
      const meta = parseMeta(metaBytes, pageCount, pageSize, path, metaOffset);
      const header: TraceHeader = { pageSize, pageCount, epochCount, intervalMicros, meta };
      const imageBytes = pageCount * pageSize;
      if (options.skipImage || options.into) {
        const memory = options.skipImage ? undefined : options.into!(header);
        if (memory && (memory.pageCount !== pageCount || memory.pageSize !== pageSize)) {
          throw new RangeError(`options.into gave ${memory.pageCount} pages of ${memory.pageSize} B, the image has ${pageCount} of ${pageSize} B`);
        }
        // 4 MiB is a whole number of pages of any page size.
        const scratch = new Uint8Array(Math.min(imageBytes, 4 << 20));
        let page = 0;
        for (let left = imageBytes; left > 0; left -= scratch.byteLength) {
          const bytes = Math.min(left, scratch.byteLength);
          await source.read(scratch, bytes, "image");
          // A zero page written to a sparse memory holds nothing.
          if (memory) for (let at = 0; at < bytes; at += pageSize, page++) memory.write(page, scratch, at);
        }
        return new TraceReader(path, header, new Uint8Array(0), source, memory);
      }
      const image = new Uint8Array(imageBytes);
      await source.read(image, imageBytes, "image");
      return new TraceReader(path, header, image, source);
    } catch (err) {
      source.close();
      throw err;
    }
  }

  /** Compressed bytes read from the file so far. */
  get compressedBytes(): number {
    return this.source.compressedBytes;
  }

  /** Decompressed offset of the next unread byte. */
  get offset(): number {
    return this.source.offset;
  }

  /**
   * The epoch records, checked against every rule as they stream by; after
   * the last one, checks that nothing follows. Each yielded epoch's buffers
   * are reused for the next.
   */
  async *epochs(): AsyncGenerator<TraceEpoch> {
    if (this.started) throw new PagemillError(`${this.path}: epochs() can be iterated only once`);
    this.started = true;
    const { pageSize, pageCount, epochCount } = this.header;
    const path = this.path;
    const source = this.source;
    const head = new Uint8Array(12);
    let indexBytes = new Uint8Array(0);
    let deltaBytes = new Uint8Array(0);
    let lastElapsed = 0;
    try {
      for (let e = 1; e <= epochCount; e++) {
        const recordOffset = source.offset;
        await source.read(head, 12, `epoch ${e} header`);
        const epoch = u32At(head, 0);
        const elapsedMicros = u32At(head, 4);
        const dirtyCount = u32At(head, 8);
        if (epoch !== e) throw new TraceError("epoch", path, recordOffset, `epoch record says ${epoch}, expected ${e}`);
        if (elapsedMicros < lastElapsed) {
          throw new TraceError("epoch", path, recordOffset + 4, `epoch ${e}: elapsedMicros ${elapsedMicros} < previous ${lastElapsed} (records must be in time order)`);
        }
        lastElapsed = elapsedMicros;
        if (dirtyCount > pageCount) {
          throw new TraceError("index", path, recordOffset + 8, `epoch ${e}: dirtyCount ${dirtyCount} > pageCount ${pageCount}`);
        }
        if (indexBytes.byteLength < dirtyCount * 4) indexBytes = new Uint8Array(dirtyCount * 4);
        if (deltaBytes.byteLength < dirtyCount * pageSize) deltaBytes = new Uint8Array(dirtyCount * pageSize);
        const indexOffset = source.offset;
        await source.read(indexBytes, dirtyCount * 4, `epoch ${e} page indices`);
        const pages = new Uint32Array(dirtyCount);
        let prev = -1;
        for (let k = 0; k < dirtyCount; k++) {
          const p = u32At(indexBytes, 4 * k);
          if (p >= pageCount) {
            throw new TraceError("index", path, indexOffset + 4 * k, `epoch ${e}: page index ${p} out of range (pageCount ${pageCount})`);
          }
          if (p <= prev) {
            throw new TraceError("index", path, indexOffset + 4 * k, `epoch ${e}: page index ${p} not strictly ascending after ${prev}`);
          }
          pages[k] = p;
          prev = p;
        }
        const deltaOffset = source.offset;
        const deltas = deltaBytes.subarray(0, dirtyCount * pageSize);
        await source.read(deltas, deltas.byteLength, `epoch ${e} deltas`);
        const dw = words(deltas);
        for (let k = 0; k < dirtyCount; k++) {
          if (isZeroRange(deltas, dw, k * pageSize, pageSize)) {
            throw new TraceError("delta", path, deltaOffset + k * pageSize, `epoch ${e}: delta for page ${pages[k]} is all zero`);
          }
        }
        yield { epoch, elapsedMicros, pages, deltas };
      }
      if (!(await source.atEnd())) {
        throw new TraceError("trailing", path, source.offset, `${source.pending}+ bytes after the last epoch record`);
      }
    } finally {
      source.close();
    }
  }

  /** Stops reading (when the epochs are not iterated to the end). */
  close(): void {
    this.source.close();
  }
}

function parseMeta(bytes: Uint8Array, pageCount: number, pageSize: number, path: string, offset: number): TraceMeta {
  let meta: unknown;
  try {
    meta = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (err) {
    throw new TraceError("meta", path, offset, `meta is not UTF-8 JSON: ${(err as Error).message}`);
  }
  if (typeof meta !== "object" || meta === null || Array.isArray(meta)) {
    throw new TraceError("meta", path, offset, "meta is not a JSON object");
  }
  const regions = (meta as TraceMeta).regions;
  if (regions !== undefined) {
    if (!Array.isArray(regions)) throw new TraceError("meta", path, offset, "meta.regions is not an array");
    let lastEnd = -1n;
    let total = 0;
    regions.forEach((r, i) => {
      const start = typeof r?.start === "string" && /^0x[0-9a-f]+$/i.test(r.start) ? BigInt(r.start) : undefined;
      if (start === undefined || !Number.isInteger(r.pages) || r.pages < 0) {
        throw new TraceError("meta", path, offset, `meta.regions[${i}] lacks a hex start or pages`);
      }
      if (start < lastEnd) throw new TraceError("meta", path, offset, `meta.regions[${i}] is out of address order or overlaps`);
      lastEnd = start + BigInt(r.pages) * BigInt(pageSize);
      total += r.pages;
    });
    if (total !== pageCount) {
      throw new TraceError("meta", path, offset, `meta.regions add up to ${total} pages, pageCount is ${pageCount}`);
    }
  }
  return meta as TraceMeta;
}

/**
 * Reads a whole trace without keeping its image, so that every error in it is
 * found (a cut epoch, trailing bytes, time going backwards): a trace is valid
 * or not, whatever part of it a run replays. Throws TraceError; returns the header.
 */
export async function checkTrace(path: string): Promise<TraceHeader> {
  const reader = await TraceReader.open(path, { skipImage: true });
  for await (const epoch of reader.epochs()) void epoch; // each record is checked as it is read
  return reader.header;
}

/** Reads a whole trace, calling `onEpoch` after each epoch is applied; returns the final image. */
export async function replayTrace(
  path: string,
  onEpoch?: (epoch: TraceEpoch, image: Uint8Array, header: TraceHeader) => void,
): Promise<{ header: TraceHeader; image: Uint8Array }> {
  const reader = await TraceReader.open(path);
  const image = reader.image;
  for await (const epoch of reader.epochs()) {
    applyEpoch(image, reader.header.pageSize, epoch);
    onEpoch?.(epoch, image, reader.header);
  }
  return { header: reader.header, image };
}

export interface TraceWriterOptions {
  /** Bytes per page (4096 by default). */
  pageSize?: number;
  /** Nominal time between epochs (µs). */
  intervalMicros: number;
  /** JSON meta; `regions`, when given, must add up to the page count. */
  meta?: TraceMeta;
  /** gzip level 1..9 (6 by default). */
  level?: number;
  /**
   * Directory for the spool (os.tmpdir() by default). A busy target's epochs
   * can outrun a disk (128 MiB every 200 ms for memstream): /dev/shm keeps
   * them in memory.
   */
  spoolDir?: string;
}

/**
 * Writes a pagetrace. The writer owns `image` from `create` on and keeps it
 * equal to the memory after the last epoch written (pass a copy to keep the
 * original): give it each epoch's new page contents and it computes the XOR
 * deltas, dropping pages that did not change.
 */
export class TraceWriter {
  /** Memory after the last epoch written. */
  readonly current: Uint8Array;
  readonly pageSize: number;
  readonly pageCount: number;
  /** Epochs written so far. */
  epochCount = 0;
  private lastElapsed = 0;
  /** Two delta buffers: one being written to the spool while the next epoch is computed. */
  private readonly deltaBuffers = [new Uint8Array(0), new Uint8Array(0)];
  /** The spool write of the last epoch from `epoch()`, not awaited there. */
  private pending: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(
    readonly path: string,
    image: Uint8Array,
    private readonly options: Required<Pick<TraceWriterOptions, "intervalMicros" | "level">> & { meta: TraceMeta },
    pageSize: number,
    private readonly spoolDir: string,
    private readonly spool: FileHandle,
  ) {
    this.current = image;
    this.pageSize = pageSize;
    this.pageCount = image.byteLength / pageSize;
  }

  static async create(path: string, image: Uint8Array, options: TraceWriterOptions): Promise<TraceWriter> {
    const pageSize = options.pageSize ?? 4096;
    checkPageSize(pageSize);
    if (image.byteLength % pageSize !== 0) throw new RangeError(`image has ${image.byteLength} bytes, not a multiple of pageSize ${pageSize}`);
    const pageCount = image.byteLength / pageSize;
    checkInteger("image pages", pageCount, 0, 2 ** 32 - 1);
    checkInteger("intervalMicros", options.intervalMicros, MIN_INTERVAL_MICROS, 2 ** 32 - 1);
    const level = options.level ?? 6;
    checkInteger("level", level, 1, 9);
    const meta = options.meta ?? {};
    if (meta.regions !== undefined) {
      const total = meta.regions.reduce((sum, r) => sum + r.pages, 0);
      if (total !== pageCount) throw new RangeError(`meta.regions add up to ${total} pages, the image has ${pageCount}`);
    }
    const spoolDir = await mkdtemp(join(options.spoolDir ?? tmpdir(), "pagemill-trace-"));
    const spool = await open(join(spoolDir, "body"), "w+");
    try {
      // The spool starts with the time-0 image, so that `current` can move on.
      for (let at = 0; at < image.byteLength; at += 8 << 20) await spool.write(image.subarray(at, Math.min(at + (8 << 20), image.byteLength)));
    } catch (err) {
      await spool.close();
      await rm(spoolDir, { recursive: true, force: true });
      throw err;
    }
    return new TraceWriter(path, image, { intervalMicros: options.intervalMicros, level, meta }, pageSize, spoolDir, spool);
  }

  /**
   * Appends an epoch from new contents: `pages` ascending, `contents` their
   * new content back to back. Pages whose content did not change are left
   * out. Returns the number of dirty pages recorded, once the deltas are
   * computed: the epoch goes to the spool while the caller moves on (a
   * recorder's next pass), and `close()` waits for it. Await each call
   * before the next.
   */
  async epoch(elapsedMicros: number, pages: ArrayLike<number>, contents: Uint8Array): Promise<number> {
    this.checkEpoch(elapsedMicros, pages, contents, "contents");
    const ps = this.pageSize;
    const slot = this.epochCount % 2;
    if (this.deltaBuffers[slot]!.byteLength < pages.length * ps) this.deltaBuffers[slot] = new Uint8Array(pages.length * ps);
    const out = this.deltaBuffers[slot]!;
    const ow = words(out)!;
    const cw = words(contents);
    const iw = words(this.current);
    const kept: number[] = [];
    for (let k = 0; k < pages.length; k++) {
      const p = pages[k]!;
      const slot = kept.length * ps;
      let changed = 0;
      if (cw && iw) {
        const a = (p * ps) >>> 2;
        const b = (k * ps) >>> 2;
        const o = slot >>> 2;
        for (let i = 0, n = ps >>> 2; i < n; i += 2) {
          const d0 = iw[a + i]! ^ cw[b + i]!;
          const d1 = iw[a + i + 1]! ^ cw[b + i + 1]!;
          ow[o + i] = d0;
          ow[o + i + 1] = d1;
          changed |= d0 | d1;
        }
      } else {
        for (let i = 0; i < ps; i++) {
          const d = this.current[p * ps + i]! ^ contents[k * ps + i]!;
          out[slot + i] = d;
          changed |= d;
        }
      }
      if (changed === 0) continue;
      this.current.set(contents.subarray(k * ps, (k + 1) * ps), p * ps);
      kept.push(p);
    }
    // The other buffer's write (the previous epoch) must be done before this
    // one is queued; this buffer's last write finished before that one began.
    await this.pending;
    this.pending = this.append(elapsedMicros, kept, out.subarray(0, kept.length * ps));
    return kept.length;
  }

  /**
   * Appends an epoch given as XOR deltas (as a reader yields them). Every
   * delta must be non-zero.
   */
  async epochDeltas(elapsedMicros: number, pages: ArrayLike<number>, deltas: Uint8Array): Promise<number> {
    this.checkEpoch(elapsedMicros, pages, deltas, "deltas");
    const ps = this.pageSize;
    const dw = words(deltas);
    for (let k = 0; k < pages.length; k++) {
      if (isZeroRange(deltas, dw, k * ps, ps)) throw new RangeError(`deltas for page ${pages[k]} (index ${k}) is all zero`);
    }
    applyEpoch(this.current, ps, { pages: Uint32Array.from(pages), deltas });
    await this.pending;
    this.pending = this.append(elapsedMicros, Array.from(pages), deltas);
    // The caller's buffer: written before returning.
    await this.pending;
    return pages.length;
  }

  /** Compresses header, image and epochs into `path` (atomically) and removes the spool. */
  async close(): Promise<{ epochs: number; bytes: number }> {
    this.checkOpen();
    this.closed = true;
    try {
      await this.pending;
    } catch (err) {
      await this.removeSpool();
      throw err;
    }
    const metaBytes = Buffer.from(JSON.stringify(this.options.meta), "utf8");
    const head = Buffer.alloc(TRACE_HEADER_BYTES);
    head.write(TRACE_MAGIC, 0, "latin1");
    head.writeUInt32LE(this.pageSize, 8);
    head.writeUInt32LE(this.pageCount, 12);
    head.writeUInt32LE(this.epochCount, 16);
    head.writeUInt32LE(this.options.intervalMicros, 20);
    head.writeUInt32LE(metaBytes.length, 24);
    const spool = this.spool;
    async function* body(): AsyncGenerator<Uint8Array> {
      yield head;
      yield metaBytes;
      for (let pos = 0; ; ) {
        // A fresh buffer each time: a yielded chunk may still be queued.
        const chunk = Buffer.allocUnsafe(8 << 20);
        const { bytesRead } = await spool.read(chunk, 0, chunk.length, pos);
        if (bytesRead === 0) break;
        pos += bytesRead;
        yield chunk.subarray(0, bytesRead);
      }
    }
    try {
      await writeAtomically(this.path, (temporary) =>
        pipeline(Readable.from(body(), { objectMode: false }), createGzip({ level: this.options.level }), createWriteStream(temporary)),
      );
    } finally {
      await this.removeSpool();
    }
    const { size } = await stat(this.path);
    return { epochs: this.epochCount, bytes: size };
  }

  /** Gives up: removes the spool, writes nothing. */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pending.catch(() => undefined);
    await this.removeSpool();
  }

  private checkOpen(): void {
    if (this.closed) throw new PagemillError(`${this.path}: the trace writer is closed`);
  }

  private checkEpoch(elapsedMicros: number, pages: ArrayLike<number>, data: Uint8Array, name: string): void {
    this.checkOpen();
    checkInteger("elapsedMicros", elapsedMicros, this.lastElapsed, 2 ** 32 - 1);
    if (data.byteLength !== pages.length * this.pageSize) {
      throw new RangeError(`${name} has ${data.byteLength} bytes, expected ${pages.length} pages of ${this.pageSize}`);
    }
    let prev = -1;
    for (let k = 0; k < pages.length; k++) {
      const p = pages[k]!;
      if (!Number.isInteger(p) || p <= prev || p >= this.pageCount) {
        throw new RangeError(`pages[${k}] = ${p} is not ascending and within 0..${this.pageCount - 1}`);
      }
      prev = p;
    }
  }

  /** Counts the epoch now and writes its record to the spool (the returned promise). */
  private append(elapsedMicros: number, pages: number[], deltas: Uint8Array): Promise<void> {
    this.epochCount++;
    this.lastElapsed = elapsedMicros;
    const written = this.writeRecord(this.epochCount, elapsedMicros, pages, deltas);
    // Handled now so that a failure is not an unhandled rejection while it
    // waits; it still rejects the next epoch(), close() or abort().
    written.catch(() => undefined);
    return written;
  }

  private async writeRecord(epoch: number, elapsedMicros: number, pages: number[], deltas: Uint8Array): Promise<void> {
    const record = Buffer.alloc(12 + 4 * pages.length);
    record.writeUInt32LE(epoch, 0);
    record.writeUInt32LE(elapsedMicros, 4);
    record.writeUInt32LE(pages.length, 8);
    pages.forEach((p, k) => record.writeUInt32LE(p, 12 + 4 * k));
    await this.spool.write(record);
    if (deltas.byteLength) await this.spool.write(deltas);
  }

  private async removeSpool(): Promise<void> {
    await this.spool.close().catch(() => undefined);
    await rm(this.spoolDir, { recursive: true, force: true });
  }
}

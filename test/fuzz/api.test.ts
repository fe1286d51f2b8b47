// The public API called at random: random methods of random objects (live and
// disposed) with random arguments, good and bad (null, strings, numbers out of
// range, other byte arrays, views of pagemill's own memory, disposed or
// foreign objects). Every allocation the library makes gets a guard region on
// each side (the heap is wrapped for this file); after each call every guard
// must be as written, every batch and bitmap the call was not given must hold
// what it held before, a valid round trip must still work (no poisoned
// scratch), and whatever was thrown must be a PagemillError or a RangeError /
// TypeError of pagemill's own, never a WebAssembly trap or an engine error
// ("Cannot read properties of null"). Findings are collected and listed
// together. `npm test` runs a seeded sample; PAGEMILL_FUZZ=1 (npm run fuzz)
// runs 100 times more.
//
// Covered: PageBatch, DirtyBitmap, Guest, the six codecs and their
// single-buffer functions, XbzrleCache, DedupIndex, DuplicateCounter, the
// hashers and digests, frames (encode, decode, header, FrameEncoder,
// FrameDecoder), verifyMemory, the codec registry. Left out: whole
// migrations and Session (test/fuzz/migrate-sweep, test/fuzz/cli), trace
// files and the recorder (file and process input, tested on their own),
// streams, channels and ParallelEncoder (asynchronous wrappers over the frame
// functions called here), the clock and link models (no memory of their
// own), and decoderFor / createCodec("xbzrle"), whose 64 MiB default cache
// would make every call an allocation of 64 MiB.

import { describe, expect, it } from "vitest";
import {
  AutoCodec,
  DedupCodec,
  DedupIndex,
  DuplicateCounter,
  FrameEncoder,
  codecEntry,
  codecNames,
  createCodec,
  hex32,
  hex64,
  maxFramePages,
  verifyMemory,
  DirtyBitmap,
  FrameDecoder,
  Guest,
  Lz4Codec,
  Md5,
  MecomCodec,
  PageBatch,
  PagemillError,
  WkdmCodec,
  XbzrleCache,
  XbzrleCodec,
  Xxh32Hasher,
  Xxh3Hasher,
  Xxh64Hasher,
  decodeFrame,
  encodeControl,
  encodeFrame,
  isZeroPage,
  lz4CompressBlock,
  lz4CompressBound,
  lz4DecompressBlock,
  md5,
  md5Batch,
  newWireStats,
  readFrameHeader,
  scanZeroPages,
  toHex,
  wkdmCompress,
  wkdmCompressBound,
  wkdmDecompress,
  wkdmHitRates,
  xbzrleDecode,
  xbzrleEncode,
  xxh32,
  xxh32Batch,
  xxh3,
  xxh3Batch,
  xxh64,
  xxh64Batch,
  type EncodedBatch,
  type PageCodec,
} from "../../src/index.js";
import { wasm } from "../../src/wasm/module.js";
import { u32Stream } from "../helpers/random.js";

const SCALE = process.env.PAGEMILL_FUZZ ? 100 : 1;
const TIME_LIMIT = SCALE > 1 ? 3_600_000 : undefined;
const SEEDS = 6;
const CALLS_PER_SEED = 500 * SCALE;
const GUARD = 64;
const GUARD_BYTE = 0xc3;
const GUARD_BYTES = Buffer.alloc(GUARD, GUARD_BYTE);

// ---------------------------------------------------------------------------
// Guard regions around every allocation made from here on.

const heap = wasm().heap;
/** Live guarded regions: user pointer → requested size. */
const guarded = new Map<number, number>();
const violations: string[] = [];

function guardsIntact(ptr: number, size: number): boolean {
  const mem = heap.bytes();
  return GUARD_BYTES.equals(mem.subarray(ptr - GUARD, ptr)) && GUARD_BYTES.equals(mem.subarray(ptr + size, ptr + size + GUARD));
}

{
  const alloc = heap.alloc.bind(heap);
  const release = heap.release.bind(heap);
  heap.alloc = (size: number): number => {
    if (!Number.isInteger(size) || size < 0) return alloc(size);
    const ptr = alloc(size + 2 * GUARD) + GUARD;
    const mem = heap.bytes();
    mem.fill(GUARD_BYTE, ptr - GUARD, ptr);
    mem.fill(GUARD_BYTE, ptr + size, ptr + size + GUARD);
    guarded.set(ptr, size);
    return ptr;
  };
  heap.release = (ptr: number): void => {
    const size = guarded.get(ptr);
    if (size === undefined) return release(ptr);
    if (!guardsIntact(ptr, size)) violations.push(`a guard of the ${size}-byte region at ${ptr} was overwritten (found at its release)`);
    guarded.delete(ptr);
    release(ptr - GUARD);
  };
}

// ---------------------------------------------------------------------------
// Random draws and the values they produce.

class Draw {
  /** What was drawn for the current call, for the report. */
  log: string[] = [];
  /** Batches and bitmaps the current call was given (it may change them). */
  touched = new Set<object>();
  constructor(private readonly next: () => number) {}
  below(n: number): number {
    return this.next() % n;
  }
  chance(p: number): boolean {
    return this.next() / 2 ** 32 < p;
  }
  pick<T>(values: readonly T[]): T {
    return values[this.below(values.length)]!;
  }
  note<T>(name: string, value: T): T {
    this.log.push(`${name}=${show(value)}`);
    if (value instanceof PageBatch || value instanceof DirtyBitmap) this.touched.add(value);
    return value;
  }
}

function show(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "string") return JSON.stringify(value.slice(0, 20));
  if (typeof value !== "object") return String(value);
  const name = value.constructor?.name ?? "Object";
  if (ArrayBuffer.isView(value)) return `${name}(${(value as Uint8Array).length}${(value as Uint8Array).buffer === heap.bytes().buffer ? ", pagemill memory" : ""})`;
  if ("disposed" in value && (value as { disposed: boolean }).disposed) return `disposed ${name}`;
  return Array.isArray(value) ? `[${value.length}]` : name;
}

/** A page WKdm, LZ4 and XBZRLE all handle well: a few words repeated, some noise. */
function regularPage(d: Draw, size = 4096): Uint8Array {
  const page = new Uint8Array(size);
  const words = new Uint32Array(page.buffer);
  const palette = [0, d.below(2 ** 31), d.below(256), 0xffffffff];
  for (let i = 0; i < words.length; i++) words[i] = d.chance(0.05) ? d.below(2 ** 31) : palette[i & 3]!;
  return page;
}

interface Pool {
  batches: PageBatch[];
  bitmaps: DirtyBitmap[];
  codecs: PageCodec[];
  caches: XbzrleCache[];
  indices: DedupIndex[];
  hashers: (Xxh32Hasher | Xxh64Hasher | Xxh3Hasher)[];
  md5s: Md5[];
  decoders: FrameDecoder[];
  guests: Guest[];
  /** Outputs of earlier calls (streams, frames), to feed back as inputs. */
  streams: Uint8Array[];
  encoded: EncodedBatch[];
}

const LIMIT = 6;

function remember<T>(list: T[], value: T): T {
  list.push(value);
  if (list.length > LIMIT) {
    const old = list.shift() as { dispose?: () => void };
    old.dispose?.();
  }
  return value;
}

function everyObject(pool: Pool): object[] {
  return [...pool.batches, ...pool.bitmaps, ...pool.codecs, ...pool.caches, ...pool.indices, ...pool.hashers, ...pool.decoders, ...pool.guests];
}

/** Values that are wrong for any argument, and objects of the wrong kind. */
function badValue(d: Draw, pool: Pool): unknown {
  const fixed = [null, undefined, "abc", "", 42, -1, 1.5, NaN, Infinity, 2 ** 40, 10n, {}, { length: 3 }, [1, 2, 3], new Uint16Array(8), new ArrayBuffer(4096), new Int8Array(4096), new DataView(new ArrayBuffer(64))];
  const objects = everyObject(pool);
  if (objects.length && d.chance(0.3)) return d.pick(objects);
  return d.pick(fixed);
}

/** Most arguments are drawn good; one in `badEvery` is bad. */
const BAD = 0.08;

function bytes(d: Draw, pool: Pool, name: string, sizes: readonly number[] = [0, 1, 4, 64, 4095, 4096, 4097, 8192]): unknown {
  if (d.chance(BAD)) return d.note(name, badValue(d, pool));
  const kind = d.below(10);
  let value: Uint8Array;
  if (kind === 0 && pool.streams.length) {
    const stream = d.pick(pool.streams);
    value = d.chance(0.5) ? stream.slice() : stream.slice(0, d.below(stream.length + 1));
    if (d.chance(0.3) && value.length) value[d.below(value.length)] ^= 1 << d.below(8);
  } else if (kind === 1) {
    // A view of pagemill's own memory: a live batch's page, or a guarded region.
    const live = pool.batches.filter((b) => !b.disposed);
    if (live.length) {
      const batch = d.pick(live);
      d.touched.add(batch);
      value = batch.page(d.below(batch.capacity));
    } else value = new Uint8Array(4096);
  } else {
    const size = d.chance(0.8) ? d.pick(sizes) : d.below(9000);
    value = d.chance(0.5) && size % 4 === 0 ? regularPage(d, size) : new Uint8Array(size);
    if (kind === 2) for (let i = 0; i < size; i++) value[i] = d.below(256);
  }
  return d.note(name, value);
}

function integer(d: Draw, pool: Pool, name: string, lo: number, hi: number): unknown {
  if (d.chance(BAD)) return d.note(name, d.chance(0.5) ? d.pick([lo - 1, hi + 1, 0.5, NaN, -Infinity, "1", null]) : badValue(d, pool));
  const value = d.chance(0.3) ? d.pick([lo, hi, lo + 1, hi - 1].filter((v) => v >= lo && v <= hi)) : lo + d.below(Math.max(1, Math.min(hi - lo + 1, 2 ** 31)));
  return d.note(name, value);
}

function indexList(d: Draw, pool: Pool, name: string, count: number, limit: number): unknown {
  if (d.chance(BAD)) return d.note(name, d.chance(0.5) ? Array.from({ length: count + d.pick([-1, 1]) }, (_, k) => k) : badValue(d, pool));
  const list = Array.from({ length: count }, (_, k) => (d.chance(0.7) ? k : d.below(Math.max(1, limit))));
  if (d.chance(0.05) && count) list[d.below(count)] = d.pick([-1, limit, 0.5, NaN]);
  return d.note(name, d.chance(0.5) ? Uint32Array.from(list.map((v) => (Number.isInteger(v) && v >= 0 ? v : 0))) : list);
}

/** The object a method is called on: one of the pool's `list`, live or disposed (undefined when there is none). */
function receiver<T>(d: Draw, name: string, list: T[]): T | undefined {
  return list.length ? d.note(name, d.pick(list)) : undefined;
}

/** An object of the pool's `list` (live or disposed) as an argument, a bad value now and then. */
function member<T>(d: Draw, pool: Pool, name: string, list: T[]): T {
  if (d.chance(BAD) || !list.length) return d.note(name, badValue(d, pool)) as T;
  return d.note(name, d.pick(list));
}

function encodedBatch(d: Draw, pool: Pool): unknown {
  if (d.chance(BAD) || !pool.encoded.length) return d.note("encoded", badValue(d, pool));
  const base = d.pick(pool.encoded);
  if (d.chance(0.6)) return d.note("encoded", base);
  // Tampered: one field of the table changed.
  const encoded = { ...base, encodings: base.encodings.slice(), offsets: base.offsets.slice(), lengths: base.lengths.slice(), data: base.data.slice() };
  const k = d.below(Math.max(1, base.count));
  const field = d.below(5);
  if (field === 0 && encoded.count) encoded.encodings[k] = d.below(9);
  else if (field === 1 && encoded.count) encoded.offsets[k] = d.pick([0, encoded.data.length, 2 ** 32 - 1, d.below(2 ** 16)]);
  else if (field === 2 && encoded.count) encoded.lengths[k] = d.pick([0, 4, 4096, 2 ** 32 - 1, d.below(2 ** 13)]);
  else if (field === 3) (encoded as { count: number }).count = d.pick([0, base.count + 1, -1, 2 ** 20]);
  else if (encoded.data.length) encoded.data[d.below(encoded.data.length)] ^= 0xff;
  return d.note("encoded", encoded);
}

// ---------------------------------------------------------------------------
// The calls. Each draws its arguments and returns the call to make.

type Call = () => unknown;
/** Draws a call's arguments; undefined when the pool has nothing to call it on yet. */
type Op = (d: Draw, pool: Pool) => Call | undefined;

const PAGE_SIZES = [512, 4096, 4096, 4096, 8192] as const;

/** An encoder's result: the first `n` bytes of `out`, when it made some, become an input of later calls. */
function produced(p: Pool, out: unknown, n: number): number {
  if (n > 0) remember(p.streams, (out as Uint8Array).slice(0, n));
  return n;
}

const ops: Record<string, Op> = {
  // Single-buffer functions.
  wkdmCompress: (d, p) => {
    const [page, out] = [bytes(d, p, "page"), bytes(d, p, "out")];
    return () => produced(p, out, wkdmCompress(page as Uint8Array, out as Uint8Array));
  },
  wkdmDecompress: (d, p) => {
    const [src, out] = [bytes(d, p, "src"), bytes(d, p, "out")];
    return () => wkdmDecompress(src as Uint8Array, out as Uint8Array);
  },
  lz4CompressBlock: (d, p) => {
    const [src, out] = [bytes(d, p, "src"), bytes(d, p, "out", [0, 16, 4096, 4113, 8230])];
    return () => produced(p, out, lz4CompressBlock(src as Uint8Array, out as Uint8Array));
  },
  lz4DecompressBlock: (d, p) => {
    const [src, out] = [bytes(d, p, "src"), bytes(d, p, "out")];
    return () => lz4DecompressBlock(src as Uint8Array, out as Uint8Array);
  },
  compressBounds: (d, p) => {
    const n = integer(d, p, "n", 0, 2 ** 30);
    return () => [lz4CompressBound(n as number), wkdmCompressBound(n as number)];
  },
  xbzrleEncode: (d, p) => {
    const [oldPage, newPage, out] = [bytes(d, p, "oldPage"), bytes(d, p, "newPage"), bytes(d, p, "out", [0, 1, 2, 64, 4096])];
    return () => produced(p, out, xbzrleEncode(oldPage as Uint8Array, newPage as Uint8Array, out as Uint8Array));
  },
  xbzrleDecode: (d, p) => {
    const [delta, page] = [bytes(d, p, "delta"), bytes(d, p, "page")];
    return () => xbzrleDecode(delta as Uint8Array, page as Uint8Array);
  },
  digests: (d, p) => {
    const data = bytes(d, p, "data");
    const seed = d.chance(0.8) ? d.note("seed", d.pick([0, 1, 2 ** 32 - 1])) : d.note("seed", badValue(d, p));
    const seed64 = d.chance(0.8) ? d.note("seed64", d.pick([0n, 1n, 2n ** 64n - 1n, 7])) : d.note("seed64", badValue(d, p));
    const which = d.below(6);
    return () => [
      () => md5(data as Uint8Array),
      () => xxh32(data as Uint8Array, seed as number),
      () => xxh64(data as Uint8Array, seed64 as bigint),
      () => xxh3(data as Uint8Array, seed64 as bigint),
      () => isZeroPage(data as Uint8Array),
      () => toHex(data as Uint8Array),
    ][which]!();
  },
  md5Stream: (d, p) => {
    const md = d.chance(0.3) || !p.md5s.length ? undefined : d.pick(p.md5s);
    const chunk = bytes(d, p, "chunk");
    const finish = d.chance(0.3);
    return () => {
      const hasher = md ?? remember(p.md5s, new Md5());
      hasher.update(chunk as Uint8Array);
      return finish ? hasher.digest() : undefined;
    };
  },
  hasher: (d, p) => {
    if (!p.hashers.length || d.chance(0.15)) {
      const kind = d.below(3);
      const seed = kind === 0 ? integer(d, p, "seed", 0, 2 ** 32 - 1) : d.note("seed", d.chance(0.9) ? BigInt(d.below(2 ** 31)) : badValue(d, p));
      return () => remember(p.hashers, kind === 0 ? new Xxh32Hasher(seed as number) : kind === 1 ? new Xxh64Hasher(seed as bigint) : new Xxh3Hasher(seed as bigint));
    }
    const h = receiver(d, "hasher", p.hashers);
    if (!h) return undefined;
    const which = d.below(3);
    const data = bytes(d, p, "data");
    return () => (which === 0 ? h.update(data as Uint8Array) : which === 1 ? h.digest() : h.reset());
  },

  // PageBatch and the functions over batches.
  newBatch: (d, p) => {
    const [capacity, pageSize] = [integer(d, p, "capacity", 1, 4), d.note("pageSize", d.chance(0.95) ? d.pick(PAGE_SIZES) : d.pick([0, 1000, 2 ** 17, -4096]))];
    return () => remember(p.batches, new PageBatch(capacity as number, pageSize as number));
  },
  batchMethod: (d, p) => {
    const b = receiver(d, "batch", p.batches);
    if (!b) return undefined;
    const live = !b.disposed;
    const ps = live ? b.pageSize : 4096;
    const cap = live ? b.capacity : 2;
    const which = d.below(6);
    if (which === 0) {
      const pages = bytes(d, p, "pages", [0, ps, 2 * ps, cap * ps, (cap + 1) * ps, ps + 1]);
      return () => b.set(pages as Uint8Array);
    }
    if (which === 1) {
      const source = bytes(d, p, "source", [ps, 4 * ps, 8192]);
      const indices = indexList(d, p, "indices", d.below(cap + 2), 4);
      return () => b.load(source as Uint8Array, indices as number[]);
    }
    if (which === 2) {
      const destination = bytes(d, p, "destination", [4 * ps, ps, 0]);
      const indices = indexList(d, p, "indices", live ? b.count : 1, 4);
      return () => b.store(destination as Uint8Array, indices as number[]);
    }
    if (which === 3) {
      const k = integer(d, p, "k", 0, cap - 1);
      return () => b.page(k as number).length;
    }
    return () => (which === 4 ? b.bytes().length : b.ptr);
  },
  batchDigests: (d, p) => {
    const b = member(d, p, "batch", p.batches);
    const which = d.below(6);
    const out = d.chance(0.2) ? bytes(d, p, "out", [0, 16, 64, 256]) : undefined;
    const stride = integer(d, p, "stride", 1, 64);
    return () =>
      [
        () => scanZeroPages(b),
        () => xxh32Batch(b, d.chance(0.5) ? {} : { seed: 1 }),
        () => xxh64Batch(b),
        () => xxh3Batch(b),
        () => md5Batch(b, out as Uint8Array | undefined),
        () => wkdmHitRates(b, stride as number),
      ][which]!();
  },

  // Codecs.
  newCodec: (d, p) => {
    const which = d.below(6);
    const threshold = d.note("threshold", d.chance(0.9) ? d.pick([0, 0.5, 0.7, 1.5]) : badValue(d, p));
    return () =>
      remember(p.codecs, [
        () => new WkdmCodec(),
        () => new Lz4Codec(),
        () => new MecomCodec({ threshold: threshold as number }),
        () => new XbzrleCodec({ cacheSize: 1 << 16 }),
        () => new DedupCodec({ maxEntries: 32 }),
        () => new AutoCodec(),
      ][which]!());
  },
  encodeBatch: (d, p) => {
    const codec = receiver(d, "codec", p.codecs);
    if (!codec) return undefined;
    const b = member(d, p, "batch", p.batches);
    const indices = d.chance(0.5) ? undefined : indexList(d, p, "pageIndices", b instanceof PageBatch && !b.disposed ? b.count : 1, 64);
    return () => remember(p.encoded, codec.encodeBatch(b, indices as number[] | undefined));
  },
  decodeBatch: (d, p) => {
    const codec = receiver(d, "codec", p.codecs);
    if (!codec) return undefined;
    const encoded = encodedBatch(d, p);
    const b = member(d, p, "batch", p.batches);
    const indices = d.chance(0.5) ? undefined : indexList(d, p, "pageIndices", (encoded as EncodedBatch)?.count ?? 1, 64);
    return () => codec.decodeBatch(encoded as EncodedBatch, b, indices as number[] | undefined);
  },
  sentElsewhere: (d, p) => {
    const codec = receiver(d, "codec", p.codecs.filter((c) => c instanceof XbzrleCodec));
    if (!codec) return undefined;
    const b = member(d, p, "batch", p.batches);
    const count = b instanceof PageBatch && !b.disposed ? b.count : 1;
    const [indices, slots] = [indexList(d, p, "pageIndices", count, 64), indexList(d, p, "slots", d.below(count + 1), count)];
    return () => codec.sentElsewhere!(b, indices as number[], slots as number[]);
  },
  xbzrleCache: (d, p) => {
    if (!p.caches.length || d.chance(0.1)) {
      const [cacheSize, ways] = [integer(d, p, "cacheSize", 4096, 1 << 16), integer(d, p, "ways", 1, 16)];
      return () => remember(p.caches, new XbzrleCache({ cacheSize: cacheSize as number, ways: ways as number }));
    }
    const cache = receiver(d, "cache", p.caches)!;
    const page = integer(d, p, "page", 0, 1000);
    const which = d.below(4);
    const content = bytes(d, p, "content");
    return () => (which === 0 ? cache.put(page as number, content as Uint8Array) : which === 1 ? cache.get(page as number) : which === 2 ? cache.has(page as number) : cache.clear());
  },
  dedupIndex: (d, p) => {
    if (!p.indices.length || d.chance(0.1)) {
      const maxEntries = integer(d, p, "maxEntries", 1, 64);
      return () => remember(p.indices, new DedupIndex({ maxEntries: maxEntries as number }));
    }
    const index = receiver(d, "index", p.indices)!;
    const b = member(d, p, "batch", p.batches);
    const count = b instanceof PageBatch && !b.disposed ? b.count : 1;
    const locations = indexList(d, p, "locations", count, 1000);
    const blocks = bytes(d, p, "blocks", [0, 4096, 8192, 100]);
    const which = d.below(5);
    return () =>
      [
        () => index.dedupe(b, locations as number[]),
        () => index.dedupeBlocks(blocks as Uint8Array, indexList(d, p, "blockLocations", ((blocks as Uint8Array)?.length ?? 0) >> 12, 1000) as number[]),
        () => index.remember(b, locations as number[]),
        () => index.forget(integer(d, p, "location", 0, 1000) as number),
        () => index.clear(),
      ][which]!();
  },

  // DirtyBitmap.
  newBitmap: (d, p) => {
    const size = d.chance(0.9) ? d.note("size", d.pick([0, 1, 63, 64, 65, 1000, 1024, 4096, 5000])) : d.note("size", badValue(d, p));
    return () => remember(p.bitmaps, new DirtyBitmap(size as number));
  },
  bitmapMethod: (d, p) => {
    const b = receiver(d, "bitmap", p.bitmaps);
    if (!b) return undefined;
    const size = b.size;
    const other = member(d, p, "other", p.bitmaps);
    const [from, to] = [integer(d, p, "from", 0, size), integer(d, p, "to", 0, size)];
    const page = integer(d, p, "page", 0, Math.max(0, size - 1));
    const which = d.below(12);
    return () =>
      [
        () => b.set(page as number),
        () => b.clear(page as number),
        () => b.test(page as number),
        () => b.setRange(from as number, to as number),
        () => b.clearRange(from as number, to as number),
        () => b.count(),
        () => b.nextSet(from as number),
        () => b.extract(from as number, to as number),
        () => b.or(other),
        () => b.andNot(other),
        () => b.syncFrom(other),
        () => b.toWords(),
      ][which]!();
  },

  // Guests.
  guest: (d, p) => {
    if (!p.guests.length || d.chance(0.1)) {
      const pages = integer(d, p, "pageCount", 0, 16);
      return () => {
        const g = remember(p.guests, new Guest(pages as number));
        remember(p.bitmaps, g.dirtyLog);
        return g;
      };
    }
    const g = receiver(d, "guest", p.guests)!;
    d.touched.add(g.dirtyLog);
    const page = integer(d, p, "page", 0, Math.max(0, g.pageCount - 1));
    const content = bytes(d, p, "content");
    const which = d.below(4);
    return () => (which === 0 ? g.page(page as number) : which === 1 ? g.write(page as number, content as Uint8Array) : which === 2 ? g.read(page as number) : g.beginWrite(page as number, true));
  },

  // Frames.
  encodeFrame: (d, p) => {
    const b = member(d, p, "batch", p.batches);
    const indices = indexList(d, p, "pageIndices", b instanceof PageBatch && !b.disposed ? b.count : 1, 1 << 20);
    const codecs = {
      dedup: d.chance(0.3) ? member(d, p, "dedup", p.codecs.filter((c) => c instanceof DedupCodec)) : undefined,
      delta: d.chance(0.3) ? member(d, p, "delta", p.codecs.filter((c) => c instanceof XbzrleCodec)) : undefined,
      compress: d.chance(0.6) ? member(d, p, "compress", p.codecs.filter((c) => !(c instanceof DedupCodec) && !(c instanceof XbzrleCodec))) : undefined,
    };
    return () => remember(p.streams, encodeFrame(b, indices as number[], codecs, newWireStats()));
  },
  encodeControl: (d, p) => {
    const pages = indexList(d, p, "pages", d.below(8), 1 << 20);
    const state = bytes(d, p, "state", [0, 16, 4096]);
    const number = integer(d, p, "number", 0, 2 ** 32 - 1);
    const digest = bytes(d, p, "digest", [16, 8, 0]);
    const messages = [
      { type: "round-start", round: number, pages: number },
      { type: "switch-over", state },
      { type: "page-request", pages },
      { type: "done", memoryBytes: number, digestName: d.pick(["md5", "xxh3", "", "x".repeat(300)]), digest },
      d.chance(0.5) ? { type: "nonsense" } : badValue(d, p),
    ];
    const message = messages[d.below(messages.length)];
    const sequence = integer(d, p, "sequence", 0, 2 ** 32 - 1);
    return () => remember(p.streams, encodeControl(message as never, sequence as number));
  },
  decodeFrame: (d, p) => {
    const frame = bytes(d, p, "bytes", [0, 16, 64]);
    const batches = p.batches.filter((b) => !b.disposed);
    const destination = d.chance(0.3) ? undefined : d.chance(0.5) && batches.length ? d.note("destination", d.pick(batches)) : bytes(d, p, "destination", [0, 4096, 64 * 4096]);
    const xbzrle = p.codecs.find((c) => c instanceof XbzrleCodec);
    const decoder = d.chance(0.5) ? undefined : receiver(d, "decoder", p.decoders);
    const which = d.below(3);
    return () =>
      which === 0 || !xbzrle
        ? readFrameHeader(frame as Uint8Array)
        : which === 1 || !decoder
          ? decodeFrame(frame as Uint8Array, destination as Uint8Array | undefined, { [5]: xbzrle } as never)
          : decoder.decode(frame as Uint8Array, destination as Uint8Array | undefined);
  },
  newFrameDecoder: (d, p) => {
    const xbzrle = member(d, p, "xbzrle", p.codecs.filter((c) => c instanceof XbzrleCodec));
    return () => remember(p.decoders, new FrameDecoder({ [5]: xbzrle } as never));
  },

  frameEncoder: (d, p) => {
    const codecs = { compress: d.chance(0.5) ? member(d, p, "compress", p.codecs.filter((c) => !(c instanceof DedupCodec) && !(c instanceof XbzrleCodec))) : undefined };
    const encoder = new FrameEncoder(codecs);
    const b = member(d, p, "batch", p.batches);
    const indices = indexList(d, p, "pageIndices", b instanceof PageBatch && !b.disposed ? b.count : 1, 1 << 20);
    const round = integer(d, p, "round", 0, 2 ** 32 - 1);
    return () => (d.chance(0.5) ? encoder.pages(b, indices as number[]) : encoder.control({ type: "round-end", round: round as number, pages: 0 }));
  },
  duplicateCounter: (d, p) => {
    const b = member(d, p, "batch", p.batches);
    const skip = d.chance(0.7) ? undefined : bytes(d, p, "skip", [0, 1, 4]);
    return () => new DuplicateCounter().add(b, skip as Uint8Array | undefined);
  },
  verifyMemory: (d, p) => {
    const [expected, actual] = [bytes(d, p, "expected", [0, 4096, 8192]), bytes(d, p, "actual", [0, 4096, 8192])];
    const pageSize = d.chance(0.9) ? d.note("pageSize", d.pick(PAGE_SIZES)) : d.note("pageSize", badValue(d, p));
    return () => verifyMemory(expected as Uint8Array, actual as Uint8Array, pageSize as number);
  },
  registry: (d, p) => {
    const name = d.note("name", d.chance(0.9) ? d.pick(["wkdm", "lz4", "mecom", "dedup", "auto", "", "nope"]) : badValue(d, p));
    const value = integer(d, p, "value", 0, 2 ** 32 - 1);
    const pageSize = d.note("pageSize", d.chance(0.9) ? d.pick(PAGE_SIZES) : badValue(d, p));
    const which = d.below(4);
    return () =>
      [
        () => remember(p.codecs, createCodec(name as string)),
        () => [codecEntry(name as string), codecNames()],
        () => [hex32(value as number), hex64(BigInt.asUintN(64, BigInt(Number.isInteger(value) ? (value as number) : 0)))],
        () => maxFramePages(pageSize as number),
      ][which]!();
  },

  // Disposal, once or twice, of anything.
  dispose: (d, p) => {
    const objects = everyObject(p) as { dispose(): void }[];
    const object = objects.length ? d.note("object", d.pick(objects)) : undefined;
    return () => object?.dispose();
  },
};

// ---------------------------------------------------------------------------
// The checks after each call.

/** Engine messages: a value reached code that did not check it. */
const ENGINE_MESSAGE = /Cannot read propert|Cannot set propert|is not a function|is not iterable|Cannot convert|Cannot mix BigInt|Invalid typed array length|detached|out of bounds|Maximum call stack|Invalid array length|allocation failed|is not a constructor|Do not know how to serialize/;

function errorProblem(error: unknown): string | undefined {
  if (error instanceof WebAssembly.RuntimeError) return `WebAssembly trap: ${error.message}`;
  if (error instanceof PagemillError) return undefined;
  if ((error instanceof TypeError || error instanceof RangeError) && !ENGINE_MESSAGE.test(error.message)) return undefined;
  return `${(error as Error)?.constructor?.name ?? typeof error}: ${(error as Error)?.message ?? String(error)}`;
}

/** A fixed round trip through the single-buffer codecs and a digest: fails once shared scratch is poisoned. */
function canary(): (() => void) {
  const page = new Uint8Array(4096);
  new Uint32Array(page.buffer).forEach((_, i, words) => (words[i] = [0, 9, 0x4567, 9][i & 3]!));
  const wkdm = new Uint8Array(4096);
  const wkdmLength = wkdmCompress(page, wkdm);
  const lz4 = new Uint8Array(lz4CompressBound(4096));
  const lz4Length = lz4CompressBlock(page, lz4);
  const digest = toHex(md5(page));
  const back = new Uint8Array(4096);
  return () => {
    expect(wkdmCompress(page, wkdm)).toBe(wkdmLength);
    wkdmDecompress(wkdm.subarray(0, wkdmLength), back.fill(1));
    expect(Buffer.from(back).equals(page)).toBe(true);
    expect(lz4CompressBlock(page, lz4)).toBe(lz4Length);
    expect(lz4DecompressBlock(lz4.subarray(0, lz4Length), back.fill(1))).toBe(4096);
    expect(Buffer.from(back).equals(page)).toBe(true);
    expect(toHex(md5(page))).toBe(digest);
  };
}

/** Contents of every live batch and bitmap the call was not given. */
function snapshot(pool: Pool, touched: Set<object>): [{ ptr: number; length: number }, Buffer][] {
  const mem = heap.bytes();
  const regions: { ptr: number; length: number }[] = [];
  for (const b of pool.batches) if (!b.disposed && !touched.has(b)) regions.push({ ptr: b.ptr, length: b.capacity * b.pageSize });
  for (const b of pool.bitmaps) if (!b.disposed && !touched.has(b)) regions.push({ ptr: b.ptr, length: b.words * 8 });
  return regions.map((r) => [r, Buffer.from(mem.subarray(r.ptr, r.ptr + r.length))]);
}

interface Summary {
  calls: number;
  returned: number;
  refused: Record<string, number>;
  findings: Map<string, string>;
}

function run(seed: number, calls: number, summary: Summary): void {
  const d = new Draw(u32Stream(seed));
  const pool: Pool = { batches: [], bitmaps: [], codecs: [], caches: [], indices: [], hashers: [], md5s: [], decoders: [], guests: [], streams: [], encoded: [] };
  const stillWorks = canary();
  const names = Object.keys(ops);
  const find = (key: string, detail: string) => {
    if (!summary.findings.has(key)) summary.findings.set(key, detail);
  };
  for (let step = 0; step < calls; step++) {
    let name: string;
    let call: Call | undefined;
    do {
      name = d.pick(names);
      d.log = [];
      d.touched = new Set();
      call = ops[name]!(d, pool);
    } while (!call);
    const before = snapshot(pool, d.touched);
    const where = () => `seed ${seed} step ${step}: ${name}(${d.log.join(", ")})`;
    summary.calls++;
    try {
      call();
      summary.returned++;
    } catch (error) {
      const problem = errorProblem(error);
      if (problem) find(`${name}: ${problem.replace(/\d+/g, "N")}`, `${where()} threw ${problem}`);
      else {
        const kind = (error as Error).constructor.name;
        summary.refused[kind] = (summary.refused[kind] ?? 0) + 1;
      }
    }
    const broken = [...guarded].filter(([ptr, size]) => !guardsIntact(ptr, size));
    if (broken.length || violations.length) {
      find(`${name}: guard overwritten`, `${where()}: ${violations.join("; ") || `guards of ${broken.length} region(s) overwritten`}`);
      // Restore them so that later calls are judged on their own.
      for (const [ptr, size] of broken) {
        heap.bytes().fill(GUARD_BYTE, ptr - GUARD, ptr);
        heap.bytes().fill(GUARD_BYTE, ptr + size, ptr + size + GUARD);
      }
      violations.length = 0;
    }
    const mem = heap.bytes();
    for (const [r, content] of before) {
      if (!content.equals(mem.subarray(r.ptr, r.ptr + r.length))) find(`${name}: changed an object it was not given`, `${where()} changed the ${r.length} bytes at ${r.ptr}`);
    }
    try {
      stillWorks();
    } catch (error) {
      find(`${name}: poisoned`, `${where()}; afterwards a valid round trip failed: ${(error as Error).message}`);
    }
  }
  for (const object of everyObject(pool) as { dispose(): void }[]) object.dispose();
}

describe("API fuzzing", () => {
  it(`${SEEDS} seeded sequences of ${CALLS_PER_SEED} random calls: no trap, no engine error, no write outside an allocation or into an object not given`, () => {
    const summary: Summary = { calls: 0, returned: 0, refused: {}, findings: new Map() };
    for (let seed = 1; seed <= SEEDS; seed++) run(seed * 0x9e3779b1, CALLS_PER_SEED, summary);
    if (SCALE > 1 || process.env.PAGEMILL_FUZZ_SUMMARY) {
      console.log(`API fuzz: ${summary.calls} calls, ${summary.returned} returned, refused: ${JSON.stringify(summary.refused)}, ${summary.findings.size} finding(s)`);
    }
    expect([...summary.findings.values()]).toEqual([]);
    // The sample reaches both outcomes, or it tests nothing.
    expect(summary.returned).toBeGreaterThan(summary.calls / 5);
    expect(Object.values(summary.refused).reduce((a, b) => a + b, 0)).toBeGreaterThan(summary.calls / 20);
  }, TIME_LIMIT);
});

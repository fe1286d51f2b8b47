// XBZRLE: QEMU's XOR-based zero-run delta encoding (migration/xbzrle.c),
// byte-compatible both ways, with the page cache that makes it useful and a
// PageCodec over whole batches.
//
// ## Format
//
// The XOR of the old and new page as pairs (zero-run length, non-zero-run
// length, that many bytes of the new page); lengths are ULEB128 of one or two
// bytes (at most 0x3fff); runs are maximal; only the first zero run may be
// empty; the trailing zero run is left out. An unchanged page encodes to
// nothing (0); a delta that would pass the output capacity is -1 ("overflow").
// A run longer than 0x3fff is also -1: QEMU's 14-bit lengths cannot carry it,
// so pages over 16 KiB with long unchanged stretches rarely encode.
//
// ## The cache (XbzrleCache)
//
// XBZRLE needs the version of each page the destination last received. The
// cache keeps those versions in WebAssembly memory (the encode kernel reads
// and updates them in place), bounded in bytes like QEMU's (64 MiB by
// default). QEMU's cache is direct-mapped (slot = page mod slots) with an
// age that keeps a recently used slot from being taken by a colliding page.
// Ours is set-associative: `ways` slots per set (4 by default; 1 gives a
// direct-mapped cache), a page may live in any slot of set `page mod sets`,
// and a miss takes an empty slot or the least recently used one. Why: pages
// whose numbers collide modulo the slot count (buffers a power of two apart,
// common in allocators) evict each other forever in a direct-mapped cache;
// four ways remove most of those conflict misses for four compares per
// lookup, and plain LRU needs no notion of migration rounds from the caller.
//
// Policy "qemu" is QEMU's own (migration/page_cache.c, for --flavor qemu):
// pow2floor(cacheSize / pageSize) slots, slot = page mod slots, each with the
// age (the caller's dirty-sync-count, `age`) of its last use; a miss takes
// the slot unless another page used it within the last CACHED_PAGE_LIFETIME
// (2) syncs, and then the page is not cached at all.
//
// ## The codec contract (XbzrleCodec)
//
// encodeBatch(batch, pageIndices): pageIndices give the guest page of each
// slot. A cached page is encoded against its cached version: a delta goes out
// as XBZRLE (empty payload for an unchanged page); a delta that does not fit
// in the page ("overflow") goes out RAW. A page not in the cache goes out
// RAW. Either way the cache then holds the page as sent, as QEMU does.
//
// decodeBatch(encoded, batch): a real destination already holds the last
// version of every page it received, in its own memory; that is the old page
// a delta applies to, so the destination needs no cache. The batch's slots
// must therefore hold the destination's current copy of each XBZRLE page
// (`batch.load(destinationMemory, pageIndices)`) before the call; deltas are
// applied in place and RAW pages overwrite their slot. Every payload is
// checked before any slot is written. A batch must not carry the same guest
// page twice: its second delta would be against the first's result, which
// the destination's preloaded slot does not hold yet.

import { checkArrayLike, checkInstance, checkBytes, checkInteger, checkPageSize } from "../errors.js";
import { PageBatch, Scratch } from "../wasm/arena.js";
import { wasm, type Wasm } from "../wasm/module.js";
import { Encoding, checkDecodeArguments, newCodecStats, type CodecStats, type EncodedBatch, type EncodedInPlace, type PageCodec, type XbzrleStats } from "./codec.js";
import { KernelTables, copied, onePage, unnamed } from "./kernel-result.js";
import { Owned } from "../wasm/owned.js";

/** Longest run a length field carries (two ULEB128 bytes, as QEMU limits them). */
export const XBZRLE_MAX_RUN = 0x3fff;
/** QEMU's default xbzrle-cache-size. */
export const XBZRLE_DEFAULT_CACHE_SIZE = 64 * 1024 * 1024;

// Flags of the encode kernel's old-page table, as assembly/xbzrle.ts defines them.
const HAS_OLD = 1;
const UPDATE = 2;

/** The wire ids XBZRLE's decoder takes. */
const XBZRLE_ENCODINGS = [Encoding.XBZRLE, Encoding.RAW];

/** The single-page functions' kernel memory, and the pages they work on. */
let single: KernelTables | undefined;
let singlePages: Scratch | undefined;

/**
 * Encodes `newPage` against `oldPage` (same length: a power of two, 512..65536)
 * into `out`, whose length is the most the delta may take (QEMU's dlen).
 * Returns the bytes written, 0 when the pages are equal, -1 when the delta
 * does not fit in `out`. As in QEMU, every step first needs room for a
 * 2-byte run header: with fewer than 2 bytes of `out`, even equal pages give -1.
 */
export function xbzrleEncode(oldPage: Uint8Array, newPage: Uint8Array, out: Uint8Array): number {
  checkBytes("oldPage", oldPage);
  checkBytes("newPage", newPage);
  checkBytes("out", out);
  checkPageSize(newPage.length, "newPage.length");
  if (oldPage.length !== newPage.length) {
    throw new RangeError(`oldPage.length ${oldPage.length} != newPage.length ${newPage.length}`);
  }
  const ps = newPage.length;
  // A delta never passes 1.5·pageSize + 2 bytes (3 bytes per 2 changed at
  // worst), so a larger capacity cannot change the result.
  const dlen = Math.min(out.length, 2 * ps);
  const { kernels, heap } = wasm();
  heap.checkOutside("out", out);
  oldPage = heap.outside(oldPage);
  newPage = heap.outside(newPage);
  single ??= new KernelTables("xbzrle", XBZRLE_ENCODINGS);
  const base = single.reserve(1, Math.max(ps, dlen), 2 * ps + 4);
  const outPtr = single.out;
  const newPtr = base + ps;
  const oldTable = newPtr + ps;
  const mem = heap.bytes();
  mem.set(oldPage, base);
  mem.set(newPage, newPtr);
  heap.u32()[oldTable >>> 2] = base + HAS_OLD;
  kernels.xbzrleEncodeBatch(oldTable, newPtr, ps, 1, dlen, outPtr, single.table);
  const length = single.lengthOrRaw(1, 0);
  if (length > 0) out.set(heap.bytes().subarray(outPtr, outPtr + length));
  return length;
}

/**
 * Applies `delta` to `page` in place (the page's length is the decoder's
 * capacity). Returns the bytes of the page the delta reaches: the end of its
 * last run. Malformed input throws CodecError and leaves `page` unchanged.
 */
export function xbzrleDecode(delta: Uint8Array, page: Uint8Array): number {
  checkBytes("delta", delta);
  checkBytes("page", page);
  checkInteger("page.length", page.length, 0, 2 ** 24);
  const { kernels, heap } = wasm();
  heap.checkOutside("page", page);
  delta = heap.outside(delta);
  singlePages ??= new Scratch();
  single ??= new KernelTables("xbzrle", XBZRLE_ENCODINGS);
  const pagePtr = singlePages.reserve(Math.max(1, page.length));
  heap.bytes().set(page, pagePtr);
  const end = single.decode(onePage(Encoding.XBZRLE, delta, page.length), pagePtr, page.length, kernels.xbzrleDecodeBatch, unnamed);
  page.set(heap.bytes().subarray(pagePtr, pagePtr + end));
  return end;
}

export interface XbzrleCacheOptions {
  /** Bytes of page storage, at least one page (default 64 MiB, QEMU's default). */
  cacheSize?: number;
  /** Bytes per page (default 4096). */
  pageSize?: number;
  /** Slots per set, 1..16 (default 4; 1 is a direct-mapped cache like QEMU's). */
  ways?: number;
  /** "lru" (default) or "qemu": QEMU's direct-mapped cache with ages (see the module comment); ways must then be absent. */
  policy?: XbzrlePolicy;
}

export type XbzrlePolicy = "lru" | "qemu";
/** page_cache.c: a slot used within this many dirty syncs is not taken by another page. */
export const CACHED_PAGE_LIFETIME = 2;

/**
 * The last sent version of recently sent pages, in WebAssembly memory,
 * set-associative with LRU replacement (see the module comment for why).
 */
export class XbzrleCache extends Owned {
  readonly pageSize: number;
  readonly policy: XbzrlePolicy;
  /** Policy "qemu": the dirty-sync-count now, which a use stamps on its slot. */
  age = 0;
  readonly ways: number;
  readonly sets: number;
  /** Page slots: sets × ways. */
  readonly slots: number;
  /** Bytes of page storage: slots × pageSize, never more than the size asked for. */
  readonly cacheSize: number;
  private readonly owner: Wasm;
  /** Guest page held by each slot, -1 when empty. */
  private readonly tags: Float64Array;
  /** When each slot was last used: LRU's use counter, or policy "qemu"'s age. */
  private readonly stamps: Float64Array;
  private clock = 0;
  private storage = 0;

  constructor(options: XbzrleCacheOptions = {}) {
    super();
    const pageSize = options.pageSize ?? 4096;
    checkPageSize(pageSize);
    const cacheSize = options.cacheSize ?? XBZRLE_DEFAULT_CACHE_SIZE;
    checkInteger("cacheSize", cacheSize, pageSize, 2 ** 31);
    const policy = options.policy ?? "lru";
    if (policy !== "lru" && policy !== "qemu") throw new RangeError(`policy must be lru or qemu, got '${String(policy)}'`);
    if (policy === "qemu" && options.ways !== undefined) throw new RangeError("policy qemu is direct-mapped: no ways");
    const ways = options.ways ?? (policy === "qemu" ? 1 : 4);
    checkInteger("ways", ways, 1, 16);
    // QEMU's slot count is a power of two (pow2floor).
    const pages = policy === "qemu" ? 2 ** Math.floor(Math.log2(cacheSize / pageSize)) : Math.floor(cacheSize / pageSize);
    this.policy = policy;
    this.pageSize = pageSize;
    this.ways = Math.min(ways, pages);
    this.sets = Math.floor(pages / this.ways);
    this.slots = this.sets * this.ways;
    this.cacheSize = this.slots * pageSize;
    this.owner = wasm();
    this.tags = new Float64Array(this.slots).fill(-1);
    this.stamps = new Float64Array(this.slots);
  }

  /** Pages held now. */
  get pages(): number {
    let n = 0;
    for (let s = 0; s < this.slots; s++) if (this.tags[s] !== -1) n++;
    return n;
  }

  /** True when `page` is cached (does not count as a use). */
  has(page: number): boolean {
    this.live();
    return this.find(page) >= 0;
  }

  /** A copy of the cached version of `page`, or undefined. */
  get(page: number): Uint8Array | undefined {
    this.live();
    const slot = this.find(page);
    if (slot < 0) return undefined;
    const at = this.address(slot);
    return this.owner.heap.bytes().slice(at, at + this.pageSize);
  }

  /**
   * Stores `content` as the last sent version of `page` (e.g. to prime the
   * cache). Returns false when policy "qemu" keeps another page's fresh slot.
   */
  put(page: number, content: Uint8Array): boolean {
    this.live();
    checkBytes("content", content);
    if (content.length !== this.pageSize) throw new RangeError(`content.length ${content.length} != pageSize ${this.pageSize}`);
    content = this.owner.heap.outside(content);
    const entry = this.entry(page, "page");
    if (entry === 0) return false;
    // Entries are 64-aligned addresses plus flag bits.
    this.owner.heap.bytes().set(content, entry - (entry % 64));
    return true;
  }

  /**
   * Looks up pageIndices[0..count) in order and writes the encode kernel's
   * old-page table at u32 index `at` of `table`: a hit points at the cached
   * version (HAS_OLD | UPDATE), a miss at the slot it now takes (UPDATE), or
   * at nothing (0: sent whole, not cached) when policy "qemu" keeps the slot.
   * `final` (QEMU's last stage, the stop-and-copy): hits are encoded but not
   * kept, misses take no slot. Returns the number of misses. Allocates the
   * storage on first use, so take views of memory after calling it.
   */
  plan(pageIndices: ArrayLike<number>, count: number, tableAt: number, final = false): number {
    this.live();
    this.reserve();
    const table = this.owner.heap.u32();
    let misses = 0;
    for (let k = 0; k < count; k++) {
      const page = pageIndices[k]!;
      let entry: number;
      if (final) {
        const slot = this.find(page);
        entry = slot < 0 ? 0 : this.address(slot) + HAS_OLD;
      } else entry = this.entry(page, `pageIndices[${k}]`);
      table[tableAt + k] = entry;
      if ((entry & HAS_OLD) === 0) misses++;
    }
    return misses;
  }

  /** Forgets every page (the storage is kept). */
  clear(): void {
    this.live();
    this.tags.fill(-1);
    this.stamps.fill(0);
    this.clock = 0;
  }

  /** Gives the page storage back; the cache is unusable afterwards. */
  protected release(): void {
    if (this.storage) this.owner.heap.release(this.storage);
    this.storage = 0;
    this.tags.fill(-1);
  }

  private reserve(): void {
    this.live();
    if (!this.storage) this.storage = this.owner.heap.alloc(this.cacheSize);
  }

  /**
   * Where slot `set·ways + way` keeps its page. Way-major: way w of every set
   * forms one contiguous array, so consecutive guest pages (consecutive sets)
   * sit side by side in memory, as the pages of a batch usually are; the
   * encoder then streams through them (2x faster than 16 KiB apart).
   */
  private address(slot: number): number {
    const way = slot % this.ways;
    return this.storage + (way * this.sets + (slot - way) / this.ways) * this.pageSize;
  }

  private find(page: number): number {
    if (!Number.isSafeInteger(page) || page < 0) return -1;
    if (this.policy === "qemu") return this.tags[page % this.sets] === page ? page % this.sets : -1;
    const first = (page % this.sets) * this.ways;
    for (let s = first; s < first + this.ways; s++) if (this.tags[s] === page) return s;
    return -1;
  }

  /** The kernel table entry for `page`, taking (and marking used) its slot; 0 when policy "qemu" keeps it from another page. */
  private entry(page: number, name: string): number {
    if (!Number.isSafeInteger(page) || page < 0) throw new RangeError(`${name} = ${page} is not a page index`);
    this.reserve();
    if (this.policy === "qemu") {
      const slot = page % this.sets;
      const held = this.tags[slot]!;
      if (held !== page && held !== -1 && this.stamps[slot]! + CACHED_PAGE_LIFETIME > this.age) return 0;
      this.tags[slot] = page;
      this.stamps[slot] = this.age;
      return this.address(slot) + (held === page ? HAS_OLD : 0) + UPDATE;
    }
    const first = (page % this.sets) * this.ways;
    const end = first + this.ways;
    const stamp = ++this.clock;
    let victim = first;
    for (let s = first; s < end; s++) {
      if (this.tags[s] === page) {
        this.stamps[s] = stamp;
        return this.address(s) + HAS_OLD + UPDATE;
      }
      if (this.stamps[s]! < this.stamps[victim]!) victim = s;
    }
    // Empty slots have stamp 0 and so come out as the least recently used.
    this.tags[victim] = page;
    this.stamps[victim] = stamp;
    return this.address(victim) + UPDATE;
  }
}

/** XBZRLE counters, named as QEMU's `info migrate` / query-migrate names them. */
export interface XbzrleCounters {
  /** cache-size: bytes of page storage */
  cacheSize: number;
  /** bytes: payload bytes of pages that hit the cache: deltas, and whole pages for overflows (QEMU also counts its 3-byte XBZRLE page header) */
  bytes: number;
  /** pages: pages that hit the cache and were encoded (unchanged and overflowed ones included) */
  pages: number;
  /** cache-miss: pages not in the cache (sent raw, then cached) */
  cacheMiss: number;
  /** cache-miss-rate: cache-miss / pages looked up (over the codec's life; QEMU's is per period) */
  cacheMissRate: number;
  /** overflow: cached pages whose delta did not fit in a page (sent raw) */
  overflow: number;
  /** encoding-rate: pages · pageSize / bytes (0 before any byte) */
  encodingRate: number;
}

/**
 * When the codec encodes (QEMU's ram.c, for --flavor qemu): "on"; "off":
 * every page goes RAW and the cache is left alone (before the first full
 * pass ends, and in post-copy); "final": the stop-and-copy (last_stage): hits
 * are encoded, nothing is cached or updated.
 */
export type XbzrleMode = "on" | "off" | "final";

/** XBZRLE over whole batches, with its cache; see the module comment for the contract. */
export class XbzrleCodec extends Owned implements PageCodec {
  readonly name = "xbzrle";
  readonly encoding = Encoding.XBZRLE;
  readonly decodesOntoCurrent = true;
  readonly emptyPayloads = true;
  readonly stats: CodecStats = newCodecStats();
  readonly cache: XbzrleCache;
  mode: XbzrleMode = "on";
  private readonly tables = new KernelTables("xbzrle", XBZRLE_ENCODINGS);
  private hitPages = 0;
  private hitBytes = 0;
  private misses = 0;
  private overflows = 0;

  constructor(options: XbzrleCacheOptions = {}) {
    super();
    this.cache = new XbzrleCache(options);
  }

  /**
   * Pages and bytes of the deltas sent come from the frames (`sent`: a delta
   * may still go another way later in the pipeline); misses and overflows
   * from this codec, which tells them apart.
   */
  cacheReport(sent: CodecStats, pageSize: number): XbzrleStats {
    const pages = sent.byEncoding.xbzrle ?? 0;
    const bytes = sent.bytesByEncoding.xbzrle ?? 0;
    const { cacheMiss, cacheMissRate, overflow } = this.counters;
    return { pages, bytes, cacheMiss, cacheMissRate, encodingRate: bytes ? (pages * pageSize) / bytes : 0, overflow };
  }

  get counters(): XbzrleCounters {
    const lookups = this.hitPages + this.misses;
    return {
      cacheSize: this.cache.cacheSize,
      bytes: this.hitBytes,
      pages: this.hitPages,
      cacheMiss: this.misses,
      cacheMissRate: lookups ? this.misses / lookups : 0,
      overflow: this.overflows,
      encodingRate: this.hitBytes ? (this.hitPages * this.cache.pageSize) / this.hitBytes : 0,
    };
  }

  encodeBatch(batch: PageBatch, pageIndices?: ArrayLike<number>): EncodedBatch {
    return copied(this.encodeInPlace(batch, pageIndices));
  }

  encodeInPlace(batch: PageBatch, pageIndices?: ArrayLike<number>): EncodedInPlace {
    this.live();
    checkInstance("batch", batch, PageBatch);
    if (!pageIndices) throw new RangeError("xbzrle needs pageIndices: its cache is keyed by guest page");
    const ps = batch.pageSize;
    if (ps !== this.cache.pageSize) throw new RangeError(`batch.pageSize ${ps} != the xbzrle cache's pageSize ${this.cache.pageSize}`);
    const count = batch.count;
    if (pageIndices.length < count) throw new RangeError(`pageIndices.length ${pageIndices.length} < batch count ${count}`);
    const oldTable = this.tables.reserve(count, count * ps, 4 * count);
    let misses = 0;
    if (this.mode === "off") wasm().heap.u32().fill(0, oldTable >>> 2, (oldTable >>> 2) + count);
    else misses = this.cache.plan(pageIndices, count, oldTable >>> 2, this.mode === "final");
    const used = wasm().kernels.xbzrleEncodeBatch(oldTable, batch.ptr, ps, count, ps, this.tables.out, this.tables.table);
    const encoded = this.tables.encoded(ps, count, used, this.stats);
    const olds = wasm().heap.u32();
    for (let k = 0; k < count; k++) {
      if ((olds[(oldTable >>> 2) + k]! & HAS_OLD) === 0) continue;
      this.hitPages++;
      this.hitBytes += encoded.lengths[k]!;
      if (encoded.encodings[k] === Encoding.RAW) this.overflows++;
    }
    this.misses += misses;
    return encoded;
  }

  /**
   * Pages sent by another stage (zero, dedup): like QEMU's
   * xbzrle_cache_zero_page, a cached page is updated to what was sent, so the
   * next delta is taken against what the destination holds. Policy "qemu"
   * caches the page even when it was not (if its slot is free), as QEMU does.
   */
  sentElsewhere(batch: PageBatch, pageIndices: ArrayLike<number>, slots: ArrayLike<number>): void {
    this.live();
    checkInstance("batch", batch, PageBatch);
    checkArrayLike("pageIndices", pageIndices);
    checkArrayLike("slots", slots);
    if (this.mode !== "on") return;
    for (let i = 0; i < slots.length; i++) {
      const k = slots[i]!;
      const page = pageIndices[k]!;
      if (this.cache.policy === "qemu" || this.cache.has(page)) this.cache.put(page, batch.page(k).slice());
    }
  }

  decodeBatch(encoded: EncodedBatch, batch: PageBatch, pageIndices?: ArrayLike<number>): void {
    this.live();
    checkDecodeArguments(encoded, batch);
    const ps = batch.pageSize;
    if (encoded.pageSize !== ps) throw new RangeError(`encoded.pageSize ${encoded.pageSize} != batch.pageSize ${ps}`);
    const count = encoded.count;
    for (let k = batch.count; k < count; k++) {
      if (encoded.encodings[k] === Encoding.XBZRLE) {
        throw new RangeError(`slot ${k} holds no current page: load the destination's pages into the batch before decoding xbzrle`);
      }
    }
    this.tables.decode(encoded, batch.ptr, ps, wasm().kernels.xbzrleDecodeBatch, (k) => (pageIndices ? pageIndices[k]! : k));
    batch.count = count;
  }

  protected release(): void {
    this.tables.dispose();
    this.cache.dispose();
  }
}

// Sparse chunked pages: memory far larger than the machine's, where a page
// that was never given non-zero content costs one bit (issue 13). Guests and
// disks (blocks are pages here) of up to 2^32 pages. A PageMemory (./pages.ts):
//
//   const store = new ChunkedPages(pageCount, pageSize = 4096, pagesPerChunk = defaultPagesPerChunk(pageCount))
//     store.isZero(i)          a bit test: the page's chunk was never given
//                              non-zero content for it.
//     store.page(i)            a view of page i, or a new zero page where no
//                              chunk holds it.
//     store.write / zero / writable / readRange as PageMemory says; zero
//                              content allocates nothing and frees the chunk
//                              when its last possibly non-zero page goes.
//     store.heldBytes          bytes of chunks held; store.chunks their count.
//     store.prefault(until?)   maps every slab now, touched (before pages
//                              arrive); store.mappedBytes what is mapped.
//     store.locate(indices)    where pages lie in the slabs, which are shared
//                              memory: another thread reads them there
//                              (readLocated, pages.ts).
//
//   checkFitsInMemory(what, bytes, limit = memoryLimit())
//     Refuses, before anything is allocated, a size that cannot fit in this
//     machine's memory, naming the estimate and the limit (MemoryLimitError).

import { totalmem } from "node:os";
import { PagemillError, checkBytes, checkInteger, checkPageSize } from "../errors.js";
import { fillZero, zeroPage, type PageLocations, type PageMemory } from "./pages.js";

/** Most pages a store addresses: the trace format's limit. */
export const MAX_CHUNKED_PAGES = 2 ** 32;
/** Most chunks a store has by default: the chunk table's size bound (2^24 entries, 192 MiB with the counts). */
export const MAX_DEFAULT_CHUNKS = 2 ** 24;

/**
 * Pages per chunk by default: one (a store holds exactly its non-zero pages,
 * which a synthetic guest image scatters one by one; measured on a 4 GiB
 * redis-profile image, as fast to fill and read as 256-page chunks and 0.8
 * GiB smaller), and coarser only when that would take more than
 * MAX_DEFAULT_CHUNKS chunks (a guest above 64 GiB of 4 KiB pages).
 */
export function defaultPagesPerChunk(pageCount: number): number {
  return Math.max(1, 2 ** Math.ceil(Math.log2(pageCount / MAX_DEFAULT_CHUNKS)));
}

/** A size refused because it cannot fit in this machine's memory. */
export class MemoryLimitError extends PagemillError {
  constructor(
    readonly what: string,
    readonly estimate: number,
    readonly limit: number,
  ) {
    super(`${what} needs an estimated ${formatBytes(estimate)} of memory, more than the limit of ${formatBytes(limit)} on this machine`);
  }
}

/**
 * The most memory one process should plan to hold: three quarters of the
 * machine's, or PAGEMILL_MEMORY_LIMIT bytes when set (shared machines).
 */
export function memoryLimit(): number {
  const set = process.env.PAGEMILL_MEMORY_LIMIT;
  if (set !== undefined && set !== "") {
    const limit = Number(set);
    if (!Number.isSafeInteger(limit) || limit <= 0) throw new RangeError(`PAGEMILL_MEMORY_LIMIT must be a positive whole number of bytes, got "${set}"`);
    return limit;
  }
  return Math.floor(totalmem() * 0.75);
}

/** Throws MemoryLimitError when `bytes` (an estimate for `what`) is above `limit`. */
export function checkFitsInMemory(what: string, bytes: number, limit = memoryLimit()): void {
  if (!(bytes <= limit)) throw new MemoryLimitError(what, bytes, limit);
}

function formatBytes(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** Bytes of one slab: chunks are carved out of slabs of about this size (whole chunks, at least one). */
const SLAB_BYTES = 4 * 2 ** 20;
/** Most chunks one store addresses (its slot table is an Int32Array). */
const MAX_CHUNKS = 2 ** 28;

export class ChunkedPages implements PageMemory {
  readonly pageCount: number;
  readonly pageSize: number;
  readonly pagesPerChunk: number;
  /** Bit i set: page i is all zero. */
  private readonly zeroBits: Uint32Array;
  /** Per chunk: its pages whose zero bit is clear (the chunk is freed at 0). */
  private readonly live: Uint32Array;
  /**
   * Per chunk: its slot, or -1. Chunks live in slots carved out of a few
   * large slabs, not in an ArrayBuffer each: allocating and collecting
   * millions of 4 KiB buffers cost more than the migration (measured: 4 µs
   * a page and a garbage collector busy for a fifth of a run).
   */
  private readonly slotOf: Int32Array;
  private readonly slabs: Uint8Array[] = [];
  private readonly slotsPerSlab: number;
  private readonly chunkBytes: number;
  /** Slots given back, to reuse (zeroed) before carving new ones. */
  private readonly freeSlots: number[] = [];
  private slotCount = 0;
  private readonly zeroes: Buffer;
  private held = 0;
  private heldPages = 0;

  constructor(pageCount: number, pageSize = 4096, pagesPerChunk = defaultPagesPerChunk(pageCount)) {
    checkPageSize(pageSize);
    checkInteger("pageCount", pageCount, 0, MAX_CHUNKED_PAGES);
    checkInteger("pagesPerChunk", pagesPerChunk, 1, 2 ** 16);
    const chunkCount = Math.ceil(pageCount / pagesPerChunk);
    if (chunkCount > MAX_CHUNKS) throw new RangeError(`pageCount ${pageCount} in chunks of ${pagesPerChunk} pages makes ${chunkCount} chunks, more than ${MAX_CHUNKS}: give larger chunks`);
    this.pageCount = pageCount;
    this.pageSize = pageSize;
    this.pagesPerChunk = pagesPerChunk;
    this.zeroBits = new Uint32Array(Math.ceil(pageCount / 32)).fill(0xffffffff);
    this.live = new Uint32Array(chunkCount);
    this.slotOf = new Int32Array(chunkCount).fill(-1);
    this.chunkBytes = pagesPerChunk * pageSize;
    this.slotsPerSlab = Math.max(1, Math.floor(SLAB_BYTES / this.chunkBytes));
    this.zeroes = zeroPage(pageSize);
  }

  get byteLength(): number {
    return this.pageCount * this.pageSize;
  }

  /** Bytes of chunks held now. */
  get heldBytes(): number {
    return this.heldPages * this.pageSize;
  }

  /** Chunks held now. */
  get chunks(): number {
    return this.held;
  }

  /** Memory the store itself needs before any chunk: the zero bits, the per-chunk counts and slots. */
  static overheadBytes(pageCount: number, pagesPerChunk = defaultPagesPerChunk(pageCount)): number {
    return Math.ceil(pageCount / 32) * 4 + Math.ceil(pageCount / pagesPerChunk) * 8;
  }

  isZero(page: number): boolean {
    this.checkPage(page);
    return ((this.zeroBits[page >>> 5]! >>> (page & 31)) & 1) === 1;
  }

  page(page: number): Uint8Array {
    this.checkPage(page);
    const index = Math.floor(page / this.pagesPerChunk);
    const slot = this.slotOf[index]!;
    if (slot < 0) return new Uint8Array(this.pageSize); // its own: a caller that writes to it changes nothing shared
    const at = this.slotStart(slot) + (page - index * this.pagesPerChunk) * this.pageSize;
    return this.slabs[Math.floor(slot / this.slotsPerSlab)]!.subarray(at, at + this.pageSize);
  }

  readRange(first: number, count: number, into: Uint8Array, at: number): void {
    checkBytes("into", into);
    checkInteger("count", count, 0, this.pageCount - first);
    checkInteger("at", at, 0, into.byteLength - count * this.pageSize);
    const { pagesPerChunk: per, pageSize: ps } = this;
    // One copy (or fill) per run of chunks in consecutive slots of one slab (or of chunks not held).
    for (let page = first, end = first + count; page < end; ) {
      const index = Math.floor(page / per);
      const slot = this.slotOf[index]!;
      let next = index + 1;
      while (next * per < end && (slot < 0 ? this.slotOf[next]! < 0 : this.slotOf[next] === slot + (next - index) && (slot + next - index) % this.slotsPerSlab !== 0)) next++;
      const upTo = Math.min(end, next * per);
      const to = at + (page - first) * ps;
      if (slot < 0) fillZero(into, to, to + (upTo - page) * ps);
      else {
        const from = this.slotStart(slot) + (page - index * per) * ps;
        into.set(this.slabs[Math.floor(slot / this.slotsPerSlab)]!.subarray(from, from + (upTo - page) * ps), to);
      }
      page = upTo;
    }
  }

  /** Where pages `indices` lie in the slabs (shared memory): another thread reads them there. */
  locate(indices: ArrayLike<number>): PageLocations {
    const n = indices.length;
    const buffer = new Int32Array(n);
    const offset = new Uint32Array(n);
    const buffers: SharedArrayBuffer[] = [];
    const positions = new Map<number, number>();
    const per = this.pagesPerChunk;
    for (let k = 0; k < n; k++) {
      const page = indices[k]!;
      if (this.isZero(page)) {
        buffer[k] = -1;
        continue;
      }
      const index = Math.floor(page / per);
      const slot = this.slotOf[index]!;
      const slab = Math.floor(slot / this.slotsPerSlab);
      let position = positions.get(slab);
      if (position === undefined) {
        const memory = this.slabs[slab]!.buffer;
        if (typeof SharedArrayBuffer !== "function" || !(memory instanceof SharedArrayBuffer)) throw new PagemillError("this runtime has no SharedArrayBuffer: pages cannot be located for another thread");
        position = buffers.push(memory) - 1;
        positions.set(slab, position);
      }
      buffer[k] = position;
      offset[k] = this.slotStart(slot) + (page - index * per) * this.pageSize;
    }
    return { buffers, buffer, offset };
  }

  write(page: number, content: Uint8Array, from = 0): void {
    checkBytes("content", content);
    checkInteger("from", from, 0, content.byteLength - this.pageSize);
    const source = content.subarray(from, from + this.pageSize);
    if (this.zeroes.equals(source)) this.zero(page);
    else this.writable(page).set(source);
  }

  /** Page `page` ← zeros; frees its chunk when no page in it may be non-zero. */
  zero(page: number): void {
    if (this.isZero(page)) return;
    const index = Math.floor(page / this.pagesPerChunk);
    this.zeroBits[page >>> 5]! |= 1 << (page & 31);
    if (--this.live[index]! === 0) {
      this.heldPages -= this.chunkPages(index);
      this.freeSlots.push(this.slotOf[index]!);
      this.slotOf[index] = -1;
      this.held--;
    } else {
      const view = this.page(page);
      fillZero(view, 0, view.byteLength);
    }
  }

  writable(page: number): Uint8Array {
    this.checkPage(page);
    const index = Math.floor(page / this.pagesPerChunk);
    if (this.slotOf[index]! < 0) {
      this.slotOf[index] = this.takeSlot();
      this.held++;
      this.heldPages += this.chunkPages(index);
    }
    if (this.isZero(page)) {
      this.zeroBits[page >>> 5]! &= ~(1 << (page & 31));
      this.live[index]!++;
    }
    return this.page(page);
  }

  /** Bytes of the slabs carved so far (what holding pages has mapped, or prefault()). */
  get mappedBytes(): number {
    return this.slabs.length * this.slotsPerSlab * this.chunkBytes;
  }

  /**
   * Maps memory for every page now, before any is written: the slabs the
   * store would carve as pages arrive, each of their memory pages touched
   * once, so writes later find them present (QEMU's -mem-prealloc). Memory
   * new to a process faults on first touch, and landing received pages in
   * it was half of an uncapped TCP receiver's CPU. Stops once
   * performance.now() passes `until` (ms); the rest is mapped on first
   * write, as without this. Contents stay zero. Returns the bytes mapped.
   */
  prefault(until = Infinity): number {
    const slabBytes = this.slotsPerSlab * this.chunkBytes;
    const slabs = Math.ceil(this.slotOf.length / this.slotsPerSlab);
    let mapped = 0;
    while (this.slabs.length < slabs && performance.now() < until) {
      const slab = this.newSlab(slabBytes);
      // One store per 4 KiB (the smallest page the kernel maps): a read would map the shared zero page.
      for (let at = 0; at < slab.length; at += 4096) slab[at] = 0;
      mapped += slabBytes;
    }
    return mapped;
  }

  private newSlab(bytes: number): Uint8Array {
    // Shared memory where there is any, so other threads (parallel channels) read pages where they lie (locate).
    const slab = new Uint8Array(typeof SharedArrayBuffer === "function" ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
    this.slabs.push(slab);
    return slab;
  }

  /** A zeroed slot: a freed one, else the next of the last slab (a new slab when it is full). */
  private takeSlot(): number {
    const reused = this.freeSlots.pop();
    if (reused !== undefined) {
      const at = this.slotStart(reused);
      fillZero(this.slabs[Math.floor(reused / this.slotsPerSlab)]!, at, at + this.chunkBytes);
      return reused;
    }
    if (this.slotCount === this.slabs.length * this.slotsPerSlab) this.newSlab(this.slotsPerSlab * this.chunkBytes);
    return this.slotCount++;
  }

  private slotStart(slot: number): number {
    return (slot % this.slotsPerSlab) * this.chunkBytes;
  }

  /** Pages of chunk `index` (the last one ends with the store). */
  private chunkPages(index: number): number {
    return Math.min(this.pagesPerChunk, this.pageCount - index * this.pagesPerChunk);
  }

  private checkPage(page: number): void {
    if (!Number.isInteger(page) || page < 0 || page >= this.pageCount) {
      throw new RangeError(`page ${page} is outside the store (0..${this.pageCount - 1})`);
    }
  }
}

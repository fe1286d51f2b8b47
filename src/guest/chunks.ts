// Sparse chunked pages: memory far larger than the machine's, where a page
// that was never given non-zero content costs one bit (issue 13). Guests and
// disks (blocks are pages here) of up to 2^32 pages.
//
//   const store = new ChunkedPages(pageCount, pageSize = 4096, pagesPerChunk = 256)
//     store.isZero(i)          true: page i is all zero for sure (a bit test).
//                              false: it may hold non-zero bytes.
//     store.read(i, into, at)  copies page i into `into` at byte `at` (zeros
//                              for a page in no chunk).
//     store.write(i, content, from = 0)
//                              page i ← content[from, from + pageSize). Zero
//                              content allocates nothing and frees the chunk
//                              when its last possibly non-zero page goes.
//     store.writable(i)        a view of page i in its chunk (allocated now),
//                              to change in place: the page counts as
//                              possibly non-zero from then on.
//     store.view(i)            a view of page i, or undefined when its chunk
//                              was never allocated (the page is zero).
//     store.allocatedBytes     bytes of chunks held; store.chunks their count.
//
//   checkFitsInMemory(what, bytes, limit = memoryLimit())
//     Refuses, before anything is allocated, a size that cannot fit in this
//     machine's memory, naming the estimate and the limit (MemoryLimitError).
//
// A chunk is allocated on the first write that may leave one of its pages
// non-zero, and freed when the last such page is written with zeros, so
// memory follows the populated bytes, not the size.

import { totalmem } from "node:os";
import { PagemillError, checkBytes, checkInteger, checkPageSize } from "../errors.js";

/** Most pages a store addresses: the trace format's limit. */
export const MAX_CHUNKED_PAGES = 2 ** 32;
/** Pages per chunk by default: 1 MiB chunks of 4 KiB pages. */
export const DEFAULT_PAGES_PER_CHUNK = 256;

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

export class ChunkedPages {
  readonly pageCount: number;
  readonly pageSize: number;
  readonly pagesPerChunk: number;
  /** Bit i set: page i is all zero. */
  private readonly zeroBits: Uint32Array;
  /** Per chunk: its pages whose zero bit is clear (the chunk is freed at 0). */
  private readonly live: Uint32Array;
  private readonly table: (Uint8Array | undefined)[];
  private readonly zeroPage: Buffer;
  private held = 0;

  constructor(pageCount: number, pageSize = 4096, pagesPerChunk = DEFAULT_PAGES_PER_CHUNK) {
    checkPageSize(pageSize);
    checkInteger("pageCount", pageCount, 0, MAX_CHUNKED_PAGES);
    checkInteger("pagesPerChunk", pagesPerChunk, 1, 2 ** 16);
    this.pageCount = pageCount;
    this.pageSize = pageSize;
    this.pagesPerChunk = pagesPerChunk;
    this.zeroBits = new Uint32Array(Math.ceil(pageCount / 32)).fill(0xffffffff);
    const chunkCount = Math.ceil(pageCount / pagesPerChunk);
    this.live = new Uint32Array(chunkCount);
    this.table = new Array<Uint8Array | undefined>(chunkCount);
    this.zeroPage = Buffer.alloc(pageSize);
  }

  /** Bytes of chunks held now. */
  get allocatedBytes(): number {
    return this.held * this.pagesPerChunk * this.pageSize;
  }

  /** Chunks held now. */
  get chunks(): number {
    return this.held;
  }

  /** Memory the store itself needs before any chunk: the zero bits and the chunk table. */
  static overheadBytes(pageCount: number, pagesPerChunk = DEFAULT_PAGES_PER_CHUNK): number {
    return Math.ceil(pageCount / 32) * 4 + Math.ceil(pageCount / pagesPerChunk) * 12;
  }

  isZero(page: number): boolean {
    this.checkPage(page);
    return ((this.zeroBits[page >>> 5]! >>> (page & 31)) & 1) === 1;
  }

  read(page: number, into: Uint8Array, at = 0): void {
    checkBytes("into", into);
    checkInteger("at", at, 0, into.byteLength - this.pageSize);
    const view = this.view(page);
    if (view === undefined) into.fill(0, at, at + this.pageSize);
    else into.set(view, at);
  }

  view(page: number): Uint8Array | undefined {
    this.checkPage(page);
    const chunk = this.table[Math.floor(page / this.pagesPerChunk)];
    if (chunk === undefined) return undefined;
    const at = (page % this.pagesPerChunk) * this.pageSize;
    return chunk.subarray(at, at + this.pageSize);
  }

  write(page: number, content: Uint8Array, from = 0): void {
    checkBytes("content", content);
    checkInteger("from", from, 0, content.byteLength - this.pageSize);
    const source = content.subarray(from, from + this.pageSize);
    if (this.zeroPage.equals(source)) this.zero(page);
    else this.writable(page).set(source);
  }

  /** Page `page` ← zeros; frees its chunk when no page in it may be non-zero. */
  zero(page: number): void {
    if (this.isZero(page)) return;
    const index = Math.floor(page / this.pagesPerChunk);
    this.zeroBits[page >>> 5]! |= 1 << (page & 31);
    if (--this.live[index]! === 0) {
      this.table[index] = undefined;
      this.held--;
    } else this.view(page)!.fill(0);
  }

  writable(page: number): Uint8Array {
    this.checkPage(page);
    const index = Math.floor(page / this.pagesPerChunk);
    if (this.table[index] === undefined) {
      this.table[index] = new Uint8Array(this.pagesPerChunk * this.pageSize);
      this.held++;
    }
    if (this.isZero(page)) {
      this.zeroBits[page >>> 5]! &= ~(1 << (page & 31));
      this.live[index]!++;
    }
    return this.view(page)!;
  }

  private checkPage(page: number): void {
    if (!Number.isInteger(page) || page < 0 || page >= this.pageCount) {
      throw new RangeError(`page ${page} is outside the store (0..${this.pageCount - 1})`);
    }
  }
}

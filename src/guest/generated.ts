// Pages whose first content is computed, not stored: a synthetic disk's
// image (issue 11's size item). Page i < generatedCount starts as
// generate(i, into, at), every page after it as zeros; a page costs memory
// only once something writes it (then it lives in a sparse ChunkedPages, as
// any written page does). Reading an untouched page computes it again, as
// a real disk reads an untouched block from storage: a 16 GiB model disk
// with 1 GiB of data holds none of that gigabyte in this process.

import { checkBytes, checkInteger, checkPageSize } from "../errors.js";
import { ChunkedPages } from "./chunks.js";
import type { PageMemory } from "./pages.js";

/** Writes the first content of page `index` into `into` at byte `at` (pageSize bytes, every one of them). */
export type PageGenerator = (index: number, into: Uint8Array, at: number) => void;

export class GeneratedPages implements PageMemory {
  readonly pageSize: number;
  /** Bit i set: page i has been written and lives in `own`. */
  private readonly changed: Uint32Array;
  private readonly own: ChunkedPages;

  constructor(
    readonly pageCount: number,
    pageSize: number,
    /** pages [0, generatedCount) start as generate() says, the rest as zeros */
    readonly generatedCount: number,
    private readonly generate: PageGenerator,
  ) {
    checkPageSize(pageSize);
    checkInteger("generatedCount", generatedCount, 0, pageCount);
    this.pageSize = pageSize;
    this.changed = new Uint32Array(Math.ceil(pageCount / 32));
    this.own = new ChunkedPages(pageCount, pageSize);
  }

  /** Memory this store needs before anything is written: its written-page bits and the sparse store's tables. */
  static overheadBytes(pageCount: number): number {
    return Math.ceil(pageCount / 32) * 4 + ChunkedPages.overheadBytes(pageCount);
  }

  get byteLength(): number {
    return this.pageCount * this.pageSize;
  }

  /** Bytes of the pages written since the start (the computed ones cost nothing). */
  get heldBytes(): number {
    return this.own.heldBytes;
  }

  page(index: number): Uint8Array {
    if (this.isChanged(index)) return this.own.page(index);
    const out = new Uint8Array(this.pageSize);
    if (index < this.generatedCount) this.generate(index, out, 0);
    return out;
  }

  writable(index: number): Uint8Array {
    if (!this.isChanged(index)) {
      if (index < this.generatedCount) this.generate(index, this.own.writable(index), 0);
      this.setChanged(index);
    }
    return this.own.writable(index);
  }

  write(index: number, content: Uint8Array, from = 0): void {
    checkBytes("content", content);
    checkInteger("from", from, 0, content.byteLength - this.pageSize);
    this.own.write(index, content, from);
    this.setChanged(index);
  }

  zero(index: number): void {
    this.own.zero(index);
    this.setChanged(index);
  }

  isZero(index: number): boolean {
    return this.isChanged(index) ? this.own.isZero(index) : index >= this.generatedCount;
  }

  readRange(first: number, count: number, into: Uint8Array, at: number): void {
    checkBytes("into", into);
    checkInteger("first", first, 0, this.pageCount);
    checkInteger("count", count, 0, this.pageCount - first);
    checkInteger("at", at, 0, into.byteLength - count * this.pageSize);
    const ps = this.pageSize;
    for (let page = first, end = first + count; page < end; ) {
      const changed = this.isChanged(page);
      let run = 1;
      while (page + run < end && this.isChanged(page + run) === changed) run++;
      const to = at + (page - first) * ps;
      if (changed) this.own.readRange(page, run, into, to);
      else {
        for (let p = page; p < page + run; p++) {
          if (p < this.generatedCount) this.generate(p, into, to + (p - page) * ps);
          else into.fill(0, to + (p - page) * ps, to + (p - page + 1) * ps);
        }
      }
      page += run;
    }
  }

  private isChanged(index: number): boolean {
    if (!Number.isInteger(index) || index < 0 || index >= this.pageCount) {
      throw new RangeError(`page ${index} is outside the memory (0..${this.pageCount - 1})`);
    }
    return ((this.changed[index >>> 5]! >>> (index & 31)) & 1) === 1;
  }

  private setChanged(index: number): void {
    this.changed[index >>> 5]! |= 1 << (index & 31);
  }
}

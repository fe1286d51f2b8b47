// Pages whose first content is computed, not stored: a synthetic disk's
// image (issue 11's size item). Page i < generatedCount starts as
// generate(i, into, at), every page after it as zeros; a page costs memory
// only once something writes it (then it lives in a sparse ChunkedPages, as
// any written page does). Reading an untouched page computes it again, as
// a real disk reads an untouched block from storage: a 16 GiB model disk
// with 1 GiB of data holds none of that gigabyte in this process.

import { checkBytes, checkInteger, checkPageSize } from "../errors.js";
import { ChunkedPages } from "./chunks.js";
import { PageBits, fillZero, type PageMemory } from "./pages.js";

/** Writes the first content of page `index` into `into` at byte `at` (pageSize bytes, every one of them). */
export type PageGenerator = (index: number, into: Uint8Array, at: number) => void;

export class GeneratedPages implements PageMemory {
  readonly pageSize: number;
  /** Bit i set: page i has been written and lives in `own`. */
  private readonly changed: PageBits;
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
    this.changed = new PageBits(pageCount);
    this.own = new ChunkedPages(pageCount, pageSize);
  }

  /** Memory this store needs before anything is written: its written-page bits and the sparse store's tables. */
  static overheadBytes(pageCount: number): number {
    return PageBits.bytes(pageCount) + ChunkedPages.overheadBytes(pageCount);
  }

  get byteLength(): number {
    return this.pageCount * this.pageSize;
  }

  /** Bytes of the pages written since the start (the computed ones cost nothing). */
  get heldBytes(): number {
    return this.own.heldBytes;
  }

  page(index: number): Uint8Array {
    if (this.changed.has(index)) return this.own.page(index);
    const out = new Uint8Array(this.pageSize);
    if (index < this.generatedCount) this.generate(index, out, 0);
    return out;
  }

  writable(index: number): Uint8Array {
    if (!this.changed.has(index)) {
      if (index < this.generatedCount) this.generate(index, this.own.writable(index), 0);
      this.changed.set(index, true);
    }
    return this.own.writable(index);
  }

  write(index: number, content: Uint8Array, from = 0): void {
    checkBytes("content", content);
    checkInteger("from", from, 0, content.byteLength - this.pageSize);
    this.own.write(index, content, from);
    this.changed.set(index, true);
  }

  zero(index: number): void {
    this.own.zero(index);
    this.changed.set(index, true);
  }

  isZero(index: number): boolean {
    return this.changed.has(index) ? this.own.isZero(index) : index >= this.generatedCount;
  }

  readRange(first: number, count: number, into: Uint8Array, at: number): void {
    checkBytes("into", into);
    checkInteger("first", first, 0, this.pageCount);
    checkInteger("count", count, 0, this.pageCount - first);
    checkInteger("at", at, 0, into.byteLength - count * this.pageSize);
    const ps = this.pageSize;
    for (let page = first, end = first + count; page < end; ) {
      const changed = this.changed.has(page);
      const run = this.changed.run(page, end);
      const to = at + (page - first) * ps;
      if (changed) this.own.readRange(page, run, into, to);
      else {
        for (let p = page; p < page + run; p++) {
          if (p < this.generatedCount) this.generate(p, into, to + (p - page) * ps);
          else fillZero(into, to + (p - page) * ps, to + (p - page + 1) * ps);
        }
      }
      page += run;
    }
  }
}

// The destination's memory when both ends run in one process (simulate()):
// a page that lands with exactly the bytes the source holds for it now is
// not stored a second time. It reads through to the source's page (compared
// byte for byte as it lands), until the source is about to change that
// page: then its content is copied here first (copy-on-write, through the
// guest's beforeChange). The destination holds only the pages that differ
// from the source's, so a migration in one process needs about one guest's
// memory instead of two, and pages that land touch no fresh memory.
//
// Invariant: a mirrored page equals the source's page now. Every change to
// the source's memory goes through its Guest (beforeChange runs first); the
// end check (verifyMemory) then skips mirrored pages, which were compared
// when they landed and have not changed since.


import { ChunkedPages } from "../guest/chunks.js";
import { PageBits, sameBytes, zeroPage, type PageMemory } from "../guest/pages.js";

export class MirrorPages implements PageMemory {
  readonly pageCount: number;
  readonly pageSize: number;
  /** Bit i set: page i is the source's page i. */
  private readonly mirrored: PageBits;
  /** The pages that differ from the source's. */
  private readonly own: ChunkedPages;

  constructor(private readonly source: PageMemory) {
    this.pageCount = source.pageCount;
    this.pageSize = source.pageSize;
    this.mirrored = new PageBits(this.pageCount);
    this.own = new ChunkedPages(this.pageCount, this.pageSize);
  }

  get byteLength(): number {
    return this.source.byteLength;
  }

  /** Bytes of the pages held here (those that differ from the source's). */
  get heldBytes(): number {
    return this.own.heldBytes;
  }

  /** The source is about to change page `index`: keep its content here if this end reads it through. */
  detach(index: number): void {
    if (!this.mirrored.has(index)) return;
    this.own.write(index, this.source.page(index));
    this.mirrored.set(index, false);
  }

  /** True when page `index` is known, without looking, to equal `other`'s page (other is the source, and the page is read through). */
  knownSame(other: PageMemory, index: number): boolean {
    return other === this.source && this.mirrored.has(index);
  }

  page(index: number): Uint8Array {
    return this.mirrored.has(index) ? this.source.page(index) : this.own.page(index);
  }

  writable(index: number): Uint8Array {
    this.detach(index);
    return this.own.writable(index);
  }

  write(index: number, content: Uint8Array, from = 0): void {
    const landed = content.subarray(from, from + this.pageSize);
    if (landed.byteLength === this.pageSize && sameBytes(landed, this.sourcePage(index))) this.mirror(index);
    else {
      this.mirrored.set(index, false);
      this.own.write(index, content, from);
    }
  }

  zero(index: number): void {
    // A page the source does not hold is zero without looking.
    if (this.source.isZero(index) || sameBytes(zeroPage(this.pageSize), this.source.page(index))) this.mirror(index);
    else {
      this.mirrored.set(index, false);
      this.own.zero(index);
    }
  }

  isZero(index: number): boolean {
    return this.mirrored.has(index) ? this.source.isZero(index) : this.own.isZero(index);
  }

  readRange(first: number, count: number, into: Uint8Array, at: number): void {
    const ps = this.pageSize;
    // One read per run of pages held on the same side.
    for (let page = first, end = first + count; page < end; ) {
      const mirrored = this.mirrored.has(page);
      const run = this.mirrored.run(page, end);
      (mirrored ? this.source : this.own).readRange(page, run, into, at + (page - first) * ps);
      page += run;
    }
  }

  private mirror(index: number): void {
    this.own.zero(index);
    this.mirrored.set(index, true);
  }

  /** The source's page without allocating for a page it knows is zero. */
  private sourcePage(index: number): Uint8Array {
    return this.source.isZero(index) ? zeroPage(this.pageSize) : this.source.page(index);
  }
}

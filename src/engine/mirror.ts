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
//
// A frame a parallel channel's thread encoded is also decoded on such a
// thread and compared with the pages it was made from (a receive thread's
// work, done while this thread goes on: SentFrames). When that check has
// come back, the frame lands here by marks, without decoding or comparing
// again, if none of its pages changed at the source since they were read
// (landAsSent): each page then equals the source's.

import { ChunkedPages } from "../guest/chunks.js";
import { PageBits, sameBytes, zeroPage, type PageMemory } from "../guest/pages.js";

export class MirrorPages implements PageMemory {
  readonly pageCount: number;
  readonly pageSize: number;
  /** Bit i set: page i is the source's page i. */
  private readonly mirrored: PageBits;
  /** The pages that differ from the source's. */
  private readonly own: ChunkedPages;
  /** Per page: the mark current when the source last changed it (kept once a mark is taken). */
  private changedAt: Uint32Array | undefined;
  /** Marks taken (sentMark). */
  private marks = 0;

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
    if (this.changedAt) this.changedAt[index] = this.marks;
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

  /** A mark for pages loaded from the source now: landAsSent lands them by it while none has changed. */
  sentMark(): number {
    this.changedAt ??= new Uint32Array(this.pageCount);
    return ++this.marks;
  }

  /**
   * Pages `indices` arrived holding exactly what the source held when
   * `mark` was taken (their channel decoded and compared them): when none
   * has changed since, each now reads through to the source's, and true;
   * otherwise nothing changes here, and false (decode them instead).
   */
  landAsSent(indices: ArrayLike<number>, mark: number): boolean {
    const changedAt = this.changedAt!;
    for (let k = 0; k < indices.length; k++) if (changedAt[indices[k]!]! >= mark) return false;
    for (let k = 0; k < indices.length; k++) this.mirror(indices[k]!);
    return true;
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

/**
 * Frames a channel's thread is decoding and comparing with the pages read
 * for them, with the mark taken before that read (in one process: the
 * source registers, the destination takes).
 */
export class SentFrames {
  private readonly frames = new WeakMap<Uint8Array, { readonly mark: number; same?: boolean }>();

  constructor(readonly memory: MirrorPages) {}

  /** A mark to take before reading a frame's pages. */
  mark(): number {
    return this.memory.sentMark();
  }

  /** `frame`, made from pages read after `mark`; `same` resolves true when it decodes to exactly them. */
  add(frame: Uint8Array, mark: number, same: Promise<boolean>): void {
    const entry: { readonly mark: number; same?: boolean } = { mark };
    this.frames.set(frame, entry);
    same.then(
      (answer) => (entry.same = answer),
      () => (entry.same = false),
    );
  }

  /** The mark of `frame` when its check has come back and found it the same (once); otherwise undefined (decode it). */
  take(frame: Uint8Array): number | undefined {
    const entry = this.frames.get(frame);
    if (!entry) return undefined;
    this.frames.delete(frame);
    return entry.same ? entry.mark : undefined;
  }
}

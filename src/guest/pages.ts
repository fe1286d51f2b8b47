// Page memory: what a guest's (or a destination's, or a disk's) pages live
// in. Two kinds serve one interface:
//
//   FlatPages(bytes, pageSize)   every page back to back in one Uint8Array
//                                (page i at byte i·pageSize): what threads
//                                share (a SharedArrayBuffer) and what a
//                                caller hands in.
//   ChunkedPages (./chunks.ts)   sparse: pages in chunks allocated on the
//                                first non-zero write, so a guest far larger
//                                than this machine's memory costs what it
//                                holds (issue 13).
//
//   memory.page(i)        a view of page i to read. Where nothing is held it
//                         is a new zero page: writing to it changes nothing.
//   memory.writable(i)    a view of page i to change in place.
//   memory.write(i, content, from = 0)   page i ← content[from, from + pageSize).
//   memory.zero(i)        page i ← zeros (holds nothing more for a sparse memory).
//   memory.isZero(i)      true: all zero for sure, known without looking at
//                         the bytes; false: it may hold non-zero bytes.
//   memory.readRange(first, count, into, at)
//                         pages [first, first + count) into `into` at byte `at`.
//   memory.heldBytes      bytes of pages held now (a flat memory holds all).
//
// Helpers: differingPages (an end check's comparison of two memories),
// sameBytes (of two pages), zeroPage, asPageMemory.

import { checkBytes, checkInteger, checkPageSize } from "../errors.js";

export interface PageMemory {
  readonly pageCount: number;
  readonly pageSize: number;
  /** pageCount · pageSize */
  readonly byteLength: number;
  /** Bytes of pages held now. */
  readonly heldBytes: number;
  page(index: number): Uint8Array;
  writable(index: number): Uint8Array;
  write(index: number, content: Uint8Array, from?: number): void;
  zero(index: number): void;
  isZero(index: number): boolean;
  readRange(first: number, count: number, into: Uint8Array, at: number): void;
  /** True when page `index` is known, without looking, to equal `other`'s page `index` (a memory that reads through to `other`). */
  knownSame?(other: PageMemory, index: number): boolean;
  /** Where pages `indices` lie in shared memory, for another thread to read them there (readLocated); a memory held elsewhere has no locate. */
  locate?(indices: ArrayLike<number>): PageLocations;
}

/** Where pages lie in shared memory (PageMemory.locate), for another thread to read. */
export interface PageLocations {
  /** the shared memories the pages lie in */
  readonly buffers: SharedArrayBuffer[];
  /** per page: the index in `buffers` of the memory it lies in, or -1 for a page known to be zero */
  readonly buffer: Int32Array;
  /** per page: its byte offset in that memory */
  readonly offset: Uint32Array;
}

/** Pages of `bytes` (in a SharedArrayBuffer) as located: the k-th at byte offsetOf(k) of the view. */
export function locatedIn(bytes: Uint8Array, count: number, offsetOf: (k: number) => number): PageLocations {
  const offset = new Uint32Array(count);
  for (let k = 0; k < count; k++) offset[k] = bytes.byteOffset + offsetOf(k);
  return { buffers: [bytes.buffer as SharedArrayBuffer], buffer: new Int32Array(count), offset };
}

/**
 * Copies located pages into `into` from byte `at`, back to back: one copy
 * per run of pages lying back to back. A location outside its memory is
 * refused by page (a short read would leave stale bytes where a page goes).
 */
export function readLocated(locations: PageLocations, pageSize: number, into: Uint8Array, at: number): void {
  const { buffers, buffer, offset } = locations;
  const views = buffers.map((memory) => new Uint8Array(memory));
  for (let k = 0, n = buffer.length; k < n; ) {
    const b = buffer[k]!;
    let run = 1;
    while (k + run < n && buffer[k + run] === b && (b < 0 || offset[k + run] === offset[k]! + run * pageSize)) run++;
    const to = at + k * pageSize;
    if (b < 0) fillZero(into, to, to + run * pageSize);
    else {
      const view = views[b];
      if (!view || offset[k]! + run * pageSize > view.byteLength) {
        throw new RangeError(`located page ${k} lies outside its memory (memory ${b} of ${views.length}, byte ${offset[k]} + ${run * pageSize} > ${view?.byteLength ?? 0})`);
      }
      into.set(view.subarray(offset[k]!, offset[k]! + run * pageSize), to);
    }
    k += run;
  }
}

export class FlatPages implements PageMemory {
  readonly pageCount: number;
  readonly pageSize: number;
  /** Every page back to back. */
  readonly bytes: Uint8Array;
  private readonly whole: Buffer;

  /**
   * Pages this object has let be written (write, writable), when made `fresh`: the others still hold
   * the zeros they started with, so zero() leaves them alone without looking.
   */
  private readonly touched: Uint8Array | undefined;

  /**
   * Pages over `bytes` (adopted, not copied); its length must be a whole number of pages. `fresh`:
   * `bytes` is all zeros and written only through this object (a destination's new landing memory).
   */
  constructor(bytes: Uint8Array, pageSize = 4096, fresh = false) {
    checkBytes("bytes", bytes);
    checkPageSize(pageSize);
    if (bytes.byteLength % pageSize !== 0) throw new RangeError(`memory has ${bytes.byteLength} bytes, not a whole number of ${pageSize} B pages`);
    this.bytes = bytes;
    this.pageSize = pageSize;
    this.pageCount = bytes.byteLength / pageSize;
    this.whole = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (fresh) this.touched = new Uint8Array(this.pageCount);
  }

  get byteLength(): number {
    return this.bytes.byteLength;
  }

  get heldBytes(): number {
    return this.bytes.byteLength;
  }

  page(index: number): Uint8Array {
    this.checkPage(index);
    return this.bytes.subarray(index * this.pageSize, (index + 1) * this.pageSize);
  }

  writable(index: number): Uint8Array {
    const page = this.page(index);
    if (this.touched) this.touched[index] = 1;
    return page;
  }

  write(index: number, content: Uint8Array, from = 0): void {
    this.checkPage(index);
    if (this.touched) this.touched[index] = 1;
    this.bytes.set(content.subarray(from, from + this.pageSize), index * this.pageSize);
  }

  zero(index: number): void {
    this.checkPage(index);
    // Looking at a page never touched costs a page fault (13 µs on this machine: a hybrid's round of
    // node-gc, mostly zero pages, spent 0.4 s of the destination's main thread here, reading no frames).
    if (this.touched && !this.touched[index]) return;
    const at = index * this.pageSize;
    // Memory never written reads as zero without being backed: looking costs less than writing it.
    if (!isZeroAt(this.whole, at, this.pageSize)) this.bytes.fill(0, at, at + this.pageSize);
  }

  isZero(): boolean {
    return false;
  }

  readRange(first: number, count: number, into: Uint8Array, at: number): void {
    checkInteger("count", count, 0, this.pageCount - first);
    this.checkPage(first);
    into.set(this.bytes.subarray(first * this.pageSize, (first + count) * this.pageSize), at);
  }

  private checkPage(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.pageCount) {
      throw new RangeError(`page ${index} is outside the memory (0..${this.pageCount - 1})`);
    }
  }
}

/**
 * One bit per page, with the page checked against the range: which of two
 * places holds each page of a memory layered over another (MirrorPages,
 * GeneratedPages).
 */
export class PageBits {
  private readonly words: Uint32Array;

  constructor(readonly pageCount: number) {
    this.words = new Uint32Array(Math.ceil(pageCount / 32));
  }

  /** Memory the bits of `pageCount` pages take. */
  static bytes(pageCount: number): number {
    return Math.ceil(pageCount / 32) * 4;
  }

  has(index: number): boolean {
    if (!Number.isInteger(index) || index < 0 || index >= this.pageCount) {
      throw new RangeError(`page ${index} is outside the memory (0..${this.pageCount - 1})`);
    }
    return ((this.words[index >>> 5]! >>> (index & 31)) & 1) === 1;
  }

  set(index: number, on: boolean): void {
    if (on) this.words[index >>> 5]! |= 1 << (index & 31);
    else this.words[index >>> 5]! &= ~(1 << (index & 31));
  }

  /** Pages from `first` up to `end` whose bit is page `first`'s, counted from `first` (at least 1). */
  run(first: number, end: number): number {
    const bit = this.has(first);
    let run = 1;
    while (first + run < end && this.has(first + run) === bit) run++;
    return run;
  }
}

const ZERO_PAGES = new Map<number, Buffer>();

/** One shared zero page of `pageSize` bytes: only ever read. */
export function zeroPage(pageSize: number): Buffer {
  let page = ZERO_PAGES.get(pageSize);
  if (!page) ZERO_PAGES.set(pageSize, (page = Buffer.alloc(pageSize)));
  return page;
}

/** Zeros `into` from byte `from` to `to` (fill() on a SharedArrayBuffer's bytes runs byte by byte in V8: about 15 times slower than copying zeros). */
export function fillZero(into: Uint8Array, from: number, to: number): void {
  // (A browser page that is not cross-origin isolated has no SharedArrayBuffer.)
  if (typeof SharedArrayBuffer === "undefined" || !(into.buffer instanceof SharedArrayBuffer)) {
    into.fill(0, from, to);
    return;
  }
  const zeros = zeroPage(4096);
  for (let at = from; at < to; at += zeros.byteLength) into.set(to - at >= zeros.byteLength ? zeros : zeros.subarray(0, to - at), at);
}

/** True when `length` bytes of `bytes` at `at` are all zero. */
function isZeroAt(bytes: Buffer, at: number, length: number): boolean {
  return bytes.compare(zeroPage(length), 0, length, at, at + length) === 0;
}

/** True when two pages (or any two byte ranges) hold the same bytes (one memcmp). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

/** Every page back to back: a flat memory's own bytes, a copy of a sparse one's. */
export function flatBytes(memory: PageMemory): Uint8Array {
  if (memory instanceof FlatPages) return memory.bytes;
  const bytes = new Uint8Array(memory.byteLength);
  memory.readRange(0, memory.pageCount, bytes, 0);
  return bytes;
}

/**
 * Pages `indices` of `source` into `into` from byte `at`, back to back: one
 * copy per run of consecutive pages. `source`: a PageMemory, or bytes with
 * page i at i·pageSize (no Node Buffer involved: browsers load this too).
 */
export function readPages(source: PageMemory | Uint8Array, pageSize: number, indices: ArrayLike<number>, into: Uint8Array, at: number): void {
  for (let k = 0, n = indices.length; k < n; ) {
    const first = indices[k]!;
    const run = runFrom(indices, k);
    if (source instanceof Uint8Array) into.set(source.subarray(first * pageSize, (first + run) * pageSize), at + k * pageSize);
    else source.readRange(first, run, into, at + k * pageSize);
    k += run;
  }
}

/**
 * How many of `indices` from the k-th on are consecutive pages. Apart from readPages: the loop over a
 * frame's pages inside it made V8 compile it with the memory's readRange inlined, 17-35 ms per process
 * (--trace-opt); a frame of consecutive pages is one pass here and one copy there.
 */
function runFrom(indices: ArrayLike<number>, k: number): number {
  const first = indices[k]!;
  let run = 1;
  while (k + run < indices.length && indices[k + run] === first + run) run++;
  return run;
}

/** True for a PageMemory of either kind. */
export function isPageMemory(value: unknown): value is PageMemory {
  return typeof value === "object" && value !== null && typeof (value as PageMemory).readRange === "function" && typeof (value as PageMemory).pageCount === "number";
}

/** A Uint8Array of whole pages as a memory; a memory as it is. */
export function asPageMemory(memory: Uint8Array | PageMemory, pageSize: number, name = "memory"): PageMemory {
  if (memory instanceof Uint8Array) return new FlatPages(memory, pageSize);
  if (!isPageMemory(memory)) throw new TypeError(`${name} must be a Uint8Array or a PageMemory`);
  if (memory.pageSize !== pageSize) throw new RangeError(`${name} has ${memory.pageSize} B pages, not ${pageSize} B`);
  return memory;
}

/**
 * Pages whose content differs between two memories of one shape, ascending.
 * Spans whose pages are all known zero on both sides, or known the same
 * (knownSame), are not looked at.
 */
export function differingPages(expected: PageMemory, actual: PageMemory, spanPages = 1024): number[] {
  const differ: number[] = [];
  const ps = expected.pageSize;
  const spanA = Buffer.alloc(spanPages * ps);
  const spanB = Buffer.alloc(spanPages * ps);
  for (let first = 0; first < expected.pageCount; first += spanPages) {
    const count = Math.min(spanPages, expected.pageCount - first);
    if (knownEqual(expected, actual, first, count)) continue;
    const a = viewOf(expected, first, count) ?? copyOf(expected, first, count, spanA);
    const b = viewOf(actual, first, count) ?? copyOf(actual, first, count, spanB);
    if (a.equals(b)) continue;
    for (let k = 0; k < count; k++) {
      if (a.compare(b, k * ps, (k + 1) * ps, k * ps, (k + 1) * ps) !== 0) differ.push(first + k);
    }
  }
  return differ;
}

function knownEqual(a: PageMemory, b: PageMemory, first: number, count: number): boolean {
  for (let p = first; p < first + count; p++) {
    if (!(a.isZero(p) && b.isZero(p)) && !b.knownSame?.(a, p) && !a.knownSame?.(b, p)) return false;
  }
  return true;
}

/** A flat memory's span in place (no copy). */
function viewOf(memory: PageMemory, first: number, count: number): Buffer | undefined {
  if (!(memory instanceof FlatPages)) return undefined;
  const ps = memory.pageSize;
  return Buffer.from(memory.bytes.buffer, memory.bytes.byteOffset + first * ps, count * ps);
}

function copyOf(memory: PageMemory, first: number, count: number, into: Buffer): Buffer {
  memory.readRange(first, count, into, 0);
  return into.subarray(0, count * memory.pageSize);
}

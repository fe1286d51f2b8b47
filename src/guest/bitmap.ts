// DirtyBitmap: one bit per page in WebAssembly memory, laid out as QEMU does
// (little-endian 64-bit words; bit i of word w is page 64·w + i). Single-bit
// operations run in TypeScript on a view (a WASM call per bit would cost more
// than the bit); whole-bitmap operations are one kernel call each.

import { checkInstance, checkInteger } from "../errors.js";
import { wasm, type Wasm } from "../wasm/module.js";
import { Owned } from "../wasm/owned.js";

/** Largest bitmap: 2^28 pages (1 TiB of guest at 4 KiB pages). */
export const MAX_BITMAP_PAGES = 2 ** 28;

export class DirtyBitmap extends Owned {
  /** Number of pages (bits). */
  readonly size: number;
  /** Number of 64-bit words. */
  readonly words: number;
  /** Offset of word 0 in linear memory. */
  readonly ptr: number;
  private readonly owner: Wasm;
  private extractPtr = 0;
  private extractCap = 0;

  constructor(size: number) {
    super();
    checkInteger("size", size, 0, MAX_BITMAP_PAGES);
    this.owner = wasm();
    this.size = size;
    this.words = Math.ceil(size / 64);
    this.ptr = this.owner.heap.alloc(this.words * 8);
    this.owner.heap.bytes().fill(0, this.ptr, this.ptr + this.words * 8);
  }

  private checkPage(page: number): void {
    if (!Number.isInteger(page) || page < 0 || page >= this.size) {
      throw new RangeError(`page ${page} is outside the bitmap (0..${this.size - 1})`);
    }
  }

  /** `other` must be a live bitmap of this size: a disposed one's memory is someone else's now. */
  private checkSame(other: DirtyBitmap): void {
    checkInstance("other", other, DirtyBitmap);
    other.live();
    if (other.size !== this.size) throw new RangeError(`bitmap sizes differ: ${this.size} and ${other.size}`);
  }

  set(page: number): void {
    this.live();
    this.checkPage(page);
    this.owner.heap.u32()[(this.ptr >>> 2) + (page >>> 5)]! |= 1 << (page & 31);
  }

  clear(page: number): void {
    this.live();
    this.checkPage(page);
    this.owner.heap.u32()[(this.ptr >>> 2) + (page >>> 5)]! &= ~(1 << (page & 31));
  }

  test(page: number): boolean {
    this.live();
    this.checkPage(page);
    return ((this.owner.heap.u32()[(this.ptr >>> 2) + (page >>> 5)]! >>> (page & 31)) & 1) === 1;
  }

  /** Sets bits [from, to). */
  setRange(from = 0, to = this.size): void {
    this.live();
    this.fill(from, to, 1);
  }

  /** Clears bits [from, to). */
  clearRange(from = 0, to = this.size): void {
    this.live();
    this.fill(from, to, 0);
  }

  private fill(from: number, to: number, value: number): void {
    checkInteger("from", from, 0, this.size);
    checkInteger("to", to, from, this.size);
    this.owner.kernels.bitmapFill(this.ptr, from, to, value);
  }

  /** Number of set bits. */
  count(): number {
    this.live();
    return this.owner.kernels.bitmapCount(this.ptr, this.size);
  }

  /** First set bit at or after `from`, or -1. */
  nextSet(from = 0): number {
    this.live();
    checkInteger("from", from, 0, this.size);
    return this.owner.kernels.bitmapNextSet(this.ptr, this.size, from);
  }

  /**
   * Indices of the set bits at or after `from`, ascending, at most `max`
   * (default: all). One kernel call; the result is a copy.
   */
  extract(from = 0, max = this.size): Uint32Array {
    this.live();
    checkInteger("from", from, 0, this.size);
    checkInteger("max", max, 0, this.size);
    if (max > this.extractCap) {
      if (this.extractCap) this.owner.heap.release(this.extractPtr);
      this.extractCap = max;
      this.extractPtr = this.owner.heap.alloc(max * 4);
    }
    const n = this.owner.kernels.bitmapExtract(this.ptr, this.size, from, this.extractPtr, max);
    return this.owner.heap.u32().slice(this.extractPtr >>> 2, (this.extractPtr >>> 2) + n);
  }

  /** this |= other */
  or(other: DirtyBitmap): void {
    this.live();
    this.checkSame(other);
    this.owner.kernels.bitmapOr(this.ptr, other.ptr, this.words);
  }

  /** this &= ~other */
  andNot(other: DirtyBitmap): void {
    this.live();
    this.checkSame(other);
    this.owner.kernels.bitmapAndNot(this.ptr, other.ptr, this.words);
  }

  /**
   * The per-round sync of a dirty log into this bitmap: this |= log, then
   * log is cleared. Returns how many pages became newly set here.
   */
  syncFrom(log: DirtyBitmap): number {
    this.live();
    this.checkSame(log);
    return this.owner.kernels.bitmapSync(this.ptr, log.ptr, this.words);
  }

  /** A copy of the words (for tests and persistence). */
  toWords(): BigUint64Array {
    this.live();
    const out = new BigUint64Array(this.words);
    new Uint8Array(out.buffer).set(this.owner.heap.bytes().subarray(this.ptr, this.ptr + this.words * 8));
    return out;
  }

  protected release(): void {
    this.owner.heap.release(this.ptr);
    if (this.extractCap) this.owner.heap.release(this.extractPtr);
    this.extractCap = 0;
  }
}

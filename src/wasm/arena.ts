// PageBatch: N pages of one size living in WebAssembly linear memory. Pages
// cross into the kernels by the batch: fill the batch once, make one kernel
// call over all of it, read back a small table.

import { asBytes, checkArrayLike, checkBytes, checkInteger, checkPageSize } from "../errors.js";
import { FlatPages, isPageMemory, readPages, type PageMemory } from "../guest/pages.js";
import { wasm, type Wasm } from "./module.js";
import { Owned } from "./owned.js";

export type PageSource = Uint8Array | ArrayBuffer;

/**
 * Every one of `indices` a page of a source of `limit` pages of `pageSize` bytes. Apart from
 * PageBatch.load: the loop inside it made V8 compile load with what it calls inlined, 20-25 ms per
 * process, twice when the kind of memory read changed (--trace-opt).
 */
function checkPagesOf(indices: ArrayLike<number>, limit: number, pageSize: number): void {
  for (let k = 0; k < indices.length; k++) {
    const p = indices[k]!;
    if (!Number.isInteger(p) || p < 0 || p >= limit) {
      throw new RangeError(`indices[${k}] = ${p} is not a page of source (${limit} whole pages of ${pageSize} bytes)`);
    }
  }
}

export class PageBatch extends Owned {
  /** Bytes per page: a power of two, 512..65536. */
  readonly pageSize: number;
  /** Most pages the batch holds. */
  readonly capacity: number;
  private readonly at: number;
  /** Pages loaded now (0..capacity). */
  count = 0;
  private readonly owner: Wasm;

  /** A batch of `capacity` pages of `pageSize` bytes (4 KiB by default). `init()` must have completed. */
  constructor(capacity: number, pageSize = 4096) {
    super();
    checkPageSize(pageSize);
    checkInteger("capacity", capacity, 1, Math.floor(2 ** 31 / pageSize));
    this.pageSize = pageSize;
    this.capacity = capacity;
    this.owner = wasm();
    this.at = this.owner.heap.alloc(capacity * pageSize);
  }

  /** Offset of page 0 in linear memory (what kernels are given); throws once disposed. */
  get ptr(): number {
    this.live();
    return this.at;
  }

  /** Copies pages `indices` of `source` (a PageMemory, or bytes with page i at byte i·pageSize) into slots 0.. of the batch. */
  load(source: PageSource | PageMemory, indices: ArrayLike<number>): this {
    this.live();
    const ps = this.pageSize;
    let memory: PageMemory | Uint8Array;
    let limit: number;
    if (isPageMemory(source)) {
      if (source.pageSize !== ps) throw new RangeError(`source has ${source.pageSize} B pages, the batch ${ps} B`);
      memory = source;
      limit = source.pageCount;
    } else {
      memory = asBytes("source", source);
      limit = Math.floor(memory.byteLength / ps);
    }
    checkArrayLike("indices", indices);
    const n = indices.length;
    checkInteger("indices.length", n, 0, this.capacity);
    checkPagesOf(indices, limit, ps);
    readPages(memory, ps, indices, this.owner.heap.bytes(), this.ptr);
    this.count = n;
    return this;
  }

  /** Copies pages [first, first + count) of `memory` into slots 0.. of the batch. */
  loadRange(memory: PageMemory, first: number, count: number): this {
    this.live();
    if (memory.pageSize !== this.pageSize) throw new RangeError(`source has ${memory.pageSize} B pages, the batch ${this.pageSize} B`);
    checkInteger("count", count, 0, this.capacity);
    memory.readRange(first, count, this.owner.heap.bytes(), this.ptr);
    this.count = count;
    return this;
  }

  /** Copies whole pages from `pages` (a multiple of pageSize bytes) into slots 0.. . */
  set(pages: PageSource): this {
    this.live();
    const src = asBytes("pages", pages);
    if (src.byteLength % this.pageSize !== 0) {
      throw new RangeError(`pages has ${src.byteLength} bytes, not a multiple of pageSize ${this.pageSize}`);
    }
    const n = src.byteLength / this.pageSize;
    checkInteger("pages.byteLength / pageSize", n, 0, this.capacity);
    this.owner.heap.bytes().set(src, this.ptr);
    this.count = n;
    return this;
  }

  /** Copies slot k to page `indices[k]` of `destination` (a PageMemory, or bytes with page i at byte i·pageSize), for every loaded slot. */
  store(destination: Uint8Array | PageMemory, indices: ArrayLike<number>): void {
    this.live();
    if (!isPageMemory(destination)) checkBytes("destination", destination);
    checkArrayLike("indices", indices);
    const ps = this.pageSize;
    if (indices.length !== this.count) throw new RangeError(`indices.length ${indices.length} != batch count ${this.count}`);
    const memory = isPageMemory(destination) ? destination : new FlatPages(destination.subarray(0, Math.floor(destination.byteLength / ps) * ps), ps);
    const mem = this.owner.heap.bytes();
    for (let k = 0; k < this.count; k++) {
      const p = indices[k]!;
      if (!Number.isInteger(p) || p < 0 || p >= memory.pageCount) throw new RangeError(`indices[${k}] = ${p} is not a page of destination`);
      memory.write(p, mem, this.ptr + k * ps);
    }
  }

  /** View of slot k; valid until the next allocation in this thread's heap. */
  page(k: number): Uint8Array {
    this.live();
    checkInteger("k", k, 0, this.capacity - 1);
    const start = this.ptr + k * this.pageSize;
    return this.owner.heap.bytes().subarray(start, start + this.pageSize);
  }

  /** View of the loaded pages; valid until the next allocation. */
  bytes(): Uint8Array {
    this.live();
    return this.owner.heap.bytes().subarray(this.ptr, this.ptr + this.count * this.pageSize);
  }

  /** Gives the memory back; the batch is unusable afterwards. */
  protected release(): void {
    this.owner.heap.release(this.at);
  }
}

/**
 * A scratch region owned by a codec or helper, grown (never shrunk) on demand.
 * Returns its pointer; callers take views through the heap afterwards.
 */
export class Scratch {
  private ptr = 0;
  private size = 0;
  constructor(private readonly owner: Wasm = wasm()) {}
  reserve(bytes: number): number {
    checkInteger("bytes", bytes, 0, 2 ** 32);
    if (bytes <= this.size) return this.ptr;
    // Allocate before letting go of the old region, and record the new one
    // only once it exists: a failed reserve leaves the scratch as it was.
    const size = Math.max(bytes, this.size * 2);
    const ptr = this.owner.heap.alloc(size);
    if (this.size) this.owner.heap.release(this.ptr);
    this.ptr = ptr;
    this.size = size;
    return ptr;
  }
  dispose(): void {
    if (this.size) this.owner.heap.release(this.ptr);
    this.size = 0;
  }
}

// The allocator over WebAssembly linear memory. Kernels never allocate: every
// region (page batches, bitmaps, output buffers, tables) is taken here at set
// up and released when its owner is disposed. Allocation is rare, so a sorted
// first-fit free list with coalescing is enough.
//
// Growing memory detaches every typed-array view of it. Views are therefore
// only ever taken through `bytes()`/`u32()`/..., which rebuild them in this one
// place when the buffer has changed; nothing else may keep a view across a
// call that allocates.

const PAGE = 65536;
const ALIGN = 64;

interface Span {
  start: number;
  end: number;
}

export class Heap {
  private readonly memory: WebAssembly.Memory;
  private readonly free: Span[] = [];
  private readonly used = new Map<number, number>();
  private buffer: ArrayBuffer | undefined;
  private u8View!: Uint8Array;
  private u32View!: Uint32Array;
  private i32View!: Int32Array;
  private dataView!: DataView;

  constructor(memory: WebAssembly.Memory, base: number) {
    this.memory = memory;
    const top = memory.buffer.byteLength;
    if (top > base) this.free.push({ start: base, end: top });
  }

  /** Bytes of linear memory in use by live regions. */
  get allocatedBytes(): number {
    let total = 0;
    for (const size of this.used.values()) total += size;
    return total;
  }

  /** Total linear memory size in bytes. */
  get memoryBytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** Reserves `size` bytes aligned to 64; grows memory when needed. */
  alloc(size: number): number {
    if (!Number.isInteger(size) || size < 0) throw new RangeError(`allocation size must be a non-negative integer, got ${size}`);
    const need = Math.max(ALIGN, Math.ceil(size / ALIGN) * ALIGN);
    let at = this.free.findIndex((s) => s.end - s.start >= need);
    if (at < 0) {
      this.grow(need);
      at = this.free.findIndex((s) => s.end - s.start >= need);
    }
    const span = this.free[at]!;
    const ptr = span.start;
    span.start += need;
    if (span.start === span.end) this.free.splice(at, 1);
    this.used.set(ptr, need);
    return ptr;
  }

  /** Returns a region taken by `alloc`. */
  release(ptr: number): void {
    const size = this.used.get(ptr);
    if (size === undefined) throw new RangeError(`release of ${ptr}, which is not an allocated region`);
    this.used.delete(ptr);
    this.insertFree(ptr, ptr + size);
  }

  private insertFree(start: number, end: number): void {
    let i = 0;
    while (i < this.free.length && this.free[i]!.start < start) i++;
    this.free.splice(i, 0, { start, end });
    // Coalesce with the neighbours on either side.
    const next = this.free[i + 1];
    if (next && next.start === end) {
      this.free[i]!.end = next.end;
      this.free.splice(i + 1, 1);
    }
    const prev = this.free[i - 1];
    if (prev && prev.end === start) {
      prev.end = this.free[i]!.end;
      this.free.splice(i, 1);
    }
  }

  private grow(need: number): void {
    const top = this.memory.buffer.byteLength;
    const last = this.free[this.free.length - 1];
    const tailFree = last && last.end === top ? last.end - last.start : 0;
    // Grow by at least a quarter of the current size so that a sequence of
    // allocations does not grow (and detach views) once per call.
    const bytes = Math.max(need - tailFree, top >>> 2, PAGE);
    const pages = Math.ceil(bytes / PAGE);
    try {
      this.memory.grow(pages);
    } catch (cause) {
      throw new RangeError(`cannot grow WebAssembly memory by ${pages} pages for ${need} bytes`, { cause });
    }
    this.insertFree(top, this.memory.buffer.byteLength);
  }

  /** True when `view` is a view of this memory. */
  holds(view: ArrayBufferView): boolean {
    return view.buffer === this.memory.buffer;
  }

  /** `view`, or a copy of it when it is a view of this memory: an allocation made before it is read could grow memory and detach it. */
  outside(view: Uint8Array): Uint8Array {
    return this.holds(view) ? view.slice() : view;
  }

  /** Refuses an output that is a view of this memory: an allocation made before it is written could grow memory and detach it. */
  checkOutside(name: string, view: ArrayBufferView): void {
    if (this.holds(view)) throw new RangeError(`${name} must not be a view of pagemill's WebAssembly memory`);
  }

  private refresh(): void {
    const buffer = this.memory.buffer;
    if (buffer === this.buffer) return;
    this.buffer = buffer;
    this.u8View = new Uint8Array(buffer);
    this.u32View = new Uint32Array(buffer);
    this.i32View = new Int32Array(buffer);
    this.dataView = new DataView(buffer);
  }

  /** The whole memory as bytes; valid until the next allocation. */
  bytes(): Uint8Array {
    this.refresh();
    return this.u8View;
  }
  u32(): Uint32Array {
    this.refresh();
    return this.u32View;
  }
  i32(): Int32Array {
    this.refresh();
    return this.i32View;
  }
  view(): DataView {
    this.refresh();
    return this.dataView;
  }
}

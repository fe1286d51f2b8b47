// Reusable memory for frames a channel carries. A fresh megabyte per frame
// costs more than copying the frame into it: its pages are new to the
// process and each one faults on first touch (a profile of an uncapped
// loopback migration had the sender's frame copy and the receiver's record
// assembly among the largest costs, mostly page faults). A buffer handed
// back is handed out again, its pages already mapped.

/** Frames below this are not pooled (a fresh small buffer costs little). */
export const MIN_POOLED_BYTES = 16 * 1024;
/** Free memory a pool keeps at most; what is handed back beyond it is left to the garbage collector. */
export const DEFAULT_POOL_KEEP_BYTES = 32 * 2 ** 20;

/**
 * The buffer size a request of `bytes` takes: the next of 1, 1.25, 1.5 or
 * 1.75 times a power of two, so sizes that vary a little share buffers and
 * at most a fifth of one is unused.
 */
export function sizeClass(bytes: number): number {
  const power = 2 ** Math.floor(Math.log2(bytes));
  const quarter = power / 4;
  return power + Math.ceil((bytes - power) / quarter) * quarter;
}

export class FramePool {
  /** free buffers by size */
  private readonly free = new Map<number, ArrayBuffer[]>();
  /** buffers out, so a buffer handed back twice or one from elsewhere is not pooled */
  private readonly out = new WeakSet<ArrayBuffer>();
  private freeBytes = 0;

  constructor(private readonly keepBytes = DEFAULT_POOL_KEEP_BYTES) {}

  /** Memory held free for reuse, bytes. */
  get idleBytes(): number {
    return this.freeBytes;
  }

  /** `bytes` bytes, not zeroed: the caller fills them all before anyone reads them. */
  take(bytes: number): Uint8Array {
    if (!(Number.isInteger(bytes) && bytes >= 0)) throw new RangeError(`a frame buffer of ${bytes} bytes`);
    if (bytes < MIN_POOLED_BYTES) return new Uint8Array(bytes);
    const size = sizeClass(bytes);
    let buffer = this.free.get(size)?.pop() ?? this.larger(size);
    if (buffer) this.freeBytes -= buffer.byteLength;
    else buffer = Buffer.allocUnsafeSlow(size).buffer as ArrayBuffer;
    this.out.add(buffer);
    return new Uint8Array(buffer, 0, bytes);
  }

  /**
   * A free buffer of the smallest class above `size`, up to twice it. Frames vary in size (a PAGES
   * frame's zero pages carry no payload), and an uncapped migration's frames of 64 KiB to 1 MiB fall
   * in a dozen classes: kept to its own class, a frame took fresh memory whenever the frames before it
   * had other sizes (5-6k of the sender's 8k page faults over an idle 256 MiB migration).
   */
  private larger(size: number): ArrayBuffer | undefined {
    let best: ArrayBuffer[] | undefined;
    let bestSize = 2 * size + 1;
    for (const [free, list] of this.free) if (free > size && free < bestSize && list.length) [best, bestSize] = [list, free];
    return best?.pop();
  }

  /** `view` (from take()) is no longer read or written by anyone: its memory can go out again. */
  give(view: Uint8Array): void {
    const buffer = view.buffer as ArrayBuffer;
    if (!this.out.delete(buffer)) return;
    const size = buffer.byteLength;
    if (this.freeBytes + size > this.keepBytes) return;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buffer);
    this.freeBytes += size;
  }
}

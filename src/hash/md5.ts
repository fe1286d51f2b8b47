// MD5 digests (RFC 1321): one kernel call per batch of pages (hashed eight at
// a time in SIMD lanes, see assembly/md5.ts), and a streaming hasher for one
// buffer of any length (files, disk images).

import { PagemillError, checkBytes, checkInstance } from "../errors.js";
import { PageBatch, Scratch } from "../wasm/arena.js";
import { wasm } from "../wasm/module.js";

/** Bytes in an MD5 digest. */
export const MD5_BYTES = 16;

// The kernel's streaming state (layout in assembly/md5.ts), and the most input
// copied into linear memory per md5Update call, so that hashing a large
// buffer needs a bounded scratch region.
const STATE_BYTES = 96;
const DATA_OFFSET = 128;
const CHUNK_BYTES = 1 << 16;

let streamScratch: Scratch | undefined;
let digestScratch: Scratch | undefined;


/**
 * Streaming MD5: `update` with any number of chunks of any size, then
 * `digest` once. The state lives in the hasher (96 bytes), so any number of
 * hashers can be in progress at the same time.
 */
export class Md5 {
  private readonly state = new Uint8Array(STATE_BYTES);
  private done = false;

  constructor() {
    const { kernels, heap } = wasm();
    streamScratch ??= new Scratch();
    const statePtr = streamScratch.reserve(DATA_OFFSET);
    kernels.md5Init(statePtr);
    this.state.set(heap.bytes().subarray(statePtr, statePtr + STATE_BYTES));
  }

  /** Adds `chunk` to the message. */
  update(chunk: Uint8Array): this {
    checkBytes("chunk", chunk);
    this.checkOpen("update");
    const { kernels, heap } = wasm();
    // A view of linear memory itself (PageBatch.page(), say) is hashed where
    // it lies: copying it would need scratch space, and growing memory for
    // that would detach the view.
    const inPlace = chunk.buffer === heap.bytes().buffer;
    const { byteOffset, length } = chunk;
    const statePtr = streamScratch!.reserve(DATA_OFFSET + (inPlace ? 0 : Math.min(length, CHUNK_BYTES)));
    const mem = heap.bytes();
    mem.set(this.state, statePtr);
    if (inPlace) {
      kernels.md5Update(statePtr, byteOffset, length);
    } else {
      const dataPtr = statePtr + DATA_OFFSET;
      for (let at = 0; at < length; at += CHUNK_BYTES) {
        const piece = chunk.subarray(at, at + CHUNK_BYTES);
        mem.set(piece, dataPtr);
        kernels.md5Update(statePtr, dataPtr, piece.length);
      }
    }
    this.state.set(mem.subarray(statePtr, statePtr + STATE_BYTES));
    return this;
  }

  /** The 16-byte digest of everything passed to `update`. The hasher is finished afterwards. */
  digest(): Uint8Array {
    this.checkOpen("digest");
    this.done = true;
    const { kernels, heap } = wasm();
    const statePtr = streamScratch!.reserve(DATA_OFFSET + MD5_BYTES);
    const outPtr = statePtr + DATA_OFFSET;
    const mem = heap.bytes();
    mem.set(this.state, statePtr);
    kernels.md5Final(statePtr, outPtr);
    return mem.slice(outPtr, outPtr + MD5_BYTES);
  }

  private checkOpen(call: string): void {
    if (this.done) throw new PagemillError(`Md5.${call}() after digest(): the hasher is finished, make a new one`);
  }
}

/** MD5 of `data` (any length): 16 bytes, in the order md5sum prints them. */
export function md5(data: Uint8Array): Uint8Array {
  checkBytes("data", data);
  return new Md5().update(data).digest();
}

/**
 * MD5 of every loaded page of `batch` in one kernel call: digest k at bytes
 * [16k, 16k + 16) of the result. Writes into `out` when given (at least
 * 16 × count bytes) and returns it; otherwise returns a new array of
 * 16 × count bytes (empty for an empty batch).
 */
export function md5Batch(batch: PageBatch, out?: Uint8Array): Uint8Array {
  checkInstance("batch", batch, PageBatch);
  const bytes = batch.count * MD5_BYTES;
  const { kernels, heap } = wasm();
  if (out !== undefined) {
    checkBytes("out", out);
    if (out.length < bytes) throw new RangeError(`out has ${out.length} bytes, needs ${bytes} for ${batch.count} digests`);
    // Taking scratch space may grow memory, which would detach such a view.
    heap.checkOutside("out", out);
  }
  const target = out ?? new Uint8Array(bytes);
  if (bytes === 0) return target;
  digestScratch ??= new Scratch();
  const digestsPtr = digestScratch.reserve(bytes);
  kernels.md5Batch(batch.ptr, batch.pageSize, batch.count, digestsPtr);
  target.set(heap.bytes().subarray(digestsPtr, digestsPtr + bytes));
  return target;
}

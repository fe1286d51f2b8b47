// xxHash digests (XXH32, XXH64, XXH3-64) over WebAssembly kernels: one
// buffer at a time, streaming, or one digest per page of a PageBatch in one
// call. Digests are numbers (XXH32) or unsigned bigints (XXH64, XXH3); their
// canonical form is big-endian hex, as xxhsum prints it: `hex32`/`hex64` in
// ./digest.ts.

import { checkBytes, checkInstance, checkInteger } from "../errors.js";
import { asPageMemory, type PageMemory } from "../guest/pages.js";
import { PageBatch, Scratch } from "../wasm/arena.js";
import { wasm } from "../wasm/module.js";
import { Owned } from "../wasm/owned.js";

/** A 64-bit seed: a bigint in [0, 2^64) or a non-negative safe integer. */
export type Seed64 = bigint | number;

/** Input larger than this is hashed through a streaming state in chunks of this size. */
const CHUNK = 1 << 20;

let staging: Scratch | undefined;
let chunkState = 0;
let digestScratch: Scratch | undefined;


function seed32(seed: number): number {
  checkInteger("seed", seed, 0, 0xffffffff);
  return seed;
}

function seed64(seed: Seed64): bigint {
  if (typeof seed === "bigint") {
    if (seed < 0n || seed >= 1n << 64n) throw new RangeError(`seed must be in [0, 2^64), got ${seed}`);
    return seed;
  }
  checkInteger("seed", seed, 0, Number.MAX_SAFE_INTEGER);
  return BigInt(seed);
}

/** Copies `data[from, from + n)` into the staging region; returns its pointer. */
function stage(data: Uint8Array, from: number, n: number): number {
  staging ??= new Scratch();
  const ptr = staging.reserve(Math.max(n, 64));
  wasm().heap.bytes().set(data.subarray(from, from + n), ptr);
  return ptr;
}

/** Feeds `data` to the streaming state at `state` in staged chunks. */
function feed(state: number, data: Uint8Array, update: (state: number, ptr: number, len: number) => void): void {
  for (let at = 0; at < data.length; at += CHUNK) {
    const n = Math.min(CHUNK, data.length - at);
    update(state, stage(data, at, n), n);
  }
}

/**
 * Hashes one buffer: one kernel call on a staged copy when it fits a chunk,
 * else through the module's chunk state (the same digest either way).
 */
function oneShot<S, D>(
  data: Uint8Array,
  seed: S,
  hash: (ptr: number, len: number, seed: S) => D,
  reset: (state: number, seed: S) => void,
  update: (state: number, ptr: number, len: number) => void,
  digest: (state: number) => D,
): D {
  checkBytes("data", data);
  const { kernels, heap } = wasm();
  data = heap.outside(data);
  if (data.length <= CHUNK) return hash(stage(data, 0, data.length), data.length, seed);
  chunkState ||= heap.alloc(kernels.xxhStateSize());
  reset(chunkState, seed);
  feed(chunkState, data, update);
  return digest(chunkState);
}

const u64 = (x: bigint): bigint => BigInt.asUintN(64, x);

/** XXH32 of `data` (seed: a 32-bit unsigned integer). */
export function xxh32(data: Uint8Array, seed = 0): number {
  const k = wasm().kernels;
  const h = oneShot(data, seed32(seed), k.xxh32, k.xxh32Reset, k.xxh32Update, k.xxh32Digest);
  return h >>> 0;
}

/** XXH64 of `data`. */
export function xxh64(data: Uint8Array, seed: Seed64 = 0n): bigint {
  const k = wasm().kernels;
  return u64(oneShot(data, seed64(seed), k.xxh64, k.xxh64Reset, k.xxh64Update, k.xxh64Digest));
}

/** XXH3-64 of `data` (with the default secret; derived from the seed when one is given). */
export function xxh3(data: Uint8Array, seed: Seed64 = 0n): bigint {
  const k = wasm().kernels;
  return u64(oneShot(data, seed64(seed), k.xxh3, k.xxh3Reset, k.xxh3Update, k.xxh3Digest));
}

/** What distinguishes one streaming hasher from another: its seed check and its three kernels. */
interface HasherOps<S, D> {
  checkSeed(seed: S): S;
  reset(state: number, seed: S): void;
  update(state: number, ptr: number, len: number): void;
  digest(state: number): D;
}

/**
 * A streaming digest whose state lives in WebAssembly memory: `update` with
 * chunks of any length, `digest` at any point (the state keeps going),
 * `reset` to start over, `dispose` to give the memory back.
 */
class StreamingHasher<S, D> extends Owned {
  private readonly state: number;
  private seed: S;

  protected constructor(
    private readonly ops: HasherOps<S, D>,
    seed: S,
  ) {
    super();
    const { kernels, heap } = wasm();
    this.state = heap.alloc(kernels.xxhStateSize());
    this.seed = ops.checkSeed(seed);
    ops.reset(this.state, this.seed);
  }

  update(data: Uint8Array): this {
    this.live();
    checkBytes("data", data);
    feed(this.state, wasm().heap.outside(data), this.ops.update);
    return this;
  }

  digest(): D {
    this.live();
    return this.ops.digest(this.state);
  }

  /** Starts over, with the same seed or a new one. */
  reset(seed: S = this.seed): this {
    this.live();
    this.seed = this.ops.checkSeed(seed);
    this.ops.reset(this.state, this.seed);
    return this;
  }

  protected release(): void {
    wasm().heap.release(this.state);
  }
}

const XXH32_OPS: HasherOps<number, number> = {
  checkSeed: seed32,
  reset: (state, seed) => wasm().kernels.xxh32Reset(state, seed),
  update: (state, ptr, len) => wasm().kernels.xxh32Update(state, ptr, len),
  digest: (state) => wasm().kernels.xxh32Digest(state) >>> 0,
};

const XXH64_OPS: HasherOps<Seed64, bigint> = {
  checkSeed: seed64,
  reset: (state, seed) => wasm().kernels.xxh64Reset(state, seed64(seed)),
  update: (state, ptr, len) => wasm().kernels.xxh64Update(state, ptr, len),
  digest: (state) => u64(wasm().kernels.xxh64Digest(state)),
};

const XXH3_OPS: HasherOps<Seed64, bigint> = {
  checkSeed: seed64,
  reset: (state, seed) => wasm().kernels.xxh3Reset(state, seed64(seed)),
  update: (state, ptr, len) => wasm().kernels.xxh3Update(state, ptr, len),
  digest: (state) => u64(wasm().kernels.xxh3Digest(state)),
};

export class Xxh32Hasher extends StreamingHasher<number, number> {
  constructor(seed = 0) {
    super(XXH32_OPS, seed);
  }
}

export class Xxh64Hasher extends StreamingHasher<Seed64, bigint> {
  constructor(seed: Seed64 = 0n) {
    super(XXH64_OPS, seed);
  }
}

export class Xxh3Hasher extends StreamingHasher<Seed64, bigint> {
  constructor(seed: Seed64 = 0n) {
    super(XXH3_OPS, seed);
  }
}

export interface BatchDigestOptions<A> {
  /** Seed for every page (default 0). */
  seed?: A extends Uint32Array ? number : Seed64;
  /** Array to write the digests into (length ≥ batch.count); a new one of batch.count otherwise. */
  out?: A;
}

/** Runs a batch kernel into the digest scratch and copies `width`-byte digests into `out`. */
function batchDigests<A extends Uint32Array | BigUint64Array>(
  batch: PageBatch,
  given: A | undefined,
  make: (count: number) => A,
  width: number,
  run: (outPtr: number) => void,
): A {
  checkInstance("batch", batch, PageBatch);
  const n = batch.count;
  const out = given ?? make(n);
  if (out.length < n) throw new RangeError(`out has ${out.length} entries, fewer than the batch's ${n} pages`);
  digestScratch ??= new Scratch();
  const ptr = digestScratch.reserve(Math.max(n * width, 64));
  run(ptr);
  new Uint8Array(out.buffer, out.byteOffset, n * width).set(wasm().heap.bytes().subarray(ptr, ptr + n * width));
  return out;
}

/** XXH32 of every loaded page of `batch`: digest k in slot k. */
export function xxh32Batch(batch: PageBatch, options: BatchDigestOptions<Uint32Array> = {}): Uint32Array {
  const seed = seed32(options.seed ?? 0);
  return batchDigests(batch, options.out, (n) => new Uint32Array(n), 4, (ptr) => wasm().kernels.xxh32Batch(batch.ptr, batch.pageSize, batch.count, seed, ptr));
}

/** XXH64 of every loaded page of `batch`: digest k in slot k. */
export function xxh64Batch(batch: PageBatch, options: BatchDigestOptions<BigUint64Array> = {}): BigUint64Array {
  const seed = seed64(options.seed ?? 0n);
  return batchDigests(batch, options.out, (n) => new BigUint64Array(n), 8, (ptr) => wasm().kernels.xxh64Batch(batch.ptr, batch.pageSize, batch.count, seed, ptr));
}

/** XXH3-64 of every loaded page of `batch`: digest k in slot k. */
export function xxh3Batch(batch: PageBatch, options: BatchDigestOptions<BigUint64Array> = {}): BigUint64Array {
  const seed = seed64(options.seed ?? 0n);
  return batchDigests(batch, options.out, (n) => new BigUint64Array(n), 8, (ptr) => wasm().kernels.xxh3Batch(batch.ptr, batch.pageSize, batch.count, seed, ptr));
}

/**
 * XXH3-64 under `seed` of every page of `memory` (pages of `batch.pageSize`
 * bytes), loaded through `batch` a batch at a time: `visit(first, digests)`
 * sees each batch's digests (its pages still loaded in `batch`) before the
 * next is loaded. `digests` is reused between calls.
 */
export function xxh3Pages(memory: Uint8Array | PageMemory, batch: PageBatch, seed: Seed64, visit: (first: number, digests: BigUint64Array) => void): void {
  const { pageSize: ps, capacity } = batch;
  const pages = asPageMemory(memory, ps);
  const digests = new BigUint64Array(capacity);
  for (let first = 0; first < pages.pageCount; first += capacity) {
    const n = Math.min(capacity, pages.pageCount - first);
    batch.loadRange(pages, first, n);
    visit(first, xxh3Batch(batch, { seed, out: digests.subarray(0, n) }));
  }
}

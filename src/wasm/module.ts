// Loads pagemill's WebAssembly module once per thread and hands out its
// kernels. `await init()` once; every kernel call after it is synchronous.

import { PagemillError } from "../errors.js";
import { Heap } from "./heap.js";

/** The raw kernel exports: pointers and counts in, status codes out. */
export interface KernelExports {
  readonly memory: WebAssembly.Memory;
  heapBase(): number;
  zeroScan(pagesPtr: number, pageSize: number, count: number, flagsPtr: number): number;
  rawFrameBody(pagesPtr: number, pageSize: number, count: number, indicesPtr: number, bodyPtr: number, encodingsPtr: number, lengthsPtr: number): number;
  bitmapCount(ptr: number, nbits: number): number;
  bitmapExtract(ptr: number, nbits: number, from: number, outPtr: number, maxOut: number): number;
  bitmapNextSet(ptr: number, nbits: number, from: number): number;
  bitmapFill(ptr: number, from: number, to: number, value: number): void;
  bitmapOr(dst: number, src: number, nwords: number): void;
  bitmapAndNot(dst: number, src: number, nwords: number): void;
  bitmapSync(dst: number, src: number, nwords: number): number;
  mecomEncodeBatch(pagesPtr: number, pageSize: number, count: number, outPtr: number, tablePtr: number, minHits: number, stride: number, evidencePtr: number): number;
  mecomEvidenceBytes(): number;
  mecomDecodeBatch(dataPtr: number, dataLen: number, tablePtr: number, count: number, pagesPtr: number, pageSize: number, errPtr: number): number;
  wkdmCompressBatch(pagesPtr: number, count: number, budget: number, outPtr: number, tablePtr: number): number;
  wkdmDecompressBatch(dataPtr: number, dataLen: number, tablePtr: number, count: number, pagesPtr: number, pageSize: number, errPtr: number): number;
  wkdmHitRateBatch(pagesPtr: number, count: number, stride: number, hitsPtr: number): number;
  xbzrleEncodeBatch(oldTable: number, newPtr: number, pageSize: number, count: number, dlen: number, outPtr: number, tablePtr: number): number;
  xbzrleDecodeBatch(dataPtr: number, dataLen: number, tablePtr: number, count: number, pagesPtr: number, pageSize: number, errPtr: number): number;
  lz4Compress(src: number, srcLen: number, dst: number, dstCap: number): number;
  lz4CompressBatch(pagesPtr: number, pageSize: number, count: number, outPtr: number, tablePtr: number): number;
  lz4Decompress(src: number, srcLen: number, dst: number, dstCap: number): number;
  lz4DecompressBatch(dataPtr: number, dataLen: number, tablePtr: number, count: number, pagesPtr: number, pageSize: number, errPtr: number): number;
  xxhStateSize(): number;
  xxh32(ptr: number, len: number, seed: number): number;
  xxh32Batch(pagesPtr: number, pageSize: number, count: number, seed: number, outPtr: number): number;
  xxh32Reset(state: number, seed: number): void;
  xxh32Update(state: number, ptr: number, len: number): void;
  xxh32Digest(state: number): number;
  xxh64(ptr: number, len: number, seed: bigint): bigint;
  xxh64Batch(pagesPtr: number, pageSize: number, count: number, seed: bigint, outPtr: number): number;
  xxh64Reset(state: number, seed: bigint): void;
  xxh64Update(state: number, ptr: number, len: number): void;
  xxh64Digest(state: number): bigint;
  xxh3(ptr: number, len: number, seed: bigint): bigint;
  xxh3Batch(pagesPtr: number, pageSize: number, count: number, seed: bigint, outPtr: number): number;
  xxh3Reset(state: number, seed: bigint): void;
  xxh3Update(state: number, ptr: number, len: number): void;
  xxh3Digest(state: number): bigint;
  pagesEqual(a: number, b: number, len: number): number;
  dedupPackBatch(pagesPtr: number, pageSize: number, count: number, refsPtr: number, outPtr: number, tablePtr: number): number;
  md5Batch(pagesPtr: number, pageSize: number, count: number, digestsPtr: number): number;
  md5Init(statePtr: number): void;
  md5Update(statePtr: number, dataPtr: number, len: number): number;
  md5Final(statePtr: number, outPtr: number): number;
}

/** One instantiated module: its kernels and the heap over its memory. */
export interface Wasm {
  readonly kernels: KernelExports;
  readonly heap: Heap;
}

let current: Wasm | undefined;
let pending: Promise<Wasm> | undefined;

const wasmUrl = new URL("../../build/pagemill.wasm", import.meta.url);

function adopt(exports: unknown): Wasm {
  const kernels = exports as KernelExports;
  current = { kernels, heap: new Heap(kernels.memory, kernels.heapBase()) };
  return current;
}

async function loadBytes(): Promise<BufferSource> {
  if (wasmUrl.protocol === "file:") {
    // Reached only under Node: a browser never evaluates this import.
    const { readFile } = await import("node:fs/promises");
    return readFile(wasmUrl);
  }
  const response = await fetch(wasmUrl);
  if (!response.ok) throw new PagemillError(`cannot load ${wasmUrl.href}: HTTP ${response.status}`);
  return response.arrayBuffer();
}

/**
 * Compiles and instantiates the module (once; later calls return the same
 * instance). Node reads `build/pagemill.wasm` beside the package; browsers
 * fetch it. Pass bytes or a compiled module to use those instead.
 */
export function init(source?: BufferSource | WebAssembly.Module): Promise<Wasm> {
  if (current) return Promise.resolve(current);
  pending ??= (async () => {
    const input = source ?? (await loadBytes());
    // The kernels import nothing and are called directly (no loader glue), so the module loads in any host.
    const module = input instanceof WebAssembly.Module ? input : await WebAssembly.compile(input);
    return adopt((await WebAssembly.instantiate(module, {})).exports);
  })();
  return pending;
}

/** Synchronous init for hosts that already hold the module's bytes (workers, bundles). */
export function initSync(source: BufferSource | WebAssembly.Module): Wasm {
  if (current) return current;
  const module = source instanceof WebAssembly.Module ? source : new WebAssembly.Module(source);
  return adopt(new WebAssembly.Instance(module, {}).exports);
}

/** The instance; throws when `init()` has not completed. */
export function wasm(): Wasm {
  if (!current) throw new PagemillError("pagemill is not initialised: call `await init()` first");
  return current;
}

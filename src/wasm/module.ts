// Loads pagemill's WebAssembly module once per thread and hands out its
// kernels. `await init()` once; every kernel call after it is synchronous.

import * as loader from "@assemblyscript/loader";
import { PagemillError } from "../errors.js";
import { Heap } from "./heap.js";

/** The raw kernel exports: pointers and counts in, status codes out. */
export interface KernelExports {
  readonly memory: WebAssembly.Memory;
  heapBase(): number;
  zeroScan(pagesPtr: number, pageSize: number, count: number, flagsPtr: number): number;
  bitmapCount(ptr: number, nbits: number): number;
  bitmapExtract(ptr: number, nbits: number, from: number, outPtr: number, maxOut: number): number;
  bitmapNextSet(ptr: number, nbits: number, from: number): number;
  bitmapFill(ptr: number, from: number, to: number, value: number): void;
  bitmapOr(dst: number, src: number, nwords: number): void;
  bitmapAndNot(dst: number, src: number, nwords: number): void;
  bitmapSync(dst: number, src: number, nwords: number): number;
  lz4Compress(src: number, srcLen: number, dst: number, dstCap: number): number;
  lz4CompressBatch(pagesPtr: number, pageSize: number, count: number, outPtr: number, lengthsPtr: number): number;
  lz4Decompress(src: number, srcLen: number, dst: number, dstCap: number): number;
  lz4DecompressBatch(dataPtr: number, dataLen: number, offsetsPtr: number, lengthsPtr: number, count: number, pagesPtr: number, pageSize: number, resultsPtr: number): number;
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

async function loadBytes(): Promise<ArrayBuffer | Response> {
  if (wasmUrl.protocol === "file:") {
    const { readFile } = await import("node:fs/promises");
    const bytes = await readFile(wasmUrl);
    return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  }
  return fetch(wasmUrl);
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
    const result = await loader.instantiate(input as ArrayBuffer, {});
    return adopt(result.exports);
  })();
  return pending;
}

/** Synchronous init for hosts that already hold the module's bytes (workers, bundles). */
export function initSync(source: BufferSource | WebAssembly.Module): Wasm {
  if (current) return current;
  const module = source instanceof WebAssembly.Module ? source : new WebAssembly.Module(source);
  return adopt(loader.instantiateSync(module, {}).exports);
}

/** The instance; throws when `init()` has not completed. */
export function wasm(): Wasm {
  if (!current) throw new PagemillError("pagemill is not initialised: call `await init()` first");
  return current;
}

// Zero-page detection: one kernel call over a whole batch.

import { checkBytes, checkInstance, checkPageSize } from "../errors.js";
import { PageBatch, Scratch } from "../wasm/arena.js";
import { wasm } from "../wasm/module.js";

export interface ZeroScan {
  /** Number of all-zero pages among the batch's loaded pages. */
  readonly zeroCount: number;
  /** flags[k] is 1 when slot k is all zero, 0 otherwise (a copy, safe to keep). */
  readonly flags: Uint8Array;
}

let flagScratch: Scratch | undefined;

/** Flags every zero page of the batch in one WASM call. */
export function scanZeroPages(batch: PageBatch): ZeroScan {
  checkInstance("batch", batch, PageBatch);
  const { kernels, heap } = wasm();
  flagScratch ??= new Scratch();
  const flagsPtr = flagScratch.reserve(batch.capacity);
  const zeroCount = kernels.zeroScan(batch.ptr, batch.pageSize, batch.count, flagsPtr);
  return { zeroCount, flags: heap.bytes().slice(flagsPtr, flagsPtr + batch.count) };
}

let single: PageBatch | undefined;

/** True when `page` (one page: a power of two 512..65536 bytes) is all zero. */
export function isZeroPage(page: Uint8Array): boolean {
  checkBytes("page", page);
  checkPageSize(page.byteLength, "page.byteLength");
  page = wasm().heap.outside(page);
  if (!single || single.pageSize !== page.byteLength) {
    single?.dispose();
    single = new PageBatch(1, page.byteLength);
  }
  return scanZeroPages(single.set(page)).zeroCount === 1;
}

// The end-of-migration check: the destination's memory must equal the
// source's (for pre-copy, the source's at switch-over; after post-copy, the
// source's at switch-over with the destination's own writes since, which is
// what the simulated program's memory holds). Page digests (XXH3-64, one
// kernel call per batch) are compared first; pages whose digests differ are
// compared byte for byte, and any that differ are named in the error.

import { checkBytes, checkPageSize } from "../errors.js";
import { xxh3Batch } from "../hash/xxhash.js";
import { PageBatch } from "../wasm/arena.js";
import { VerificationError } from "../errors.js";

const VERIFY_BATCH_PAGES = 1024;
const NAMED_PAGES = 16;

/**
 * Compares `actual` with `expected` page by page; returns the number of pages
 * compared. Throws VerificationError naming the pages that differ.
 */
export function verifyMemory(expected: Uint8Array, actual: Uint8Array, pageSize: number, what = "page"): number {
  checkBytes("expected", expected);
  checkBytes("actual", actual);
  checkPageSize(pageSize);
  if (expected.byteLength !== actual.byteLength) {
    throw new VerificationError(`destination memory has ${actual.byteLength} bytes, the source ${expected.byteLength}`, []);
  }
  const pageCount = Math.floor(expected.byteLength / pageSize);
  const a = new PageBatch(Math.min(VERIFY_BATCH_PAGES, Math.max(1, pageCount)), pageSize);
  const b = new PageBatch(a.capacity, pageSize);
  const da = new BigUint64Array(a.capacity);
  const db = new BigUint64Array(a.capacity);
  const differ: number[] = [];
  try {
    for (let first = 0; first < pageCount; first += a.capacity) {
      const count = Math.min(a.capacity, pageCount - first);
      const from = first * pageSize;
      const to = from + count * pageSize;
      xxh3Batch(a.set(expected.subarray(from, to)), { out: da });
      xxh3Batch(b.set(actual.subarray(from, to)), { out: db });
      for (let k = 0; k < count; k++) {
        if (da[k] === db[k]) continue;
        const at = from + k * pageSize;
        const x = Buffer.from(expected.buffer, expected.byteOffset + at, pageSize);
        const y = Buffer.from(actual.buffer, actual.byteOffset + at, pageSize);
        if (!x.equals(y)) differ.push(first + k);
      }
    }
  } finally {
    a.dispose();
    b.dispose();
  }
  if (differ.length) {
    const named = differ.slice(0, NAMED_PAGES).join(", ");
    const more = differ.length > NAMED_PAGES ? ` and ${differ.length - NAMED_PAGES} more` : "";
    throw new VerificationError(`${differ.length} ${what}(s) differ between source and destination: ${named}${more}`, differ);
  }
  return pageCount;
}

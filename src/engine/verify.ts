// The end-of-migration check: the destination's memory must equal the
// source's (for pre-copy, the source's at switch-over; after post-copy, the
// source's at switch-over with the destination's own writes since, which is
// what the simulated program's memory holds). Spans of pages are compared
// byte for byte in place (memcmp: no copy into WebAssembly memory and no
// hashing, which cost a third of a raw pre-copy's wall time); the pages of a
// span that differs are compared one by one, and any that differ are named in
// the error.

import { checkBytes, checkPageSize } from "../errors.js";
import { VerificationError } from "../errors.js";

const VERIFY_SPAN_PAGES = 1024;
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
  const bytes = (memory: Uint8Array, page: number, count: number) => Buffer.from(memory.buffer, memory.byteOffset + page * pageSize, count * pageSize);
  const differ: number[] = [];
  for (let first = 0; first < pageCount; first += VERIFY_SPAN_PAGES) {
    const count = Math.min(VERIFY_SPAN_PAGES, pageCount - first);
    if (bytes(expected, first, count).equals(bytes(actual, first, count))) continue;
    for (let page = first; page < first + count; page++) {
      if (!bytes(expected, page, 1).equals(bytes(actual, page, 1))) differ.push(page);
    }
  }
  if (differ.length) {
    const named = differ.slice(0, NAMED_PAGES).join(", ");
    const more = differ.length > NAMED_PAGES ? ` and ${differ.length - NAMED_PAGES} more` : "";
    throw new VerificationError(`${differ.length} ${what}(s) differ between source and destination: ${named}${more}`, differ);
  }
  return pageCount;
}

// The end-of-migration check: the destination's memory must equal the
// source's (for pre-copy, the source's at switch-over; after post-copy, the
// source's at switch-over with the destination's own writes since, which is
// what the simulated program's memory holds). Spans of pages are compared
// byte for byte (memcmp: no copy into WebAssembly memory and no hashing,
// which cost a third of a raw pre-copy's wall time; in place for flat
// memory), pages known zero at both ends not at all; the pages of a span
// that differs are compared one by one, and any that differ are named in the
// error.

import { checkPageSize, VerificationError } from "../errors.js";
import { asPageMemory, differingPages, type PageMemory } from "../guest/pages.js";

const NAMED_PAGES = 16;

/**
 * Compares `actual` with `expected` page by page; returns the number of pages
 * compared. Throws VerificationError naming the pages that differ.
 */
export function verifyMemory(expected: Uint8Array | PageMemory, actual: Uint8Array | PageMemory, pageSize: number, what = "page"): number {
  checkPageSize(pageSize);
  const a = asPageMemory(expected, pageSize, "expected");
  const b = asPageMemory(actual, pageSize, "actual");
  if (a.byteLength !== b.byteLength) {
    throw new VerificationError(`destination memory has ${b.byteLength} bytes, the source ${a.byteLength}`, []);
  }
  const differ = differingPages(a, b);
  if (differ.length) {
    const named = differ.slice(0, NAMED_PAGES).join(", ");
    const more = differ.length > NAMED_PAGES ? ` and ${differ.length - NAMED_PAGES} more` : "";
    throw new VerificationError(`${differ.length} ${what}(s) differ between source and destination: ${named}${more}`, differ);
  }
  return a.pageCount;
}

// Byte comparison for the dedup index: a candidate found by its fast digest
// is only used after its bytes are confirmed equal to the page's; and the
// layout of what the dedup stage sends.

import { DEDUP, RAW, encodeBatch, encoded } from "./table";

/** 1 when the `len` bytes at `a` and `b` are equal, else 0. Any `len`. */
export function pagesEqual(a: usize, b: usize, len: usize): u32 {
  const vectorEnd = a + (len & ~(<usize>63));
  while (a < vectorEnd) {
    const d0 = v128.xor(v128.load(a), v128.load(b));
    const d1 = v128.xor(v128.load(a, 16), v128.load(b, 16));
    const d2 = v128.xor(v128.load(a, 32), v128.load(b, 32));
    const d3 = v128.xor(v128.load(a, 48), v128.load(b, 48));
    if (v128.any_true(v128.or(v128.or(d0, d1), v128.or(d2, d3)))) return 0;
    a += 64;
    b += 64;
  }
  const end = a + (len & 63);
  while (a < end) {
    if (load<u8>(a) != load<u8>(b)) return 0;
    a++;
    b++;
  }
  return 1;
}

/** A PageEncoder: a DEDUP reference (4 bytes, little-endian) when refs[k] at `refsPtr` names a page, else RAW. */
function referenceOrRaw(k: u32, page: usize, dst: usize, pageSize: u32, refsPtr: usize): u64 {
  const ref = load<i32>(refsPtr + (<usize>k << 2));
  if (ref < 0) {
    memory.copy(dst, page, pageSize);
    return encoded(RAW, pageSize);
  }
  store<i32>(dst, ref);
  return encoded(DEDUP, 4);
}

/**
 * Lays out a batch as the dedup stage sends it: page k of the `count` pages
 * at `pagesPtr` goes as DEDUP when refs[k] (i32, at `refsPtr`) names the page
 * the destination copies it from, or RAW when refs[k] is -1. Payloads go back
 * to back from `outPtr`, the page table (assembly/table.ts) to `tablePtr`.
 * Returns the bytes written.
 */
export function dedupPackBatch(pagesPtr: usize, pageSize: u32, count: u32, refsPtr: usize, outPtr: usize, tablePtr: usize): u32 {
  return encodeBatch(pagesPtr, pageSize, count, outPtr, tablePtr, refsPtr, referenceOrRaw);
}

// MECOM (seed 002): classify each page by its content and compress each class
// with its own algorithm, a whole batch per call.
//
//   zero page                  → ZERO        no payload
//   one repeated 32-bit word   → SAME_VALUE  4 bytes (the word)
//   strong regularity          → WKDM        (4 KiB pages; LZ4 if WKdm does not fit)
//   weak regularity            → LZ4
//   neither shrinks it         → RAW
//
// "Strong regularity" is the share of sampled words that are zero or hit
// WKdm's 16-word dictionary (exactly or in their high 22 bits), measured by
// wkdmPageHits on one 16-word block in every `stride`, giving up as soon as
// the page can no longer reach the threshold. The threshold is
// the caller's (src/codecs/mecom.ts documents how it was chosen).
//
// Output table, 12 bytes per page: u32 wire id, u32 payload offset, u32
// payload length. Wire ids as in src/codecs/codec.ts.

import { bytesAreZero } from "./zero";
import { wkdmCompressBatch, wkdmDecompressBatch, wkdmPageHits } from "./wkdm";
import { lz4Compress, lz4Decompress } from "./lz4";

const RAW: u32 = 0;
const ZERO: u32 = 1;
const SAME_VALUE: u32 = 2;
const WKDM: u32 = 3;
const LZ4: u32 = 4;

const WKDM_PAGE: u32 = 4096;
const WKDM_TABLE = memory.data(16, 16);
const WKDM_ERROR = memory.data(8, 8);

/** True when every 32-bit word of the page equals its first. */
// @ts-ignore: decorator
@inline
function isSameValue(page: usize, size: usize): bool {
  const v = v128.load32_splat(page);
  const end = page + size;
  for (let p = page; p < end; p += 64) {
    const a = v128.and(i32x4.eq(v128.load(p), v), i32x4.eq(v128.load(p, 16), v));
    const b = v128.and(i32x4.eq(v128.load(p, 32), v), i32x4.eq(v128.load(p, 48), v));
    if (!v128.all_true<i32>(v128.and(a, b))) return false;
  }
  return true;
}

/**
 * Encodes `count` pages of `pageSize` bytes at `pagesPtr`. Payloads go back
 * to back from `outPtr`, which must hold count × pageSize + 64 bytes; the
 * table at `tablePtr` gets 12 bytes per page. A page goes to WKdm when at
 * least `minHits` of the sampled words hit (more than are sampled disables WKdm).
 * Returns the payload bytes written.
 */
export function mecomEncodeBatch(pagesPtr: usize, pageSize: u32, count: u32, outPtr: usize, tablePtr: usize, minHits: u32, stride: u32): u32 {
  let cursor: u32 = 0;
  const ps = <usize>pageSize;
  if (stride == 0) stride = 1;
  const sampled: u32 = 16 * ((WKDM_PAGE + (stride << 6) - 1) / (stride << 6));
  const wkdmOk = pageSize == WKDM_PAGE && minHits <= sampled;
  for (let k: u32 = 0; k < count; k++) {
    const page = pagesPtr + <usize>k * ps;
    const dst = outPtr + cursor;
    let encoding = RAW;
    let length: u32 = 0;
    if (bytesAreZero(page, ps)) {
      encoding = ZERO;
    } else if (isSameValue(page, ps)) {
      encoding = SAME_VALUE;
      store<u32>(dst, load<u32>(page));
      length = 4;
    } else {
      if (wkdmOk && wkdmPageHits(page, stride, sampled - minHits) >= minHits) {
        wkdmCompressBatch(page, 1, WKDM_PAGE, dst, WKDM_TABLE, false);
        const status = load<i32>(WKDM_TABLE);
        if (status > 0 && <u32>status < pageSize) {
          encoding = WKDM;
          length = <u32>status;
        }
      }
      if (encoding == RAW) {
        length = lz4Compress(page, pageSize, dst, pageSize - 1);
        if (length != 0) {
          encoding = LZ4;
        } else {
          memory.copy(dst, page, ps);
          length = pageSize;
        }
      }
    }
    const entry = tablePtr + <usize>k * 12;
    store<u32>(entry, encoding);
    store<u32>(entry, cursor, 4);
    store<u32>(entry, length, 8);
    cursor += length;
  }
  return cursor;
}

/** Fills `size` bytes with one repeated 32-bit word. */
// @ts-ignore: decorator
@inline
function fillWord(dst: usize, size: usize, value: u32): void {
  const v = i32x4.splat(value);
  for (let at: usize = 0; at < size; at += 16) v128.store(dst + at, v);
}

/**
 * Decodes `count` pages into consecutive `pageSize` slots at `pagesPtr`, from
 * the `dataLen` bytes at `dataPtr` and the table at `tablePtr` (12 bytes per
 * page, as mecomEncodeBatch writes it). Every extent is checked against the
 * data and every decoder against the slot. Returns -1 when all pages decoded,
 * else the index of the first page rejected (slots before it are written;
 * nothing past its slot is).
 */
export function mecomDecodeBatch(dataPtr: usize, dataLen: u32, tablePtr: usize, count: u32, pagesPtr: usize, pageSize: u32): i32 {
  const ps = <usize>pageSize;
  for (let k: u32 = 0; k < count; k++) {
    const entry = tablePtr + <usize>k * 12;
    const encoding = load<u32>(entry);
    const offset = load<u32>(entry, 4);
    const length = load<u32>(entry, 8);
    const dst = pagesPtr + <usize>k * ps;
    if (<u64>offset + length > <u64>dataLen) return k;
    const src = dataPtr + offset;
    let ok = false;
    if (encoding == ZERO) {
      ok = length == 0;
      if (ok) memory.fill(dst, 0, ps);
    } else if (encoding == SAME_VALUE) {
      ok = length == 4;
      if (ok) fillWord(dst, ps, load<u32>(src));
    } else if (encoding == RAW) {
      ok = length == pageSize;
      if (ok) memory.copy(dst, src, ps);
    } else if (encoding == LZ4) {
      ok = lz4Decompress(src, length, dst, pageSize) == <i32>pageSize;
    } else if (encoding == WKDM && pageSize == WKDM_PAGE) {
      // One page through the WKdm batch decoder: its table is this entry's fields.
      store<u8>(WKDM_TABLE, <u8>WKDM);
      store<u32>(WKDM_TABLE, 0, 4);
      store<u32>(WKDM_TABLE, length, 8);
      ok = wkdmDecompressBatch(src, length, WKDM_TABLE, WKDM_TABLE + 4, WKDM_TABLE + 8, 1, dst, WKDM_ERROR) == 0;
    }
    if (!ok) return k;
  }
  return -1;
}

// XBZRLE, byte-compatible with QEMU's migration/xbzrle.c.
//
// A delta is the XOR of the old and new versions of a page, written as pairs
// (zero-run length, non-zero-run length, that many bytes of the NEW page).
// Lengths are ULEB128 of one or two bytes (at most 0x3fff). Runs are maximal;
// only the first zero run may be empty; the trailing zero run is left out.
// The encoder returns the delta's size, 0 for an unchanged page, or -1 when
// the delta would pass `dlen` (QEMU's overflow checks, in QEMU's order, so
// -1 comes back exactly where QEMU's returns it). A run longer than 0x3fff
// (possible only for pages over 16 KiB) also gives -1: QEMU cannot carry it.
//
// Runs are found 64 bytes at a time: four 16-byte compares give a 64-bit mask
// of the bytes that differ, and count-trailing-zeros on that mask finds where
// a run ends, so a sparse page costs one compare pass plus a few bit tricks
// per change. Long equal stretches are skipped without building masks.

import { BAD_ENCODING, BAD_RAW_LENGTH, RAW, XBZRLE, XBZRLE_REASON_BASE, encodeBatch, encoded, encodingOf, extentReason, lengthOf, offsetOf, reject } from "./table";

const MAX_RUN: u32 = 0x3fff;
const ALL: u64 = ~(<u64>0);

/** Bit j set when byte j of the 64 bytes at `o` and `n` differ. */
// @ts-ignore: decorator
@inline
function differMask(o: usize, n: usize): u64 {
  const e0 = <u64>(<u32>i8x16.bitmask(i8x16.eq(v128.load(o), v128.load(n))));
  const e1 = <u64>(<u32>i8x16.bitmask(i8x16.eq(v128.load(o, 16), v128.load(n, 16))));
  const e2 = <u64>(<u32>i8x16.bitmask(i8x16.eq(v128.load(o, 32), v128.load(n, 32))));
  const e3 = <u64>(<u32>i8x16.bitmask(i8x16.eq(v128.load(o, 48), v128.load(n, 48))));
  return ~(e0 | (e1 << 16) | (e2 << 32) | (e3 << 48));
}

/** True when the 64 bytes at `o` and `n` are equal. */
// @ts-ignore: decorator
@inline
function chunkEqual(o: usize, n: usize): bool {
  const a = v128.or(v128.xor(v128.load(o), v128.load(n)), v128.xor(v128.load(o, 16), v128.load(n, 16)));
  const b = v128.or(v128.xor(v128.load(o, 32), v128.load(n, 32)), v128.xor(v128.load(o, 48), v128.load(n, 48)));
  return !v128.any_true(v128.or(a, b));
}

/** True when the 128 bytes at `o` and `n` are equal. */
// @ts-ignore: decorator
@inline
function blockEqual(o: usize, n: usize): bool {
  const a = v128.or(v128.xor(v128.load(o), v128.load(n)), v128.xor(v128.load(o, 16), v128.load(n, 16)));
  const b = v128.or(v128.xor(v128.load(o, 32), v128.load(n, 32)), v128.xor(v128.load(o, 48), v128.load(n, 48)));
  const c = v128.or(v128.xor(v128.load(o, 64), v128.load(n, 64)), v128.xor(v128.load(o, 80), v128.load(n, 80)));
  const e = v128.or(v128.xor(v128.load(o, 96), v128.load(n, 96)), v128.xor(v128.load(o, 112), v128.load(n, 112)));
  return !v128.any_true(v128.or(v128.or(a, b), v128.or(c, e)));
}

/**
 * Copies exactly n >= 1 bytes between regions that do not overlap. Short runs
 * (most of them) take two overlapping loads and stores of one width, which
 * never read the destination: reading it would stall on the store just made
 * for the previous run.
 */
// @ts-ignore: decorator
@inline
function copyRun(dst: usize, src: usize, n: u32): void {
  if (n >= 16) {
    if (n > 32) {
      memory.copy(dst, src, n);
    } else {
      const head = v128.load(src);
      const tail = v128.load(src + n - 16);
      v128.store(dst, head);
      v128.store(dst + n - 16, tail);
    }
  } else if (n >= 8) {
    const head = load<u64>(src);
    const tail = load<u64>(src + n - 8);
    store<u64>(dst, head);
    store<u64>(dst + n - 8, tail);
  } else if (n >= 4) {
    const head = load<u32>(src);
    const tail = load<u32>(src + n - 4);
    store<u32>(dst, head);
    store<u32>(dst + n - 4, tail);
  } else {
    // 1..3 bytes: first, middle and last cover them all.
    const first = load<u8>(src);
    const middle = load<u8>(src + (n >> 1));
    const last = load<u8>(src + n - 1);
    store<u8>(dst, first);
    store<u8>(dst + (n >> 1), middle);
    store<u8>(dst + n - 1, last);
  }
}

// @ts-ignore: decorator
@inline
function putLength(at: usize, n: u32): u32 {
  if (n < 0x80) {
    store<u8>(at, <u8>n);
    return 1;
  }
  store<u8>(at, <u8>(n | 0x80));
  store<u8>(at, <u8>(n >> 7), 1);
  return 2;
}

/**
 * A lower bound on the delta bytes the rest of the page needs from `from`
 * (an equal byte, or the page end): each run of differing bytes costs at
 * least a one-byte zero-run length, a one-byte length and its bytes.
 */
function restLowerBound(old: usize, neu: usize, from: u32, slen: u32): u64 {
  let chunk = from & ~63;
  let differ = differMask(old + chunk, neu + chunk) & (ALL << (<u64>(from & 63)));
  let carry: u64 = 0; // 1 when the byte before the chunk differs (a run continues)
  let total: u64 = 0;
  while (true) {
    const starts = differ & ~((differ << 1) | carry);
    total += popcnt(differ) + 2 * popcnt(starts);
    carry = differ >> 63;
    chunk += 64;
    if (chunk >= slen) return total;
    differ = differMask(old + chunk, neu + chunk);
  }
}

/**
 * Encodes page `neu` against `old` (`slen` bytes, a multiple of 64) into
 * `dst`, writing nothing past dst + dlen. With `patch`, each non-zero run is
 * also copied into `old` as it is emitted (bytes already scanned), so after a
 * delta `old` equals `neu` without copying the whole page; after -1 it is
 * partly patched and the caller copies the page.
 */
function encodePage(old: usize, neu: usize, slen: u32, dst: usize, dlen: u32, patch: bool): i32 {
  let i: u32 = 0; // start of the zero run being measured
  let d: u32 = 0;
  let chunk: u32 = 0; // the 64-byte chunk holding the scan position
  let differ = differMask(old, neu);
  // Once a quarter of dlen is used, check whether the rest can still fit: a
  // dense page then fails at once instead of run by run up to dlen. The
  // answer is QEMU's: a delta that passes dlen fails one of its checks.
  let probe = dlen >> 2;
  do {
    if (d + 2 > dlen) return -1;
    // Zero run: the first differing byte at or after i.
    let bits = differ & (ALL << (<u64>(i & 63)));
    if (bits == 0) {
      chunk += 64;
      while (chunk + 128 <= slen && blockEqual(old + chunk, neu + chunk)) chunk += 128;
      while (chunk < slen && chunkEqual(old + chunk, neu + chunk)) chunk += 64;
      if (chunk >= slen) return i == 0 ? 0 : <i32>d;
      differ = differMask(old + chunk, neu + chunk);
      bits = differ;
    }
    const z = chunk + <u32>ctz(bits);
    if (z - i > MAX_RUN) return -1;
    d += putLength(dst + d, z - i);
    if (d + 2 > dlen) return -1;
    // Non-zero run: the first equal byte at or after z.
    bits = ~differ & (ALL << (<u64>(z & 63)));
    let e = slen;
    if (bits != 0) {
      e = chunk + <u32>ctz(bits);
    } else {
      while ((chunk += 64) < slen) {
        differ = differMask(old + chunk, neu + chunk);
        if (differ != ALL) {
          e = chunk + <u32>ctz(~differ);
          break;
        }
      }
    }
    const n = e - z;
    if (n > MAX_RUN || d + (n < 0x80 ? 1 : 2) + n > dlen) return -1;
    d += putLength(dst + d, n);
    copyRun(dst + d, neu + z, n);
    if (patch) copyRun(old + z, neu + z, n);
    d += n;
    i = e;
    if (d > probe && i < slen) {
      if (<u64>d + restLowerBound(old, neu, i, slen) > <u64>dlen) return -1;
      probe = dlen;
    }
  } while (i < slen);
  return <i32>d;
}

// Old-page table flags (src/codecs/xbzrle.ts mirrors them): the entry points
// at the page's previous version, encode against it; after encoding, the
// entry's page is to hold the new page (cache upkeep).
const XBZRLE_HAS_OLD: u32 = 1;
const XBZRLE_UPDATE: u32 = 2;

/**
 * Encodes `count` pages of `pageSize` bytes (a power of two, 512..65536).
 *
 * - `oldTable`: one u32 per page: the address (4-aligned) of the page's old
 *   version, or-ed with XBZRLE_HAS_OLD when there is one (otherwise the page
 *   is not encoded) and XBZRLE_UPDATE when that address is to hold the new
 *   page afterwards (a delta patches it run by run; an unencoded page is
 *   copied whole; an unchanged page needs nothing).
 * - `newPtr`: the new pages, back to back.
 * - `dlen`: most delta bytes per page (QEMU's dlen).
 * - `outPtr`: each page's payload, packed in page order: its delta, nothing
 *   for an unchanged page, or the raw new page when it was not encoded. Needs
 *   count·max(pageSize, dlen) bytes.
 * - `tablePtr`: the page table (assembly/table.ts): XBZRLE (an empty payload
 *   for an unchanged page), or RAW when not encoded (overflow, or no old
 *   version).
 *
 * Returns the payload bytes written at `outPtr`.
 */
export function xbzrleEncodeBatch(
  oldTable: usize,
  newPtr: usize,
  pageSize: u32,
  count: u32,
  dlen: u32,
  outPtr: usize,
  tablePtr: usize,
): u32 {
  deltaRoom = dlen;
  return encodeBatch(newPtr, pageSize, count, outPtr, tablePtr, oldTable, deltaOrRaw);
}

/** xbzrleEncodeBatch's `dlen`, for deltaOrRaw. */
let deltaRoom: u32 = 0;

/** A PageEncoder: the page's delta against its old version (XBZRLE), or the page (RAW); keeps the old version up to date. */
function deltaOrRaw(k: u32, neu: usize, out: usize, pageSize: u32, oldTable: usize): u64 {
  const entry = load<u32>(oldTable + (<usize>k << 2));
  const old = <usize>(entry & ~3);
  const update = (entry & XBZRLE_UPDATE) != 0;
  const result = entry & XBZRLE_HAS_OLD ? encodePage(old, neu, pageSize, out, deltaRoom, update) : -1;
  if (result >= 0) return encoded(XBZRLE, <u32>result);
  memory.copy(out, neu, pageSize);
  if (update) memory.copy(old, neu, pageSize);
  return encoded(RAW, pageSize);
}

// ---- decoding ----

/** Causes of a malformed delta (the reason is XBZRLE_REASON_BASE plus the cause). */
const CAUSE_TRUNCATED: i32 = 1;
const CAUSE_OVERRUN: i32 = 2;
const CAUSE_MALFORMED: i32 = 3;

/**
 * The length field at `at` (two bytes are readable): its value, plus its size
 * in bytes in bits 16..17; -1 when the second byte has its high bit set (the
 * value would pass 14 bits).
 */
// @ts-ignore: decorator
@inline
function getLength(at: usize): i32 {
  const first = <i32>load<u8>(at);
  if (first < 0x80) return first | (1 << 16);
  const second = <i32>load<u8>(at, 1);
  if (second >= 0x80) return -1;
  return (first & 0x7f) | (second << 7) | (2 << 16);
}

/**
 * Walks a delta with QEMU's xbzrle_decode_buffer checks, in its order,
 * writing nothing. Returns the end offset of the last run, or minus the
 * reason, with the delta offset where it was found in `errorAt`.
 */
function checkDelta(src: usize, slen: u32, dlen: u32): i32 {
  let i: u32 = 0;
  let d: u32 = 0;
  let cause: i32 = 0;
  let at: u32 = 0; // start of the field being read, reported with the cause
  while (i < slen) {
    at = i;
    if (slen - i < 2) {
      cause = CAUSE_TRUNCATED;
      break;
    }
    let field = getLength(src + i);
    if (field < 0 || (i != 0 && (field & 0xffff) == 0)) {
      cause = CAUSE_MALFORMED;
      break;
    }
    i += <u32>field >> 16;
    d += <u32>field & 0xffff;
    if (d > dlen) {
      cause = CAUSE_OVERRUN;
      break;
    }
    at = i;
    if (slen - i < 2) {
      cause = CAUSE_TRUNCATED;
      break;
    }
    field = getLength(src + i);
    if (field < 0 || (field & 0xffff) == 0) {
      cause = CAUSE_MALFORMED;
      break;
    }
    i += <u32>field >> 16;
    const n = <u32>field & 0xffff;
    if (d + n > dlen) {
      cause = CAUSE_OVERRUN;
      break;
    }
    if (i + n > slen) {
      cause = CAUSE_TRUNCATED;
      break;
    }
    d += n;
    i += n;
  }
  if (cause == 0) return <i32>d;
  errorAt = at;
  return -(XBZRLE_REASON_BASE + cause);
}

/** Where in its delta checkDelta found the error it returned. */
let errorAt: u32 = 0;

/** Applies a delta that checkDelta accepted to the page at `dst`. */
function applyDelta(src: usize, slen: u32, dst: usize): void {
  let i: u32 = 0;
  let d: u32 = 0;
  while (i < slen) {
    let field = getLength(src + i);
    i += <u32>field >> 16;
    d += <u32>field & 0xffff;
    field = getLength(src + i);
    i += <u32>field >> 16;
    const n = <u32>field & 0xffff;
    copyRun(dst + d, src + i, n);
    d += n;
    i += n;
  }
}

/**
 * Applies `count` payloads to pages of `pageSize` bytes (any size; it is the
 * decoder's dlen) at `pagesPtr`, in place: per the page table at `tablePtr`,
 * an XBZRLE delta or a RAW page, from the `dataLen` bytes at `dataPtr`.
 * Every payload is checked before any page is written: returns 0 when all
 * were applied, with the record's detail at `errPtr` set to the bytes of the
 * last page its delta reached (xbzrleDecode's result); else REJECTED with the
 * record for the first malformed payload (detail: the delta byte where it was
 * found), and nothing was written.
 */
export function xbzrleDecodeBatch(dataPtr: usize, dataLen: u32, tablePtr: usize, count: u32, pagesPtr: usize, pageSize: u32, errPtr: usize): i32 {
  let reach: i32 = 0;
  for (let k: u32 = 0; k < count; k++) {
    const length = lengthOf(tablePtr, count, k);
    const encoding = encodingOf(tablePtr, count, k);
    let reason = extentReason(tablePtr, count, k, dataLen);
    reach = <i32>pageSize;
    if (reason == 0 && encoding == XBZRLE) {
      reach = checkDelta(dataPtr + offsetOf(tablePtr, k), length, pageSize);
      if (reach < 0) reason = -reach;
    } else if (reason == 0) {
      reason = encoding != RAW ? BAD_ENCODING : length != pageSize ? BAD_RAW_LENGTH : 0;
    }
    if (reason != 0) return reject(errPtr, k, reason, reason > XBZRLE_REASON_BASE ? <i32>errorAt : 0);
  }
  for (let k: u32 = 0; k < count; k++) {
    const src = dataPtr + offsetOf(tablePtr, k);
    const page = pagesPtr + <usize>k * pageSize;
    if (encodingOf(tablePtr, count, k) == XBZRLE) {
      applyDelta(src, lengthOf(tablePtr, count, k), page);
    } else {
      memory.copy(page, src, pageSize);
    }
  }
  store<i32>(errPtr, reach, 8);
  return 0;
}

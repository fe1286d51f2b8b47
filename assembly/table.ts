// The page table every batch codec kernel shares, and the record a decode
// kernel leaves when it rejects a page. src/codecs/kernel-result.ts is their
// one reader on the TypeScript side.
//
// Page table, for `count` pages at `table`: three columns of `count` entries,
// u32 payload offsets, then u32 payload lengths, then u8 wire ids (as
// src/codecs/codec.ts numbers them). Encode kernels write it beside their
// payload (offsets relative to the payload's start); decode kernels read it.
// Columns rather than records: the TypeScript side takes each one with a
// single copy, and a kernel's stores cost the same either way.
//
// Decode kernels take (dataPtr, dataLen, table, count, pagesPtr, pageSize,
// errPtr) and return 0 when every page decoded, or REJECTED after writing the
// rejection record at `errPtr`: u32 page, i32 reason, i32 detail (what the
// reason says it is).

export const RAW: u32 = 0;
export const ZERO: u32 = 1;
export const SAME_VALUE: u32 = 2;
export const WKDM: u32 = 3;
export const LZ4: u32 = 4;
export const XBZRLE: u32 = 5;
export const DEDUP: u32 = 6;

export const REJECTED: i32 = -2;

// Why a decoder rejected a page: one numbering for every kernel. 1..13 are
// WKdm's reasons as they always were; the TypeScript side names each.
export const BAD_EXTENT: i32 = 1; // payload offset + length past the data
export const BAD_ENCODING: i32 = 2; // a wire id this decoder does not take
export const BAD_RAW_LENGTH: i32 = 3;
export const BAD_ZERO_LENGTH: i32 = 4;
export const BAD_SAME_VALUE_LENGTH: i32 = 5;
// 6..13: WKdm stream reasons (assembly/wkdm.ts).
/** LZ4 reasons are 13 minus lz4Decompress's status (-1 overrun, -2 bad offset, -3 truncated). */
export const LZ4_REASON_BASE: i32 = 13;
export const LZ4_SHORT: i32 = 17; // block decodes to fewer bytes than the page (detail: how many)
/** XBZRLE reasons are this plus the cause (1 truncated, 2 overrun, 3 malformed); detail: the delta byte. */
export const XBZRLE_REASON_BASE: i32 = 17;

// @ts-ignore: decorator
@inline
export function offsetOf(table: usize, k: u32): u32 {
  return load<u32>(table + (<usize>k << 2));
}

// @ts-ignore: decorator
@inline
export function lengthOf(table: usize, count: u32, k: u32): u32 {
  return load<u32>(table + (<usize>(count + k) << 2));
}

// @ts-ignore: decorator
@inline
export function encodingOf(table: usize, count: u32, k: u32): u32 {
  return <u32>load<u8>(table + (<usize>count << 3) + k);
}

/** Writes page k's entry. */
// @ts-ignore: decorator
@inline
export function setEntry(table: usize, count: u32, k: u32, encoding: u32, offset: u32, length: u32): void {
  store<u32>(table + (<usize>k << 2), offset);
  store<u32>(table + (<usize>(count + k) << 2), length);
  store<u8>(table + (<usize>count << 3) + k, <u8>encoding);
}

/** Writes the rejection record and returns REJECTED. */
export function reject(errPtr: usize, page: u32, reason: i32, detail: i32): i32 {
  store<u32>(errPtr, page);
  store<i32>(errPtr, reason, 4);
  store<i32>(errPtr, detail, 8);
  return REJECTED;
}

/** BAD_EXTENT when page k's payload runs past `dataLen` bytes, else 0. */
// @ts-ignore: decorator
@inline
export function extentReason(table: usize, count: u32, k: u32, dataLen: u32): i32 {
  return <u64>offsetOf(table, k) + lengthOf(table, count, k) > <u64>dataLen ? BAD_EXTENT : 0;
}

/** Fills `size` bytes (a multiple of 64) with one repeated 32-bit word. */
export function fillWord(dst: usize, size: usize, value: u32): void {
  const v = i32x4.splat(value);
  for (let at: usize = 0; at < size; at += 64) {
    v128.store(dst + at, v);
    v128.store(dst + at, v, 16);
    v128.store(dst + at, v, 32);
    v128.store(dst + at, v, 48);
  }
}

/**
 * Decodes a RAW, ZERO or SAME_VALUE page of `length` bytes at `src` into the
 * `pageSize` bytes at `dst`. Returns 0, the length's reason, or BAD_ENCODING
 * for any other wire id (the caller has handled its own first).
 */
export function decodePlain(encoding: u32, src: usize, length: u32, dst: usize, pageSize: u32): i32 {
  if (encoding == RAW) {
    if (length != pageSize) return BAD_RAW_LENGTH;
    memory.copy(dst, src, pageSize);
  } else if (encoding == ZERO) {
    if (length != 0) return BAD_ZERO_LENGTH;
    memory.fill(dst, 0, pageSize);
  } else if (encoding == SAME_VALUE) {
    if (length != 4) return BAD_SAME_VALUE_LENGTH;
    fillWord(dst, pageSize, load<u32>(src));
  } else {
    return BAD_ENCODING;
  }
  return 0;
}

/**
 * Encodes one page at `page` into `dst` (`arg` is the batch kernel's own:
 * a budget, a table). Returns (wire id << 32) | payload length.
 */
export type PageEncoder = (k: u32, page: usize, dst: usize, pageSize: u32, arg: usize) => u64;

/**
 * The batch encode loop: `encode` per page, payloads back to back from
 * `outPtr`, the page table to `tablePtr`. Returns the payload bytes.
 */
// @ts-ignore: decorator
@inline
export function encodeBatch(pagesPtr: usize, pageSize: u32, count: u32, outPtr: usize, tablePtr: usize, arg: usize, encode: PageEncoder): u32 {
  let cursor: u32 = 0;
  for (let k: u32 = 0; k < count; k++) {
    const packed = encode(k, pagesPtr + <usize>k * pageSize, outPtr + cursor, pageSize, arg);
    const length = <u32>packed;
    setEntry(tablePtr, count, k, <u32>(packed >> 32), cursor, length);
    cursor += length;
  }
  return cursor;
}

/** (wire id << 32) | length, as a PageEncoder returns it. */
// @ts-ignore: decorator
@inline
export function encoded(encoding: u32, length: u32): u64 {
  return (<u64>encoding << 32) | length;
}

/** Decodes one page of wire id `encoding` into `dst`: 0, or a reason (its detail given through withDetail). */
export type PageDecoder = (encoding: u32, src: usize, length: u32, dst: usize, pageSize: u32) => i32;

/** The detail a PageDecoder gives with its reason (0 unless it sets it through withDetail). */
let pageDetail: i32 = 0;

/** Returns `reason`, with `detail` for the rejection record. */
export function withDetail(reason: i32, detail: i32): i32 {
  pageDetail = detail;
  return reason;
}

/**
 * The batch decode loop: checks each page's extent, then `decode`s it, in
 * page order. Returns 0, or REJECTED with the record for the first page
 * rejected (slots before it are written).
 */
// @ts-ignore: decorator
@inline
export function decodeBatch(dataPtr: usize, dataLen: u32, tablePtr: usize, count: u32, pagesPtr: usize, pageSize: u32, errPtr: usize, decode: PageDecoder): i32 {
  for (let k: u32 = 0; k < count; k++) {
    pageDetail = 0;
    let reason = extentReason(tablePtr, count, k, dataLen);
    if (reason == 0) {
      reason = decode(encodingOf(tablePtr, count, k), dataPtr + offsetOf(tablePtr, k), lengthOf(tablePtr, count, k), pagesPtr + <usize>k * pageSize, pageSize);
    }
    if (reason != 0) return reject(errPtr, k, reason, pageDetail);
  }
  return 0;
}

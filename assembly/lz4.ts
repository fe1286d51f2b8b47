// LZ4 block format (lz4's doc/lz4_Block_format.md): a block is a series of
// sequences, each
//
//   token (u8: literal length in the high nibble, match length − 4 in the low)
//   [literal length extension: bytes of 255 while more, then one < 255]
//   literals
//   offset (u16 little-endian, 1..65535, back from the current output)
//   [match length extension, as for literals]
//
// and the last sequence stops after its literals. A match may overlap its own
// output (offset < length repeats a pattern).
//
// The encoder makes the same decisions as LZ4 1.9's LZ4_compress_default
// (acceleration 1), so its blocks are byte-identical to the reference's:
// - inputs under 64 KiB + 11 bytes hash 4 bytes × 2654435761 >> 19 into 8192
//   u16 positions; larger inputs hash 5 bytes (the low 40 bits of a u64 read,
//   shifted left 24, × 889523592379, >> 52) into 4096 u32 positions and skip
//   candidates more than 65535 bytes back;
// - the table starts zeroed, so an empty slot proposes position 0;
// - the search step grows by one every 64 misses, matches are extended
//   forward 8 bytes at a time and back over equal bytes down to the previous
//   sequence, position end−2 of each match is hashed, and the position right
//   after a match is tried at once;
// - the last 5 bytes are literals and the last match starts at least 12
//   bytes before the end (inputs under 13 bytes are all literals).
// The encoder never writes past its output capacity: like the reference with
// a limited output, it returns 0 when the block would not fit, and checks
// exactly what is still to come, so a limited call returns either 0 or the
// same bytes as an unlimited one.
//
// The decoder is safe on any input: every length is checked against what is
// left of the source and of the destination before a byte is copied. It
// accepts every well-formed block, also ones that do not keep the encoder's
// end-of-block rules. Status codes: bytes written (>= 0), -1 the output is too
// small, -2 malformed (offset 0 or before the start of the output), -3 the
// input ends inside a field (a kind of malformed).

import { BAD_ENCODING, LZ4, LZ4_REASON_BASE, LZ4_SHORT, RAW, decodeBatch, decodePlain, encodeBatch, encoded, withDetail } from "./table";

const MIN_MATCH: usize = 4;
const LAST_LITERALS: usize = 5;
const MF_LIMIT: usize = 12;
const MIN_INPUT: usize = MF_LIMIT + 1;
/** Inputs shorter than this use the 8192-entry u16 table. */
const LIMIT_64K: usize = 65536 + MF_LIMIT - 1;
const MAX_DISTANCE: u32 = 65535;
const SKIP_TRIGGER: u32 = 6;

export const LZ4_OVERRUN: i32 = -1;
export const LZ4_MALFORMED: i32 = -2;
export const LZ4_TRUNCATED: i32 = -3;

const TABLE_BYTES: usize = 16384;
const HASH_TABLE: usize = memory.data(<i32>TABLE_BYTES, 64);

/** Byte offset in HASH_TABLE of the slot for the bytes at `p`; T is u16 or u32. */
// @ts-ignore: decorator
@inline
function slotOf<T>(p: usize): usize {
  if (sizeof<T>() == 2) return <usize>((load<u32>(p) * 2654435761) >> 19) << 1;
  return <usize>(<u32>(((load<u64>(p) << 24) * 889523592379) >> 52)) << 2;
}

/** Equal bytes at `a` and `b`, comparing no further than `aLimit` on a's side. */
// @ts-ignore: decorator
@inline
function countEqual(a: usize, b: usize, aLimit: usize): usize {
  const start = a;
  while (a + 8 <= aLimit) {
    const diff = load<u64>(a) ^ load<u64>(b);
    if (diff != 0) return a + <usize>(ctz(diff) >> 3) - start;
    a += 8;
    b += 8;
  }
  if (a + 4 <= aLimit && load<u32>(a) == load<u32>(b)) {
    a += 4;
    b += 4;
  }
  if (a + 2 <= aLimit && load<u16>(a) == load<u16>(b)) {
    a += 2;
    b += 2;
  }
  if (a < aLimit && load<u8>(a) == load<u8>(b)) a++;
  return a - start;
}

/** Writes the 255-run extension of a length ≥ 15 (`rest` = length − 15); returns the new op. */
// @ts-ignore: decorator
@inline
function putLengthExtension(op: usize, rest: usize): usize {
  while (rest >= 255) {
    store<u8>(op++, 255);
    rest -= 255;
  }
  store<u8>(op++, <u8>rest);
  return op;
}

/**
 * Copies `len` bytes from `src` to `dst` (separate buffers), 16 at a time.
 * The last chunk may run past `len` when both sides have room for it.
 */
// @ts-ignore: decorator
@inline
function copyBytes(dst: usize, src: usize, len: usize, dstLimit: usize, srcLimit: usize): void {
  const end = dst + len;
  if (end + 16 <= dstLimit && src + len + 16 <= srcLimit) {
    do {
      v128.store(dst, v128.load(src));
      dst += 16;
      src += 16;
    } while (dst < end);
    return;
  }
  memory.copy(dst, src, len);
}

/** LZ4_compress_default's block for `srcLen` bytes, or 0 past `dstCap` (T: the table type, see slotOf). */
function compressWith<T>(src: usize, srcLen: usize, dst: usize, dstCap: usize): usize {
  memory.fill(HASH_TABLE, 0, TABLE_BYTES);
  const iend = src + srcLen;
  const olimit = dst + dstCap;
  let op = dst;
  let anchor = src;

  if (srcLen >= MIN_INPUT) {
    const mflimitPlusOne = iend - MF_LIMIT + 1;
    const matchLimit = iend - LAST_LITERALS;
    // Position 0 needs no entry: every empty slot already proposes it.
    let ip = src + 1;
    let forwardSlot = slotOf<T>(ip);

    // `ended`: the search reached the end; what is left goes out as literals.
    let ended = false;
    while (true) {
      // Look for a 4-byte match, stepping faster the longer nothing is found.
      let forwardIp = ip;
      let step: usize = 1;
      let attempts: u32 = 1 << SKIP_TRIGGER;
      let match: usize;
      while (true) {
        const slot = forwardSlot;
        const current = <u32>(forwardIp - src);
        const candidate = <u32>load<T>(HASH_TABLE + slot);
        ip = forwardIp;
        forwardIp += step;
        step = <usize>(attempts++ >> SKIP_TRIGGER);
        if (forwardIp > mflimitPlusOne) {
          ended = true;
          break;
        }
        match = src + candidate;
        forwardSlot = slotOf<T>(forwardIp);
        store<T>(HASH_TABLE + slot, <T>current);
        if (sizeof<T>() == 4 && candidate + MAX_DISTANCE < current) continue;
        if (load<u32>(match) == load<u32>(ip)) break;
      }
      if (ended) break;

      // Extend backwards over equal bytes, not past the previous sequence.
      while (ip > anchor && match > src && load<u8>(ip - 1) == load<u8>(match - 1)) {
        ip--;
        match--;
      }

      const litLen = ip - anchor;
      let token = op++;
      // Room for the literals, their length bytes, an offset, a token and
      // the 5 last literals that must follow.
      if (op + litLen + 8 + litLen / 255 > olimit) return 0;
      let tokenBits: u32;
      if (litLen >= 15) {
        tokenBits = 15 << 4;
        op = putLengthExtension(op, litLen - 15);
      } else {
        tokenBits = <u32>litLen << 4;
      }
      copyBytes(op, anchor, litLen, olimit, iend);
      op += litLen;

      // Matches, back to back while the position after one starts another.
      while (true) {
        store<u16>(op, <u16>(ip - match));
        op += 2;
        const extra = countEqual(ip + MIN_MATCH, match + MIN_MATCH, matchLimit);
        ip += extra + MIN_MATCH;
        if (op + 1 + LAST_LITERALS + (extra + 240) / 255 > olimit) return 0;
        if (extra >= 15) {
          store<u8>(token, <u8>(tokenBits | 15));
          op = putLengthExtension(op, extra - 15);
        } else {
          store<u8>(token, <u8>(tokenBits | <u32>extra));
        }
        anchor = ip;
        if (ip >= mflimitPlusOne) {
          ended = true;
          break;
        }

        store<T>(HASH_TABLE + slotOf<T>(ip - 2), <T>(ip - 2 - src));
        const slot = slotOf<T>(ip);
        const current = <u32>(ip - src);
        const candidate = <u32>load<T>(HASH_TABLE + slot);
        store<T>(HASH_TABLE + slot, <T>current);
        match = src + candidate;
        if ((sizeof<T>() == 2 || candidate + MAX_DISTANCE >= current) && load<u32>(match) == load<u32>(ip)) {
          token = op++;
          tokenBits = 0;
          continue;
        }
        break;
      }
      if (ended) break;
      ip++;
      forwardSlot = slotOf<T>(ip);
    }
  }

  const lastRun = iend - anchor;
  if (op + lastRun + 1 + (lastRun + 240) / 255 > olimit) return 0;
  if (lastRun >= 15) {
    store<u8>(op++, 15 << 4);
    op = putLengthExtension(op, lastRun - 15);
  } else {
    store<u8>(op++, <u8>(lastRun << 4));
  }
  memory.copy(op, anchor, lastRun);
  op += lastRun;
  return op - dst;
}

/**
 * Compresses `srcLen` bytes at `src` into one block at `dst`, writing at most
 * `dstCap` bytes. Returns the block's length, or 0 when it does not fit
 * (`dstCap` >= srcLen + srcLen/255 + 16 always fits). srcLen < 2^31.
 */
export function lz4Compress(src: usize, srcLen: u32, dst: usize, dstCap: u32): u32 {
  if (srcLen == 0) {
    if (dstCap == 0) return 0;
    store<u8>(dst, 0);
    return 1;
  }
  if (<usize>srcLen < LIMIT_64K) return <u32>compressWith<u16>(src, srcLen, dst, dstCap);
  return <u32>compressWith<u32>(src, srcLen, dst, dstCap);
}

/** A PageEncoder: the page's LZ4 block, or the page itself (RAW) when the block would not be shorter. */
export function lz4OrRaw(k: u32, page: usize, dst: usize, pageSize: u32, arg: usize): u64 {
  const length = lz4Compress(page, pageSize, dst, pageSize - 1);
  if (length != 0) return encoded(LZ4, length);
  memory.copy(dst, page, pageSize);
  return encoded(RAW, pageSize);
}

/**
 * Compresses `count` pages of `pageSize` bytes at `pagesPtr` with lz4OrRaw,
 * back to back from `outPtr` (room for count × pageSize bytes is enough), the
 * page table to `tablePtr`: the output is ready to send. Returns the bytes
 * written at `outPtr`.
 */
export function lz4CompressBatch(pagesPtr: usize, pageSize: u32, count: u32, outPtr: usize, tablePtr: usize): u32 {
  return encodeBatch(pagesPtr, pageSize, count, outPtr, tablePtr, 0, lz4OrRaw);
}

/** Where the last length extension read ended (readLengthExtension's second result). */
let extEnd: usize = 0;

/**
 * Reads a length extension (bytes of 255 while more) at `ip` onto `base`.
 * Returns the length (u64: a long run of 255s overflows 32 bits), or
 * u64.MAX_VALUE when the input ends inside it; the new ip is left in `extEnd`.
 */
// @ts-ignore: decorator
@inline
function readLengthExtension(ip: usize, iend: usize, base: u64): u64 {
  let len = base;
  while (true) {
    if (ip >= iend) return u64.MAX_VALUE;
    const b = load<u8>(ip++);
    len += b;
    if (b != 255) break;
  }
  extEnd = ip;
  return len;
}

/**
 * Decodes the block of `srcLen` bytes at `src` into at most `dstCap` bytes at
 * `dst`. Returns the bytes written, or LZ4_OVERRUN / LZ4_MALFORMED /
 * LZ4_TRUNCATED. Never reads outside the source nor writes outside
 * [dst, dst + dstCap); on an error the destination holds partial output.
 */
export function lz4Decompress(src: usize, srcLen: u32, dst: usize, dstCap: u32): i32 {
  const iend = src + srcLen;
  const oend = dst + dstCap;
  let ip = src;
  let op = dst;
  while (true) {
    if (ip >= iend) return LZ4_TRUNCATED;
    const token = <u32>load<u8>(ip++);

    let litLen = <usize>(token >> 4);
    if (litLen < 15 && ip + 16 <= iend && op + 48 <= oend) {
      // Short literals away from both ends (the usual case): one 16-byte
      // copy, and the offset is surely within the input.
      v128.store(op, v128.load(ip));
      ip += litLen;
      op += litLen;
    } else {
      if (litLen == 15) {
        const len = readLengthExtension(ip, iend, 15);
        if (len == u64.MAX_VALUE) return LZ4_TRUNCATED;
        ip = extEnd;
        if (len > <u64>(iend - ip)) return LZ4_TRUNCATED;
        litLen = <usize>len;
      } else if (litLen > iend - ip) {
        return LZ4_TRUNCATED;
      }
      if (litLen > oend - op) return LZ4_OVERRUN;
      copyBytes(op, ip, litLen, oend, iend);
      ip += litLen;
      op += litLen;
      if (ip == iend) return <i32>(op - dst);
      if (iend - ip < 2) return LZ4_TRUNCATED;
    }

    const offset = <usize>load<u16>(ip);
    ip += 2;
    if (offset == 0 || offset > op - dst) return LZ4_MALFORMED;

    let matchLen = <usize>(token & 15);
    if (matchLen == 15) {
      const len = readLengthExtension(ip, iend, 15 + MIN_MATCH);
      if (len == u64.MAX_VALUE) return LZ4_TRUNCATED;
      ip = extEnd;
      if (len > <u64>(oend - op)) return LZ4_OVERRUN;
      matchLen = <usize>len;
    } else {
      matchLen += MIN_MATCH;
      if (offset >= 16 && op + 32 <= oend) {
        // At most 18 bytes from at least 16 back: two 16-byte copies.
        const from = op - offset;
        v128.store(op, v128.load(from));
        v128.store(op, v128.load(from, 16), 16);
        op += matchLen;
        continue;
      }
      if (matchLen > oend - op) return LZ4_OVERRUN;
    }
    op = copyMatch(op, offset, matchLen, oend);
  }
}

/**
 * Writes `len` bytes at `op`, each equal to the byte `offset` before it
 * (offset <= bytes already written, len <= oend − op). Returns op + len.
 * Wide copies are exact while the source is at least their width behind;
 * the last one may run past op + len when the destination has room.
 */
// @ts-ignore: decorator
@inline
function copyMatch(op: usize, offset: usize, len: usize, oend: usize): usize {
  const end = op + len;
  let from = op - offset;
  if (offset >= 16) {
    while (op + 16 <= end) {
      v128.store(op, v128.load(from));
      op += 16;
      from += 16;
    }
    if (op < end) {
      if (op + 16 <= oend) {
        v128.store(op, v128.load(from));
        return end;
      }
      memory.copy(op, from, end - op);
    }
    return end;
  }
  if (offset < 8) {
    // Byte by byte until 8 bytes of the pattern exist, then read from a whole
    // number of periods back, at least 8 bytes away.
    const headEnd = op + (len < 8 ? len : 8);
    while (op < headEnd) {
      store<u8>(op, load<u8>(from));
      op++;
      from++;
    }
    from = op - offset * ((8 + offset - 1) / offset);
  }
  while (op + 8 <= end) {
    store<u64>(op, load<u64>(from));
    op += 8;
    from += 8;
  }
  if (op < end) {
    if (op + 8 <= oend) {
      store<u64>(op, load<u64>(from));
      return end;
    }
    while (op < end) {
      store<u8>(op, load<u8>(from));
      op++;
      from++;
    }
  }
  return end;
}

/** Decodes an LZ4 block into a page: 0, or a reason (LZ4_SHORT's detail: the bytes it decodes to). */
export function lz4DecodePage(src: usize, length: u32, dst: usize, pageSize: u32): i32 {
  const status = lz4Decompress(src, length, dst, pageSize);
  if (status == <i32>pageSize) return 0;
  return status < 0 ? LZ4_REASON_BASE - status : withDetail(LZ4_SHORT, status);
}

/** A PageDecoder for LZ4 and RAW pages. */
function lz4OrRawPage(encoding: u32, src: usize, length: u32, dst: usize, pageSize: u32): i32 {
  if (encoding == LZ4) return lz4DecodePage(src, length, dst, pageSize);
  return encoding == RAW ? decodePlain(encoding, src, length, dst, pageSize) : BAD_ENCODING;
}

/**
 * Decodes `count` pages (LZ4 or RAW, per the page table at `tablePtr`) from
 * the `dataLen` bytes at `dataPtr` into the `pageSize`-byte slots at
 * `pagesPtr`. Returns 0, or REJECTED with the record at `errPtr` for the
 * first page rejected (slots before it are written, and its own may be in
 * part).
 */
export function lz4DecompressBatch(dataPtr: usize, dataLen: u32, tablePtr: usize, count: u32, pagesPtr: usize, pageSize: u32, errPtr: usize): i32 {
  return decodeBatch(dataPtr, dataLen, tablePtr, count, pagesPtr, pageSize, errPtr, lz4OrRawPage);
}

// Dirty bitmaps: one bit per page, little-endian 64-bit words, bit i of word
// w is page 64·w + i (QEMU's layout). `nbits` is the page count; bits past it
// in the last word are kept zero by every writer here, and masked by readers.

// @ts-ignore: decorator
@inline
function wordCount(nbits: u32): u32 {
  return (nbits + 63) >> 6;
}

/** Mask of the bits of the last word that hold pages. */
// @ts-ignore: decorator
@inline
function tailMask(nbits: u32): u64 {
  const r = nbits & 63;
  return r == 0 ? ~(<u64>0) : (<u64>1 << r) - 1;
}

/** Number of set bits. */
export function bitmapCount(ptr: usize, nbits: u32): u32 {
  const words = wordCount(nbits);
  if (words == 0) return 0;
  let total: u64 = 0;
  const last = words - 1;
  for (let w: u32 = 0; w < last; w++) total += popcnt<u64>(load<u64>(ptr + (<usize>w << 3)));
  total += popcnt<u64>(load<u64>(ptr + (<usize>last << 3)) & tailMask(nbits));
  return <u32>total;
}

/**
 * Bit positions of every byte value: entry b holds 8 u32, the indices of the
 * set bits of b in ascending order (the rest zero). Built on first use.
 */
const BYTE_BITS = memory.data(256 * 32, 16);
let byteBitsReady = false;

function buildByteBits(): void {
  for (let b: u32 = 0; b < 256; b++) {
    let n: u32 = 0;
    for (let i: u32 = 0; i < 8; i++) {
      if ((b >> i) & 1) {
        store<u32>(BYTE_BITS + (<usize>b << 5) + (<usize>n << 2), i);
        n++;
      }
    }
  }
  byteBitsReady = true;
}

/**
 * Writes the indices of set bits at or after `from`, ascending, as u32 at
 * `outPtr`, at most `maxOut` of them. Returns how many were written; a caller
 * that got `maxOut` resumes from the last index + 1.
 */
export function bitmapExtract(ptr: usize, nbits: u32, from: u32, outPtr: usize, maxOut: u32): u32 {
  if (from >= nbits || maxOut == 0) return 0;
  if (!byteBitsReady) buildByteBits();
  const last = wordCount(nbits) - 1;
  let w = from >> 6;
  let n: u32 = 0;
  let dense = false;
  // Words go in chunks of 16 (the last word apart, for its mask). After a
  // chunk that held 128 or more set bits (one in eight), the next is expanded
  // byte by byte, branch-free; after a sparser one, bit by bit. Near maxOut,
  // every bit is checked against it.
  while (w < last) {
    const end = min((w | 15) + 1, last);
    const chunkStart = n;
    if (dense && n + 1024 <= maxOut) {
      for (; w < end; w++) n = expandDense(wordFrom(ptr, w, from), w << 6, outPtr, n);
    } else if (n + 1024 <= maxOut) {
      for (; w < end; w++) {
        let bits = wordFrom(ptr, w, from);
        const base = w << 6;
        // The first set bit without a branch (most sparse words hold one):
        // always written, kept only when the word has a bit.
        store<u32>(outPtr + (<usize>n << 2), base + <u32>ctz<u64>(bits));
        n += <u32>(bits != 0);
        bits &= bits - 1;
        while (bits != 0) {
          store<u32>(outPtr + (<usize>n << 2), base + <u32>ctz<u64>(bits));
          bits &= bits - 1;
          n++;
        }
      }
    } else {
      for (; w < end; w++) {
        n = extractWord(wordFrom(ptr, w, from), w << 6, outPtr, n, maxOut);
        if (n == maxOut) return n;
      }
    }
    dense = n - chunkStart >= 128;
  }
  return extractWord(wordFrom(ptr, last, from) & tailMask(nbits), last << 6, outPtr, n, maxOut);
}

/** Word w, without the bits below `from` when it is `from`'s word. */
// @ts-ignore: decorator
@inline
function wordFrom(ptr: usize, w: u32, from: u32): u64 {
  const bits = load<u64>(ptr + (<usize>w << 3));
  return w == from >> 6 ? bits & (~(<u64>0) << (from & 63)) : bits;
}

/**
 * Writes the indices of the set bits of `bits` (+ base) from slot n, stopping
 * at maxOut; returns the new n. The fast paths can leave n exactly at maxOut
 * before this runs, so the bound is checked before every store.
 */
// @ts-ignore: decorator
@inline
function extractWord(bits: u64, base: u32, outPtr: usize, n: u32, maxOut: u32): u32 {
  while (bits != 0 && n < maxOut) {
    store<u32>(outPtr + (<usize>n << 2), base + <u32>ctz<u64>(bits));
    bits &= bits - 1;
    n++;
  }
  return n;
}

/** Writes the indices of the set bits of `bits` (+ base) at slot n, a byte at a time, branch-free; returns the new n. */
function expandDense(bits: u64, base: u32, outPtr: usize, n: u32): u32 {
  for (let j = 0; j < 8; j++) {
    const entry = BYTE_BITS + (<usize>(bits & 0xff) << 5);
    const add = i32x4.splat(base);
    const out = outPtr + (<usize>n << 2);
    v128.store(out, i32x4.add(v128.load(entry), add));
    v128.store(out, i32x4.add(v128.load(entry, 16), add), 16);
    n += <u32>popcnt<u64>(bits & 0xff);
    bits >>= 8;
    base += 8;
  }
  return n;
}

/** Index of the first set bit at or after `from`, or -1. */
export function bitmapNextSet(ptr: usize, nbits: u32, from: u32): i32 {
  if (from >= nbits) return -1;
  const words = wordCount(nbits);
  let w = from >> 6;
  let bits = load<u64>(ptr + (<usize>w << 3)) & (~(<u64>0) << (from & 63));
  while (true) {
    if (w == words - 1) bits &= tailMask(nbits);
    if (bits != 0) return <i32>((w << 6) + <u32>ctz<u64>(bits));
    if (++w >= words) return -1;
    bits = load<u64>(ptr + (<usize>w << 3));
  }
}

/** Sets (value 1) or clears (0) the bits [from, to). */
export function bitmapFill(ptr: usize, from: u32, to: u32, value: u32): void {
  while (from < to && (from & 63) != 0) {
    setBit(ptr, from, value);
    from++;
  }
  const fill: u64 = value ? ~(<u64>0) : 0;
  while (from + 64 <= to) {
    store<u64>(ptr + (<usize>(from >> 6) << 3), fill);
    from += 64;
  }
  while (from < to) {
    setBit(ptr, from, value);
    from++;
  }
}

// @ts-ignore: decorator
@inline
function setBit(ptr: usize, bit: u32, value: u32): void {
  const p = ptr + (<usize>(bit >> 6) << 3);
  const m = <u64>1 << (bit & 63);
  store<u64>(p, value ? load<u64>(p) | m : load<u64>(p) & ~m);
}

// Whole-bitmap operations over `nwords` 64-bit words, two words per vector.

/** dst |= src */
export function bitmapOr(dst: usize, src: usize, nwords: u32): void {
  const end = dst + (<usize>nwords << 3);
  for (; dst + 16 <= end; dst += 16, src += 16) v128.store(dst, v128.or(v128.load(dst), v128.load(src)));
  if (dst < end) store<u64>(dst, load<u64>(dst) | load<u64>(src));
}

/** dst &= ~src */
export function bitmapAndNot(dst: usize, src: usize, nwords: u32): void {
  const end = dst + (<usize>nwords << 3);
  for (; dst + 16 <= end; dst += 16, src += 16) v128.store(dst, v128.andnot(v128.load(dst), v128.load(src)));
  if (dst < end) store<u64>(dst, load<u64>(dst) & ~load<u64>(src));
}

/**
 * The per-round sync: dst |= src, then src = 0. Returns how many bits were
 * newly set in dst (pages dirtied since the last sync that were not already
 * pending).
 */
export function bitmapSync(dst: usize, src: usize, nwords: u32): u32 {
  let added: u64 = 0;
  const end = dst + (<usize>nwords << 3);
  for (; dst < end; dst += 8, src += 8) {
    const s = load<u64>(src);
    if (s == 0) continue;
    const d = load<u64>(dst);
    added += popcnt<u64>(s & ~d);
    store<u64>(dst, d | s);
    store<u64>(src, 0);
  }
  return <u32>added;
}

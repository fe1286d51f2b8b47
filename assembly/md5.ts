// MD5 (RFC 1321) over a batch of equal-length pages, and streaming over one
// buffer of any length.
//
// Batch layout: `count` pages of `pageSize` bytes back to back at `pagesPtr`;
// the 16-byte digest of page k is written at `digestsPtr + 16k`.
//
// Multi-buffer: MD5 is one long dependency chain per message, so hashing one
// message at a time leaves most of a core idle. As in isa-l_crypto's md5_mb
// and minio's md5-simd, pages are hashed together, one per i32x4 lane: every
// step of the compression function advances four independent states, and two
// such groups are stepped in alternation (eight pages in flight). Each 64-byte
// block of four pages is loaded as 16 vectors (page p, words 4j..4j+3) and
// transposed 4x4 with interleaving shuffles, so that vector i holds word i of
// every page. The 64 steps are written out (no round loop) with shifts, words
// and constants fixed by the step index, and the states stay in locals for
// the whole page. All pages of a batch have the same length, so the padded
// tail has the same shape in every lane; the tails are built in a static
// scratch region. A last group of 2..7 pages runs in the lanes it fills; one
// page left over takes the scalar path, which is also the streaming hasher.
//
// Streaming state (96 bytes at `statePtr`, 8-aligned; STATE_BYTES in
// src/hash/md5.ts):
//   [0, 16)   a, b, c, d (u32 little-endian)
//   [16, 24)  message length so far, bytes (u64)
//   [24, 28)  bytes buffered (0..63)
//   [32, 96)  the partial block

const STATE_LENGTH = 16;
const STATE_BUFFERED = 24;
const STATE_BLOCK = 32;

const A0: u32 = 0x67452301;
const B0: u32 = 0xefcdab89;
const C0: u32 = 0x98badcfe;
const D0: u32 = 0x10325476;

/** The sine table of RFC 1321: K[i] = floor(2^32 * |sin(i + 1)|). */
const K = memory.data<u32>([
  0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
  0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
  0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
  0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
  0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
  0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
  0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
  0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
], 16);

// The padded tails of eight lanes, two blocks each; the scalar path finishes
// its tail in lane 0's slot. And the state of the pages hashed one at a time.
const TAILS = memory.data(8 * 128, 16);
const SCALAR_STATE = memory.data(96, 16);

// ---------------------------------------------------------------------------
// Scalar path. Step i of round r: a = b + rotl(a + f_r(b, c, d) + K[i] + w, s).
// Each f_r is written so that b, the value just computed, goes through as few
// operations as possible before the add (the chain of steps is the limit):
// F = d ^ (b & (c ^ d)); G = (c & ~d) + (b & d), the two terms sharing no bit;
// H = b ^ (c ^ d); I = c ^ (b | ~d).

// @ts-ignore: decorator
@inline function ff(a: u32, b: u32, c: u32, d: u32, w: u32, i: usize, s: i32): u32 {
  return b + rotl<u32>(a + load<u32>(K + (i << 2)) + w + (d ^ (b & (c ^ d))), s);
}
// @ts-ignore: decorator
@inline function gg(a: u32, b: u32, c: u32, d: u32, w: u32, i: usize, s: i32): u32 {
  return b + rotl<u32>(a + load<u32>(K + (i << 2)) + w + (c & ~d) + (b & d), s);
}
// @ts-ignore: decorator
@inline function hh(a: u32, b: u32, c: u32, d: u32, w: u32, i: usize, s: i32): u32 {
  return b + rotl<u32>(a + load<u32>(K + (i << 2)) + w + (b ^ (c ^ d)), s);
}
// @ts-ignore: decorator
@inline function ii(a: u32, b: u32, c: u32, d: u32, w: u32, i: usize, s: i32): u32 {
  return b + rotl<u32>(a + load<u32>(K + (i << 2)) + w + (c ^ (b | ~d)), s);
}

/** Runs the compression function over `blocks` 64-byte blocks at `ptr`, updating the state at `statePtr`. */
function scalarBlocks(statePtr: usize, ptr: usize, blocks: usize): void {
  let a = load<u32>(statePtr, 0);
  let b = load<u32>(statePtr, 4);
  let c = load<u32>(statePtr, 8);
  let d = load<u32>(statePtr, 12);
  const end = ptr + (blocks << 6);
  while (ptr < end) {
    const w0 = load<u32>(ptr, 0), w1 = load<u32>(ptr, 4), w2 = load<u32>(ptr, 8), w3 = load<u32>(ptr, 12);
    const w4 = load<u32>(ptr, 16), w5 = load<u32>(ptr, 20), w6 = load<u32>(ptr, 24), w7 = load<u32>(ptr, 28);
    const w8 = load<u32>(ptr, 32), w9 = load<u32>(ptr, 36), w10 = load<u32>(ptr, 40), w11 = load<u32>(ptr, 44);
    const w12 = load<u32>(ptr, 48), w13 = load<u32>(ptr, 52), w14 = load<u32>(ptr, 56), w15 = load<u32>(ptr, 60);
    const a0 = a, b0 = b, c0 = c, d0 = d;

    a = ff(a, b, c, d, w0, 0, 7);          d = ff(d, a, b, c, w1, 1, 12);
    c = ff(c, d, a, b, w2, 2, 17);         b = ff(b, c, d, a, w3, 3, 22);
    a = ff(a, b, c, d, w4, 4, 7);          d = ff(d, a, b, c, w5, 5, 12);
    c = ff(c, d, a, b, w6, 6, 17);         b = ff(b, c, d, a, w7, 7, 22);
    a = ff(a, b, c, d, w8, 8, 7);          d = ff(d, a, b, c, w9, 9, 12);
    c = ff(c, d, a, b, w10, 10, 17);       b = ff(b, c, d, a, w11, 11, 22);
    a = ff(a, b, c, d, w12, 12, 7);        d = ff(d, a, b, c, w13, 13, 12);
    c = ff(c, d, a, b, w14, 14, 17);       b = ff(b, c, d, a, w15, 15, 22);

    a = gg(a, b, c, d, w1, 16, 5);         d = gg(d, a, b, c, w6, 17, 9);
    c = gg(c, d, a, b, w11, 18, 14);       b = gg(b, c, d, a, w0, 19, 20);
    a = gg(a, b, c, d, w5, 20, 5);         d = gg(d, a, b, c, w10, 21, 9);
    c = gg(c, d, a, b, w15, 22, 14);       b = gg(b, c, d, a, w4, 23, 20);
    a = gg(a, b, c, d, w9, 24, 5);         d = gg(d, a, b, c, w14, 25, 9);
    c = gg(c, d, a, b, w3, 26, 14);        b = gg(b, c, d, a, w8, 27, 20);
    a = gg(a, b, c, d, w13, 28, 5);        d = gg(d, a, b, c, w2, 29, 9);
    c = gg(c, d, a, b, w7, 30, 14);        b = gg(b, c, d, a, w12, 31, 20);

    a = hh(a, b, c, d, w5, 32, 4);         d = hh(d, a, b, c, w8, 33, 11);
    c = hh(c, d, a, b, w11, 34, 16);       b = hh(b, c, d, a, w14, 35, 23);
    a = hh(a, b, c, d, w1, 36, 4);         d = hh(d, a, b, c, w4, 37, 11);
    c = hh(c, d, a, b, w7, 38, 16);        b = hh(b, c, d, a, w10, 39, 23);
    a = hh(a, b, c, d, w13, 40, 4);        d = hh(d, a, b, c, w0, 41, 11);
    c = hh(c, d, a, b, w3, 42, 16);        b = hh(b, c, d, a, w6, 43, 23);
    a = hh(a, b, c, d, w9, 44, 4);         d = hh(d, a, b, c, w12, 45, 11);
    c = hh(c, d, a, b, w15, 46, 16);       b = hh(b, c, d, a, w2, 47, 23);

    a = ii(a, b, c, d, w0, 48, 6);         d = ii(d, a, b, c, w7, 49, 10);
    c = ii(c, d, a, b, w14, 50, 15);       b = ii(b, c, d, a, w5, 51, 21);
    a = ii(a, b, c, d, w12, 52, 6);        d = ii(d, a, b, c, w3, 53, 10);
    c = ii(c, d, a, b, w10, 54, 15);       b = ii(b, c, d, a, w1, 55, 21);
    a = ii(a, b, c, d, w8, 56, 6);         d = ii(d, a, b, c, w15, 57, 10);
    c = ii(c, d, a, b, w6, 58, 15);        b = ii(b, c, d, a, w13, 59, 21);
    a = ii(a, b, c, d, w4, 60, 6);         d = ii(d, a, b, c, w11, 61, 10);
    c = ii(c, d, a, b, w2, 62, 15);        b = ii(b, c, d, a, w9, 63, 21);

    a += a0;
    b += b0;
    c += c0;
    d += d0;
    ptr += 64;
  }
  store<u32>(statePtr, a, 0);
  store<u32>(statePtr, b, 4);
  store<u32>(statePtr, c, 8);
  store<u32>(statePtr, d, 12);
}

/** Starts a streaming hash in the 96-byte state region at `statePtr`. */
export function md5Init(statePtr: usize): void {
  store<u32>(statePtr, A0, 0);
  store<u32>(statePtr, B0, 4);
  store<u32>(statePtr, C0, 8);
  store<u32>(statePtr, D0, 12);
  store<u64>(statePtr, 0, STATE_LENGTH);
  store<u32>(statePtr, 0, STATE_BUFFERED);
}

/** Feeds `len` bytes at `dataPtr` to the hash at `statePtr`. Returns 0, or -2 when the state is not one md5Init made. */
export function md5Update(statePtr: usize, dataPtr: usize, len: usize): i32 {
  let buffered = <usize>load<u32>(statePtr, STATE_BUFFERED);
  if (buffered >= 64) return -2;
  store<u64>(statePtr, load<u64>(statePtr, STATE_LENGTH) + <u64>len, STATE_LENGTH);
  const block = statePtr + STATE_BLOCK;
  if (buffered) {
    const take = min<usize>(64 - buffered, len);
    memory.copy(block + buffered, dataPtr, take);
    buffered += take;
    dataPtr += take;
    len -= take;
    if (buffered < 64) {
      store<u32>(statePtr, <u32>buffered, STATE_BUFFERED);
      return 0;
    }
    scalarBlocks(statePtr, block, 1);
  }
  const whole = len >> 6;
  scalarBlocks(statePtr, dataPtr, whole);
  const rest = len & 63;
  memory.copy(block, dataPtr + (whole << 6), rest);
  store<u32>(statePtr, <u32>rest, STATE_BUFFERED);
  return 0;
}

/**
 * Pads a message of `length` bytes whose last `rest` bytes (< 64) are
 * already at `tail`: 0x80, zeros, the length in bits (u64 little-endian).
 * Returns the number of blocks the tail now spans: 1, or 2 when rest >= 56.
 */
// @ts-ignore: decorator
@inline function padTail(tail: usize, rest: usize, length: u64): usize {
  const blocks: usize = rest < 56 ? 1 : 2;
  store<u8>(tail + rest, 0x80);
  memory.fill(tail + rest + 1, 0, (blocks << 6) - 9 - rest);
  store<u64>(tail + (blocks << 6) - 8, length << 3);
  return blocks;
}

/** Finishes the hash at `statePtr`, writing the 16-byte digest at `outPtr`. Returns 0, or -2 for a bad state. */
export function md5Final(statePtr: usize, outPtr: usize): i32 {
  const buffered = <usize>load<u32>(statePtr, STATE_BUFFERED);
  if (buffered >= 64) return -2;
  // A two-block tail does not fit the 64-byte buffer: finish it in TAILS.
  memory.copy(TAILS, statePtr + STATE_BLOCK, buffered);
  const blocks = padTail(TAILS, buffered, load<u64>(statePtr, STATE_LENGTH));
  scalarBlocks(statePtr, TAILS, blocks);
  memory.copy(outPtr, statePtr, 16);
  return 0;
}

// ---------------------------------------------------------------------------
// Eight lanes: two groups of four pages, each group one i32x4 state (a, b, c,
// d and e, f, g, h), stepped in alternation. One group alone is bound by the
// latency of the step chain (about six dependent operations per step); the
// second group's independent chain fills the idle issue slots.
//
// Measured choices (V8, x64; see bench/md5.bench.js):
// - The block's message words, transposed, go to WORDS_1 and WORDS_2 (one
//   per group), and each step loads its word and broadcasts its sine
//   constant (load32_splat): cheaper than keeping 32 message vectors live
//   in 16 registers, or materialising a v128 constant per step.
// - Each step stores its result to STEP_ORDER. Nothing reads it: the store
//   puts the steps of both groups on one chain of memory effects in source
//   order, without which TurboFan schedules each group's 64 steps as one
//   run and the two chains no longer overlap.
// - The round functions have the scalar path's shapes (b late in each).

const WORDS_1 = memory.data(256, 16);
const WORDS_2 = memory.data(256, 16);
const STEP_ORDER = memory.data(16, 16);
const LANE_DIGESTS = memory.data(8 * 16, 16);

/** Word of the block used by step i (RFC 1321: i, 5i+1, 3i+5, 7i, mod 16 by round). */
// @ts-ignore: decorator
@inline function wordOf(i: usize): usize {
  if (i < 16) return i;
  if (i < 32) return (5 * i + 1) & 15;
  if (i < 48) return (3 * i + 5) & 15;
  return (7 * i) & 15;
}

/** Left rotation of step i: four per round, in turn. */
// @ts-ignore: decorator
@inline function shiftOf(i: usize): i32 {
  const k = i & 3;
  if (i < 16) return k == 0 ? 7 : k == 1 ? 12 : k == 2 ? 17 : 22;
  if (i < 32) return k == 0 ? 5 : k == 1 ? 9 : k == 2 ? 14 : 20;
  if (i < 48) return k == 0 ? 4 : k == 1 ? 11 : k == 2 ? 16 : 23;
  return k == 0 ? 6 : k == 1 ? 10 : k == 2 ? 15 : 21;
}

/** a + K[i] + word: the part of step i that does not wait for b, c, d. */
// @ts-ignore: decorator
@inline function addend4(a: v128, words: usize, i: usize): v128 {
  return i32x4.add(i32x4.add(a, v128.load32_splat(K + (i << 2))), v128.load(words + (wordOf(i) << 4)));
}
/** b + rotl(t, s), stored to STEP_ORDER (see above). */
// @ts-ignore: decorator
@inline function finish4(b: v128, t: v128, i: usize): v128 {
  const s = shiftOf(i);
  const r = i32x4.add(b, v128.or(i32x4.shl(t, s), i32x4.shr_u(t, 32 - s)));
  v128.store(STEP_ORDER, r);
  return r;
}
// @ts-ignore: decorator
@inline function ff4(a: v128, b: v128, c: v128, d: v128, words: usize, i: usize): v128 {
  return finish4(b, i32x4.add(addend4(a, words, i), v128.xor(d, v128.and(b, v128.xor(c, d)))), i);
}
// @ts-ignore: decorator
@inline function gg4(a: v128, b: v128, c: v128, d: v128, words: usize, i: usize): v128 {
  return finish4(b, i32x4.add(i32x4.add(addend4(a, words, i), v128.andnot(c, d)), v128.and(b, d)), i);
}
// @ts-ignore: decorator
@inline function hh4(a: v128, b: v128, c: v128, d: v128, words: usize, i: usize): v128 {
  return finish4(b, i32x4.add(addend4(a, words, i), v128.xor(b, v128.xor(c, d))), i);
}
// @ts-ignore: decorator
@inline function ii4(a: v128, b: v128, c: v128, d: v128, words: usize, i: usize): v128 {
  return finish4(b, i32x4.add(addend4(a, words, i), v128.xor(c, v128.or(b, v128.not(d)))), i);
}

// The 4x4 transposition: interleave 32-bit lanes of two rows, then 64-bit
// halves of two such results (V8 emits punpck{l,h}dq / punpck{l,h}qdq).
// @ts-ignore: decorator
@inline function zipLo32(x: v128, y: v128): v128 { return i32x4.shuffle(x, y, 0, 4, 1, 5); }
// @ts-ignore: decorator
@inline function zipHi32(x: v128, y: v128): v128 { return i32x4.shuffle(x, y, 2, 6, 3, 7); }
// @ts-ignore: decorator
@inline function zipLo64(x: v128, y: v128): v128 { return i64x2.shuffle(x, y, 0, 2); }
// @ts-ignore: decorator
@inline function zipHi64(x: v128, y: v128): v128 { return i64x2.shuffle(x, y, 1, 3); }

/** Stores the transpose of rows x0..x3 (16 bytes each) at `to`. */
// @ts-ignore: decorator
@inline function transposeTo(to: usize, x0: v128, x1: v128, x2: v128, x3: v128): void {
  const t0 = zipLo32(x0, x1), t1 = zipLo32(x2, x3), t2 = zipHi32(x0, x1), t3 = zipHi32(x2, x3);
  v128.store(to, zipLo64(t0, t1), 0);
  v128.store(to, zipHi64(t0, t1), 16);
  v128.store(to, zipLo64(t2, t3), 32);
  v128.store(to, zipHi64(t2, t3), 48);
}

/** Transposes one 64-byte block of four pages into 16 word vectors at `to`. */
// @ts-ignore: decorator
@inline function loadWords(to: usize, p0: usize, p1: usize, p2: usize, p3: usize): void {
  transposeTo(to, v128.load(p0, 0), v128.load(p1, 0), v128.load(p2, 0), v128.load(p3, 0));
  transposeTo(to + 64, v128.load(p0, 16), v128.load(p1, 16), v128.load(p2, 16), v128.load(p3, 16));
  transposeTo(to + 128, v128.load(p0, 32), v128.load(p1, 32), v128.load(p2, 32), v128.load(p3, 32));
  transposeTo(to + 192, v128.load(p0, 48), v128.load(p1, 48), v128.load(p2, 48), v128.load(p3, 48));
}

/**
 * Hashes eight messages of `length` bytes, message k at `base + min(k, lanes - 1) * stride`
 * (lanes 1..8; lanes past the count repeat the last message and are not
 * written), and writes the first `lanes` digests at `out`, 16 bytes each.
 */
function md5Lanes(base: usize, stride: usize, lanes: usize, length: usize, out: usize): void {
  let p0 = base;
  let p1 = base + min<usize>(1, lanes - 1) * stride;
  let p2 = base + min<usize>(2, lanes - 1) * stride;
  let p3 = base + min<usize>(3, lanes - 1) * stride;
  let p4 = base + min<usize>(4, lanes - 1) * stride;
  let p5 = base + min<usize>(5, lanes - 1) * stride;
  let p6 = base + min<usize>(6, lanes - 1) * stride;
  let p7 = base + min<usize>(7, lanes - 1) * stride;

  // Build the eight padded tails first, so that the whole blocks and the
  // tail blocks go through the one copy of the unrolled loop below.
  const body = length & ~(<usize>63);
  const rest = length & 63;
  memory.copy(TAILS, p0 + body, rest);
  memory.copy(TAILS + 128, p1 + body, rest);
  memory.copy(TAILS + 256, p2 + body, rest);
  memory.copy(TAILS + 384, p3 + body, rest);
  memory.copy(TAILS + 512, p4 + body, rest);
  memory.copy(TAILS + 640, p5 + body, rest);
  memory.copy(TAILS + 768, p6 + body, rest);
  memory.copy(TAILS + 896, p7 + body, rest);
  let tailBlocks: usize = 0;
  for (let lane: usize = 0; lane < 8; lane++) tailBlocks = padTail(TAILS + (lane << 7), rest, <u64>length);

  let a = i32x4.splat(A0), b = i32x4.splat(B0), c = i32x4.splat(C0), d = i32x4.splat(D0);
  let e = a, f = b, g = c, h = d;
  let blocks = length >> 6;
  let inTail = false;
  while (true) {
    for (let n: usize = 0; n < blocks; n++) {
      loadWords(WORDS_1, p0, p1, p2, p3);
      loadWords(WORDS_2, p4, p5, p6, p7);
      const a0 = a, b0 = b, c0 = c, d0 = d, e0 = e, f0 = f, g0 = g, h0 = h;

      a = ff4(a, b, c, d, WORDS_1, 0);       e = ff4(e, f, g, h, WORDS_2, 0);
      d = ff4(d, a, b, c, WORDS_1, 1);       h = ff4(h, e, f, g, WORDS_2, 1);
      c = ff4(c, d, a, b, WORDS_1, 2);       g = ff4(g, h, e, f, WORDS_2, 2);
      b = ff4(b, c, d, a, WORDS_1, 3);       f = ff4(f, g, h, e, WORDS_2, 3);
      a = ff4(a, b, c, d, WORDS_1, 4);       e = ff4(e, f, g, h, WORDS_2, 4);
      d = ff4(d, a, b, c, WORDS_1, 5);       h = ff4(h, e, f, g, WORDS_2, 5);
      c = ff4(c, d, a, b, WORDS_1, 6);       g = ff4(g, h, e, f, WORDS_2, 6);
      b = ff4(b, c, d, a, WORDS_1, 7);       f = ff4(f, g, h, e, WORDS_2, 7);
      a = ff4(a, b, c, d, WORDS_1, 8);       e = ff4(e, f, g, h, WORDS_2, 8);
      d = ff4(d, a, b, c, WORDS_1, 9);       h = ff4(h, e, f, g, WORDS_2, 9);
      c = ff4(c, d, a, b, WORDS_1, 10);      g = ff4(g, h, e, f, WORDS_2, 10);
      b = ff4(b, c, d, a, WORDS_1, 11);      f = ff4(f, g, h, e, WORDS_2, 11);
      a = ff4(a, b, c, d, WORDS_1, 12);      e = ff4(e, f, g, h, WORDS_2, 12);
      d = ff4(d, a, b, c, WORDS_1, 13);      h = ff4(h, e, f, g, WORDS_2, 13);
      c = ff4(c, d, a, b, WORDS_1, 14);      g = ff4(g, h, e, f, WORDS_2, 14);
      b = ff4(b, c, d, a, WORDS_1, 15);      f = ff4(f, g, h, e, WORDS_2, 15);

      a = gg4(a, b, c, d, WORDS_1, 16);      e = gg4(e, f, g, h, WORDS_2, 16);
      d = gg4(d, a, b, c, WORDS_1, 17);      h = gg4(h, e, f, g, WORDS_2, 17);
      c = gg4(c, d, a, b, WORDS_1, 18);      g = gg4(g, h, e, f, WORDS_2, 18);
      b = gg4(b, c, d, a, WORDS_1, 19);      f = gg4(f, g, h, e, WORDS_2, 19);
      a = gg4(a, b, c, d, WORDS_1, 20);      e = gg4(e, f, g, h, WORDS_2, 20);
      d = gg4(d, a, b, c, WORDS_1, 21);      h = gg4(h, e, f, g, WORDS_2, 21);
      c = gg4(c, d, a, b, WORDS_1, 22);      g = gg4(g, h, e, f, WORDS_2, 22);
      b = gg4(b, c, d, a, WORDS_1, 23);      f = gg4(f, g, h, e, WORDS_2, 23);
      a = gg4(a, b, c, d, WORDS_1, 24);      e = gg4(e, f, g, h, WORDS_2, 24);
      d = gg4(d, a, b, c, WORDS_1, 25);      h = gg4(h, e, f, g, WORDS_2, 25);
      c = gg4(c, d, a, b, WORDS_1, 26);      g = gg4(g, h, e, f, WORDS_2, 26);
      b = gg4(b, c, d, a, WORDS_1, 27);      f = gg4(f, g, h, e, WORDS_2, 27);
      a = gg4(a, b, c, d, WORDS_1, 28);      e = gg4(e, f, g, h, WORDS_2, 28);
      d = gg4(d, a, b, c, WORDS_1, 29);      h = gg4(h, e, f, g, WORDS_2, 29);
      c = gg4(c, d, a, b, WORDS_1, 30);      g = gg4(g, h, e, f, WORDS_2, 30);
      b = gg4(b, c, d, a, WORDS_1, 31);      f = gg4(f, g, h, e, WORDS_2, 31);

      a = hh4(a, b, c, d, WORDS_1, 32);      e = hh4(e, f, g, h, WORDS_2, 32);
      d = hh4(d, a, b, c, WORDS_1, 33);      h = hh4(h, e, f, g, WORDS_2, 33);
      c = hh4(c, d, a, b, WORDS_1, 34);      g = hh4(g, h, e, f, WORDS_2, 34);
      b = hh4(b, c, d, a, WORDS_1, 35);      f = hh4(f, g, h, e, WORDS_2, 35);
      a = hh4(a, b, c, d, WORDS_1, 36);      e = hh4(e, f, g, h, WORDS_2, 36);
      d = hh4(d, a, b, c, WORDS_1, 37);      h = hh4(h, e, f, g, WORDS_2, 37);
      c = hh4(c, d, a, b, WORDS_1, 38);      g = hh4(g, h, e, f, WORDS_2, 38);
      b = hh4(b, c, d, a, WORDS_1, 39);      f = hh4(f, g, h, e, WORDS_2, 39);
      a = hh4(a, b, c, d, WORDS_1, 40);      e = hh4(e, f, g, h, WORDS_2, 40);
      d = hh4(d, a, b, c, WORDS_1, 41);      h = hh4(h, e, f, g, WORDS_2, 41);
      c = hh4(c, d, a, b, WORDS_1, 42);      g = hh4(g, h, e, f, WORDS_2, 42);
      b = hh4(b, c, d, a, WORDS_1, 43);      f = hh4(f, g, h, e, WORDS_2, 43);
      a = hh4(a, b, c, d, WORDS_1, 44);      e = hh4(e, f, g, h, WORDS_2, 44);
      d = hh4(d, a, b, c, WORDS_1, 45);      h = hh4(h, e, f, g, WORDS_2, 45);
      c = hh4(c, d, a, b, WORDS_1, 46);      g = hh4(g, h, e, f, WORDS_2, 46);
      b = hh4(b, c, d, a, WORDS_1, 47);      f = hh4(f, g, h, e, WORDS_2, 47);

      a = ii4(a, b, c, d, WORDS_1, 48);      e = ii4(e, f, g, h, WORDS_2, 48);
      d = ii4(d, a, b, c, WORDS_1, 49);      h = ii4(h, e, f, g, WORDS_2, 49);
      c = ii4(c, d, a, b, WORDS_1, 50);      g = ii4(g, h, e, f, WORDS_2, 50);
      b = ii4(b, c, d, a, WORDS_1, 51);      f = ii4(f, g, h, e, WORDS_2, 51);
      a = ii4(a, b, c, d, WORDS_1, 52);      e = ii4(e, f, g, h, WORDS_2, 52);
      d = ii4(d, a, b, c, WORDS_1, 53);      h = ii4(h, e, f, g, WORDS_2, 53);
      c = ii4(c, d, a, b, WORDS_1, 54);      g = ii4(g, h, e, f, WORDS_2, 54);
      b = ii4(b, c, d, a, WORDS_1, 55);      f = ii4(f, g, h, e, WORDS_2, 55);
      a = ii4(a, b, c, d, WORDS_1, 56);      e = ii4(e, f, g, h, WORDS_2, 56);
      d = ii4(d, a, b, c, WORDS_1, 57);      h = ii4(h, e, f, g, WORDS_2, 57);
      c = ii4(c, d, a, b, WORDS_1, 58);      g = ii4(g, h, e, f, WORDS_2, 58);
      b = ii4(b, c, d, a, WORDS_1, 59);      f = ii4(f, g, h, e, WORDS_2, 59);
      a = ii4(a, b, c, d, WORDS_1, 60);      e = ii4(e, f, g, h, WORDS_2, 60);
      d = ii4(d, a, b, c, WORDS_1, 61);      h = ii4(h, e, f, g, WORDS_2, 61);
      c = ii4(c, d, a, b, WORDS_1, 62);      g = ii4(g, h, e, f, WORDS_2, 62);
      b = ii4(b, c, d, a, WORDS_1, 63);      f = ii4(f, g, h, e, WORDS_2, 63);

      a = i32x4.add(a, a0);
      b = i32x4.add(b, b0);
      c = i32x4.add(c, c0);
      d = i32x4.add(d, d0);
      e = i32x4.add(e, e0);
      f = i32x4.add(f, f0);
      g = i32x4.add(g, g0);
      h = i32x4.add(h, h0);
      p0 += 64;
      p1 += 64;
      p2 += 64;
      p3 += 64;
      p4 += 64;
      p5 += 64;
      p6 += 64;
      p7 += 64;
    }
    if (inTail) break;
    inTail = true;
    blocks = tailBlocks;
    p0 = TAILS;
    p1 = TAILS + 128;
    p2 = TAILS + 256;
    p3 = TAILS + 384;
    p4 = TAILS + 512;
    p5 = TAILS + 640;
    p6 = TAILS + 768;
    p7 = TAILS + 896;
  }

  // Transpose back: lane k of (a, b, c, d), then of (e, f, g, h), is digest k.
  const to = lanes == 8 ? out : LANE_DIGESTS;
  transposeTo(to, a, b, c, d);
  transposeTo(to + 64, e, f, g, h);
  if (lanes < 8) memory.copy(out, LANE_DIGESTS, lanes << 4);
}

/**
 * MD5 of each of `count` pages of `pageSize` bytes (any length) at
 * `pagesPtr`, 16 bytes per page at `digestsPtr`: eight pages at a time in
 * the SIMD lanes; a last group of 2..7 pages fills the lanes it has; a single
 * page left over takes the scalar path. Returns the number of digests written.
 */
export function md5Batch(pagesPtr: usize, pageSize: u32, count: u32, digestsPtr: usize): i32 {
  const size = <usize>pageSize;
  for (let k: u32 = 0; k < count; k += 8) {
    const page = pagesPtr + <usize>k * size;
    const out = digestsPtr + (<usize>k << 4);
    const lanes = min<u32>(count - k, 8);
    if (lanes > 1) {
      md5Lanes(page, size, lanes, size, out);
    } else {
      md5Init(SCALAR_STATE);
      md5Update(SCALAR_STATE, page, size);
      md5Final(SCALAR_STATE, out);
    }
  }
  return <i32>count;
}

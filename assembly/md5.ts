// MD5 (RFC 1321) over a batch of equal-length pages, and streaming over one
// buffer of any length.
//
// Batch layout: `count` pages of `pageSize` bytes back to back at `pagesPtr`;
// the 16-byte digest of page k is written at `digestsPtr + 16k`.
//
// Multi-buffer: MD5 is one long dependency chain per message, so one message
// at a time leaves most of the CPU idle. As in isa-l_crypto's md5_mb and
// minio's md5-simd, four pages are hashed together, one per i32x4 lane: every
// step of the compression function runs on four independent states at once.
// Each 64-byte block of the four pages is loaded as 16 vectors (page p, words
// 4j..4j+3) and transposed 4×4 so that vector w_i holds word i of every page.
// The 64 steps are written out with constant shifts and constants, and the
// state stays in locals for the whole page. All pages of a batch have the
// same length, so the padded tail has the same shape in every lane; it is
// built in a static scratch region. The pages left over (count % 4) take the
// scalar path, which is also the streaming hasher.
//
// Streaming state (MD5_STATE_BYTES at `statePtr`, 8-aligned):
//   [0, 16)   a, b, c, d (u32 little-endian)
//   [16, 24)  message length so far, bytes (u64)
//   [24, 28)  bytes buffered (0..63)
//   [32, 96)  the partial block

export const MD5_STATE_BYTES: u32 = 96;

const STATE_LENGTH = 16;
const STATE_BUFFERED = 24;
const STATE_BLOCK = 32;

const A0: u32 = 0x67452301;
const B0: u32 = 0xefcdab89;
const C0: u32 = 0x98badcfe;
const D0: u32 = 0x10325476;

// The padded tails of four lanes (two blocks each), and a scalar state for
// the pages hashed one at a time.
const LANE_TAILS = memory.data(4 * 128, 16);
const SCALAR_STATE = memory.data(96, 16);

// ---------------------------------------------------------------------------
// Scalar path: one message, the four round functions written as in RFC 1321
// with the usual rewrites (F and G as a select via xor/and).

// @ts-ignore: decorator
@inline function ff(a: u32, b: u32, c: u32, d: u32, w: u32, k: u32, s: i32): u32 {
  return b + rotl<u32>(a + k + w + (d ^ (b & (c ^ d))), s);
}
// @ts-ignore: decorator
@inline function gg(a: u32, b: u32, c: u32, d: u32, w: u32, k: u32, s: i32): u32 {
  return b + rotl<u32>(a + k + w + (c ^ (d & (b ^ c))), s);
}
// @ts-ignore: decorator
@inline function hh(a: u32, b: u32, c: u32, d: u32, w: u32, k: u32, s: i32): u32 {
  return b + rotl<u32>(a + k + w + (b ^ c ^ d), s);
}
// @ts-ignore: decorator
@inline function ii(a: u32, b: u32, c: u32, d: u32, w: u32, k: u32, s: i32): u32 {
  return b + rotl<u32>(a + k + w + (c ^ (b | ~d)), s);
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

    a = ff(a, b, c, d, w0, 0xd76aa478, 7);   d = ff(d, a, b, c, w1, 0xe8c7b756, 12);
    c = ff(c, d, a, b, w2, 0x242070db, 17);  b = ff(b, c, d, a, w3, 0xc1bdceee, 22);
    a = ff(a, b, c, d, w4, 0xf57c0faf, 7);   d = ff(d, a, b, c, w5, 0x4787c62a, 12);
    c = ff(c, d, a, b, w6, 0xa8304613, 17);  b = ff(b, c, d, a, w7, 0xfd469501, 22);
    a = ff(a, b, c, d, w8, 0x698098d8, 7);   d = ff(d, a, b, c, w9, 0x8b44f7af, 12);
    c = ff(c, d, a, b, w10, 0xffff5bb1, 17); b = ff(b, c, d, a, w11, 0x895cd7be, 22);
    a = ff(a, b, c, d, w12, 0x6b901122, 7);  d = ff(d, a, b, c, w13, 0xfd987193, 12);
    c = ff(c, d, a, b, w14, 0xa679438e, 17); b = ff(b, c, d, a, w15, 0x49b40821, 22);

    a = gg(a, b, c, d, w1, 0xf61e2562, 5);   d = gg(d, a, b, c, w6, 0xc040b340, 9);
    c = gg(c, d, a, b, w11, 0x265e5a51, 14); b = gg(b, c, d, a, w0, 0xe9b6c7aa, 20);
    a = gg(a, b, c, d, w5, 0xd62f105d, 5);   d = gg(d, a, b, c, w10, 0x02441453, 9);
    c = gg(c, d, a, b, w15, 0xd8a1e681, 14); b = gg(b, c, d, a, w4, 0xe7d3fbc8, 20);
    a = gg(a, b, c, d, w9, 0x21e1cde6, 5);   d = gg(d, a, b, c, w14, 0xc33707d6, 9);
    c = gg(c, d, a, b, w3, 0xf4d50d87, 14);  b = gg(b, c, d, a, w8, 0x455a14ed, 20);
    a = gg(a, b, c, d, w13, 0xa9e3e905, 5);  d = gg(d, a, b, c, w2, 0xfcefa3f8, 9);
    c = gg(c, d, a, b, w7, 0x676f02d9, 14);  b = gg(b, c, d, a, w12, 0x8d2a4c8a, 20);

    a = hh(a, b, c, d, w5, 0xfffa3942, 4);   d = hh(d, a, b, c, w8, 0x8771f681, 11);
    c = hh(c, d, a, b, w11, 0x6d9d6122, 16); b = hh(b, c, d, a, w14, 0xfde5380c, 23);
    a = hh(a, b, c, d, w1, 0xa4beea44, 4);   d = hh(d, a, b, c, w4, 0x4bdecfa9, 11);
    c = hh(c, d, a, b, w7, 0xf6bb4b60, 16);  b = hh(b, c, d, a, w10, 0xbebfbc70, 23);
    a = hh(a, b, c, d, w13, 0x289b7ec6, 4);  d = hh(d, a, b, c, w0, 0xeaa127fa, 11);
    c = hh(c, d, a, b, w3, 0xd4ef3085, 16);  b = hh(b, c, d, a, w6, 0x04881d05, 23);
    a = hh(a, b, c, d, w9, 0xd9d4d039, 4);   d = hh(d, a, b, c, w12, 0xe6db99e5, 11);
    c = hh(c, d, a, b, w15, 0x1fa27cf8, 16); b = hh(b, c, d, a, w2, 0xc4ac5665, 23);

    a = ii(a, b, c, d, w0, 0xf4292244, 6);   d = ii(d, a, b, c, w7, 0x432aff97, 10);
    c = ii(c, d, a, b, w14, 0xab9423a7, 15); b = ii(b, c, d, a, w5, 0xfc93a039, 21);
    a = ii(a, b, c, d, w12, 0x655b59c3, 6);  d = ii(d, a, b, c, w3, 0x8f0ccc92, 10);
    c = ii(c, d, a, b, w10, 0xffeff47d, 15); b = ii(b, c, d, a, w1, 0x85845dd1, 21);
    a = ii(a, b, c, d, w8, 0x6fa87e4f, 6);   d = ii(d, a, b, c, w15, 0xfe2ce6e0, 10);
    c = ii(c, d, a, b, w6, 0xa3014314, 15);  b = ii(b, c, d, a, w13, 0x4e0811a1, 21);
    a = ii(a, b, c, d, w4, 0xf7537e82, 6);   d = ii(d, a, b, c, w11, 0xbd3af235, 10);
    c = ii(c, d, a, b, w2, 0x2ad7d2bb, 15);  b = ii(b, c, d, a, w9, 0xeb86d391, 21);

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

/** Starts a streaming hash in the MD5_STATE_BYTES region at `statePtr`. */
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
 * Writes the padding of a message of `length` bytes whose last `rest` bytes
 * (< 64) are already at `tail`: 0x80, zeros, the bit length. Returns the
 * number of blocks the tail now spans (1 or 2).
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
  // The second block of a two-block tail runs past the 64-byte buffer, so
  // the tail is finished in the lane scratch region.
  memory.copy(LANE_TAILS, statePtr + STATE_BLOCK, buffered);
  const blocks = padTail(LANE_TAILS, buffered, load<u64>(statePtr, STATE_LENGTH));
  scalarBlocks(statePtr, LANE_TAILS, blocks);
  memory.copy(outPtr, statePtr, 16);
  return 0;
}

// ---------------------------------------------------------------------------
// Four lanes: the same steps on i32x4 vectors.

// @ts-ignore: decorator
@inline function rotl4(x: v128, s: i32): v128 {
  return v128.or(i32x4.shl(x, s), i32x4.shr_u(x, 32 - s));
}
// @ts-ignore: decorator
@inline function ff4(a: v128, b: v128, c: v128, d: v128, w: v128, k: u32, s: i32): v128 {
  const t = i32x4.add(i32x4.add(a, i32x4.splat(k)), w);
  return i32x4.add(b, rotl4(i32x4.add(t, v128.xor(d, v128.and(b, v128.xor(c, d)))), s));
}
// @ts-ignore: decorator
@inline function gg4(a: v128, b: v128, c: v128, d: v128, w: v128, k: u32, s: i32): v128 {
  const t = i32x4.add(i32x4.add(a, i32x4.splat(k)), w);
  return i32x4.add(b, rotl4(i32x4.add(t, v128.xor(c, v128.and(d, v128.xor(b, c)))), s));
}
// @ts-ignore: decorator
@inline function hh4(a: v128, b: v128, c: v128, d: v128, w: v128, k: u32, s: i32): v128 {
  const t = i32x4.add(i32x4.add(a, i32x4.splat(k)), w);
  return i32x4.add(b, rotl4(i32x4.add(t, v128.xor(b, v128.xor(c, d))), s));
}
// @ts-ignore: decorator
@inline function ii4(a: v128, b: v128, c: v128, d: v128, w: v128, k: u32, s: i32): v128 {
  const t = i32x4.add(i32x4.add(a, i32x4.splat(k)), w);
  return i32x4.add(b, rotl4(i32x4.add(t, v128.xor(c, v128.or(b, v128.not(d)))), s));
}

// Interleave helpers of the 4×4 transposition: 32-bit lanes, then 64-bit halves.
// @ts-ignore: decorator
@inline function zipLo32(x: v128, y: v128): v128 { return i32x4.shuffle(x, y, 0, 4, 1, 5); }
// @ts-ignore: decorator
@inline function zipHi32(x: v128, y: v128): v128 { return i32x4.shuffle(x, y, 2, 6, 3, 7); }
// @ts-ignore: decorator
@inline function zipLo64(x: v128, y: v128): v128 { return i64x2.shuffle(x, y, 0, 2); }
// @ts-ignore: decorator
@inline function zipHi64(x: v128, y: v128): v128 { return i64x2.shuffle(x, y, 1, 3); }

/**
 * Hashes four messages of `length` bytes at p0..p3 together, writing their
 * digests at `out`, out+16, out+32, out+48.
 */
function md5Lanes(p0: usize, p1: usize, p2: usize, p3: usize, length: usize, out: usize): void {
  let a = i32x4.splat(A0);
  let b = i32x4.splat(B0);
  let c = i32x4.splat(C0);
  let d = i32x4.splat(D0);

  // Build the four padded tails first, so that the whole blocks and the tail
  // blocks run through one copy of the unrolled loop below.
  const whole = length >> 6;
  const rest = length & 63;
  const body = whole << 6;
  memory.copy(LANE_TAILS, p0 + body, rest);
  memory.copy(LANE_TAILS + 128, p1 + body, rest);
  memory.copy(LANE_TAILS + 256, p2 + body, rest);
  memory.copy(LANE_TAILS + 384, p3 + body, rest);
  let tailBlocks: usize = 0;
  for (let lane: usize = 0; lane < 4; lane++) tailBlocks = padTail(LANE_TAILS + (lane << 7), rest, <u64>length);

  let blocks = whole;
  let inTail = false;
  while (true) {
    for (let i: usize = 0; i < blocks; i++) {
      let x0 = v128.load(p0), x1 = v128.load(p1), x2 = v128.load(p2), x3 = v128.load(p3);
      let t0 = zipLo32(x0, x1), t1 = zipLo32(x2, x3), t2 = zipHi32(x0, x1), t3 = zipHi32(x2, x3);
      const w0 = zipLo64(t0, t1), w1 = zipHi64(t0, t1), w2 = zipLo64(t2, t3), w3 = zipHi64(t2, t3);
      x0 = v128.load(p0, 16); x1 = v128.load(p1, 16); x2 = v128.load(p2, 16); x3 = v128.load(p3, 16);
      t0 = zipLo32(x0, x1); t1 = zipLo32(x2, x3); t2 = zipHi32(x0, x1); t3 = zipHi32(x2, x3);
      const w4 = zipLo64(t0, t1), w5 = zipHi64(t0, t1), w6 = zipLo64(t2, t3), w7 = zipHi64(t2, t3);
      x0 = v128.load(p0, 32); x1 = v128.load(p1, 32); x2 = v128.load(p2, 32); x3 = v128.load(p3, 32);
      t0 = zipLo32(x0, x1); t1 = zipLo32(x2, x3); t2 = zipHi32(x0, x1); t3 = zipHi32(x2, x3);
      const w8 = zipLo64(t0, t1), w9 = zipHi64(t0, t1), w10 = zipLo64(t2, t3), w11 = zipHi64(t2, t3);
      x0 = v128.load(p0, 48); x1 = v128.load(p1, 48); x2 = v128.load(p2, 48); x3 = v128.load(p3, 48);
      t0 = zipLo32(x0, x1); t1 = zipLo32(x2, x3); t2 = zipHi32(x0, x1); t3 = zipHi32(x2, x3);
      const w12 = zipLo64(t0, t1), w13 = zipHi64(t0, t1), w14 = zipLo64(t2, t3), w15 = zipHi64(t2, t3);
      const a0 = a, b0 = b, c0 = c, d0 = d;

      a = ff4(a, b, c, d, w0, 0xd76aa478, 7);   d = ff4(d, a, b, c, w1, 0xe8c7b756, 12);
      c = ff4(c, d, a, b, w2, 0x242070db, 17);  b = ff4(b, c, d, a, w3, 0xc1bdceee, 22);
      a = ff4(a, b, c, d, w4, 0xf57c0faf, 7);   d = ff4(d, a, b, c, w5, 0x4787c62a, 12);
      c = ff4(c, d, a, b, w6, 0xa8304613, 17);  b = ff4(b, c, d, a, w7, 0xfd469501, 22);
      a = ff4(a, b, c, d, w8, 0x698098d8, 7);   d = ff4(d, a, b, c, w9, 0x8b44f7af, 12);
      c = ff4(c, d, a, b, w10, 0xffff5bb1, 17); b = ff4(b, c, d, a, w11, 0x895cd7be, 22);
      a = ff4(a, b, c, d, w12, 0x6b901122, 7);  d = ff4(d, a, b, c, w13, 0xfd987193, 12);
      c = ff4(c, d, a, b, w14, 0xa679438e, 17); b = ff4(b, c, d, a, w15, 0x49b40821, 22);

      a = gg4(a, b, c, d, w1, 0xf61e2562, 5);   d = gg4(d, a, b, c, w6, 0xc040b340, 9);
      c = gg4(c, d, a, b, w11, 0x265e5a51, 14); b = gg4(b, c, d, a, w0, 0xe9b6c7aa, 20);
      a = gg4(a, b, c, d, w5, 0xd62f105d, 5);   d = gg4(d, a, b, c, w10, 0x02441453, 9);
      c = gg4(c, d, a, b, w15, 0xd8a1e681, 14); b = gg4(b, c, d, a, w4, 0xe7d3fbc8, 20);
      a = gg4(a, b, c, d, w9, 0x21e1cde6, 5);   d = gg4(d, a, b, c, w14, 0xc33707d6, 9);
      c = gg4(c, d, a, b, w3, 0xf4d50d87, 14);  b = gg4(b, c, d, a, w8, 0x455a14ed, 20);
      a = gg4(a, b, c, d, w13, 0xa9e3e905, 5);  d = gg4(d, a, b, c, w2, 0xfcefa3f8, 9);
      c = gg4(c, d, a, b, w7, 0x676f02d9, 14);  b = gg4(b, c, d, a, w12, 0x8d2a4c8a, 20);

      a = hh4(a, b, c, d, w5, 0xfffa3942, 4);   d = hh4(d, a, b, c, w8, 0x8771f681, 11);
      c = hh4(c, d, a, b, w11, 0x6d9d6122, 16); b = hh4(b, c, d, a, w14, 0xfde5380c, 23);
      a = hh4(a, b, c, d, w1, 0xa4beea44, 4);   d = hh4(d, a, b, c, w4, 0x4bdecfa9, 11);
      c = hh4(c, d, a, b, w7, 0xf6bb4b60, 16);  b = hh4(b, c, d, a, w10, 0xbebfbc70, 23);
      a = hh4(a, b, c, d, w13, 0x289b7ec6, 4);  d = hh4(d, a, b, c, w0, 0xeaa127fa, 11);
      c = hh4(c, d, a, b, w3, 0xd4ef3085, 16);  b = hh4(b, c, d, a, w6, 0x04881d05, 23);
      a = hh4(a, b, c, d, w9, 0xd9d4d039, 4);   d = hh4(d, a, b, c, w12, 0xe6db99e5, 11);
      c = hh4(c, d, a, b, w15, 0x1fa27cf8, 16); b = hh4(b, c, d, a, w2, 0xc4ac5665, 23);

      a = ii4(a, b, c, d, w0, 0xf4292244, 6);   d = ii4(d, a, b, c, w7, 0x432aff97, 10);
      c = ii4(c, d, a, b, w14, 0xab9423a7, 15); b = ii4(b, c, d, a, w5, 0xfc93a039, 21);
      a = ii4(a, b, c, d, w12, 0x655b59c3, 6);  d = ii4(d, a, b, c, w3, 0x8f0ccc92, 10);
      c = ii4(c, d, a, b, w10, 0xffeff47d, 15); b = ii4(b, c, d, a, w1, 0x85845dd1, 21);
      a = ii4(a, b, c, d, w8, 0x6fa87e4f, 6);   d = ii4(d, a, b, c, w15, 0xfe2ce6e0, 10);
      c = ii4(c, d, a, b, w6, 0xa3014314, 15);  b = ii4(b, c, d, a, w13, 0x4e0811a1, 21);
      a = ii4(a, b, c, d, w4, 0xf7537e82, 6);   d = ii4(d, a, b, c, w11, 0xbd3af235, 10);
      c = ii4(c, d, a, b, w2, 0x2ad7d2bb, 15);  b = ii4(b, c, d, a, w9, 0xeb86d391, 21);

      a = i32x4.add(a, a0);
      b = i32x4.add(b, b0);
      c = i32x4.add(c, c0);
      d = i32x4.add(d, d0);
      p0 += 64;
      p1 += 64;
      p2 += 64;
      p3 += 64;
    }
    if (inTail) break;
    inTail = true;
    blocks = tailBlocks;
    p0 = LANE_TAILS;
    p1 = LANE_TAILS + 128;
    p2 = LANE_TAILS + 256;
    p3 = LANE_TAILS + 384;
  }

  // Transpose back: lane p of (a, b, c, d) is page p's digest.
  const t0 = zipLo32(a, b), t1 = zipLo32(c, d), t2 = zipHi32(a, b), t3 = zipHi32(c, d);
  v128.store(out, zipLo64(t0, t1), 0);
  v128.store(out, zipHi64(t0, t1), 16);
  v128.store(out, zipLo64(t2, t3), 32);
  v128.store(out, zipHi64(t2, t3), 48);
}

/**
 * MD5 of each of `count` pages of `pageSize` bytes at `pagesPtr`, 16 bytes
 * per page at `digestsPtr`: four pages at a time in the SIMD lanes, the
 * remainder one by one. Returns the number of digests written.
 */
export function md5Batch(pagesPtr: usize, pageSize: u32, count: u32, digestsPtr: usize): i32 {
  const size = <usize>pageSize;
  let page = pagesPtr;
  let out = digestsPtr;
  for (let k: u32 = 0; k < (count & ~3); k += 4) {
    md5Lanes(page, page + size, page + 2 * size, page + 3 * size, size, out);
    page += 4 * size;
    out += 64;
  }
  for (let k = count & ~3; k < count; k++) {
    md5Init(SCALAR_STATE);
    md5Update(SCALAR_STATE, page, size);
    md5Final(SCALAR_STATE, out);
    page += size;
    out += 16;
  }
  return <i32>count;
}

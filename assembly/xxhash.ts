// xxHash: XXH32, XXH64 and XXH3-64 (xxHash 0.8, doc/xxhash_spec.md), one-shot,
// per page over a batch, and streaming over chunks with the state in linear
// memory. Digests are returned as numbers; the canonical form the reference
// tools print is their big-endian hex.
//
// Batch layout: `count` pages of `pageSize` bytes back to back at `pagesPtr`;
// digest k is written at `outPtr` + k·4 (XXH32, u32) or + k·8 (XXH64/XXH3, u64),
// little-endian. Streaming: a state region of `xxhStateSize()` bytes (64-byte
// aligned) is reset with a seed, updated with chunks of any length (0 too),
// and read by the digest call, which leaves it usable for further updates.
//
// Speed: XXH32 keeps its four lanes in one i32x4 vector, and the batch form
// runs four pages side by side. XXH64 is scalar: WebAssembly SIMD has no
// cheap 64-bit multiply, and the scalar form is bound by multiply throughput
// already. XXH3's accumulators live in four i64x2 vectors; each stripe's
// 32x32->64 products come from i64x2.extmul over the low and high halves of
// the keyed input, gathered two vectors at a time by one shuffle each, in an
// order that leaves the products lane-swapped. The accumulators are held lane-swapped too
// (acc[i^1] in lane i), so the spec's "acc[i^1] += input[i]" becomes a plain
// vector add and no per-stripe swap is needed.

const P32_1: u32 = 0x9e3779b1;
const P32_2: u32 = 0x85ebca77;
const P32_3: u32 = 0xc2b2ae3d;
const P32_4: u32 = 0x27d4eb2f;
const P32_5: u32 = 0x165667b1;

const P64_1: u64 = 0x9e3779b185ebca87;
const P64_2: u64 = 0xc2b2ae3d27d4eb4f;
const P64_3: u64 = 0x165667b19e3779f9;
const P64_4: u64 = 0x85ebca77c2b2ae63;
const P64_5: u64 = 0x27d4eb2f165667c5;

const PRIME_MX1: u64 = 0x165667919e3779f9;
const PRIME_MX2: u64 = 0x9fb21c651e98df25;

const STRIPE: u32 = 64;
const SECRET_SIZE: u32 = 192;
const STRIPES_PER_BLOCK: u32 = (SECRET_SIZE - STRIPE) / 8; // 16
const BLOCK: u32 = STRIPE * STRIPES_PER_BLOCK; // 1024
const SCRAMBLE_OFFSET: u32 = SECRET_SIZE - STRIPE; // 128
const LAST_STRIPE_OFFSET: u32 = SECRET_SIZE - STRIPE - 7; // 121
const MERGE_OFFSET: u32 = 11;
const MIDSIZE_MAX: u32 = 240;

/** XXH3's default secret (kSecret), 192 bytes. */
const K_SECRET: usize = memory.data<u8>([
  0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
  0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
  0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
  0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
  0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
  0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
  0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
  0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
  0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
  0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
  0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
  0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
], 16);

// Static work regions for the one-shot and batch paths (single-threaded module).
const SEEDED_SECRET: usize = memory.data(SECRET_SIZE, 16);
const WORK_ACC: usize = memory.data(64, 16);
const WORK_LANES: usize = memory.data(32, 16);
const WORK_LANES4: usize = memory.data(64, 16);
const LAST_STRIPE: usize = memory.data(STRIPE, 16);

// ---------------------------------------------------------------- XXH32

// XXH32 state: 0 lanes (i32x4) · 16 buffer[16] · 32 total length u64 ·
// 40 buffered u32 · 44 seed u32
const S32_BUFFER: usize = 16;
const S32_TOTAL: usize = 32;
const S32_BUFFERED: usize = 40;
const S32_SEED: usize = 44;

// @ts-ignore: decorator
@inline
function xxh32InitLanes(lanes: usize, seed: u32): void {
  v128.store(lanes, i32x4(<i32>(seed + P32_1 + P32_2), <i32>(seed + P32_2), <i32>seed, <i32>(seed - P32_1)));
}

/** One XXH32 round on all four lanes: v = rotl(v + input·P2, 13)·P1. */
// @ts-ignore: decorator
@inline
function xxh32Round(v: v128, input: usize): v128 {
  const x = i32x4.add(v, i32x4.mul(v128.load(input), i32x4.splat(<i32>P32_2)));
  return i32x4.mul(v128.or(i32x4.shl(x, 13), i32x4.shr_u(x, 19)), i32x4.splat(<i32>P32_1));
}

/** Runs `stripes` 16-byte stripes through the four lanes kept at `lanes`. */
function xxh32Stripes(lanes: usize, input: usize, stripes: usize): void {
  let v = v128.load(lanes);
  const end = input + (stripes << 4);
  while (input < end) {
    v = xxh32Round(v, input);
    input += 16;
  }
  v128.store(lanes, v);
}

/**
 * XXH32 of four pages at once: one lane vector per page, their rounds
 * interleaved, because a single page's rounds form one dependency chain
 * (multiply latency) that leaves the vector units mostly idle.
 */
function xxh32Four(pages: usize, pageSize: usize, seed: u32, out: usize): void {
  xxh32InitLanes(WORK_LANES, seed);
  let a = v128.load(WORK_LANES);
  let b = a;
  let c = a;
  let d = a;
  const body = pageSize & ~(<usize>15);
  for (let at: usize = 0; at < body; at += 16) {
    a = xxh32Round(a, pages + at);
    b = xxh32Round(b, pages + pageSize + at);
    c = xxh32Round(c, pages + 2 * pageSize + at);
    d = xxh32Round(d, pages + 3 * pageSize + at);
  }
  const lanes = WORK_LANES4;
  v128.store(lanes, a);
  v128.store(lanes, b, 16);
  v128.store(lanes, c, 32);
  v128.store(lanes, d, 48);
  for (let j: usize = 0; j < 4; j++) {
    const page = pages + j * pageSize;
    store<u32>(out + (j << 2), xxh32Finish(lanes + (j << 4), seed, <u64>pageSize, page + body, pageSize & 15));
  }
}

/** Folds the lanes (or the seed, for inputs under 16 bytes), the length and the tail. */
function xxh32Finish(lanes: usize, seed: u32, total: u64, tail: usize, tailLen: usize): u32 {
  let h: u32;
  if (total >= 16) {
    const v = v128.load(lanes);
    h = rotl<u32>(i32x4.extract_lane(v, 0), 1) + rotl<u32>(i32x4.extract_lane(v, 1), 7)
      + rotl<u32>(i32x4.extract_lane(v, 2), 12) + rotl<u32>(i32x4.extract_lane(v, 3), 18);
  } else {
    h = seed + P32_5;
  }
  h += <u32>total;
  const end = tail + tailLen;
  while (tail + 4 <= end) {
    h = rotl<u32>(h + load<u32>(tail) * P32_3, 17) * P32_4;
    tail += 4;
  }
  while (tail < end) {
    h = rotl<u32>(h + <u32>load<u8>(tail) * P32_5, 11) * P32_1;
    tail++;
  }
  h ^= h >> 15;
  h *= P32_2;
  h ^= h >> 13;
  h *= P32_3;
  h ^= h >> 16;
  return h;
}

function xxh32Hash(input: usize, len: usize, seed: u32): u32 {
  xxh32InitLanes(WORK_LANES, seed);
  const stripes = len >> 4;
  xxh32Stripes(WORK_LANES, input, stripes);
  return xxh32Finish(WORK_LANES, seed, <u64>len, input + (stripes << 4), len & 15);
}

/** XXH32 of `len` bytes at `ptr`. */
export function xxh32(ptr: usize, len: usize, seed: u32): u32 {
  return xxh32Hash(ptr, len, seed);
}

/** XXH32 of every page of a batch; digest k as u32 at outPtr + 4k. Returns count. */
export function xxh32Batch(pagesPtr: usize, pageSize: u32, count: u32, seed: u32, outPtr: usize): u32 {
  let k: u32 = 0;
  for (; k + 4 <= count; k += 4) xxh32Four(pagesPtr + <usize>k * pageSize, pageSize, seed, outPtr + (<usize>k << 2));
  for (; k < count; k++) {
    store<u32>(outPtr + (<usize>k << 2), xxh32Hash(pagesPtr + <usize>k * pageSize, pageSize, seed));
  }
  return count;
}

export function xxh32Reset(state: usize, seed: u32): void {
  xxh32InitLanes(state, seed);
  store<u64>(state + S32_TOTAL, 0);
  store<u32>(state + S32_BUFFERED, 0);
  store<u32>(state + S32_SEED, seed);
}

export function xxh32Update(state: usize, input: usize, len: usize): void {
  bufferedUpdate<u32>(state, input, len, S32_BUFFER, S32_TOTAL, S32_BUFFERED);
}

export function xxh32Digest(state: usize): u32 {
  return xxh32Finish(state, load<u32>(state + S32_SEED), load<u64>(state + S32_TOTAL), state + S32_BUFFER, load<u32>(state + S32_BUFFERED));
}

// ---------------------------------------------------------------- XXH64

// XXH64 state: 0 lanes u64[4] · 32 buffer[32] · 64 total length u64 ·
// 72 seed u64 · 80 buffered u32
const S64_BUFFER: usize = 32;
const S64_TOTAL: usize = 64;
const S64_SEED: usize = 72;
const S64_BUFFERED: usize = 80;

// @ts-ignore: decorator
@inline
function xxh64Round(acc: u64, input: u64): u64 {
  return rotl<u64>(acc + input * P64_2, 31) * P64_1;
}

// @ts-ignore: decorator
@inline
function xxh64Merge(h: u64, lane: u64): u64 {
  return (h ^ xxh64Round(0, lane)) * P64_1 + P64_4;
}

// @ts-ignore: decorator
@inline
function xxh64InitLanes(lanes: usize, seed: u64): void {
  store<u64>(lanes, seed + P64_1 + P64_2);
  store<u64>(lanes, seed + P64_2, 8);
  store<u64>(lanes, seed, 16);
  store<u64>(lanes, seed - P64_1, 24);
}

/** Runs `stripes` 32-byte stripes through the four lanes kept at `lanes`. */
function xxh64Stripes(lanes: usize, input: usize, stripes: usize): void {
  let v1 = load<u64>(lanes);
  let v2 = load<u64>(lanes, 8);
  let v3 = load<u64>(lanes, 16);
  let v4 = load<u64>(lanes, 24);
  const end = input + (stripes << 5);
  while (input < end) {
    v1 = xxh64Round(v1, load<u64>(input));
    v2 = xxh64Round(v2, load<u64>(input, 8));
    v3 = xxh64Round(v3, load<u64>(input, 16));
    v4 = xxh64Round(v4, load<u64>(input, 24));
    input += 32;
  }
  store<u64>(lanes, v1);
  store<u64>(lanes, v2, 8);
  store<u64>(lanes, v3, 16);
  store<u64>(lanes, v4, 24);
}

// @ts-ignore: decorator
@inline
function xxh64Avalanche(h: u64): u64 {
  h ^= h >> 33;
  h *= P64_2;
  h ^= h >> 29;
  h *= P64_3;
  h ^= h >> 32;
  return h;
}

function xxh64Finish(lanes: usize, seed: u64, total: u64, tail: usize, tailLen: usize): u64 {
  let h: u64;
  if (total >= 32) {
    const v1 = load<u64>(lanes);
    const v2 = load<u64>(lanes, 8);
    const v3 = load<u64>(lanes, 16);
    const v4 = load<u64>(lanes, 24);
    h = rotl<u64>(v1, 1) + rotl<u64>(v2, 7) + rotl<u64>(v3, 12) + rotl<u64>(v4, 18);
    h = xxh64Merge(h, v1);
    h = xxh64Merge(h, v2);
    h = xxh64Merge(h, v3);
    h = xxh64Merge(h, v4);
  } else {
    h = seed + P64_5;
  }
  h += total;
  const end = tail + tailLen;
  while (tail + 8 <= end) {
    h = rotl<u64>(h ^ xxh64Round(0, load<u64>(tail)), 27) * P64_1 + P64_4;
    tail += 8;
  }
  if (tail + 4 <= end) {
    h = rotl<u64>(h ^ (<u64>load<u32>(tail) * P64_1), 23) * P64_2 + P64_3;
    tail += 4;
  }
  while (tail < end) {
    h = rotl<u64>(h ^ (<u64>load<u8>(tail) * P64_5), 11) * P64_1;
    tail++;
  }
  return xxh64Avalanche(h);
}

function xxh64Hash(input: usize, len: usize, seed: u64): u64 {
  xxh64InitLanes(WORK_LANES, seed);
  const stripes = len >> 5;
  xxh64Stripes(WORK_LANES, input, stripes);
  return xxh64Finish(WORK_LANES, seed, <u64>len, input + (stripes << 5), len & 31);
}

/** XXH64 of `len` bytes at `ptr`. */
export function xxh64(ptr: usize, len: usize, seed: u64): u64 {
  return xxh64Hash(ptr, len, seed);
}

/** XXH64 of every page of a batch; digest k as u64 at outPtr + 8k. Returns count. */
export function xxh64Batch(pagesPtr: usize, pageSize: u32, count: u32, seed: u64, outPtr: usize): u32 {
  for (let k: u32 = 0; k < count; k++) {
    store<u64>(outPtr + (<usize>k << 3), xxh64Hash(pagesPtr + <usize>k * pageSize, pageSize, seed));
  }
  return count;
}

export function xxh64Reset(state: usize, seed: u64): void {
  xxh64InitLanes(state, seed);
  store<u64>(state + S64_TOTAL, 0);
  store<u64>(state + S64_SEED, seed);
  store<u32>(state + S64_BUFFERED, 0);
}

export function xxh64Update(state: usize, input: usize, len: usize): void {
  bufferedUpdate<u64>(state, input, len, S64_BUFFER, S64_TOTAL, S64_BUFFERED);
}

export function xxh64Digest(state: usize): u64 {
  return xxh64Finish(state, load<u64>(state + S64_SEED), load<u64>(state + S64_TOTAL), state + S64_BUFFER, load<u32>(state + S64_BUFFERED));
}

// ---------------------------------------------------------------- XXH32 and XXH64 streaming

/**
 * The streaming update XXH32 and XXH64 share (their states differ only in
 * where things lie): whole stripes of four T lanes go through the lanes at
 * once, a partial one waits in the state's buffer for the next call.
 * `buffer`, `total` (u64) and `buffered` (u32) are offsets into the state.
 */
// @ts-ignore: decorator
@inline
function bufferedUpdate<T>(state: usize, input: usize, len: usize, buffer: usize, total: usize, bufferedAt: usize): void {
  const stripe: usize = 4 * sizeof<T>();
  store<u64>(state + total, load<u64>(state + total) + <u64>len);
  let buffered = <usize>load<u32>(state + bufferedAt);
  if (buffered + len < stripe) {
    memory.copy(state + buffer + buffered, input, len);
    store<u32>(state + bufferedAt, <u32>(buffered + len));
    return;
  }
  if (buffered) {
    const fill = stripe - buffered;
    memory.copy(state + buffer + buffered, input, fill);
    laneStripes<T>(state, state + buffer, 1);
    input += fill;
    len -= fill;
  }
  const stripes = len / stripe;
  laneStripes<T>(state, input, stripes);
  buffered = len % stripe;
  memory.copy(state + buffer, input + stripes * stripe, buffered);
  store<u32>(state + bufferedAt, <u32>buffered);
}

// @ts-ignore: decorator
@inline
function laneStripes<T>(lanes: usize, input: usize, stripes: usize): void {
  if (sizeof<T>() == 4) xxh32Stripes(lanes, input, stripes);
  else xxh64Stripes(lanes, input, stripes);
}

// ---------------------------------------------------------------- XXH3-64

// XXH3 state: 0 accumulators (lane-swapped, 64) · 64 secret[192] ·
// 256 buffer[256] · 512 total length u64 · 520 seed u64 · 528 buffered u32 ·
// 532 stripes taken in the current block u32
const S3_SECRET: usize = 64;
const S3_BUFFER: usize = 256;
const S3_BUFFER_SIZE: usize = 256;
const S3_TOTAL: usize = 512;
const S3_SEED: usize = 520;
const S3_BUFFERED: usize = 528;
const S3_BLOCK_STRIPES: usize = 532;
const S3_SIZE: u32 = 576;

/** Bytes a streaming state takes (any of the three algorithms). */
export function xxhStateSize(): u32 {
  return S3_SIZE;
}

/** The low 64 bits of a·b xor the high 64 bits (the 128-bit product folded). */
function mulFold64(a: u64, b: u64): u64 {
  const aLo = a & 0xffffffff;
  const aHi = a >> 32;
  const bLo = b & 0xffffffff;
  const bHi = b >> 32;
  const ll = aLo * bLo;
  const lh = aLo * bHi;
  const hl = aHi * bLo;
  const hh = aHi * bHi;
  // (ll >> 32) + low32(lh) + hl never exceeds 2^64 - 1.
  const cross = (ll >> 32) + (lh & 0xffffffff) + hl;
  const high = (lh >> 32) + (cross >> 32) + hh;
  const low = (cross << 32) | (ll & 0xffffffff);
  return low ^ high;
}

// @ts-ignore: decorator
@inline
function xxh3Avalanche(h: u64): u64 {
  h ^= h >> 37;
  h *= PRIME_MX1;
  return h ^ (h >> 32);
}

// @ts-ignore: decorator
@inline
function mix16(input: usize, secret: usize, seed: u64): u64 {
  return mulFold64(load<u64>(input) ^ (load<u64>(secret) + seed), load<u64>(input, 8) ^ (load<u64>(secret, 8) - seed));
}

/** XXH3-64 of 0..240 bytes with the default secret. */
function xxh3Short(input: usize, len: usize, seed: u64): u64 {
  const secret = K_SECRET;
  if (len <= 16) {
    if (len > 8) {
      const lo = load<u64>(input) ^ ((load<u64>(secret, 24) ^ load<u64>(secret, 32)) + seed);
      const hi = load<u64>(input + len - 8) ^ ((load<u64>(secret, 40) ^ load<u64>(secret, 48)) - seed);
      return xxh3Avalanche(<u64>len + bswap<u64>(lo) + hi + mulFold64(lo, hi));
    }
    if (len >= 4) {
      const s = seed ^ (<u64>bswap<u32>(<u32>seed) << 32);
      const combined = <u64>load<u32>(input + len - 4) | (<u64>load<u32>(input) << 32);
      let h = ((load<u64>(secret, 8) ^ load<u64>(secret, 16)) - s) ^ combined;
      h ^= rotl<u64>(h, 49) ^ rotl<u64>(h, 24);
      h *= PRIME_MX2;
      h ^= (h >> 35) + <u64>len;
      h *= PRIME_MX2;
      return h ^ (h >> 28);
    }
    if (len > 0) {
      const combined = (<u32>load<u8>(input + len - 1)) | (<u32>len << 8) | (<u32>load<u8>(input) << 16) | (<u32>load<u8>(input + (len >> 1)) << 24);
      const flip = <u64>(load<u32>(secret) ^ load<u32>(secret, 4)) + seed;
      return xxh64Avalanche(<u64>combined ^ flip);
    }
    return xxh64Avalanche(seed ^ load<u64>(secret, 56) ^ load<u64>(secret, 64));
  }
  let acc = <u64>len * P64_1;
  if (len <= 128) {
    // Pairs of 16-byte chunks from both ends, the outermost pair last.
    if (len > 32) {
      if (len > 64) {
        if (len > 96) {
          acc += mix16(input + 48, secret + 96, seed);
          acc += mix16(input + len - 64, secret + 112, seed);
        }
        acc += mix16(input + 32, secret + 64, seed);
        acc += mix16(input + len - 48, secret + 80, seed);
      }
      acc += mix16(input + 16, secret + 32, seed);
      acc += mix16(input + len - 32, secret + 48, seed);
    }
    acc += mix16(input, secret, seed);
    acc += mix16(input + len - 16, secret + 16, seed);
    return xxh3Avalanche(acc);
  }
  const chunks = len >> 4;
  for (let i: usize = 0; i < 8; i++) acc += mix16(input + (i << 4), secret + (i << 4), seed);
  acc = xxh3Avalanche(acc);
  for (let i: usize = 8; i < chunks; i++) acc += mix16(input + (i << 4), secret + ((i - 8) << 4) + 3, seed);
  acc += mix16(input + len - 16, secret + 119, seed);
  return xxh3Avalanche(acc);
}

/** The initial accumulators, stored lane-swapped. */
// @ts-ignore: decorator
@inline
function xxh3InitAcc(acc: usize): void {
  v128.store(acc, i64x2(<i64>P64_1, <i64>P32_3));
  v128.store(acc, i64x2(<i64>P64_3, <i64>P64_2), 16);
  v128.store(acc, i64x2(<i64>P32_2, <i64>P64_4), 32);
  v128.store(acc, i64x2(<i64>P32_1, <i64>P64_5), 48);
}

/** Runs `stripes` stripes at `input` into the accumulators at `acc`, secret from `secret` on (8 bytes per stripe). */
function xxh3Stripes(acc: usize, input: usize, secret: usize, stripes: usize): void {
  let a0 = v128.load(acc);
  let a1 = v128.load(acc, 16);
  let a2 = v128.load(acc, 32);
  let a3 = v128.load(acc, 48);
  const end = input + (stripes << 6);
  while (input < end) {
    const d0 = v128.load(input);
    const d1 = v128.load(input, 16);
    const d2 = v128.load(input, 32);
    const d3 = v128.load(input, 48);
    const k0 = v128.xor(d0, v128.load(secret));
    const k1 = v128.xor(d1, v128.load(secret, 16));
    const k2 = v128.xor(d2, v128.load(secret, 32));
    const k3 = v128.xor(d3, v128.load(secret, 48));
    // Low and high 32-bit halves of four lanes, each pair in swapped order.
    const lo01 = i32x4.shuffle(k0, k1, 2, 0, 6, 4);
    const hi01 = i32x4.shuffle(k0, k1, 3, 1, 7, 5);
    const lo23 = i32x4.shuffle(k2, k3, 2, 0, 6, 4);
    const hi23 = i32x4.shuffle(k2, k3, 3, 1, 7, 5);
    a0 = i64x2.add(i64x2.add(a0, d0), i64x2.extmul_low_i32x4_u(lo01, hi01));
    a1 = i64x2.add(i64x2.add(a1, d1), i64x2.extmul_high_i32x4_u(lo01, hi01));
    a2 = i64x2.add(i64x2.add(a2, d2), i64x2.extmul_low_i32x4_u(lo23, hi23));
    a3 = i64x2.add(i64x2.add(a3, d3), i64x2.extmul_high_i32x4_u(lo23, hi23));
    input += STRIPE;
    secret += 8;
  }
  v128.store(acc, a0);
  v128.store(acc, a1, 16);
  v128.store(acc, a2, 32);
  v128.store(acc, a3, 48);
}

// @ts-ignore: decorator
@inline
function scrambleLane(a: v128, key: v128): v128 {
  // The accumulators are lane-swapped, so the key is too.
  const k = i64x2.shuffle(key, key, 1, 0);
  return i64x2.mul(v128.xor(v128.xor(a, i64x2.shr_u(a, 47)), k), i64x2.splat(<i64>P32_1));
}

function xxh3Scramble(acc: usize, secret: usize): void {
  v128.store(acc, scrambleLane(v128.load(acc), v128.load(secret)));
  v128.store(acc, scrambleLane(v128.load(acc, 16), v128.load(secret, 16)), 16);
  v128.store(acc, scrambleLane(v128.load(acc, 32), v128.load(secret, 32)), 32);
  v128.store(acc, scrambleLane(v128.load(acc, 48), v128.load(secret, 48)), 48);
}

/**
 * Takes `stripes` stripes from `input` into the accumulators, `done` stripes
 * of the current block already taken; scrambles at every block end. Returns
 * the stripes taken in the block after the call.
 */
function xxh3Consume(acc: usize, secret: usize, done: u32, input: usize, stripes: u32): u32 {
  while (stripes) {
    const take = min(STRIPES_PER_BLOCK - done, stripes);
    xxh3Stripes(acc, input, secret + (<usize>done << 3), take);
    input += <usize>take << 6;
    stripes -= take;
    done += take;
    if (done == STRIPES_PER_BLOCK) {
      xxh3Scramble(acc, secret + SCRAMBLE_OFFSET);
      done = 0;
    }
  }
  return done;
}

/** The final merge of the (lane-swapped) accumulators. */
function xxh3Merge(acc: usize, secret: usize, total: u64): u64 {
  let h = total * P64_1;
  for (let i: usize = 0; i < 4; i++) {
    const even = load<u64>(acc + (i << 4), 8);
    const odd = load<u64>(acc + (i << 4));
    h += mulFold64(even ^ load<u64>(secret + (i << 4)), odd ^ load<u64>(secret + (i << 4), 8));
  }
  return xxh3Avalanche(h);
}

/** XXH3-64 of more than 240 bytes with a 192-byte secret. */
function xxh3Long(input: usize, len: usize, secret: usize): u64 {
  const acc = WORK_ACC;
  xxh3InitAcc(acc);
  const stripes = <u32>((len - 1) >> 6);
  xxh3Consume(acc, secret, 0, input, stripes);
  xxh3Stripes(acc, input + len - STRIPE, secret + LAST_STRIPE_OFFSET, 1);
  return xxh3Merge(acc, secret + MERGE_OFFSET, <u64>len);
}

/** XXH3's secret for a seed: the default one with the seed added to even words and taken from odd ones. */
function deriveSecret(dst: usize, seed: u64): void {
  for (let i: usize = 0; i < SECRET_SIZE; i += 16) {
    store<u64>(dst + i, load<u64>(K_SECRET + i) + seed);
    store<u64>(dst + i, load<u64>(K_SECRET + i, 8) - seed, 8);
  }
}

/** Secret for the long path with this seed (derived into SEEDED_SECRET when not 0). */
function longSecret(seed: u64): usize {
  if (seed == 0) return K_SECRET;
  deriveSecret(SEEDED_SECRET, seed);
  return SEEDED_SECRET;
}

/** XXH3-64 of `len` bytes at `ptr`. */
export function xxh3(ptr: usize, len: usize, seed: u64): u64 {
  if (len <= MIDSIZE_MAX) return xxh3Short(ptr, len, seed);
  return xxh3Long(ptr, len, longSecret(seed));
}

/** XXH3-64 of every page of a batch; digest k as u64 at outPtr + 8k. Returns count. */
export function xxh3Batch(pagesPtr: usize, pageSize: u32, count: u32, seed: u64, outPtr: usize): u32 {
  if (pageSize <= MIDSIZE_MAX) {
    for (let k: u32 = 0; k < count; k++) {
      store<u64>(outPtr + (<usize>k << 3), xxh3Short(pagesPtr + <usize>k * pageSize, pageSize, seed));
    }
    return count;
  }
  const secret = longSecret(seed);
  for (let k: u32 = 0; k < count; k++) {
    store<u64>(outPtr + (<usize>k << 3), xxh3Long(pagesPtr + <usize>k * pageSize, pageSize, secret));
  }
  return count;
}

export function xxh3Reset(state: usize, seed: u64): void {
  xxh3InitAcc(state);
  if (seed == 0) memory.copy(state + S3_SECRET, K_SECRET, SECRET_SIZE);
  else deriveSecret(state + S3_SECRET, seed);
  store<u64>(state + S3_TOTAL, 0);
  store<u64>(state + S3_SEED, seed);
  store<u32>(state + S3_BUFFERED, 0);
  store<u32>(state + S3_BLOCK_STRIPES, 0);
}

// The buffer is consumed only when more input follows it, so at digest time it
// always holds the last 1..256 bytes. Its last 64 bytes always hold the last
// stripe consumed, which completes the final stripe when fewer than 64 bytes
// are buffered.
export function xxh3Update(state: usize, input: usize, len: usize): void {
  store<u64>(state + S3_TOTAL, load<u64>(state + S3_TOTAL) + <u64>len);
  const buffer = state + S3_BUFFER;
  let buffered = <usize>load<u32>(state + S3_BUFFERED);
  if (buffered + len <= S3_BUFFER_SIZE) {
    memory.copy(buffer + buffered, input, len);
    store<u32>(state + S3_BUFFERED, <u32>(buffered + len));
    return;
  }
  const secret = state + S3_SECRET;
  let done = load<u32>(state + S3_BLOCK_STRIPES);
  if (buffered) {
    const fill = S3_BUFFER_SIZE - buffered;
    memory.copy(buffer + buffered, input, fill);
    done = xxh3Consume(state, secret, done, buffer, <u32>(S3_BUFFER_SIZE >> 6));
    input += fill;
    len -= fill;
  }
  if (len > S3_BUFFER_SIZE) {
    // Leave 1..64 bytes for the buffer; keep the last consumed stripe in its tail.
    const stripes = (len - 1) >> 6;
    done = xxh3Consume(state, secret, done, input, <u32>stripes);
    input += stripes << 6;
    len -= stripes << 6;
    memory.copy(buffer + S3_BUFFER_SIZE - STRIPE, input - STRIPE, STRIPE);
  }
  memory.copy(buffer, input, len);
  store<u32>(state + S3_BUFFERED, <u32>len);
  store<u32>(state + S3_BLOCK_STRIPES, done);
}

export function xxh3Digest(state: usize): u64 {
  const total = load<u64>(state + S3_TOTAL);
  const buffer = state + S3_BUFFER;
  const buffered = <usize>load<u32>(state + S3_BUFFERED);
  if (total <= <u64>MIDSIZE_MAX) return xxh3Short(buffer, buffered, load<u64>(state + S3_SEED));
  // Finish on a copy of the accumulators so that the state can keep going.
  const secret = state + S3_SECRET;
  const acc = WORK_ACC;
  memory.copy(acc, state, 64);
  let last: usize;
  if (buffered >= STRIPE) {
    xxh3Consume(acc, secret, load<u32>(state + S3_BLOCK_STRIPES), buffer, <u32>((buffered - 1) >> 6));
    last = buffer + buffered - STRIPE;
  } else {
    const fromTail: usize = <usize>STRIPE - buffered;
    memory.copy(LAST_STRIPE, buffer + S3_BUFFER_SIZE - fromTail, fromTail);
    memory.copy(LAST_STRIPE + fromTail, buffer, buffered);
    last = LAST_STRIPE;
  }
  xxh3Stripes(acc, last, secret + LAST_STRIPE_OFFSET, 1);
  return xxh3Merge(acc, secret + MERGE_OFFSET, total);
}

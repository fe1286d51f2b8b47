// WKdm_new: the 16-word dictionary page compressor XNU ships, byte for byte
// (XNU's WKdm_compress_new / WKdm_decompress_new, xnu-7195 x86_64 assembly).
// Word-based: pages are always 4096 bytes, 1024 little-endian 32-bit words.
//
// Default form, in 32-bit words:
//   [0..2]  header: end offsets (in words, from the stream start) of the
//           new-word, dictionary-index and low-bits areas; size = 4 × [2]
//   [3..66] 2-bit tags (0 zero, 1 partial, 2 miss, 3 exact), 16 words per
//           tag word: word k of a group in byte k % 4, at bit 2·(k / 4)
//   then    each missed word, raw
//   then    4-bit dictionary slots of partial and exact matches, 8 per word:
//           slot j of a group in byte j % 4, low nibble when j < 4; zero padded
//   then    the low 10 bits of each partial match, 3 per word (bits 0/10/20)
// Sparse (MZV) form: word 17185, then per non-zero word a u32 value and a u16
// byte offset (increasing), chosen when XNU's size estimate says it is no larger.
//
// The dictionary (16 words, zero at the start) is indexed through XNU's fixed
// 256-entry table by bits 10..17 of the word. Compression follows XNU's
// decisions exactly: a budget charged 268 bytes first, then 4 per miss (give
// up when nothing is left), an early give-up after the first 416 bytes when
// the projected size passes 426, return 0 for a page of one repeated word, the
// MZV choice, then the packing charges. The scan is branch-free per word:
// every word stores its tag, its slot, its low bits and itself as a new word,
// and only the cursors that the tag selects move on.

import { RAW, SAME_VALUE, WKDM, ZERO, decodeBatch, decodePlain, encodeBatch, encoded } from "./table";

/** Byte offset in the dictionary (slot × 4) of word x, by (x >> 10) & 0xff: XNU's hashLookupTable_new. */
const HASH = memory.data<u8>([
  0, 52, 8, 56, 16, 12, 28, 20, 4, 36, 48, 24, 44, 40, 32, 60,
  8, 12, 28, 20, 4, 60, 16, 36, 24, 48, 44, 32, 52, 56, 40, 12,
  8, 48, 16, 52, 60, 28, 56, 32, 20, 24, 36, 40, 44, 4, 8, 40,
  60, 32, 20, 44, 4, 36, 52, 24, 16, 56, 48, 12, 28, 16, 8, 40,
  36, 28, 32, 12, 4, 44, 52, 20, 24, 48, 60, 56, 40, 48, 8, 32,
  28, 36, 4, 44, 20, 56, 60, 24, 52, 16, 12, 12, 4, 48, 20, 8,
  52, 16, 60, 24, 36, 44, 28, 56, 40, 32, 36, 20, 24, 60, 40, 44,
  52, 16, 32, 4, 48, 8, 28, 56, 12, 28, 32, 40, 52, 36, 16, 20,
  48, 8, 4, 60, 24, 56, 44, 12, 8, 36, 24, 28, 16, 60, 20, 56,
  32, 40, 48, 12, 4, 44, 52, 44, 40, 12, 56, 8, 36, 24, 60, 28,
  48, 4, 32, 20, 16, 52, 60, 12, 24, 36, 8, 4, 16, 56, 48, 44,
  40, 52, 32, 20, 28, 32, 12, 36, 28, 24, 56, 40, 16, 52, 44, 4,
  20, 60, 8, 48, 48, 52, 12, 20, 32, 44, 36, 28, 4, 40, 24, 8,
  56, 60, 16, 36, 32, 8, 40, 4, 52, 24, 44, 20, 12, 28, 48, 56,
  16, 60, 4, 52, 60, 48, 20, 16, 56, 44, 24, 8, 40, 12, 32, 28,
  36, 24, 32, 12, 4, 20, 16, 60, 36, 28, 8, 52, 40, 48, 44, 56,
]);

const PAGE_BYTES: u32 = 4096;
const WORDS: u32 = 1024;
const HEADER_AND_TAG_BYTES: u32 = 268;
const HEADER_AND_TAG_WORDS: u32 = 67;
const MZV_MAGIC: u32 = 17185;
/** XNU's CHKPT_BYTES (416) in words, the tag bytes of those words, and CHKPT_SHRUNK_BYTES. */
const CHECKPOINT_WORDS: u32 = 104;
const CHECKPOINT_TAG_BYTES: u32 = 26;
const CHECKPOINT_LIMIT: u32 = 426;
/** Bytes the compressor may write past the budget (misses are charged once per 8 words). */
const WRITE_SLACK: u32 = 32;

// Static scratch. Sized past their maximum fill because the branch-free loops
// store one element beyond the live ones and read ahead by up to 8 bytes.
const DICT = memory.data(64, 16);
const TAGS = memory.data(WORDS + 16, 16);
const SLOTS = memory.data(WORDS + 32, 16);
const LOWS = memory.data(2 * WORDS + 32, 16);
const MISSED = memory.data(4 * WORDS + 16, 16);

// @ts-ignore: decorator
@inline
function clearDictionary(): void {
  const zero = i32x4.splat(0);
  v128.store(DICT, zero);
  v128.store(DICT, zero, 16);
  v128.store(DICT, zero, 32);
  v128.store(DICT, zero, 48);
}

/** XNU's running size estimate: low-bit bytes × 2/3, slot bytes / 2, plus the misses. */
// @ts-ignore: decorator
@inline
function estimate(misses: u32, matches: u32, partials: u32): u32 {
  return ((partials * 2 * 1365) >> 11) + (misses << 2) + (matches >> 1);
}

/**
 * Classifies word x against the dictionary and updates its entry. Stores, at
 * the cursors, the tag, the dictionary offset, the low 10 bits and x itself
 * (as a missed word); the caller moves on only the cursors the tag selects.
 */
// @ts-ignore: decorator
@inline
function tagWord(x: u32, tagAt: usize, newPtr: usize, slotPtr: usize, lowPtr: usize): u32 {
  const offset = <usize>load<u8>(HASH + ((x >> 10) & 0xff));
  const entry = DICT + offset;
  const d = load<u32>(entry);
  const exact = <u32>(x == d);
  const near = <u32>((x ^ d) >> 10 == 0);
  const nonzero = x != 0;
  // nonzero: exact 3, partial 1, miss 2
  const tag = select<u32>(2 - near + (exact << 1), 0, nonzero);
  store<u32>(entry, select<u32>(x, d, nonzero));
  store<u8>(tagAt, <u8>tag);
  store<u32>(newPtr, x);
  store<u8>(slotPtr, <u8>offset);
  store<u16>(lowPtr, <u16>(x & 0x3ff));
  return tag;
}

/** The repeated word of the last page wkdmCompressPage returned 0 for. */
let singleValue: u32 = 0;

/**
 * Compresses the page at `src` into `dst` within `budget` bytes (at most
 * 4096). Returns the size, 0 for a page of one repeated word (`singleValue`),
 * or -1. Writes at most `budget` + 32 bytes at `dst`, whatever it returns.
 */
export function wkdmCompressPage(src: usize, dst: usize, budget: u32): i32 {
  if (budget <= HEADER_AND_TAG_BYTES) return -1;
  clearDictionary();
  const newStart = dst + HEADER_AND_TAG_BYTES;
  // -1 as soon as 4 × misses reaches budget - 268 (XNU: "byte_count <= 0").
  const newLimit = newStart + (budget - HEADER_AND_TAG_BYTES);
  let newPtr = newStart;
  let slotPtr = SLOTS;
  let lowPtr = LOWS;
  for (let i: u32 = 0; i < WORDS; i += 8) {
    const at = src + (<usize>i << 2);
    const tagAt = TAGS + <usize>i;
    if (!v128.any_true(v128.or(v128.load(at), v128.load(at, 16)))) {
      store<u64>(tagAt, 0);
    } else {
      // Unrolled: constant offsets instead of a counter are worth ~13% here.
      let tag: u32;
      tag = tagWord(load<u32>(at), tagAt, newPtr, slotPtr, lowPtr);
      newPtr += <usize>(tag == 2) << 2;
      slotPtr += <usize>(tag & 1);
      lowPtr += <usize>(tag == 1) << 1;
      tag = tagWord(load<u32>(at, 4), tagAt + 1, newPtr, slotPtr, lowPtr);
      newPtr += <usize>(tag == 2) << 2;
      slotPtr += <usize>(tag & 1);
      lowPtr += <usize>(tag == 1) << 1;
      tag = tagWord(load<u32>(at, 8), tagAt + 2, newPtr, slotPtr, lowPtr);
      newPtr += <usize>(tag == 2) << 2;
      slotPtr += <usize>(tag & 1);
      lowPtr += <usize>(tag == 1) << 1;
      tag = tagWord(load<u32>(at, 12), tagAt + 3, newPtr, slotPtr, lowPtr);
      newPtr += <usize>(tag == 2) << 2;
      slotPtr += <usize>(tag & 1);
      lowPtr += <usize>(tag == 1) << 1;
      tag = tagWord(load<u32>(at, 16), tagAt + 4, newPtr, slotPtr, lowPtr);
      newPtr += <usize>(tag == 2) << 2;
      slotPtr += <usize>(tag & 1);
      lowPtr += <usize>(tag == 1) << 1;
      tag = tagWord(load<u32>(at, 20), tagAt + 5, newPtr, slotPtr, lowPtr);
      newPtr += <usize>(tag == 2) << 2;
      slotPtr += <usize>(tag & 1);
      lowPtr += <usize>(tag == 1) << 1;
      tag = tagWord(load<u32>(at, 24), tagAt + 6, newPtr, slotPtr, lowPtr);
      newPtr += <usize>(tag == 2) << 2;
      slotPtr += <usize>(tag & 1);
      lowPtr += <usize>(tag == 1) << 1;
      tag = tagWord(load<u32>(at, 28), tagAt + 7, newPtr, slotPtr, lowPtr);
      newPtr += <usize>(tag == 2) << 2;
      slotPtr += <usize>(tag & 1);
      lowPtr += <usize>(tag == 1) << 1;
      if (newPtr >= newLimit) return -1;
    }
    if (i + 8 == CHECKPOINT_WORDS) {
      const est = estimate(<u32>(newPtr - newStart) >> 2, <u32>(slotPtr - SLOTS), <u32>(lowPtr - LOWS) >> 1);
      if (est + CHECKPOINT_TAG_BYTES > CHECKPOINT_LIMIT) return -1;
    }
  }
  const misses = <u32>(newPtr - newStart) >> 2;
  const matches = <u32>(slotPtr - SLOTS);
  const partials = <u32>(lowPtr - LOWS) >> 1;
  if (misses == 0 && matches == 0) {
    singleValue = 0;
    return 0;
  }
  const firstTag = load<u8>(TAGS);
  if ((partials == 0 && matches == WORDS - 1 && misses == 1 && firstTag == 2) || (partials == 1 && matches == WORDS && firstTag == 1)) {
    singleValue = load<u32>(src);
    return 0;
  }
  const sparseBytes = (misses + matches) * 6 + 4;
  if (estimate(misses, matches, partials) + HEADER_AND_TAG_BYTES >= sparseBytes) {
    if (sparseBytes > budget) return -1;
    return packSparse(src, dst, sparseBytes);
  }

  let room = <i32>(budget - HEADER_AND_TAG_BYTES) - <i32>(misses << 2);
  const slotWords = (matches + 7) >> 3;
  room -= <i32>(slotWords << 2);
  if (room < 0) return -1;
  const lowWords = (partials + 2) / 3;
  if (lowWords > 0 && room - <i32>(lowWords << 2) <= 0) return -1;

  // Tags: bytes t[0..15] of a group become byte k = t[k] | t[k+4]<<2 | t[k+8]<<4 | t[k+12]<<6.
  for (let g: usize = 0; g < 64; g++) {
    const halves = load<u64>(TAGS + (g << 4)) | (load<u64>(TAGS + (g << 4), 8) << 4);
    store<u32>(dst + 12 + (g << 2), <u32>(halves | (halves >> 30)));
  }
  // Slots (kept as byte offsets, slot × 4): 8 of them become byte j = s[j] | s[j+4]<<4; padding slots are zero.
  store<u64>(slotPtr, 0);
  const slotStart = newStart + (<usize>misses << 2);
  for (let w: usize = 0; w < slotWords; w++) {
    const eight = load<u64>(SLOTS + (w << 3)) >> 2;
    store<u32>(slotStart + (w << 2), <u32>(eight | (eight >> 28)));
  }
  store<u32>(lowPtr, 0);
  const lowStart = slotStart + (<usize>slotWords << 2);
  for (let w: usize = 0; w < lowWords; w++) {
    const three = LOWS + w * 6;
    store<u32>(lowStart + (w << 2), <u32>load<u16>(three) | (<u32>load<u16>(three, 2) << 10) | (<u32>load<u16>(three, 4) << 20));
  }
  const newEnd = HEADER_AND_TAG_WORDS + misses;
  const slotEnd = newEnd + slotWords;
  const lowEnd = slotEnd + lowWords;
  store<u32>(dst, newEnd);
  store<u32>(dst, slotEnd, 4);
  store<u32>(dst, lowEnd, 8);
  return <i32>(lowEnd << 2);
}

/** The MZV form: magic, then (u32 value, u16 byte offset) per non-zero word. */
function packSparse(src: usize, dst: usize, size: u32): i32 {
  store<u32>(dst, MZV_MAGIC);
  let at = dst + 4;
  for (let i: u32 = 0; i < WORDS; i++) {
    const x = load<u32>(src + (<usize>i << 2));
    store<u32>(at, x);
    store<u16>(at, <u16>(i << 2), 4);
    at += select<usize>(6, 0, x != 0);
  }
  return <i32>size;
}

/**
 * A PageEncoder: the page as WKdm packs it within `budget` bytes (WKDM), as
 * ZERO or SAME_VALUE (the repeated word's 4 bytes), or the page itself (RAW)
 * when it does not fit.
 */
function wkdmOrRaw(k: u32, src: usize, dst: usize, pageSize: u32, budget: usize): u64 {
  const status = wkdmCompressPage(src, dst, <u32>budget);
  if (status > 0) return encoded(WKDM, <u32>status);
  if (status < 0) {
    memory.copy(dst, src, PAGE_BYTES);
    return encoded(RAW, PAGE_BYTES);
  }
  if (singleValue == 0) return encoded(ZERO, 0);
  store<u32>(dst, singleValue);
  return encoded(SAME_VALUE, 4);
}

/**
 * Compresses `count` pages at `pagesPtr` (4096 bytes each) with wkdmOrRaw, a
 * budget of `budget` bytes each (at most 4096; XNU's semantics), back to back
 * from `outPtr` in the wire layout, the page table to `tablePtr`. The region
 * at `outPtr` must hold `count` × 4096 + 64 bytes. Returns the bytes used.
 */
export function wkdmCompressBatch(pagesPtr: usize, count: u32, budget: u32, outPtr: usize, tablePtr: usize): u32 {
  return encodeBatch(pagesPtr, PAGE_BYTES, count, outPtr, tablePtr, min(budget, PAGE_BYTES), wkdmOrRaw);
}

// ---------------------------------------------------------------------------
// Decompression. Every field is checked before anything is written past the
// page being decoded; the reason for a rejection is one of these numbers.

/** Reasons a decoder rejects a WKdm stream (1..5 are every decoder's: assembly/table.ts). */
const SHORT_STREAM: i32 = 6; // under 4 bytes
const BAD_SPARSE_LENGTH: i32 = 7; // MZV not 4 + 6·n bytes
const BAD_SPARSE_OFFSET: i32 = 8; // MZV offset past the page, not word aligned or not above the previous one
const SHORT_HEADER: i32 = 9; // under 268 bytes
const HEADER_ORDER: i32 = 10; // offsets not 67 <= new <= slots <= lows
const HEADER_PAST_END: i32 = 11; // header size larger than the payload
const HEADER_SHORT_OF_END: i32 = 12; // header size smaller than the payload
const TAG_COUNTS: i32 = 13; // tag counts disagree with the header's areas

const UNPACKED_TAGS = memory.data(16, 16);
/** Dictionary byte offsets (slot × 4) of the matches, one byte each. */
const UNPACKED_SLOTS = memory.data(WORDS + 32, 16);
const UNPACKED_LOWS = memory.data(2 * WORDS + 64, 16);

/** Decodes the MZV form of `len` bytes at `src` into `dst`; 0 or a reason. */
function decodeSparse(src: usize, len: u32, dst: usize): i32 {
  if ((len - 4) % 6 != 0) return BAD_SPARSE_LENGTH;
  // Offsets strictly increase, as XNU writes them: at most 1024 records.
  let next: u32 = 0;
  for (let at: u32 = 4; at < len; at += 6) {
    const offset = <u32>load<u16>(src + at, 4);
    if (offset < next || offset >= PAGE_BYTES || (offset & 3) != 0) return BAD_SPARSE_OFFSET;
    next = offset + 4;
  }
  memory.fill(dst, 0, PAGE_BYTES);
  for (let at: u32 = 4; at < len; at += 6) {
    store<u32>(dst + <usize>load<u16>(src + at, 4), load<u32>(src + at));
  }
  return 0;
}

/**
 * Writes the word of tag `tag` at `at` from the operands at the cursors (the
 * dictionary offset, the low bits, the next missed word: all read, whatever
 * the tag, and selected) and updates the dictionary. Returns the tag.
 */
// @ts-ignore: decorator
@inline
function decodeWord(tag: u32, at: usize, slotPtr: usize, lowPtr: usize, newPtr: usize): u32 {
  const slot = <usize>load<u8>(slotPtr);
  const fresh = load<u32>(newPtr);
  const d = load<u32>(DICT + slot);
  const isMiss = tag == 2;
  const word = select<u32>(fresh, select<u32>((d & ~0x3ff) | <u32>load<u16>(lowPtr), d, tag == 1), isMiss);
  const target = select<usize>(<usize>load<u8>(HASH + ((fresh >> 10) & 0xff)), slot, isMiss);
  store<u32>(DICT + target, select<u32>(word, d, tag != 0));
  store<u32>(at, select<u32>(word, 0, tag != 0));
  return tag;
}

/** Decodes one WKdm stream of exactly `len` bytes at `src` into the page at `dst`; 0 or a reason. */
export function wkdmDecodePage(src: usize, len: u32, dst: usize): i32 {
  if (len < 4) return SHORT_STREAM;
  if (load<u32>(src) == MZV_MAGIC) return decodeSparse(src, len, dst);
  if (len < HEADER_AND_TAG_BYTES) return SHORT_HEADER;
  const newEnd = load<u32>(src);
  const slotEnd = load<u32>(src, 4);
  const lowEnd = load<u32>(src, 8);
  if (newEnd < HEADER_AND_TAG_WORDS || slotEnd < newEnd || lowEnd < slotEnd) return HEADER_ORDER;
  const size = <u64>lowEnd << 2;
  if (size > <u64>len) return HEADER_PAST_END;
  if (size < <u64>len) return HEADER_SHORT_OF_END;

  // Count the tags two bits at a time: bit 0 of a tag is "match", bit 1 "not partial".
  let misses: u32 = 0;
  let partials: u32 = 0;
  let exacts: u32 = 0;
  for (let w: usize = 0; w < 32; w++) {
    const tags = load<u64>(src + 12 + (w << 3));
    const low = tags & 0x5555555555555555;
    const high = (tags >> 1) & 0x5555555555555555;
    exacts += <u32>popcnt<u64>(low & high);
    partials += <u32>popcnt<u64>(low & ~high);
    misses += <u32>popcnt<u64>(high & ~low);
  }
  const matches = partials + exacts;
  if (misses != newEnd - HEADER_AND_TAG_WORDS || (matches + 7) >> 3 != slotEnd - newEnd || (partials + 2) / 3 != lowEnd - slotEnd) {
    return TAG_COUNTS;
  }

  // Unpack slots (8 per word: low nibbles of bytes 0..3, then high nibbles) and low bits (3 per word).
  const slotArea = src + (<usize>newEnd << 2);
  for (let w: usize = 0, n = <usize>(slotEnd - newEnd); w < n; w++) {
    const packed = <u64>load<u32>(slotArea + (w << 2));
    store<u64>(UNPACKED_SLOTS + (w << 3), ((packed | (packed << 28)) & 0x0f0f0f0f0f0f0f0f) << 2);
  }
  const lowArea = src + (<usize>slotEnd << 2);
  for (let w: usize = 0, n = <usize>(lowEnd - slotEnd); w < n; w++) {
    const packed = <u64>load<u32>(lowArea + (w << 2));
    store<u64>(UNPACKED_LOWS + w * 6, (packed & 0x3ff) | ((packed & 0xffc00) << 6) | ((packed & 0x3ff00000) << 12));
  }
  // The loop reads one new word past the last; when no area follows the new
  // words inside the payload, read them from a copy instead.
  let newPtr = src + HEADER_AND_TAG_BYTES;
  if (lowEnd == newEnd) {
    memory.copy(MISSED, newPtr, misses << 2);
    newPtr = MISSED;
  }

  clearDictionary();
  let slotPtr = UNPACKED_SLOTS;
  let lowPtr = UNPACKED_LOWS;
  const zero = i32x4.splat(0);
  for (let g: usize = 0; g < 64; g++) {
    const tags = load<u32>(src + 12 + (g << 2));
    const out = dst + (g << 6);
    if (tags == 0) {
      v128.store(out, zero);
      v128.store(out, zero, 16);
      v128.store(out, zero, 32);
      v128.store(out, zero, 48);
      continue;
    }
    // One byte per word's tag: words 0..7 from bits 0-1 and 2-3 of each byte, 8..15 from bits 4-5 and 6-7.
    const wide = <u64>tags;
    store<u64>(UNPACKED_TAGS, (wide | (wide << 30)) & 0x0303030303030303);
    store<u64>(UNPACKED_TAGS, ((wide >> 4) | (wide << 26)) & 0x0303030303030303, 8);
    for (let k: usize = 0; k < 16; k++) {
      const tag = decodeWord(load<u8>(UNPACKED_TAGS + k), out + (k << 2), slotPtr, lowPtr, newPtr);
      slotPtr += <usize>(tag & 1);
      lowPtr += <usize>(tag == 1) << 1;
      newPtr += <usize>(tag == 2) << 2;
    }
  }
  return 0;
}

/** A PageDecoder for the wire ids WKdm sends. */
function wkdmPage(encoding: u32, src: usize, length: u32, dst: usize, pageSize: u32): i32 {
  return encoding == WKDM ? wkdmDecodePage(src, length, dst) : decodePlain(encoding, src, length, dst, PAGE_BYTES);
}

/**
 * Decodes `count` pages (wire ids RAW, ZERO, SAME_VALUE and WKDM, per the
 * page table at `tablePtr`) from the `dataLen` bytes at `dataPtr` into
 * consecutive 4096-byte slots at `pagesPtr` (`pageSize` must be 4096).
 * Returns 0, or REJECTED with the record at `errPtr` for the first page
 * rejected (pages before it are decoded; nothing is written past the slot of
 * the page rejected, and nothing to it: every check comes first).
 */
export function wkdmDecompressBatch(dataPtr: usize, dataLen: u32, tablePtr: usize, count: u32, pagesPtr: usize, pageSize: u32, errPtr: usize): i32 {
  return decodeBatch(dataPtr, dataLen, tablePtr, count, pagesPtr, PAGE_BYTES, errPtr, wkdmPage);
}

/**
 * Dictionary hit counts for MECOM's "strong regularity" test: for each of
 * `count` pages, the number of sampled words that are zero or match the
 * dictionary in their high 22 bits (exact or partial), written as a u32 at
 * `hitsPtr`. One 16-word block in every `stride` is sampled, the dictionary
 * carried across blocks as in compression. Returns the words sampled per page.
 */
export function wkdmHitRateBatch(pagesPtr: usize, count: u32, stride: u32, hitsPtr: usize): u32 {
  if (stride == 0) stride = 1;
  const sampled: u32 = 16 * ((PAGE_BYTES + (stride << 6) - 1) / (stride << 6));
  for (let p: u32 = 0; p < count; p++) {
    store<u32>(hitsPtr + (<usize>p << 2), wkdmPageHits(pagesPtr + (<usize>p << 12), stride, sampled));
  }
  return sampled;
}

/**
 * The hit count of one page, as wkdmHitRateBatch counts it, giving up (and
 * returning the hits so far) once more than `maxMisses` sampled words have
 * missed: MECOM only asks whether a page reaches its threshold, and most
 * pages that do not are known to fail after a quarter of the sample.
 */
export function wkdmPageHits(page: usize, stride: u32, maxMisses: u32): u32 {
  if (stride == 0) stride = 1;
  const step = <usize>stride << 6;
  clearDictionary();
  let hits: u32 = 0;
  let sampled: u32 = 0;
  for (let block: usize = 0; block < PAGE_BYTES; block += step) {
    for (let k: usize = 0; k < 16; k++) {
      const x = load<u32>(page + block + (k << 2));
      const entry = DICT + <usize>load<u8>(HASH + ((x >> 10) & 0xff));
      const d = load<u32>(entry);
      hits += <u32>(x == 0) | <u32>((x ^ d) >> 10 == 0);
      store<u32>(entry, select<u32>(x, d, x != 0));
    }
    sampled += 16;
    if (sampled - hits > maxMisses) break;
  }
  return hits;
}

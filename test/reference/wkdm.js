// A plain JavaScript WKdm_new, written for clarity: the reference the tests
// compare pagemill's WebAssembly kernels against, and the baseline the
// benchmark measures them against. It follows XNU's WKdm_compress_new /
// WKdm_decompress_new (x86_64, xnu-7195) decision for decision: one pass
// that tags every word, then packing; budget checks at the same points; the
// early give-up after the first 416 bytes; single-value pages (return 0);
// the sparse MZV form when its estimate is no larger than the default form's.
//
// Layout of the default form (32-bit little-endian words):
//   [0..2]   header: end offsets, in words, of the new-word, dictionary-index
//            and low-bits areas (the third times 4 is the size in bytes)
//   [3..66]  2-bit tags, 16 words per 32-bit word: word k of a group in byte
//            k % 4 at bit 2·(k / 4). Tags: 0 zero, 1 partial, 2 miss, 3 exact
//   then     missed words, raw, in input order
//   then     4-bit dictionary indices, 8 per word: index j of a group in byte
//            j % 4, low nibble for j < 4, high nibble otherwise; zero padded
//   then     low 10 bits of each partial match, three per word (bits 0/10/20)
// Sparse (MZV) form: u32 17185, then per non-zero word u32 value, u16 byte
// offset (increasing; the decoder requires it).
//
// The decoder checks every field and throws an Error whose `code` is one of
// pagemill's CodecError codes ("truncated", "length", "malformed"), in the
// same order of checks as the kernel, so the two can be compared on any input.

export const WKDM_PAGE_BYTES = 4096;
export const WKDM_MZV_MAGIC = 17185;
const WORDS = 1024;
const HEADER_AND_TAG_BYTES = 268;
const HEADER_AND_TAG_WORDS = 67;
const CHECKPOINT_WORDS = 104; // XNU's CHKPT_BYTES 416
const CHECKPOINT_TAG_BYTES = 26; // tags of those 104 words
const CHECKPOINT_LIMIT = 426; // XNU's CHKPT_SHRUNK_BYTES

/** Dictionary slot of a word x, indexed by (x >> 10) & 0xff: XNU's hashLookupTable_new divided by 4. */
export const WKDM_HASH_SLOTS = Uint8Array.of(
  0, 13, 2, 14, 4, 3, 7, 5, 1, 9, 12, 6, 11, 10, 8, 15,
  2, 3, 7, 5, 1, 15, 4, 9, 6, 12, 11, 8, 13, 14, 10, 3,
  2, 12, 4, 13, 15, 7, 14, 8, 5, 6, 9, 10, 11, 1, 2, 10,
  15, 8, 5, 11, 1, 9, 13, 6, 4, 14, 12, 3, 7, 4, 2, 10,
  9, 7, 8, 3, 1, 11, 13, 5, 6, 12, 15, 14, 10, 12, 2, 8,
  7, 9, 1, 11, 5, 14, 15, 6, 13, 4, 3, 3, 1, 12, 5, 2,
  13, 4, 15, 6, 9, 11, 7, 14, 10, 8, 9, 5, 6, 15, 10, 11,
  13, 4, 8, 1, 12, 2, 7, 14, 3, 7, 8, 10, 13, 9, 4, 5,
  12, 2, 1, 15, 6, 14, 11, 3, 2, 9, 6, 7, 4, 15, 5, 14,
  8, 10, 12, 3, 1, 11, 13, 11, 10, 3, 14, 2, 9, 6, 15, 7,
  12, 1, 8, 5, 4, 13, 15, 3, 6, 9, 2, 1, 4, 14, 12, 11,
  10, 13, 8, 5, 7, 8, 3, 9, 7, 6, 14, 10, 4, 13, 11, 1,
  5, 15, 2, 12, 12, 13, 3, 5, 8, 11, 9, 7, 1, 10, 6, 2,
  14, 15, 4, 9, 8, 2, 10, 1, 13, 6, 11, 5, 3, 7, 12, 14,
  4, 15, 1, 13, 15, 12, 5, 4, 14, 11, 6, 2, 10, 3, 8, 7,
  9, 6, 8, 3, 1, 5, 4, 15, 9, 7, 2, 13, 10, 12, 11, 14,
);

function pageWords(page) {
  if (page.byteLength !== WKDM_PAGE_BYTES) throw new RangeError(`page must be ${WKDM_PAGE_BYTES} bytes, got ${page.byteLength}`);
  if (page.byteOffset % 4 === 0) return new Uint32Array(page.buffer, page.byteOffset, WORDS);
  return new Uint32Array(page.slice().buffer);
}

/** XNU's size estimate from the running counts (bytes of low bits scaled by 2/3, of indices by 1/2). */
function estimate(misses, matches, partials) {
  return Math.floor((2 * partials * 1365) / 2048) + 4 * misses + (matches >> 1);
}

/**
 * Compresses one 4096-byte page. Returns { ret, bytes, value }: ret is the
 * compressed size (bytes holds exactly that many bytes), 0 for a page of one
 * repeated 32-bit value (`value`, 0 for a zero page), or -1 when the result
 * would not fit `budget` bytes.
 */
export function wkdmCompressReference(page, budget = WKDM_PAGE_BYTES) {
  const words = pageWords(page);
  const notFit = { ret: -1, bytes: new Uint8Array(0), value: 0 };
  let room = budget - HEADER_AND_TAG_BYTES;
  if (room <= 0) return notFit;
  const dict = new Uint32Array(16);
  const tags = new Uint8Array(WORDS);
  const slots = new Uint8Array(WORDS + 8);
  const lows = new Uint16Array(WORDS + 2);
  const missed = new Uint32Array(WORDS);
  let misses = 0;
  let matches = 0;
  let partials = 0;
  for (let i = 0; i < WORDS; i++) {
    const x = words[i];
    if (x !== 0) {
      const slot = WKDM_HASH_SLOTS[(x >>> 10) & 0xff];
      const d = dict[slot];
      if (d === x) {
        tags[i] = 3;
        slots[matches++] = slot;
      } else if (((d ^ x) >>> 10) === 0) {
        tags[i] = 1;
        slots[matches++] = slot;
        lows[partials++] = x & 0x3ff;
        dict[slot] = x;
      } else {
        tags[i] = 2;
        missed[misses++] = x;
        dict[slot] = x;
        room -= 4;
        if (room <= 0) return notFit;
      }
    }
    if (i + 1 === CHECKPOINT_WORDS && estimate(misses, matches, partials) + CHECKPOINT_TAG_BYTES > CHECKPOINT_LIMIT) return notFit;
  }
  if (misses === 0 && matches === 0) return { ret: 0, bytes: new Uint8Array(0), value: 0 };
  if ((partials === 0 && matches === 1023 && misses === 1 && tags[0] === 2) || (partials === 1 && matches === 1024 && tags[0] === 1)) {
    return { ret: 0, bytes: new Uint8Array(0), value: words[0] };
  }
  const sparseBytes = (misses + matches) * 6 + 4;
  if (estimate(misses, matches, partials) + HEADER_AND_TAG_BYTES >= sparseBytes) {
    if (sparseBytes > budget) return notFit;
    const out = new Uint8Array(sparseBytes);
    const view = new DataView(out.buffer);
    view.setUint32(0, WKDM_MZV_MAGIC, true);
    let at = 4;
    for (let i = 0; i < WORDS; i++) {
      if (words[i] === 0) continue;
      view.setUint32(at, words[i], true);
      view.setUint16(at + 4, 4 * i, true);
      at += 6;
    }
    return { ret: sparseBytes, bytes: out, value: 0 };
  }
  const indexWords = (matches + 7) >> 3;
  room -= 4 * indexWords;
  if (room < 0) return notFit;
  const lowWords = Math.ceil(partials / 3);
  // XNU charges each low-bits word and gives up when nothing is left after it.
  if (lowWords > 0 && room - 4 * lowWords <= 0) return notFit;
  const newEnd = HEADER_AND_TAG_WORDS + misses;
  const indexEnd = newEnd + indexWords;
  const lowEnd = indexEnd + lowWords;
  const out = new Uint32Array(lowEnd);
  out[0] = newEnd;
  out[1] = indexEnd;
  out[2] = lowEnd;
  for (let g = 0; g < 64; g++) {
    let packed = 0;
    for (let k = 0; k < 16; k++) packed |= tags[16 * g + k] << (8 * (k & 3) + 2 * (k >> 2));
    out[3 + g] = packed;
  }
  out.set(missed.subarray(0, misses), HEADER_AND_TAG_WORDS);
  for (let w = 0; w < indexWords; w++) {
    let packed = 0;
    for (let j = 0; j < 8; j++) packed |= slots[8 * w + j] << (8 * (j & 3) + 4 * (j >> 2));
    out[newEnd + w] = packed;
  }
  for (let w = 0; w < lowWords; w++) {
    out[indexEnd + w] = lows[3 * w] | (lows[3 * w + 1] << 10) | (lows[3 * w + 2] << 20);
  }
  return { ret: 4 * lowEnd, bytes: new Uint8Array(out.buffer), value: 0 };
}

function fail(code, message) {
  const err = new Error(message);
  err.code = code;
  return err;
}

/**
 * Decompresses one WKdm_new stream (default or MZV form, exactly `src.length`
 * bytes) into a new 4096-byte page. Throws an Error with `code` on malformed input.
 */
export function wkdmDecompressReference(src) {
  const len = src.byteLength;
  const view = new DataView(src.buffer, src.byteOffset, len);
  const page = new Uint8Array(WKDM_PAGE_BYTES);
  const out = new DataView(page.buffer);
  if (len < 4) throw fail("truncated", `${len} bytes is shorter than any WKdm stream`);
  if (view.getUint32(0, true) === WKDM_MZV_MAGIC) {
    if ((len - 4) % 6 !== 0) throw fail("length", `sparse form of ${len} bytes is not 4 + 6·n`);
    let previous = -1;
    for (let at = 4; at < len; at += 6) {
      const offset = view.getUint16(at + 4, true);
      if (offset >= WKDM_PAGE_BYTES || offset % 4 !== 0 || offset <= previous) throw fail("malformed", `sparse record at byte ${at} has offset ${offset} after ${previous}`);
      previous = offset;
      out.setUint32(offset, view.getUint32(at, true), true);
    }
    return page;
  }
  if (len < HEADER_AND_TAG_BYTES) throw fail("truncated", `${len} bytes is shorter than the header and tags`);
  const newEnd = view.getUint32(0, true);
  const indexEnd = view.getUint32(4, true);
  const lowEnd = view.getUint32(8, true);
  if (newEnd < HEADER_AND_TAG_WORDS || indexEnd < newEnd || lowEnd < indexEnd) {
    throw fail("malformed", `header offsets ${newEnd}, ${indexEnd}, ${lowEnd} are out of order`);
  }
  if (lowEnd * 4 > len) throw fail("truncated", `header says ${lowEnd * 4} bytes, have ${len}`);
  if (lowEnd * 4 < len) throw fail("length", `header says ${lowEnd * 4} bytes, given ${len}`);
  const tags = new Uint8Array(WORDS);
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < WORDS; i++) {
    const packed = view.getUint32(12 + 4 * (i >> 4), true);
    const k = i & 15;
    const tag = (packed >>> (8 * (k & 3) + 2 * (k >> 2))) & 3;
    tags[i] = tag;
    counts[tag]++;
  }
  const partials = counts[1];
  const matches = counts[1] + counts[3];
  if (counts[2] !== newEnd - HEADER_AND_TAG_WORDS || (matches + 7) >> 3 !== indexEnd - newEnd || Math.ceil(partials / 3) !== lowEnd - indexEnd) {
    throw fail("malformed", `tags (${counts[2]} misses, ${matches} matches, ${partials} partial) disagree with header offsets ${newEnd}, ${indexEnd}, ${lowEnd}`);
  }
  const dict = new Uint32Array(16);
  let miss = 0;
  let match = 0;
  let partial = 0;
  for (let i = 0; i < WORDS; i++) {
    let word = 0;
    switch (tags[i]) {
      case 1:
      case 3: {
        const packed = view.getUint32(4 * (newEnd + (match >> 3)), true);
        const j = match & 7;
        const slot = (packed >>> (8 * (j & 3) + 4 * (j >> 2))) & 15;
        match++;
        if (tags[i] === 3) {
          word = dict[slot];
        } else {
          const lowPacked = view.getUint32(4 * (indexEnd + Math.floor(partial / 3)), true);
          const low = (lowPacked >>> (10 * (partial % 3))) & 0x3ff;
          partial++;
          word = ((dict[slot] & ~0x3ff) | low) >>> 0;
          dict[slot] = word;
        }
        break;
      }
      case 2:
        word = view.getUint32(4 * (HEADER_AND_TAG_WORDS + miss++), true);
        dict[WKDM_HASH_SLOTS[(word >>> 10) & 0xff]] = word;
        break;
    }
    out.setUint32(4 * i, word, true);
  }
  return page;
}

/**
 * Fraction of the words of `page` that are zero or match the dictionary
 * (exactly or in their high 22 bits), over one 16-word block in every
 * `stride` (the dictionary carried from block to block).
 */
export function wkdmHitRateReference(page, stride = 1) {
  const words = pageWords(page);
  const dict = new Uint32Array(16);
  let hits = 0;
  let sampled = 0;
  for (let block = 0; block < WORDS / 16; block += stride) {
    for (let i = block * 16; i < block * 16 + 16; i++) {
      const x = words[i];
      sampled++;
      if (x === 0) {
        hits++;
        continue;
      }
      const slot = WKDM_HASH_SLOTS[(x >>> 10) & 0xff];
      if (((dict[slot] ^ x) >>> 10) === 0) hits++;
      dict[slot] = x;
    }
  }
  return hits / sampled;
}

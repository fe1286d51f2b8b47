// MECOM (seed 002): classify each page by its content and compress each class
// with its own algorithm, a whole batch per call.
//
//   zero page                  → ZERO        no payload
//   one repeated 32-bit word   → SAME_VALUE  4 bytes (the word)
//   strong regularity          → WKDM or LZ4, whichever the class's evidence favours
//   weak regularity            → LZ4
//   neither shrinks it         → RAW
//
// "Strong regularity" is the share of sampled words that are zero or hit
// WKdm's 16-word dictionary (exactly or in their high 22 bits), measured by
// wkdmPageHits on one 16-word block in every `stride`, giving up as soon as
// the page can no longer reach the threshold (the caller's).
//
// A hit rate says WKdm may do well, not that it beats LZ4: on some memory
// (PostgreSQL's heap) pages with high rates come out larger from WKdm. So
// strong pages are split into CLASSES classes by hit rate, and each class
// keeps evidence, in a table the caller owns and carries from batch to batch:
// the WKdm and LZ4 bytes of the class's recent pages that were compressed
// both ways (probes: the first PROBE_FIRST pages of a class, then one in
// PROBE_EVERY). A probe sends the smaller of the two; any other page of the
// class goes to WKdm only while the class's WKdm bytes are below its LZ4
// bytes, else to LZ4. Halving both sums once they pass DECAY_AT bytes keeps
// the evidence recent. While no class favours WKdm, sampling a page would
// only feed the evidence, so just one non-zero page in PROBE_EVERY is
// sampled (and, if strong, probed): a stream WKdm does not help costs about
// what LZ4 alone does. src/codecs/mecom.ts and docs/mecom.md say why.
//
// Output: the page table of assembly/table.ts. Evidence table,
// mecomEvidenceBytes(): per class u32 WKdm bytes, u32 LZ4 bytes, u32 pages
// seen; then u32 non-zero pages seen in the stream.

import { bytesAreZero } from "./zero";
import { wkdmCompressPage, wkdmDecodePage, wkdmPageHits } from "./wkdm";
import { lz4DecodePage, lz4OrRaw } from "./lz4";
import { BAD_ENCODING, LZ4, RAW, SAME_VALUE, WKDM, ZERO, decodeBatch, decodePlain, setEntry } from "./table";

const WKDM_PAGE: u32 = 4096;
/** Where a probe's WKdm attempt goes while the LZ4 block sits in the output. */
const PROBE_OUT = memory.data(WKDM_PAGE + 64, 16);

const CLASSES: u32 = 8;

/** Bytes of the evidence table mecomEncodeBatch keeps (the caller allocates it, zeroed). */
export function mecomEvidenceBytes(): u32 {
  return CLASSES * 12 + 4;
}
const PROBE_FIRST: u32 = 4;
const PROBE_EVERY: u32 = 32;
const SAMPLE_EVERY: u32 = 4;
const DECAY_AT: u32 = 1 << 22;

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
 * page table goes to `tablePtr`. A page is strongly regular
 * when at least `minHits` of the sampled words hit (more than are sampled
 * disables WKdm); `evidencePtr` is the class evidence (MECOM_CLASSES × 12
 * bytes, zeroed before the first batch of a stream), read and updated.
 * Returns the payload bytes written.
 */
export function mecomEncodeBatch(pagesPtr: usize, pageSize: u32, count: u32, outPtr: usize, tablePtr: usize, minHits: u32, stride: u32, evidencePtr: usize): u32 {
  let cursor: u32 = 0;
  const ps = <usize>pageSize;
  if (stride == 0) stride = 1;
  const sampled: u32 = 16 * ((WKDM_PAGE + (stride << 6) - 1) / (stride << 6));
  const wkdmOk = pageSize == WKDM_PAGE && minHits <= sampled;
  // Hit counts minHits..sampled map onto the classes evenly.
  const span: u32 = sampled - minHits + 1;
  const streamAt = evidencePtr + CLASSES * 12;
  let favoured = wkdmOk && anyClassFavoursWkdm(evidencePtr);
  // The last page sampled fell in a class that favours WKdm: such pages come
  // in runs (one kind of data fills a region), so the next one is sampled too.
  let inRun = false;
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
      const nonZero = load<u32>(streamAt);
      store<u32>(streamAt, nonZero + 1);
      const sample = wkdmOk && (inRun || nonZero % (favoured ? SAMPLE_EVERY : PROBE_EVERY) == 0);
      const hits: u32 = sample ? wkdmPageHits(page, stride, sampled - minHits) : 0;
      if (sample) inRun = false;
      if (sample && hits >= minHits) {
        const evidence = evidencePtr + <usize>(((hits - minHits) * CLASSES) / span) * 12;
        let wkdmBytes = load<u32>(evidence);
        let lz4Bytes = load<u32>(evidence, 4);
        const seen = load<u32>(evidence, 8);
        store<u32>(evidence, seen + 1, 8);
        if (!favoured || seen < PROBE_FIRST || seen % PROBE_EVERY == 0) {
          // Both ways: LZ4 into the output, WKdm beside it. WKdm gets the
          // whole page as its budget: the evidence needs its real size, and
          // one cut short at LZ4's size would hide how much it loses.
          const lz4 = lz4OrRaw(k, page, dst, pageSize, 0);
          encoding = <u32>(lz4 >> 32);
          length = <u32>lz4;
          const status = wkdmCompressPage(page, PROBE_OUT, WKDM_PAGE);
          // A page WKdm cannot fit counts as a raw page.
          const wkdmLength: u32 = status > 0 ? <u32>status : WKDM_PAGE;
          if (wkdmLength < length) {
            memory.copy(dst, PROBE_OUT, <usize>wkdmLength);
            encoding = WKDM;
          }
          wkdmBytes += wkdmLength;
          lz4Bytes += length;
          length = min(length, wkdmLength);
          if (max(wkdmBytes, lz4Bytes) > DECAY_AT) {
            wkdmBytes >>= 1;
            lz4Bytes >>= 1;
          }
          store<u32>(evidence, wkdmBytes);
          store<u32>(evidence, lz4Bytes, 4);
          favoured = anyClassFavoursWkdm(evidencePtr);
          inRun = wkdmBytes < lz4Bytes;
        } else if (wkdmBytes < lz4Bytes) {
          inRun = true;
          const status = wkdmCompressPage(page, dst, WKDM_PAGE);
          if (status > 0 && <u32>status < pageSize) {
            encoding = WKDM;
            length = <u32>status;
          }
        }
      }
      if (length == 0) {
        const lz4 = lz4OrRaw(k, page, dst, pageSize, 0);
        encoding = <u32>(lz4 >> 32);
        length = <u32>lz4;
      }
    }
    setEntry(tablePtr, count, k, encoding, cursor, length);
    cursor += length;
  }
  return cursor;
}

/** True when some class's evidence has WKdm smaller than LZ4. */
function anyClassFavoursWkdm(evidencePtr: usize): bool {
  for (let c: u32 = 0; c < CLASSES; c++) {
    const at = evidencePtr + <usize>c * 12;
    if (load<u32>(at) < load<u32>(at, 4)) return true;
  }
  return false;
}

/** A PageDecoder for the wire ids MECOM sends (WKDM for 4096-byte pages only). */
function mecomPage(encoding: u32, src: usize, length: u32, dst: usize, pageSize: u32): i32 {
  if (encoding == LZ4) return lz4DecodePage(src, length, dst, pageSize);
  if (encoding == WKDM) return pageSize == WKDM_PAGE ? wkdmDecodePage(src, length, dst) : BAD_ENCODING;
  return decodePlain(encoding, src, length, dst, pageSize);
}

/**
 * Decodes `count` pages into consecutive `pageSize` slots at `pagesPtr`, from
 * the `dataLen` bytes at `dataPtr` and the page table at `tablePtr`. Every
 * extent is checked against the data and every decoder against the slot.
 * Returns 0, or REJECTED with the record at `errPtr` for the first page
 * rejected (slots before it are written; nothing past its slot is).
 */
export function mecomDecodeBatch(dataPtr: usize, dataLen: u32, tablePtr: usize, count: u32, pagesPtr: usize, pageSize: u32, errPtr: usize): i32 {
  return decodeBatch(dataPtr, dataLen, tablePtr, count, pagesPtr, pageSize, errPtr, mecomPage);
}

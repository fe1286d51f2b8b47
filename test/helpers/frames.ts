// Shared by the wire tests: sending pages as frames, editing frames, and
// synthetic pages of every kind.

import { createXXHash3 } from "hash-wasm";
import { PageBatch } from "../../src/index.js";
import type { PageCodec } from "../../src/codecs/codec.js";
import { codecNamesFor, createCodec } from "../../src/codecs/registry.js";
import { FrameEncoder, type PipelineCodecs } from "../../src/wire/pipeline.js";
import { u32Stream } from "./random.js";

// An implementation of the frame check apart from pagemill's: hash-wasm's XXH3-64, low 32 bits.
const xxh3 = await createXXHash3();
const check = (bytes: Uint8Array): number => new DataView(xxh3.init().update(bytes).digest("binary").buffer).getUint32(4, false);

/** Every compression choice: "raw" (no compressor) and each registered compress codec. */
export const CHOICES = ["raw", ...codecNamesFor("compress")];

export function pipeline(choice: string): PipelineCodecs {
  return choice === "raw" ? {} : { compress: createCodec(choice) };
}

export function dispose(codecs: PipelineCodecs): void {
  for (const codec of Object.values(codecs) as PageCodec[]) codec.dispose();
}

/** Sends `pages` (page k → guest page indices[k]) in frames of `batchPages`; returns the frames. */
export function encodeAll(pages: Uint8Array, indices: ArrayLike<number>, pageSize: number, batchPages: number, codecs: PipelineCodecs) {
  const encoder = new FrameEncoder(codecs);
  const batch = new PageBatch(batchPages, pageSize);
  const frames: Uint8Array[] = [];
  try {
    for (let first = 0; first < indices.length; first += batchPages) {
      const end = Math.min(indices.length, first + batchPages);
      batch.set(pages.subarray(first * pageSize, end * pageSize));
      frames.push(encoder.pages(batch, Array.from({ length: end - first }, (_, i) => indices[first + i]!)));
    }
  } finally {
    batch.dispose();
  }
  return { frames, stats: encoder.stats };
}

/** Recomputes the header check (and the frame check unless `headerOnly`) after a test has edited a frame. */
export function reseal(frame: Uint8Array, headerOnly = false): Uint8Array {
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  dv.setUint32(24, check(frame.subarray(0, 24)), true);
  if (!headerOnly && frame.byteLength >= 32) dv.setUint32(frame.byteLength - 4, check(frame.subarray(0, frame.byteLength - 4)), true);
  return frame;
}

/** A few pages of every kind: zero, one repeated word, text-like, random, and a mostly zero one. */
export function mixedPages(pageSize: number, count: number, seed: number): Uint8Array {
  const pages = new Uint8Array(pageSize * count);
  const next = u32Stream(seed);
  for (let k = 0; k < count; k++) {
    const page = pages.subarray(k * pageSize, (k + 1) * pageSize);
    switch (k % 5) {
      case 0:
        break;
      case 1:
        new DataView(page.buffer, page.byteOffset).setUint32(0, next(), true);
        page.copyWithin(4, 0, pageSize - 4);
        for (let f = 4; f < pageSize; f *= 2) page.copyWithin(f, 0, f);
        break;
      case 2:
        for (let i = 0; i < pageSize; i++) page[i] = 97 + ((i * 7 + k) % 13);
        break;
      case 3:
        for (let i = 0; i < pageSize; i++) page[i] = next() & 0xff;
        break;
      default:
        page[next() % pageSize] = 1 + (next() % 255);
    }
  }
  return pages;
}


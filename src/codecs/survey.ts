// What an image holds, page by page: zero pages, duplicate pages and what
// each compress codec makes of the rest, with the time each took. `pagemill
// scan` and the browser page (examples/browser) both count with this, so the
// two agree by construction; the codecs see only non-zero pages, as in a
// frame pipeline.

import { checkBytes, checkPageSize } from "../errors.js";
import { DuplicateCounter } from "../hash/dedup.js";
import { PageBatch } from "../wasm/arena.js";
import type { PageCodec } from "./codec.js";
import { createCodec } from "./registry.js";
import { scanZeroPages } from "./zero.js";

export interface CodecSurvey {
  readonly codec: string;
  /** non-zero pages encoded */
  readonly pages: number;
  /** payload bytes the codec produced for them (a page it cannot shrink counts whole) */
  readonly bytes: number;
  /** time spent in encodeBatch */
  readonly seconds: number;
}

export interface SurveyReport {
  readonly pageSize: number;
  readonly pages: number;
  readonly zeroPages: number;
  /** non-zero pages whose content an earlier page already had (by XXH3-64) */
  readonly duplicatePages: number;
  readonly codecs: CodecSurvey[];
}

const PAGES_PER_BATCH = 1024;

export class ImageSurvey {
  pages = 0;
  zeroPages = 0;
  private readonly duplicates = new DuplicateCounter();
  private readonly batch: PageBatch;
  private readonly nonZero: PageBatch;
  private readonly codecs: { codec: PageCodec; seconds: number }[];

  /** `codecs`: registry names of compress codecs to measure (none: only count zero and duplicate pages). */
  constructor(readonly pageSize = 4096, codecs: readonly string[] = []) {
    checkPageSize(pageSize);
    this.codecs = codecs.map((name) => ({ codec: createCodec(name), seconds: 0 }));
    this.batch = new PageBatch(PAGES_PER_BATCH, pageSize);
    this.nonZero = new PageBatch(PAGES_PER_BATCH, pageSize);
  }

  /** Counts whole pages (at most 1024 of them, back to back). */
  add(pages: Uint8Array): void {
    const zero = scanZeroPages(this.batch.set(pages));
    this.zeroPages += zero.zeroCount;
    this.duplicates.add(this.batch, zero.flags);
    this.pages += this.batch.count;
    if (this.codecs.length === 0) return;
    const kept: number[] = [];
    zero.flags.forEach((flag, k) => flag || kept.push(k));
    this.nonZero.load(pages, kept);
    for (const entry of this.codecs) {
      const started = performance.now();
      if (entry.codec.encodeInPlace) entry.codec.encodeInPlace(this.nonZero);
      else entry.codec.encodeBatch(this.nonZero);
      entry.seconds += (performance.now() - started) / 1000;
    }
  }

  report(): SurveyReport {
    return {
      pageSize: this.pageSize,
      pages: this.pages,
      zeroPages: this.zeroPages,
      duplicatePages: this.duplicates.duplicates,
      codecs: this.codecs.map(({ codec, seconds }) => ({ codec: codec.name, pages: codec.stats.pages, bytes: codec.stats.outputBytes, seconds })),
    };
  }

  dispose(): void {
    this.batch.dispose();
    this.nonZero.dispose();
    for (const { codec } of this.codecs) codec.dispose();
  }
}

/** Surveys a whole image in memory; a short last page is read zero-padded, as `pagemill scan` reads files. */
export function surveyImage(image: Uint8Array, codecs: readonly string[] = [], pageSize = 4096): SurveyReport {
  checkBytes("image", image);
  const survey = new ImageSurvey(pageSize, codecs);
  try {
    const chunkBytes = PAGES_PER_BATCH * pageSize;
    for (let at = 0; at < image.byteLength; at += chunkBytes) {
      let chunk = image.subarray(at, Math.min(at + chunkBytes, image.byteLength));
      if (chunk.byteLength % pageSize) {
        const padded = new Uint8Array(Math.ceil(chunk.byteLength / pageSize) * pageSize);
        padded.set(chunk);
        chunk = padded;
      }
      survey.add(chunk);
    }
    return survey.report();
  } finally {
    survey.dispose();
  }
}

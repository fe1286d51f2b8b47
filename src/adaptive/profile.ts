// The profiler (seed 001): what a recorded program does to its memory, in the
// terms the predictor and planner need. Each page's writes are counted per
// epoch (a trace says whether a page was written in an epoch, not how often),
// and fitted as a Poisson process: a page written in k of E epochs of length
// Δ has λ = −ln(1 − k/E) / Δ, the maximum-likelihood rate when only "written
// or not" is seen per epoch (a page written in every epoch has λ = ∞: it is
// dirty in every window the trace can show). One pass over the trace, O(n)
// in pages plus the writes.
//
// A profile has a memory part and, once storage lands, a disk part of the
// same shape (blocks are pages of another size); the predictor reads
// `memory` only until then (S = 0).

import { TraceReader } from "../guest/pagetrace.js";

/** Per-page write statistics of one memory-like object (memory now; a disk later). */
export interface PageProfile {
  readonly pageSize: number;
  readonly pageCount: number;
  /** Seconds between epochs (the trace's interval). */
  readonly interval: number;
  /** Guest time of each recorded epoch, seconds from the image. */
  readonly epochTimes: Float64Array;
  /** Epochs in which each page was written. */
  readonly writtenEpochs: Uint32Array;
  /** Of those, epochs in which the write replaced every 64-bit word (no fetch needed in post-copy). */
  readonly wholeEpochs: Uint32Array;
  /** Of those, epochs after which the page was all zero. */
  readonly zeroEpochs: Uint32Array;
  /** 1 where the page is all zero at time 0. */
  readonly imageZero: Uint8Array;
  /** Pages written in each epoch (the dirty-rate series, in pages per epoch). */
  readonly dirtySeries: Uint32Array;
  /**
   * The recorded history: each epoch's written pages, ascending, with a
   * parallel flag per page (bit 0 whole-page write, bit 1 left zero, bit 2
   * left zero in the replay's even passes). Kept for the held-out evaluation
   * and for the predictor's replay model.
   */
  readonly epochs: readonly { readonly pages: Uint32Array; readonly flags: Uint8Array }[];
}

export interface Profile {
  readonly source: string;
  readonly memory: PageProfile;
  /** Absent until storage lands (S = 0). */
  readonly disk?: PageProfile;
}

export const WHOLE_WRITE = 1;
export const LEFT_ZERO = 2;
/**
 * Left zero when the replay applies the epoch in an even pass: a looping
 * replay XORs the same deltas again from the final image, so its even passes
 * hold each recorded state XOR the trace's net change (TraceReplay), and a
 * page is zero there when its recorded state equals that change.
 */
export const LEFT_ZERO_EVEN = 4;

function allZero(words: Int32Array, from: number, count: number): boolean {
  for (let i = from, end = from + count; i < end; i++) if (words[i] !== 0) return false;
  return true;
}

/** Reads a pagetrace once and profiles its memory. */
export async function profileTrace(path: string): Promise<Profile> {
  const reader = await TraceReader.open(path);
  const { pageSize, pageCount, epochCount, intervalMicros } = reader.header;
  const image = reader.image.slice();
  const words = new Int32Array(image.buffer, image.byteOffset, image.byteLength >>> 2);
  const wordsPerPage = pageSize >>> 2;
  const imageZero = new Uint8Array(pageCount);
  for (let p = 0; p < pageCount; p++) imageZero[p] = allZero(words, p * wordsPerPage, wordsPerPage) ? 1 : 0;
  const writtenEpochs = new Uint32Array(pageCount);
  const wholeEpochs = new Uint32Array(pageCount);
  const zeroEpochs = new Uint32Array(pageCount);
  const dirtySeries = new Uint32Array(epochCount);
  const epochTimes = new Float64Array(epochCount);
  const epochs: { pages: Uint32Array; flags: Uint8Array }[] = [];
  let e = 0;
  for await (const epoch of reader.epochs()) {
    const { pages, deltas } = epoch;
    const delta = new Int32Array(deltas.buffer, deltas.byteOffset, deltas.byteLength >>> 2);
    const flags = new Uint8Array(pages.length);
    for (let k = 0; k < pages.length; k++) {
      const p = pages[k]!;
      const d = k * wordsPerPage;
      const at = p * wordsPerPage;
      // Whole: every 64-bit word stored to, as the replay decides it.
      let whole = true;
      for (let i = d; i < d + wordsPerPage; i += 2) {
        if ((delta[i]! | delta[i + 1]!) === 0) {
          whole = false;
          break;
        }
      }
      for (let i = 0; i < wordsPerPage; i++) words[at + i]! ^= delta[d + i]!;
      const zero = allZero(words, at, wordsPerPage);
      flags[k] = (whole ? WHOLE_WRITE : 0) | (zero ? LEFT_ZERO : 0);
      writtenEpochs[p]!++;
      if (whole) wholeEpochs[p]!++;
      if (zero) zeroEpochs[p]!++;
    }
    dirtySeries[e] = pages.length;
    epochTimes[e] = epoch.elapsedMicros / 1e6;
    epochs.push({ pages: pages.slice(), flags });
    e++;
  }
  // The replay's second pass, from the final image: which writes leave a page zero there.
  e = 0;
  for await (const epoch of (await TraceReader.open(path, { skipImage: true })).epochs()) {
    const delta = new Int32Array(epoch.deltas.buffer, epoch.deltas.byteOffset, epoch.deltas.byteLength >>> 2);
    const { pages, flags } = epochs[e++]!;
    for (let k = 0; k < pages.length; k++) {
      const at = pages[k]! * wordsPerPage;
      for (let i = 0; i < wordsPerPage; i++) words[at + i]! ^= delta[k * wordsPerPage + i]!;
      if (allZero(words, at, wordsPerPage)) flags[k]! |= LEFT_ZERO_EVEN;
    }
  }
  return {
    source: path,
    memory: { pageSize, pageCount, interval: intervalMicros / 1e6, epochTimes, writtenEpochs, wholeEpochs, zeroEpochs, imageZero, dirtySeries, epochs },
  };
}

/** A page's write rate λ (writes/s) from `written` of `epochs` epochs of `interval` s; Infinity when written in every one. */
export function writeRate(written: number, epochs: number, interval: number): number {
  if (epochs === 0 || written === 0) return 0;
  if (written >= epochs) return Infinity;
  return -Math.log(1 - written / epochs) / interval;
}

/** Each page's λ (writes/s). */
export function writeRates(profile: PageProfile): Float64Array {
  const E = profile.epochTimes.length;
  const rates = new Float64Array(profile.pageCount);
  for (let p = 0; p < profile.pageCount; p++) rates[p] = writeRate(profile.writtenEpochs[p]!, E, profile.interval);
  return rates;
}

/** Confusion table of a next-epoch prediction, as shares of (page, epoch) pairs. */
export interface Confusion {
  /** predicted not written, not written */
  readonly trueNegative: number;
  /** predicted not written, written */
  readonly falseNegative: number;
  /** predicted written, not written */
  readonly falsePositive: number;
  /** predicted written, written */
  readonly truePositive: number;
  readonly accuracy: number;
  /** (page, epoch) pairs evaluated */
  readonly samples: number;
}

/**
 * Seed 001's Tables I–II for writes: λ is fitted on the first `trainShare`
 * of the epochs, and each page is predicted written in each later epoch when
 * the fitted chance of a write in one epoch, 1 − e^(−λΔ), is at least ½.
 * Every page is scored against every held-out epoch.
 */
export function writePrediction(profile: PageProfile, trainShare = 2 / 3): Confusion | undefined {
  const E = profile.epochs.length;
  const train = Math.min(E - 1, Math.max(1, Math.round(E * trainShare)));
  if (E < 2) return undefined;
  const n = profile.pageCount;
  const counts = new Uint32Array(n);
  for (let e = 0; e < train; e++) for (const p of profile.epochs[e]!.pages) counts[p]!++;
  // 1 − e^(−λΔ) with λ fitted on `train` epochs is exactly counts/train.
  const predicted = new Uint8Array(n);
  let predictedWritten = 0;
  for (let p = 0; p < n; p++) {
    if (2 * counts[p]! < train) continue;
    predicted[p] = 1;
    predictedWritten++;
  }
  let tp = 0;
  let written = 0;
  for (let e = train; e < E; e++) {
    const pages = profile.epochs[e]!.pages;
    written += pages.length;
    for (const p of pages) tp += predicted[p]!;
  }
  const held = E - train;
  const samples = n * held;
  const fp = predictedWritten * held - tp;
  const fn = written - tp;
  const tn = samples - tp - fp - fn;
  return { trueNegative: tn / samples, falseNegative: fn / samples, falsePositive: fp / samples, truePositive: tp / samples, accuracy: (tp + tn) / samples, samples };
}

/** What `pagemill profile` reports. */
export interface ProfileSummary {
  readonly source: string;
  readonly pageSize: number;
  readonly pages: number;
  readonly epochs: number;
  readonly interval: number;
  /** Mean λ over pages with finite λ, writes/s; pages written in every epoch are counted apart. */
  readonly lambda: { readonly meanFinite: number; readonly neverWritten: number; readonly everyEpoch: number; readonly quantiles: Readonly<Record<string, number | null>> };
  /** Expected distinct pages written in a window of `seconds` under the Poisson fit (the writable working set). */
  readonly writableWorkingSet: { readonly seconds: number; readonly pages: number; readonly share: number };
  /** Pages written per second, per epoch: mean, standard deviation, coefficient of variation. */
  readonly dirtyRate: { readonly series: number[]; readonly mean: number; readonly sd: number; readonly cv: number };
  /** Share of writes that replace a whole page. */
  readonly wholeWriteShare: number;
  readonly writePrediction: Confusion | null;
  /** Traces record no reads: the read half of seed 001's tables is not available. */
  readonly readPrediction: null;
}

/** Expected distinct pages written within `seconds` (whole epochs) under the Poisson fit. */
export function workingSet(profile: PageProfile, seconds: number): number {
  const E = profile.epochTimes.length;
  const windows = Math.max(1, Math.round(seconds / profile.interval));
  let pages = 0;
  for (let p = 0; p < profile.pageCount; p++) {
    const k = profile.writtenEpochs[p]!;
    if (k) pages += 1 - (1 - k / E) ** windows;
  }
  return pages;
}

/** Pages written per second, the mean over the epochs (0 for a trace without epochs). */
export function meanDirtyRate(m: PageProfile): number {
  const E = m.dirtySeries.length;
  let pages = 0;
  for (let e = 0; e < E; e++) pages += m.dirtySeries[e]!;
  return E ? pages / E / m.interval : 0;
}

export function summarise(profile: Profile, windowSeconds = 1): ProfileSummary {
  const m = profile.memory;
  const rates = writeRates(m);
  const finite = Array.from(rates).filter((r) => Number.isFinite(r)).sort((a, b) => a - b);
  const everyEpoch = m.pageCount - finite.length;
  const neverWritten = finite.filter((r) => r === 0).length;
  const all = Array.from(rates).sort((a, b) => a - b);
  const quantile = (q: number): number | null => {
    const v = all[Math.min(all.length - 1, Math.floor(q * all.length))];
    return v === undefined || !Number.isFinite(v) ? null : v;
  };
  const perSecond = Array.from(m.dirtySeries, (pages) => pages / m.interval);
  const mean = meanDirtyRate(m);
  const sd = perSecond.length ? Math.sqrt(perSecond.reduce((a, b) => a + (b - mean) ** 2, 0) / perSecond.length) : 0;
  let writes = 0;
  let whole = 0;
  for (let p = 0; p < m.pageCount; p++) {
    writes += m.writtenEpochs[p]!;
    whole += m.wholeEpochs[p]!;
  }
  const wws = workingSet(m, windowSeconds);
  return {
    source: profile.source,
    pageSize: m.pageSize,
    pages: m.pageCount,
    epochs: m.epochTimes.length,
    interval: m.interval,
    lambda: {
      meanFinite: finite.length ? finite.reduce((a, b) => a + b, 0) / finite.length : 0,
      neverWritten,
      everyEpoch,
      quantiles: { p50: quantile(0.5), p90: quantile(0.9), p99: quantile(0.99) },
    },
    writableWorkingSet: { seconds: windowSeconds, pages: wws, share: m.pageCount ? wws / m.pageCount : 0 },
    dirtyRate: { series: perSecond, mean, sd, cv: mean ? sd / mean : 0 },
    wholeWriteShare: writes ? whole / writes : 0,
    writePrediction: writePrediction(m) ?? null,
    readPrediction: null,
  };
}

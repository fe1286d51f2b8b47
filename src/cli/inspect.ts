// pagemill inspect TRACE: what a recorded program does to its memory, and
// whether plain pre-copy can move it over a given link.

import { scanZeroPages } from "../codecs/zero.js";
import { TraceReader } from "../guest/pagetrace.js";
import { PageBatch } from "../wasm/arena.js";
import { durationOption, formatBytes, intOption, onePositional, parse, rateOption } from "./args.js";

export const summary = "Statistics of a pagetrace and a verdict on whether plain pre-copy converges at a bandwidth.";
export const usage = "usage: pagemill inspect TRACE [--json] [--bandwidth 1gbit] [--window N] [--downtime 300ms]";

export interface InspectOptions {
  /** Link rate for the verdict, bits per second. */
  bandwidth: number;
  /** Epochs in the working-set window (default: about one second of epochs). */
  window?: number;
  /** Largest acceptable downtime (s); QEMU's default downtime-limit is 300 ms. */
  downtime: number;
}

export interface PrecopyVerdict {
  converges: boolean;
  /** Pre-copy rounds until the remaining pages fit the downtime (or until it gave up). */
  rounds: number;
  /** Seconds to send the last remaining set with the guest stopped. */
  downtime: number;
  /** Seconds from start to the end of the stop-and-copy. */
  totalTime: number;
  /** Pages the link sends per second. */
  linkPagesPerSecond: number;
  /** Pages the program dirties per second (mean of epochs). */
  dirtyPagesPerSecond: number;
  /** One line, for people. */
  line: string;
}

export interface InspectReport {
  file: string;
  program: string | undefined;
  pageSize: number;
  pages: number;
  bytes: number;
  epochs: number;
  intervalMicros: number;
  /** Time from the image to the last epoch (s). */
  duration: number;
  /** Share of the image's pages that are all zero. */
  zeroPageShare: number;
  dirtyPerEpoch: { mean: number; max: number; cv: number };
  /** Distinct pages written in `window` consecutive epochs (mean and max over positions). */
  workingSet: { window: number; seconds: number; mean: number; max: number };
  /** Share of pages no epoch writes. */
  neverWrittenShare: number;
  verdict: PrecopyVerdict;
}

/** Mean size of the union of `k` consecutive epochs' dirty sets, for k = 1..maxK (index k). */
function unionSizes(epochs: Uint32Array[], pageCount: number, maxK: number): { mean: Float64Array; max: Float64Array } {
  const mean = new Float64Array(maxK + 1);
  const max = new Float64Array(maxK + 1);
  const counts = new Uint16Array(pageCount);
  for (let k = 1; k <= maxK; k++) {
    counts.fill(0);
    let distinct = 0;
    let windows = 0;
    let sum = 0;
    for (let e = 0; e < epochs.length; e++) {
      for (const p of epochs[e]!) if (counts[p]!++ === 0) distinct++;
      if (e >= k) for (const p of epochs[e - k]!) if (--counts[p]! === 0) distinct--;
      if (e >= k - 1) {
        windows++;
        sum += distinct;
        max[k] = Math.max(max[k]!, distinct);
      }
    }
    mean[k] = windows ? sum / windows : 0;
  }
  return { mean, max };
}

/**
 * Plain pre-copy against the recorded dirty sets: round 0 sends every page;
 * each next round sends the pages dirtied during the previous one, taken as
 * the mean union of the epochs that round spans (interpolated between whole
 * epochs); it stops when a round fits the downtime, and gives up when the
 * remaining set stops shrinking.
 */
function precopyVerdict(report: Omit<InspectReport, "verdict">, dirtyIn: (seconds: number) => number, options: InspectOptions): PrecopyVerdict {
  const linkPagesPerSecond = options.bandwidth / 8 / report.pageSize;
  const dirtyPagesPerSecond = report.dirtyPerEpoch.mean / (report.intervalMicros / 1e6 || 1);
  let remaining = report.pages;
  let total = 0;
  let rounds = 0;
  let converges = false;
  let best = Infinity;
  let stalls = 0;
  for (; rounds < 60; rounds++) {
    const seconds = remaining / linkPagesPerSecond;
    if (seconds <= options.downtime) {
      converges = true;
      break;
    }
    total += seconds;
    remaining = dirtyIn(seconds);
    if (remaining >= best) {
      if (++stalls >= 3) break;
    } else {
      best = remaining;
      stalls = 0;
    }
  }
  const downtime = remaining / linkPagesPerSecond;
  const mbps = (pagesPerSecond: number) => ((pagesPerSecond * report.pageSize * 8) / 1e6).toFixed(0);
  const rate = `dirties ${mbps(dirtyPagesPerSecond)} Mbit/s against a ${mbps(linkPagesPerSecond)} Mbit/s link`;
  const line = converges
    ? `pre-copy converges: ${rounds} round${rounds === 1 ? "" : "s"}, ${(total + downtime).toFixed(1)} s, downtime ${(downtime * 1000).toFixed(0)} ms (${rate})`
    : `pre-copy does not converge: the remaining set stays near ${Math.round(remaining)} pages, ${(downtime * 1000).toFixed(0)} ms of downtime > ${(options.downtime * 1000).toFixed(0)} ms (${rate}); throttle, compress or post-copy`;
  return { converges, rounds, downtime, totalTime: total + downtime, linkPagesPerSecond, dirtyPagesPerSecond, line };
}

/** Reads the whole trace once (memory: the image, one epoch and every epoch's page list). */
export async function inspectTrace(path: string, options: InspectOptions): Promise<InspectReport> {
  const reader = await TraceReader.open(path);
  const { pageSize, pageCount, epochCount, intervalMicros, meta } = reader.header;
  let zeroPages = 0;
  if (pageCount > 0) {
    const batch = new PageBatch(Math.min(pageCount, 2048), pageSize);
    try {
      for (let first = 0; first < pageCount; first += batch.capacity) {
        const n = Math.min(batch.capacity, pageCount - first);
        zeroPages += scanZeroPages(batch.set(reader.image.subarray(first * pageSize, (first + n) * pageSize))).zeroCount;
      }
    } finally {
      batch.dispose();
    }
  }
  const dirtySets: Uint32Array[] = [];
  const written = new Uint8Array(pageCount);
  let lastElapsed = 0;
  for await (const epoch of reader.epochs()) {
    dirtySets.push(epoch.pages.slice());
    for (const p of epoch.pages) written[p] = 1;
    lastElapsed = epoch.elapsedMicros;
  }
  const counts = dirtySets.map((s) => s.length);
  const mean = counts.length ? counts.reduce((a, b) => a + b, 0) / counts.length : 0;
  const variance = counts.length ? counts.reduce((a, b) => a + (b - mean) ** 2, 0) / counts.length : 0;
  const interval = intervalMicros / 1e6;
  const window = Math.max(1, Math.min(options.window ?? Math.max(1, Math.round(1 / (interval || 1))), Math.max(1, epochCount)));
  // Unions cost a pass over every page list per k: up to 64 epochs (or the window) is plenty.
  const maxK = Math.max(1, Math.min(epochCount, Math.max(window, 64)));
  const unions = unionSizes(dirtySets, pageCount, maxK);
  let everWritten = 0;
  for (let p = 0; p < pageCount; p++) everWritten += written[p]!;
  const base = {
    file: path,
    program: typeof meta.program === "string" ? meta.program : undefined,
    pageSize,
    pages: pageCount,
    bytes: pageCount * pageSize,
    epochs: epochCount,
    intervalMicros,
    duration: lastElapsed / 1e6,
    zeroPageShare: pageCount ? zeroPages / pageCount : 0,
    dirtyPerEpoch: { mean, max: Math.max(0, ...counts), cv: mean ? Math.sqrt(variance) / mean : 0 },
    workingSet: { window, seconds: window * interval, mean: unions.mean[window] ?? 0, max: unions.max[window] ?? 0 },
    neverWrittenShare: pageCount ? 1 - everWritten / pageCount : 0,
  };
  // Pages dirtied in `seconds`: the mean union of that many epochs, linear
  // between whole epochs, the trace's longest union beyond its length.
  const dirtyIn = (seconds: number): number => {
    if (epochCount === 0) return 0;
    const k = seconds / (interval || 1);
    if (k >= maxK) return unions.mean[maxK]!;
    const lo = Math.floor(k);
    const below = lo === 0 ? 0 : unions.mean[lo]!;
    return below + (unions.mean[lo + 1]! - below) * (k - lo);
  };
  return { ...base, verdict: precopyVerdict(base, dirtyIn, options) };
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    json: { type: "boolean" },
    bandwidth: { type: "string" },
    window: { type: "string" },
    downtime: { type: "string" },
  });
  const path = onePositional(positionals, "TRACE");
  const bandwidth = rateOption("bandwidth", values.bandwidth, 1e9);
  const window = values.window === undefined ? undefined : intOption("window", values.window, 1, 1, 1_000_000);
  const downtime = durationOption("downtime", values.downtime, 0.3);
  const r = await inspectTrace(path, { bandwidth, window, downtime });
  if (values.json) {
    console.log(JSON.stringify(r, null, 2));
    return 0;
  }
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const pagesAndBytes = (n: number) => `${Math.round(n)} pages (${formatBytes(n * r.pageSize)})`;
  console.log(`${r.file}${r.program ? `: ${r.program}` : ""}`);
  console.log(`  pages              ${r.pages} × ${r.pageSize} B (${formatBytes(r.bytes)})`);
  console.log(`  epochs             ${r.epochs} every ${r.intervalMicros / 1000} ms, last at ${r.duration.toFixed(2)} s`);
  console.log(`  zero pages         ${pct(r.zeroPageShare)} of the image`);
  console.log(`  dirty per epoch    mean ${r.dirtyPerEpoch.mean.toFixed(1)}, max ${r.dirtyPerEpoch.max}, CV ${r.dirtyPerEpoch.cv.toFixed(3)}`);
  console.log(`  working set        ${r.workingSet.window} epochs (${r.workingSet.seconds.toFixed(2)} s): mean ${pagesAndBytes(r.workingSet.mean)}, max ${pagesAndBytes(r.workingSet.max)}`);
  console.log(`  never written      ${pct(r.neverWrittenShare)} of the pages`);
  console.log(`  ${`at ${(bandwidth / 1e6).toFixed(0)} Mbit/s`.padEnd(19)}${r.verdict.line}`);
  return 0;
}

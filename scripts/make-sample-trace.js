#!/usr/bin/env node
// Cuts a small pagetrace out of a big one: a contiguous range of pages and
// the first epochs, so that a trace can ship with the package
// (data/redis-sample.ptrace.gz). The range is the busiest (most dirty pages)
// among those that look like the whole trace: zero share within 0.15 of the
// whole image's, mean changed bytes per dirty page within half of the whole
// trace's (so not a stretch of values rewritten with themselves, nor a
// region of fresh zero pages being filled).
//
//   node scripts/make-sample-trace.js [SOURCE] [OUT] [--pages 3072] [--epochs 20]
//
// Needs `npm run build` (imports ../dist). A delta restricted to a range of
// pages is still the delta of those pages, so the cut is an exact trace of
// the range.

import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { TraceReader, TraceWriter } from "../dist/guest/pagetrace.js";

const root = fileURLToPath(new URL("../", import.meta.url));
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { pages: { type: "string", default: "3072" }, epochs: { type: "string", default: "20" } },
});
const source = positionals[0] ?? `${root}../shared/traces/redis.ptrace.gz`;
const out = positionals[1] ?? `${root}data/redis-sample.ptrace.gz`;
const width = Number(values.pages);
const keepEpochs = Number(values.epochs);

// Pass 1: per page, whether it is zero in the image, how often it is dirty
// and how many bytes it changes over the kept epochs.
const scan = await TraceReader.open(source);
const { pageSize, pageCount, intervalMicros, meta } = scan.header;
if (!(width > 0 && width <= pageCount)) throw new RangeError(`--pages must be 1..${pageCount}`);
const zero = new Uint8Array(pageCount);
for (let p = 0; p < pageCount; p++) zero[p] = scan.image.subarray(p * pageSize, (p + 1) * pageSize).every((x) => x === 0) ? 1 : 0;
const dirty = new Float64Array(pageCount);
const changed = new Float64Array(pageCount);
let e = 0;
for await (const epoch of scan.epochs()) {
  if (++e > keepEpochs) break;
  epoch.pages.forEach((p, k) => {
    dirty[p]++;
    const delta = epoch.deltas.subarray(k * pageSize, (k + 1) * pageSize);
    for (let i = 0; i < pageSize; i++) if (delta[i] !== 0) changed[p]++;
  });
}
scan.close();
const total = (a) => a.reduce((x, y) => x + y, 0);
const zeroShare = total(zero) / pageCount;
const changedPerDirty = total(changed) / total(dirty);
let best = -1;
let fallback = -1;
let first = 0;
let fallbackFirst = 0;
const sums = { zero: 0, dirty: 0, changed: 0 };
for (let p = 0; p < pageCount; p++) {
  sums.zero += zero[p];
  sums.dirty += dirty[p];
  sums.changed += changed[p];
  if (p >= width) {
    sums.zero -= zero[p - width];
    sums.dirty -= dirty[p - width];
    sums.changed -= changed[p - width];
  }
  if (p < width - 1) continue;
  if (sums.dirty > fallback) {
    fallback = sums.dirty;
    fallbackFirst = p - width + 1;
  }
  const alike = Math.abs(sums.zero / width - zeroShare) <= 0.15 && Math.abs(sums.changed / sums.dirty / changedPerDirty - 1) <= 0.5;
  if (alike && sums.dirty > best) {
    best = sums.dirty;
    first = p - width + 1;
  }
}
if (best < 0) first = fallbackFirst;

// The regions of the range, clipped.
const regions = [];
let at = 0;
for (const r of meta.regions ?? []) {
  const lo = Math.max(at, first);
  const hi = Math.min(at + r.pages, first + width);
  if (lo < hi) regions.push({ ...r, start: `0x${(BigInt(r.start) + BigInt((lo - at) * pageSize)).toString(16)}`, pages: hi - lo });
  at += r.pages;
}

// Pass 2: the image range and the epochs' deltas in it.
const reader = await TraceReader.open(source);
const image = reader.image.slice(first * pageSize, (first + width) * pageSize);
const sampleMeta = {
  ...meta,
  regions: regions.length ? regions : undefined,
  sample: { source: source.split("/").pop(), firstPage: first, pages: width, epochs: keepEpochs },
};
const writer = await TraceWriter.create(out, image, { pageSize, intervalMicros, meta: sampleMeta, level: 9 });
e = 0;
for await (const epoch of reader.epochs()) {
  if (++e > keepEpochs) break;
  const keep = [];
  const slots = [];
  epoch.pages.forEach((p, k) => {
    if (p >= first && p < first + width) {
      keep.push(p - first);
      slots.push(k);
    }
  });
  const deltas = new Uint8Array(keep.length * pageSize);
  slots.forEach((k, i) => deltas.set(epoch.deltas.subarray(k * pageSize, (k + 1) * pageSize), i * pageSize));
  await writer.epochDeltas(epoch.elapsedMicros, keep, deltas);
}
reader.close();
const { bytes } = await writer.close();
console.log(`${out}: pages ${first}..${first + width - 1} of ${source}, ${Math.min(e, keepEpochs)} epochs, ${best < 0 ? `${fallback} dirty pages (no range like the whole)` : `${best} dirty pages`}, ${bytes} bytes`);

// Deduplication of 4 KiB pages on each shared trace's image: the share of
// pages and bytes a dedup index saves, and pages per second through it.
// pagemill's DedupIndex (XXH3-64 or XXH64 batch digests, byte-confirmed
// candidates) vs what a user writes today: node:crypto MD5 per page into a Map.
import { createHash } from "node:crypto";
import { DedupIndex, DuplicateCounter, init, PageBatch, scanZeroPages } from "../dist/index.js";
import { check, save, suite, tracePages, TRACES } from "./lib.js";

await init();
const PS = 4096;
const BATCH = 1024;
const MAX_PAGES = 16384;

/** Hits of a node:crypto MD5 → first location Map over the image (unbounded). */
function md5MapHits(pages, count) {
  const seen = new Map();
  let hits = 0;
  for (let p = 0; p < count; p++) {
    const key = createHash("md5").update(pages.subarray(p * PS, (p + 1) * PS)).digest("base64");
    if (seen.has(key)) hits++;
    else seen.set(key, p);
  }
  return hits;
}

/** Runs the whole image through `index` in batches; returns the hits. */
function indexPass(index, batch, pages, count) {
  index.clear();
  const before = index.counters.hits;
  const locations = new Uint32Array(BATCH);
  for (let at = 0; at < count; at += BATCH) {
    const n = Math.min(BATCH, count - at);
    for (let k = 0; k < n; k++) locations[k] = at + k;
    batch.set(pages.subarray(at * PS, (at + n) * PS));
    index.dedupe(batch, locations.subarray(0, n));
  }
  return index.counters.hits - before;
}

const results = {};
for (const name of TRACES) {
  const trace = await tracePages(name, MAX_PAGES);
  if (!trace) continue;
  const { pages, count } = trace;
  const batch = new PageBatch(BATCH, PS);
  // Big enough to remember every page: the share measured is the image's own.
  const xxh3Index = new DedupIndex({ maxEntries: count });
  const xxh64Index = new DedupIndex({ maxEntries: count, digest: "xxh64" });
  let zeroPages = 0;
  const nonZeroDuplicates = new DuplicateCounter();
  for (let at = 0; at < count; at += BATCH) {
    const n = Math.min(BATCH, count - at);
    const scan = scanZeroPages(batch.set(pages.subarray(at * PS, (at + n) * PS)));
    zeroPages += scan.zeroCount;
    nonZeroDuplicates.add(batch, scan.flags);
  }
  const hits = md5MapHits(pages, count);
  check(indexPass(xxh3Index, batch, pages, count) === hits, `${name}: XXH3 index hits = MD5 map hits`);
  check(indexPass(xxh64Index, batch, pages, count) === hits, `${name}: XXH64 index hits = MD5 map hits`);
  check(xxh3Index.counters.collisions === 0, `${name}: no XXH3 collisions on real pages`);
  const share = {
    pages: count,
    zeroPages,
    duplicatePages: hits,
    duplicateShare: hits / count,
    nonZeroDuplicatePages: nonZeroDuplicates.duplicates,
    bytesSaved: hits * PS,
  };
  console.log(
    `\n${name}: ${count} pages, ${zeroPages} zero; dedup finds ${hits} repeated pages (${(100 * share.duplicateShare).toFixed(1)}%, ` +
      `${nonZeroDuplicates.duplicates} of them non-zero), saving ${(share.bytesSaved / 2 ** 20).toFixed(1)} MiB`,
  );
  const rows = await suite(
    `dedup: ${name} image (${count} pages of 4 KiB)`,
    [
      { name: "node:crypto MD5 per page + Map", fn: () => md5MapHits(pages, count) },
      { name: "pagemill DedupIndex xxh3 (+ byte compare)", fn: () => indexPass(xxh3Index, batch, pages, count) },
      { name: "pagemill DedupIndex xxh64 (+ byte compare)", fn: () => indexPass(xxh64Index, batch, pages, count) },
    ],
    { bytesPerOp: pages.byteLength, minSamples: 5, maxTime: 2 },
  );
  for (const row of Object.values(rows)) row.pagesPerSecond = count / (row.medianMs / 1e3);
  console.log(`  pages/s through the XXH3 index: ${(rows["pagemill DedupIndex xxh3 (+ byte compare)"].pagesPerSecond / 1e6).toFixed(2)} M`);
  results[name] = { share, rows };
  xxh3Index.dispose();
  xxh64Index.dispose();
  batch.dispose();
}
save("dedup", results);

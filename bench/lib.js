// Shared benchmark plumbing: page sources that look like migration traffic,
// and a benny suite wrapper that prints medians, MB/s and ratios and saves
// JSON under bench/results/.

import b from "benny";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { createReadStream } from "node:fs";
import { createGunzip } from "node:zlib";
import { fileURLToPath } from "node:url";

export const SHARED = fileURLToPath(new URL("../../shared/", import.meta.url));
export const RESULTS = fileURLToPath(new URL("./results/", import.meta.url));
export const TRACES = ["redis", "node-gc", "memstream"];

/** The first `maxPages` pages of a shared trace's image, or undefined when ../shared is absent. */
export async function tracePages(name, maxPages) {
  const path = `${SHARED}traces/${name}.ptrace.gz`;
  if (!existsSync(path)) return undefined;
  const chunks = [];
  let have = 0;
  let need = Infinity;
  let start = 0;
  let pageSize = 4096;
  const stream = createReadStream(path).pipe(createGunzip());
  for await (const chunk of stream) {
    chunks.push(chunk);
    have += chunk.length;
    if (need === Infinity && have >= 28) {
      const head = Buffer.concat(chunks);
      pageSize = head.readUInt32LE(8);
      const pageCount = head.readUInt32LE(12);
      start = 28 + head.readUInt32LE(24);
      need = start + Math.min(maxPages, pageCount) * pageSize;
    }
    if (have >= need) break;
  }
  stream.destroy();
  const all = Buffer.concat(chunks);
  const pages = new Uint8Array(all.subarray(start, need));
  return { pageSize, count: pages.length / pageSize, pages };
}

/** Deterministic pseudo-random generator (xorshift32) for synthetic pages. */
export function rng(seed = 1) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

/**
 * Runs one side-by-side suite. `cases` is [{ name, fn }], the first being the
 * baseline for ratios; `bytesPerOp` turns ops/s into MB/s. Prints a table of
 * medians and returns { name: { mbps, medianMs, ratio } }.
 */
export async function suite(name, cases, { bytesPerOp, minSamples = 10, maxTime = 3 } = {}) {
  const summary = await b.suite(
    name,
    ...cases.map((c) => b.add(c.name, c.fn)),
    b.configure({ cases: { minSamples, maxTime } }),
  );
  const base = cases[0].name;
  const byName = Object.fromEntries(summary.results.map((r) => [r.name, r]));
  const baseMedian = byName[base].details.median;
  const rows = {};
  console.log(`\n${name}`);
  for (const c of cases) {
    const r = byName[c.name];
    const median = r.details.median;
    const row = {
      medianMs: median * 1e3,
      mbps: bytesPerOp ? bytesPerOp / median / 1e6 : undefined,
      ratio: baseMedian / median,
      samples: r.samples,
    };
    rows[c.name] = row;
    const rate = row.mbps !== undefined ? `${row.mbps.toFixed(0).padStart(7)} MB/s` : "";
    console.log(`  ${c.name.padEnd(44)} ${row.medianMs.toFixed(3).padStart(10)} ms  ${rate}  ${row.ratio.toFixed(2)}x ${c.name === base ? "(baseline)" : `vs ${base}`}`);
  }
  return rows;
}

/** Saves a bench file's results as JSON under bench/results/NAME.json. */
export function save(name, results) {
  mkdirSync(RESULTS, { recursive: true });
  const file = `${RESULTS}${name}.json`;
  writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), node: process.version, results }, null, 2));
  console.log(`\nsaved ${file}`);
}

/** Throws when a benchmark's output is wrong: checked once before timing. */
export function check(condition, what) {
  if (!condition) throw new Error(`benchmark output check failed: ${what}`);
}

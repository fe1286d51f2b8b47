// Shared benchmark plumbing: page sources that look like migration traffic,
// and a benny suite wrapper that prints medians, MB/s and ratios and saves
// JSON under bench/results/.

import b from "benny";
import { Random } from "../dist/index.js";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { createReadStream } from "node:fs";
import { createGunzip } from "node:zlib";
import { fileURLToPath } from "node:url";

export const SHARED = fileURLToPath(new URL("../../shared/", import.meta.url));
export const RESULTS = fileURLToPath(new URL("./results/", import.meta.url));
export const TRACES = ["redis", "node-gc", "memstream"];
/** Traces recorded on this machine (../traces beside the clone; never committed). */
export const LOCAL_TRACES = fileURLToPath(new URL("../../traces/", import.meta.url));

/** Traces recorded for Ada-copy's held-out check (../traces/ada-heldout; scripts/record-workloads.sh redis-hash memcached-get pgbench). */
export const ADA_HELD_OUT = `${LOCAL_TRACES}ada-heldout/`;

/** Every *.ptrace.gz in `dir` (none when it is absent): [{ name, path }]. */
export function tracesIn(dir) {
  return existsSync(dir)
    ? readdirSync(dir).filter((f) => f.endsWith(".ptrace.gz")).sort().map((f) => ({ name: f.replace(/\.ptrace\.gz$/, ""), path: dir + f }))
    : [];
}

/** The shared traces, then every *.ptrace.gz in ../traces: [{ name, path }]. */
export function allTraces() {
  return [...TRACES.map((name) => ({ name, path: `${SHARED}traces/${name}.ptrace.gz` })), ...tracesIn(LOCAL_TRACES)];
}

/**
 * The first `maxPages` pages of a trace's image: a shared trace by name, or
 * any trace file by path. Undefined when the file is absent.
 */
export async function tracePages(name, maxPages) {
  const path = name.includes("/") ? name : `${SHARED}traces/${name}.ptrace.gz`;
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

/** Uniform floats in [0, 1) from the project's seeded generator, for synthetic pages. */
export function rng(seed = 1) {
  const random = new Random(seed);
  return () => random.float();
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

/**
 * Times `cases` ([{ name, fn }], the first the baseline) in interleaved
 * rounds: each round runs every case once, in a rotating order, so a change
 * in the machine's load hits all of them alike. Prints and returns per case
 * the median time, MB/s and the median over rounds of baseline time / its
 * time (a ratio per round, then the median: robust on a shared machine).
 */
export function interleaved(name, cases, { bytesPerOp, rounds = 41 } = {}) {
  const times = cases.map(() => []);
  for (const c of cases) c.fn(); // warm up
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < cases.length; i++) {
      const j = (i + r) % cases.length;
      const t0 = performance.now();
      cases[j].fn();
      times[j].push(performance.now() - t0);
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  const rows = {};
  console.log(`\n${name} (${rounds} interleaved rounds)`);
  cases.forEach((c, j) => {
    const medianMs = median(times[j]);
    const ratio = median(times[0].map((t, r) => t / times[j][r]));
    rows[c.name] = { medianMs, mbps: bytesPerOp ? bytesPerOp / medianMs / 1e3 : undefined, ratio, samples: rounds };
    const rate = bytesPerOp ? `${rows[c.name].mbps.toFixed(0).padStart(7)} MB/s` : "";
    console.log(`  ${c.name.padEnd(44)} ${medianMs.toFixed(3).padStart(10)} ms  ${rate}  ${ratio.toFixed(2)}x ${j === 0 ? "(baseline)" : `vs ${cases[0].name}`}`);
  });
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

// pagemill bench --calibrate: measures, on this machine, the throughputs the
// engines' cost model charges in virtual time (src/engine/cost.ts), and
// writes them as a JSON cost table for `pagemill migrate --cost FILE`.
// Without --cost, engines use the documented default table, so results do
// not depend on the machine unless asked.

import { hostname } from "node:os";
import { writeFile } from "node:fs/promises";
import { writeAtomically } from "../files.js";
import type { EncodedBatch, PageCodec } from "../codecs/codec.js";
import { codecEntry, codecNames, createCodec } from "../codecs/registry.js";
import { scanZeroPages } from "../codecs/zero.js";
import { DEFAULT_COSTS, loadCostTable, type CodecCost, type CostTable } from "../codecs/cost.js";
import { xxh3Batch } from "../hash/xxhash.js";
import { syntheticImage } from "../guest/workloads.js";
import { PageBatch } from "../wasm/arena.js";
import { FrameDecoder } from "../wire/decoder.js";
import { FrameEncoder, buildPipeline, disposePipeline } from "../wire/pipeline.js";
import { UsageError, noPositionals, parse, pathOption, positiveDurationOption } from "./args.js";

export const summary = "Measures codec, zero-scan and digest throughput on this machine and writes a cost table for `migrate --cost`.";
export const usage = "usage: pagemill bench --calibrate [--out FILE] [--time 250ms] [--json]";

const PAGES = 256;
const PAGE_SIZE = 4096;

/** Bytes per second of `op` (one call handles `bytes`), run for at least `seconds` after a warm-up call. */
function rate(bytes: number, seconds: number, op: () => void): number {
  op();
  let calls = 0;
  const start = performance.now();
  let elapsed = 0;
  do {
    op();
    calls++;
    elapsed = (performance.now() - start) / 1000;
  } while (elapsed < seconds);
  return (bytes * calls) / elapsed;
}

/** Non-zero pages with the redis trace's content profile (mixed compressibility). */
function samplePages(): { pages: Uint8Array; indices: Uint32Array } {
  const image = syntheticImage(PAGES * 4, { profile: "redis", seed: 7 });
  const pages = new Uint8Array(PAGES * PAGE_SIZE);
  const indices = new Uint32Array(PAGES);
  let n = 0;
  for (let p = 0; n < PAGES && p < PAGES * 4; p++) {
    const page = image.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
    if (page.some((b) => b !== 0)) {
      pages.set(page, n * PAGE_SIZE);
      indices[n] = p;
      n++;
    }
  }
  if (n < PAGES) throw new Error(`synthetic image gave ${n} non-zero pages of ${PAGES}`);
  return { pages, indices };
}

/** The same pages with a few words changed each (what a delta codec sees in round 2). */
function dirtied(pages: Uint8Array): Uint8Array {
  const out = pages.slice();
  const words = new Uint32Array(out.buffer);
  for (let k = 0; k < PAGES; k++) for (let w = 0; w < 16; w++) words[k * (PAGE_SIZE / 4) + ((w * 61 + k) % (PAGE_SIZE / 4))]! ^= 0x5a5a5a5a;
  return out;
}

function measureCodec(name: string, pages: Uint8Array, indices: Uint32Array, seconds: number): CodecCost {
  const entry = codecEntry(name)!;
  const bytes = PAGES * PAGE_SIZE;
  const input = new PageBatch(PAGES, PAGE_SIZE).set(pages);
  const output = new PageBatch(PAGES, PAGE_SIZE);
  const encoder: PageCodec = createCodec(name);
  try {
    let encode: number;
    let encoded: EncodedBatch | undefined;
    if (entry.role === "delta") {
      // Timed on cache hits: every page was sent once before, then dirtied.
      const changed = dirtied(pages);
      encode = rate(bytes, seconds, () => {
        encoder.encodeBatch(input.set(pages), indices);
        encoded = encoder.encodeBatch(input.set(changed), indices);
      }) * 2;
      encoder.encodeBatch(input.set(pages), indices);
      encoded = encoder.encodeBatch(input.set(changed), indices);
    } else {
      encode = rate(bytes, seconds, () => {
        encoded = encoder.encodeBatch(input, indices);
      });
    }
    let decode: number;
    if (entry.decodes && !encoder.referencesOtherPages) {
      const decoder = createCodec(name);
      try {
        decode = rate(bytes, seconds, () => {
          if (entry.role === "delta") output.set(pages);
          decoder.decodeBatch(encoded!, output, indices);
        });
      } finally {
        decoder.dispose();
      }
    } else {
      // Decoded inside frames: by wire id (MECOM's pages are zero, same-value,
      // WKdm or LZ4), or against the pages the frame's destination holds (dedup).
      const stages = buildPipeline(name);
      const frame = new FrameEncoder(stages).pages(input.set(pages), indices);
      const frames = new FrameDecoder();
      const memory = new Uint8Array((indices[PAGES - 1]! + 1) * PAGE_SIZE);
      try {
        decode = rate(bytes, seconds, () => frames.decode(frame, memory));
      } finally {
        frames.dispose();
        disposePipeline(stages);
      }
    }
    return { encode, decode };
  } finally {
    encoder.dispose();
    input.dispose();
    output.dispose();
  }
}

/** Measures every registered codec, the raw copy, the zero scan and the page digest. */
export function calibrate(seconds: number): CostTable {
  const { pages, indices } = samplePages();
  const bytes = PAGES * PAGE_SIZE;
  const codecs: Record<string, CodecCost> = {};
  const batch = new PageBatch(PAGES, PAGE_SIZE);
  const copy = new Uint8Array(bytes);
  try {
    // raw: the copy into and out of linear memory every page pays.
    codecs.raw = {
      encode: rate(bytes, seconds, () => batch.set(pages)),
      decode: rate(bytes, seconds, () => copy.set(batch.bytes())),
    };
    for (const name of codecNames()) codecs[name] = measureCodec(name, pages, indices, seconds);
    batch.set(new Uint8Array(bytes));
    const zeroScan = rate(bytes, seconds, () => scanZeroPages(batch));
    batch.set(pages);
    const out = new BigUint64Array(PAGES);
    const hash = rate(bytes, seconds, () => xxh3Batch(batch, { out }));
    codecs.zero = { encode: zeroScan, decode: rate(bytes, seconds, () => copy.fill(0)) };
    return { source: `${hostname()} ${new Date().toISOString()}`, codecs, zeroScan, hash, fallback: DEFAULT_COSTS.fallback };
  } finally {
    batch.dispose();
  }
}

/** Writes `table` as JSON to `path`, which appears only once it reads back as a valid cost table. */
export async function writeCostTable(path: string, table: CostTable): Promise<void> {
  await writeAtomically(path, async (temporary) => {
    await writeFile(temporary, `${JSON.stringify(table, null, 2)}\n`);
    loadCostTable(temporary);
  });
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    calibrate: { type: "boolean" },
    out: { type: "string" },
    time: { type: "string" },
    json: { type: "boolean" },
  });
  noPositionals(positionals);
  if (!values.calibrate) throw new UsageError("nothing to do: pass --calibrate");
  const seconds = positiveDurationOption("time", values.time, 0.25);
  // Checked before the measuring, which takes a while.
  const out = pathOption("--out FILE", values.out, "pagemill-cost.json");
  const table = calibrate(seconds);
  await writeCostTable(out, table);
  if (values.json) {
    console.log(JSON.stringify(table, null, 2));
    return 0;
  }
  const mbs = (r: number) => `${(r / 1e6).toFixed(0).padStart(7)} MB/s`;
  console.log(`cost table measured on ${table.source} (one core, ${PAGES} mixed redis-profile pages per call)\n`);
  console.log("  codec        encode        decode      default encode / decode");
  for (const [name, cost] of Object.entries(table.codecs)) {
    const d = DEFAULT_COSTS.codecs[name];
    console.log(`  ${name.padEnd(8)} ${mbs(cost.encode)} ${mbs(cost.decode)}   ${d ? `${mbs(d.encode)} / ${mbs(d.decode).trim()}` : "-"}`);
  }
  console.log(`  zero scan ${mbs(table.zeroScan)}, xxh3 digest ${mbs(table.hash)}`);
  console.log(`\nwrote ${out}: use it with \`pagemill migrate --cost ${out}\``);
  return 0;
}

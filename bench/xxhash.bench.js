// xxHash over 4 KiB pages of the shared traces: pagemill's batch kernels (one
// WASM call per batch) vs xxhash-wasm's h64Raw and hash-wasm's hashers, one
// call per page. Two sets: 1536 trace pages (6 MiB, past the L2 cache) and
// 96 of them (384 KiB, in cache: the kernels' own speed).
import xxhashWasm from "xxhash-wasm";
import { createXXHash3, createXXHash64 } from "hash-wasm";
import { hex64, init, PageBatch, xxh32Batch, xxh3Batch, xxh64Batch } from "../dist/index.js";
import { check, save, suite, tracePages, TRACES } from "./lib.js";

await init();
const PS = 4096;
const { h32Raw, h64Raw } = await xxhashWasm();
const hw64 = await createXXHash64();
const hw3 = await createXXHash3();

function perPage(pages, count, hash) {
  let last;
  for (let p = 0; p < count; p++) last = hash(pages.subarray(p * PS, (p + 1) * PS));
  return last;
}
const hashWasm = (hasher) => (page) => {
  hasher.init();
  hasher.update(page);
  return hasher.digest("binary");
};

async function compare(label, pages) {
  const count = pages.byteLength / PS;
  const batch = new PageBatch(count, PS).set(pages);
  const out64 = new BigUint64Array(count);
  const out3 = new BigUint64Array(count);
  const out32 = new Uint32Array(count);
  xxh32Batch(batch, { out: out32 });
  xxh64Batch(batch, { out: out64 });
  xxh3Batch(batch, { out: out3 });
  for (let p = 0; p < count; p++) {
    const page = pages.subarray(p * PS, (p + 1) * PS);
    check(out64[p] === h64Raw(page, 0n), `${label}: XXH64 page ${p} vs xxhash-wasm`);
    check(out32[p] === h32Raw(page, 0), `${label}: XXH32 page ${p} vs xxhash-wasm`);
    hw3.init();
    check(hex64(out3[p]) === hw3.update(page).digest(), `${label}: XXH3 page ${p} vs hash-wasm`);
  }
  const rows = await suite(
    `xxHash: ${label} (${count} pages of 4 KiB)`,
    [
      { name: "xxhash-wasm h64Raw per page", fn: () => perPage(pages, count, (page) => h64Raw(page, 0n)) },
      { name: "hash-wasm xxhash64 per page", fn: () => perPage(pages, count, hashWasm(hw64)) },
      { name: "hash-wasm xxhash3 per page", fn: () => perPage(pages, count, hashWasm(hw3)) },
      { name: "pagemill xxh64Batch (batch in arena)", fn: () => xxh64Batch(batch, { out: out64 }) },
      { name: "pagemill xxh3Batch (batch in arena)", fn: () => xxh3Batch(batch, { out: out3 }) },
      { name: "pagemill batch.set + xxh64Batch", fn: () => xxh64Batch(batch.set(pages), { out: out64 }) },
      { name: "pagemill batch.set + xxh3Batch", fn: () => xxh3Batch(batch.set(pages), { out: out3 }) },
      { name: "xxhash-wasm h32Raw per page", fn: () => perPage(pages, count, (page) => h32Raw(page, 0)) },
      { name: "pagemill xxh32Batch (batch in arena)", fn: () => xxh32Batch(batch, { out: out32 }) },
    ],
    { bytesPerOp: pages.byteLength },
  );
  batch.dispose();
  return rows;
}

const parts = [];
for (const name of TRACES) {
  const trace = await tracePages(name, 512);
  if (trace) parts.push(trace.pages);
}
if (!parts.length) throw new Error("the shared traces are needed for this benchmark");
const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
parts.reduce((at, p) => (all.set(p, at), at + p.length), 0);
// The in-cache set takes 32 pages from each trace.
const small = new Uint8Array(parts.length * 32 * PS);
parts.forEach((p, i) => small.set(p.subarray(0, 32 * PS), i * 32 * PS));

const results = {
  traces: await compare("trace pages, 6 MiB", all),
  inCache: await compare("trace pages, 384 KiB (in cache)", small),
};
for (const [set, rows] of Object.entries(results)) {
  const r64 = rows["pagemill xxh64Batch (batch in arena)"].ratio;
  const r3 = rows["pagemill xxh3Batch (batch in arena)"].ratio;
  console.log(`target (${set}): XXH64 batch >= 1.2x xxhash-wasm h64: ${r64.toFixed(2)}x ${r64 >= 1.2 ? "MET" : "NOT MET"}`);
  console.log(`target (${set}): XXH3 batch >= 2x xxhash-wasm h64: ${r3.toFixed(2)}x ${r3 >= 2 ? "MET" : "NOT MET"}`);
}
save("xxhash", results);

// LZ4 on real pages: pagemill's batch codec vs lz4js (plain JavaScript) and
// lz4-wasm (lz4_flex compiled to WebAssembly), compressing and decompressing
// 4 KiB pages one block each. Pages are the non-zero pages of each shared
// trace's image (an engine sends zero pages as a flag, never through LZ4).
// Compression ratio is checked against the reference encoder: the lz4
// command with 4 KiB independent blocks (`lz4 -1 -B4096 -BI`), whose blocks
// are LZ4_compress_default's.
import { execFileSync } from "node:child_process";
import lz4js from "lz4js";
import * as lz4wasm from "lz4-wasm-nodejs";
import { init, Lz4Codec, PageBatch, lz4DecompressBlock } from "../dist/index.js";
import { check, save, suite, tracePages, TRACES } from "./lib.js";

await init();
const PS = 4096;
const PAGES = 4096;

/** The first `max` non-zero pages of a trace's image. */
async function nonZeroPages(name, max) {
  const trace = await tracePages(name, 40000);
  if (!trace) return undefined;
  const out = new Uint8Array(max * PS);
  let n = 0;
  for (let k = 0; k < trace.count && n < max; k++) {
    const page = trace.pages.subarray(k * PS, (k + 1) * PS);
    if (page.some((b) => b !== 0)) out.set(page, PS * n++);
  }
  return out.subarray(0, n * PS);
}

/** Total bytes of the lz4 command's 4 KiB blocks for `pages` (stored blocks count as 4096), or undefined without it. */
function referenceBytes(pages) {
  let frame;
  try {
    frame = execFileSync("lz4", ["-1", "-B4096", "-BI", "--no-frame-crc", "-c"], { input: pages, maxBuffer: 1 << 28, stdio: ["pipe", "pipe", "ignore"] });
  } catch {
    return undefined;
  }
  let at = 7;
  let total = 0;
  for (;;) {
    const word = frame.readUInt32LE(at);
    at += 4;
    if (word === 0) break;
    total += word & 0x7fffffff;
    at += word & 0x7fffffff;
  }
  return total;
}

// lz4js's compressBlock keeps positions in a caller's 64 Ki-entry table and
// takes a stale entry at the current position for an offset-0 match, so the
// table is cleared before each independent block (lz4js.compress() would
// allocate a fresh one per call instead).
function lz4jsCompress(pages, count, out, table) {
  let total = 0;
  for (let k = 0; k < count; k++) {
    table.fill(0);
    const n = lz4js.compressBlock(pages.subarray(k * PS, (k + 1) * PS), out[k], 0, PS, table);
    total += n === 0 ? PS : n;
  }
  return total;
}

function lz4jsDecompress(blocks, dst) {
  for (let k = 0; k < blocks.length; k++) lz4js.decompressBlock(blocks[k], dst, 0, blocks[k].length, k * PS);
}

async function compare(name) {
  const pages = await nonZeroPages(name, PAGES);
  if (!pages) return undefined;
  const count = pages.length / PS;
  const codec = new Lz4Codec();
  const batch = new PageBatch(count, PS).set(pages);
  const back = new PageBatch(count, PS);

  // Check every contender's output once before timing.
  const encoded = codec.encodeBatch(batch);
  codec.decodeBatch(encoded, back);
  check(Buffer.compare(back.bytes(), pages) === 0, `${name}: pagemill round trip`);

  const lzjsOut = Array.from({ length: count }, () => new Uint8Array(lz4js.compressBound(PS)));
  const lzjsTable = new Uint32Array(1 << 16);
  const lzjsBytes = lz4jsCompress(pages, count, lzjsOut, lzjsTable);
  const lzjsBlocks = [];
  for (let k = 0; k < count; k++) {
    lzjsTable.fill(0);
    const block = lzjsOut[k].subarray(0, lz4js.compressBlock(pages.subarray(k * PS, (k + 1) * PS), lzjsOut[k], 0, PS, lzjsTable));
    lzjsBlocks.push(block);
    if (block.length > 0) {
      const plain = new Uint8Array(PS);
      check(lz4DecompressBlock(block, plain) === PS && Buffer.compare(plain, pages.subarray(k * PS, (k + 1) * PS)) === 0, `${name}: lz4js block ${k}`);
    }
  }
  const lzjsDecodable = lzjsBlocks.filter((b) => b.length > 0);
  const lzjsPlain = new Uint8Array(count * PS);

  const wasmBlocks = [];
  let wasmBytes = 0;
  for (let k = 0; k < count; k++) {
    const block = lz4wasm.compress(pages.subarray(k * PS, (k + 1) * PS));
    wasmBlocks.push(block);
    wasmBytes += Math.min(PS, block.length - 4); // minus its 4-byte size prefix
    check(Buffer.compare(lz4wasm.decompress(block), pages.subarray(k * PS, (k + 1) * PS)) === 0, `${name}: lz4-wasm block ${k}`);
  }

  const ours = encoded.data.length;
  const reference = referenceBytes(pages);
  const mb = (count * PS) / 1e6;
  console.log(`\n${name}: ${count} non-zero pages (${mb.toFixed(1)} MB)`);
  console.log(`  bytes out: pagemill ${ours} (${((100 * ours) / pages.length).toFixed(2)}%), lz4 -1 reference ${reference ?? "n/a"}, lz4js ${lzjsBytes}, lz4-wasm ${wasmBytes}`);
  const ratioVsReference = reference ? ours / reference : undefined;
  if (ratioVsReference !== undefined) {
    console.log(`  target: pagemill bytes within 2% of the reference: ${(100 * (ratioVsReference - 1)).toFixed(3)}% ${Math.abs(ratioVsReference - 1) <= 0.02 ? "MET" : "NOT MET"}`);
  }

  const compress = await suite(
    `lz4 compress: ${name}, ${count} pages of 4 KiB`,
    [
      { name: "lz4js compressBlock per page", fn: () => lz4jsCompress(pages, count, lzjsOut, lzjsTable) },
      { name: "lz4-wasm compress per page", fn: () => { for (let k = 0; k < count; k++) lz4wasm.compress(pages.subarray(k * PS, (k + 1) * PS)); } },
      { name: "pagemill Lz4Codec.encodeBatch", fn: () => codec.encodeBatch(batch) },
      { name: "pagemill batch.set + encodeBatch", fn: () => codec.encodeBatch(batch.set(pages)) },
    ],
    { bytesPerOp: count * PS },
  );
  const decompress = await suite(
    `lz4 decompress: ${name}, ${count} pages of 4 KiB`,
    [
      { name: "lz4js decompressBlock per page", fn: () => lz4jsDecompress(lzjsDecodable, lzjsPlain) },
      { name: "lz4-wasm decompress per page", fn: () => { for (let k = 0; k < count; k++) lz4wasm.decompress(wasmBlocks[k]); } },
      { name: "pagemill Lz4Codec.decodeBatch", fn: () => codec.decodeBatch(encoded, back) },
    ],
    { bytesPerOp: count * PS },
  );
  const vsLz4js = compress["pagemill Lz4Codec.encodeBatch"].ratio;
  const vsWasmCompress = compress["pagemill Lz4Codec.encodeBatch"].mbps / compress["lz4-wasm compress per page"].mbps;
  const vsWasmDecompress = decompress["pagemill Lz4Codec.decodeBatch"].mbps / decompress["lz4-wasm decompress per page"].mbps;
  const verdict = (ok) => (ok ? "MET" : "NOT MET");
  console.log(`  target: compress >= 2x lz4js: ${vsLz4js.toFixed(2)}x ${verdict(vsLz4js >= 2)}`);
  console.log(`  target: compress >= 1x lz4-wasm: ${vsWasmCompress.toFixed(2)}x ${verdict(vsWasmCompress >= 1)}`);
  console.log(`  target: decompress >= 1x lz4-wasm: ${vsWasmDecompress.toFixed(2)}x ${verdict(vsWasmDecompress >= 1)}`);

  batch.dispose();
  back.dispose();
  codec.dispose();
  return {
    pages: count,
    bytes: { pagemill: ours, reference, lz4js: lzjsBytes, lz4wasm: wasmBytes },
    ratioVsReference,
    compress,
    decompress,
    targets: { compressVsLz4js: vsLz4js, compressVsLz4wasm: vsWasmCompress, decompressVsLz4wasm: vsWasmDecompress },
  };
}

const results = {};
for (const name of TRACES) {
  const r = await compare(name);
  if (r) results[name] = r;
}
save("lz4", results);

// MD5 per page: pagemill's batch kernel (four pages per SIMD step) vs
// node:crypto createHash per page and hash-wasm per page (a reused hasher,
// and its one-call md5()). 16 MiB of 4 KiB pages from the shared traces'
// images per op. Then one 16 MiB buffer hashed whole (the streaming path).
import { createHash } from "node:crypto";
import { createMD5, md5 as hashWasmMd5 } from "hash-wasm";
import { init, md5, md5Batch, PageBatch, toHex } from "../dist/index.js";
import { check, rng, save, suite, tracePages, TRACES } from "./lib.js";

await init();
const PS = 4096;
const PAGES = 4096; // 16 MiB

/** 16 MiB of trace pages, an equal share from each trace; seeded random pages when ../shared is absent. */
async function benchPages() {
  const out = new Uint8Array(PAGES * PS);
  let have = 0;
  for (const [i, name] of TRACES.entries()) {
    const want = Math.ceil((PAGES - have) / (TRACES.length - i));
    const trace = await tracePages(name, want);
    if (!trace) continue;
    out.set(trace.pages, have * PS);
    have += trace.count;
  }
  const random = rng(7);
  for (let i = have * PS; i < out.length; i++) out[i] = random() * 256;
  return { pages: out, fromTraces: have };
}

const { pages, fromTraces } = await benchPages();
const page = (k) => pages.subarray(k * PS, (k + 1) * PS);
const reference = Array.from({ length: PAGES }, (_, k) => createHash("md5").update(page(k)).digest("hex"));

const batch = new PageBatch(PAGES, PS);
batch.set(pages);
const digests = new Uint8Array(PAGES * 16);
const hasher = await createMD5();

function nodePerPage() {
  for (let k = 0; k < PAGES; k++) createHash("md5").update(page(k)).digest();
}
function hashWasmReused() {
  for (let k = 0; k < PAGES; k++) {
    hasher.init();
    hasher.update(page(k));
    hasher.digest("binary");
  }
}
async function hashWasmOneCall() {
  for (let k = 0; k < PAGES; k++) await hashWasmMd5(page(k));
}
function pagemillPerPage() {
  for (let k = 0; k < PAGES; k++) md5(page(k));
}

md5Batch(batch, digests);
for (let k = 0; k < PAGES; k++) check(toHex(digests.subarray(16 * k, 16 * k + 16)) === reference[k], `md5Batch page ${k}`);
check(toHex(md5(page(PAGES - 1))) === reference[PAGES - 1], "md5 per page");
hasher.init();
hasher.update(page(5));
check(toHex(hasher.digest("binary")) === reference[5], "hash-wasm reused hasher");
check((await hashWasmMd5(page(6))) === reference[6], "hash-wasm md5()");

const results = {};
results.pages = await suite(
  `MD5 per page: ${PAGES} pages of 4 KiB (${fromTraces} from the traces' images)`,
  [
    { name: "node:crypto createHash per page", fn: nodePerPage },
    { name: "hash-wasm createMD5 reused, per page", fn: hashWasmReused },
    { name: "hash-wasm md5() per page (async)", fn: hashWasmOneCall },
    { name: "pagemill md5() per page", fn: pagemillPerPage },
    { name: "pagemill md5Batch (batch in arena)", fn: () => md5Batch(batch, digests) },
    { name: "pagemill batch.set + md5Batch", fn: () => md5Batch(batch.set(pages), digests) },
  ],
  { bytesPerOp: pages.byteLength },
);

const wholeHex = createHash("md5").update(pages).digest("hex");
check(toHex(md5(pages)) === wholeHex, "pagemill md5 over the whole buffer");
hasher.init();
hasher.update(pages);
check(toHex(hasher.digest("binary")) === wholeHex, "hash-wasm over the whole buffer");
results.whole = await suite(
  "MD5 of one 16 MiB buffer (streaming path)",
  [
    { name: "node:crypto createHash", fn: () => createHash("md5").update(pages).digest() },
    {
      name: "hash-wasm createMD5",
      fn: () => {
        hasher.init();
        hasher.update(pages);
        hasher.digest("binary");
      },
    },
    { name: "pagemill md5()", fn: () => md5(pages) },
  ],
  { bytesPerOp: pages.byteLength },
);
batch.dispose();

const ratio = results.pages["pagemill md5Batch (batch in arena)"].ratio;
console.log(`target: pagemill md5Batch >= 3.5x node:crypto per page: ${ratio.toFixed(2)}x ${ratio >= 3.5 ? "MET" : "NOT MET"}`);
save("md5", results);

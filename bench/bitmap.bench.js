// Dirty-bitmap extraction of set bits (2^24 pages at 1% and 50% density):
// pagemill's kernel vs a plain TypeScript loop over the same words.
import { init, DirtyBitmap } from "../dist/index.js";
import { check, rng, save, suite } from "./lib.js";

await init();
const SIZE = 2 ** 24;

/** The plain loop: skip zero words, test each bit of the others. */
function plainExtract(words, size, out) {
  let n = 0;
  for (let w = 0; w < words.length; w++) {
    const word = words[w];
    if (word === 0) continue;
    for (let b = 0; b < 32; b++) if ((word >>> b) & 1) out[n++] = w * 32 + b;
  }
  return n;
}

const results = {};
for (const density of [0.01, 0.5]) {
  const bitmap = new DirtyBitmap(SIZE);
  const random = rng(7);
  for (let p = 0; p < SIZE; p++) if (random() < density) bitmap.set(p);
  const words = new Uint32Array(bitmap.toWords().buffer);
  const out = new Uint32Array(SIZE);
  const set = bitmap.count();
  const kernel = bitmap.extract();
  check(kernel.length === set && plainExtract(words, SIZE, out) === set, "extraction counts");
  check(kernel.every((v, i) => v === out[i]), "extraction indices");
  results[`density-${density}`] = await suite(
    `bitmap extract: 2^24 pages, ${(density * 100).toFixed(0)}% set (${set} pages)`,
    [
      { name: "plain TypeScript loop", fn: () => plainExtract(words, SIZE, out) },
      { name: "pagemill DirtyBitmap.extract", fn: () => bitmap.extract() },
    ],
    { bytesPerOp: SIZE / 8 },
  );
  bitmap.dispose();
}
for (const [name, rows] of Object.entries(results)) {
  const r = rows["pagemill DirtyBitmap.extract"].ratio;
  console.log(`target: extract >= 5x plain loop at ${name}: ${r.toFixed(2)}x ${r >= 5 ? "MET" : "NOT MET"}`);
}
save("bitmap", results);

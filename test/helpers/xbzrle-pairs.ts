// Old/new page pairs for XBZRLE tests and fuzzing: a base page and an edit
// pattern, built deterministically from a seed so fast-check can shrink them.

import fc from "fast-check";
import { u32Stream } from "./random.js";

export const EDIT_PATTERNS = [
  "none",
  "sparse",
  "runs",
  "words",
  "every-other",
  "rewrite",
  "head",
  "tail",
  "chunk-edges",
  "long-zero-run",
] as const;
export type EditPattern = (typeof EDIT_PATTERNS)[number];
export const BASES = ["zero", "random", "text", "small-ints"] as const;

export interface PairSpec {
  pageSize: number;
  base: (typeof BASES)[number];
  pattern: EditPattern;
  /** how much to edit: bytes, runs or words, by pattern */
  amount: number;
  seed: number;
}


export function basePage(base: PairSpec["base"], pageSize: number, next: () => number): Uint8Array {
  const page = new Uint8Array(pageSize);
  if (base === "random") for (let i = 0; i < pageSize; i++) page[i] = next();
  if (base === "text") {
    const text = new TextEncoder().encode("the quick brown fox jumps over the lazy dog; ");
    for (let i = 0; i < pageSize; i++) page[i] = text[i % text.length]!;
  }
  if (base === "small-ints") for (let i = 0; i < pageSize; i += 4) page[i] = next() & 0x0f;
  return page;
}

/** Builds the pair a spec describes. */
export function makePair(spec: PairSpec): { oldPage: Uint8Array; newPage: Uint8Array } {
  const { pageSize: ps, amount } = spec;
  const next = u32Stream(spec.seed);
  const oldPage = basePage(spec.base, ps, next);
  const newPage = oldPage.slice();
  // XOR with a value that is usually, not always, non-zero: an edit may
  // rewrite a byte with its old value, as real writes do.
  const flip = (at: number): void => {
    newPage[at % ps] ^= next() % 8 === 0 ? 0 : 1 + (next() % 255);
  };
  switch (spec.pattern) {
    case "none":
      break;
    case "sparse":
      for (let k = 0; k < amount; k++) flip(next());
      break;
    case "runs":
      for (let k = 0; k < amount; k++) {
        const at = next() % ps;
        const len = 1 + (next() % 300);
        for (let i = at; i < Math.min(ps, at + len); i++) newPage[i] ^= 1 + (next() % 255);
      }
      break;
    case "words":
      for (let k = 0; k < amount; k++) {
        const at = (next() % ps) & ~7;
        for (let i = at; i < at + 8; i++) newPage[i] = next();
      }
      break;
    case "every-other": {
      const start = next() % 2;
      const span = Math.min(ps, amount * 64);
      const from = next() % (ps - span + 1);
      for (let i = from + start; i < from + span; i += 2) newPage[i] ^= 0xa5;
      break;
    }
    case "rewrite":
      for (let i = 0; i < ps; i++) newPage[i] = next();
      break;
    case "head":
      for (let i = 0; i < Math.min(ps, amount); i++) newPage[i] ^= 0x5a;
      break;
    case "tail":
      for (let i = Math.max(0, ps - amount); i < ps; i++) newPage[i] ^= 0x5a;
      break;
    case "chunk-edges":
      // Bytes either side of 16- and 64-byte boundaries, where the vector scan changes lanes.
      for (let k = 0; k < amount; k++) {
        const edge = (next() % (ps / 16)) * 16;
        flip(edge + ps - 1);
        if (next() & 1) flip(edge);
      }
      break;
    case "long-zero-run": {
      // A change right after 0x3fff ± 2 equal bytes: the longest run a length carries.
      const at = Math.min(ps - 1, 0x3fff - 2 + (amount % 5));
      newPage[at] ^= 0xff;
      if (amount & 1) newPage[ps - 1] ^= 1;
      break;
    }
  }
  return { oldPage, newPage };
}

/** Page sizes, weighted towards 4 KiB. */
export const pageSizeArb = fc.constantFrom(4096, 4096, 4096, 512, 1024, 8192, 16384, 32768, 65536);

export const pairSpecArb = (pageSize: fc.Arbitrary<number> = pageSizeArb): fc.Arbitrary<PairSpec> =>
  fc.record({
    pageSize,
    base: fc.constantFrom(...BASES),
    pattern: fc.constantFrom(...EDIT_PATTERNS),
    amount: fc.integer({ min: 0, max: 80 }),
    seed: fc.integer(),
  });

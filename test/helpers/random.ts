// Seeded pseudo-random data for tests, from the project's one generator
// (src/random.ts): the same seed always gives the same bytes.
import { Random } from "../../src/random.js";

/** A stream of u32 from a seed. */
export function u32Stream(seed: number): () => number {
  const random = new Random(seed);
  return () => random.u32();
}

/** `length` bytes from Random(seed). */
export function randomBytes(length: number, seed: number): Uint8Array {
  return new Random(seed).bytes(length);
}

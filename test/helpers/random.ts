// Seeded pseudo-random data for tests: the same seed always gives the same bytes.

/** xorshift32: a stream of u32 from a seed (0 is replaced, as xorshift needs a non-zero state). */
export function xorshift32(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/** `length` bytes from xorshift32(seed), the low byte of each step. */
export function randomBytes(length: number, seed: number): Uint8Array {
  const next = xorshift32(seed);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = next() & 0xff;
  return out;
}

// A plain, byte-at-a-time XBZRLE encoder and decoder, written from QEMU's
// format description (migration/xbzrle.c) to check the WASM kernels against.
// Slow on purpose: no words, no vectors, one byte per step.

/** ULEB128 limited to 14 bits, as QEMU's uleb128_encode_small. */
function putLength(out: Uint8Array, at: number, n: number): number {
  if (n < 0x80) {
    out[at] = n;
    return 1;
  }
  out[at] = (n & 0x7f) | 0x80;
  out[at + 1] = n >> 7;
  return 2;
}

/**
 * Encodes `newPage` against `oldPage` into `out` (capacity `out.length`, QEMU's
 * dlen). Returns bytes written, 0 when the pages are equal, -1 when the
 * encoding does not fit (or a run is longer than 0x3fff, which QEMU's 14-bit
 * lengths cannot carry).
 */
export function referenceEncode(oldPage: Uint8Array, newPage: Uint8Array, out: Uint8Array): number {
  const slen = newPage.length;
  const dlen = out.length;
  let i = 0;
  let d = 0;
  while (i < slen) {
    if (d + 2 > dlen) return -1;
    const zeroStart = i;
    while (i < slen && oldPage[i] === newPage[i]) i++;
    if (i - zeroStart === slen) return 0;
    if (i === slen) return d;
    if (i - zeroStart > 0x3fff) return -1;
    d += putLength(out, d, i - zeroStart);
    if (d + 2 > dlen) return -1;
    const start = i;
    while (i < slen && oldPage[i] !== newPage[i]) i++;
    const n = i - start;
    if (n > 0x3fff) return -1;
    d += putLength(out, d, n);
    if (d + n > dlen) return -1;
    for (let k = 0; k < n; k++) out[d + k] = newPage[start + k]!;
    d += n;
  }
  return d;
}

export type ReferenceDecodeResult = { ok: true; end: number } | { ok: false; code: "truncated" | "overrun" | "malformed" };

/**
 * Checks `delta` against a page of `pageLength` bytes with QEMU's decoder
 * rules and, when it is well formed, applies it to `page` (in place).
 */
export function referenceDecode(delta: Uint8Array, page: Uint8Array): ReferenceDecodeResult {
  const slen = delta.length;
  const dlen = page.length;
  const runs: Array<[number, number, number]> = [];
  let i = 0;
  let d = 0;
  const length = (): number => {
    const first = delta[i]!;
    if (first < 0x80) {
      i += 1;
      return first;
    }
    const second = delta[i + 1]!;
    if (second >= 0x80) return -1;
    i += 2;
    return (first & 0x7f) | (second << 7);
  };
  while (i < slen) {
    if (slen - i < 2) return { ok: false, code: "truncated" };
    const zero = length();
    // Only the first zero run may be empty.
    if (zero < 0 || (zero === 0 && runs.length > 0)) return { ok: false, code: "malformed" };
    d += zero;
    if (d > dlen) return { ok: false, code: "overrun" };
    if (slen - i < 2) return { ok: false, code: "truncated" };
    const n = length();
    if (n <= 0) return { ok: false, code: "malformed" };
    if (d + n > dlen) return { ok: false, code: "overrun" };
    if (i + n > slen) return { ok: false, code: "truncated" };
    runs.push([d, i, n]);
    d += n;
    i += n;
  }
  for (const [at, from, n] of runs) page.set(delta.subarray(from, from + n), at);
  return { ok: true, end: d };
}

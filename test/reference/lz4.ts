// A plain TypeScript LZ4 block decoder, written straight from
// lz4's doc/lz4_Block_format.md, to check the WebAssembly one against.
// Byte at a time, no wide copies, lengths in JavaScript numbers (no overflow).
// Result: the decoded bytes, or the first failure met in stream order:
// "truncated" (input ends inside a field), "overrun" (more output than
// `capacity`), "malformed" (offset 0 or before the start of the output).

export type ReferenceLz4Result = { ok: true; bytes: Uint8Array } | { ok: false; code: "truncated" | "overrun" | "malformed" };

export function referenceLz4Decode(block: Uint8Array, capacity: number): ReferenceLz4Result {
  const out = new Uint8Array(capacity);
  let ip = 0;
  let op = 0;
  const readLength = (start: number): number | undefined => {
    let len = start;
    for (;;) {
      if (ip >= block.length) return undefined;
      const b = block[ip++]!;
      len += b;
      if (b !== 255) return len;
    }
  };
  for (;;) {
    if (ip >= block.length) return { ok: false, code: "truncated" };
    const token = block[ip++]!;
    let literals = token >> 4;
    if (literals === 15) {
      const len = readLength(15);
      if (len === undefined) return { ok: false, code: "truncated" };
      literals = len;
    }
    if (literals > block.length - ip) return { ok: false, code: "truncated" };
    if (literals > capacity - op) return { ok: false, code: "overrun" };
    for (let i = 0; i < literals; i++) out[op++] = block[ip++]!;
    if (ip === block.length) return { ok: true, bytes: out.subarray(0, op) };

    if (block.length - ip < 2) return { ok: false, code: "truncated" };
    const offset = block[ip]! | (block[ip + 1]! << 8);
    ip += 2;
    if (offset === 0 || offset > op) return { ok: false, code: "malformed" };
    let matchLength = token & 15;
    if (matchLength === 15) {
      const len = readLength(15);
      if (len === undefined) return { ok: false, code: "truncated" };
      matchLength = len;
    }
    matchLength += 4;
    if (matchLength > capacity - op) return { ok: false, code: "overrun" };
    for (let i = 0; i < matchLength; i++, op++) out[op] = out[op - offset]!;
  }
}


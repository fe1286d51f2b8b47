/// <reference path="./types/lz4js.d.ts" />
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import xxhash from "xxhash-wasm";
import lz4js from "lz4js";
import * as lz4wasm from "lz4-wasm-nodejs";
import { CodecError, Lz4Codec, PageBatch, lz4CompressBlock, lz4CompressBound, lz4DecompressBlock } from "../src/index.js";
import { Encoding } from "../src/codecs/codec.js";
import { SHARED, TRACE_NAMES, sharedTraceImagePages } from "./helpers/traces.js";
import { referenceLz4Decode } from "./reference/lz4.js";
import { withoutTools } from "./helpers/tools.js";

interface Lz4Vector {
  page: number;
  kind: string;
  ret: number;
  hex: string;
}
const vectorFile = JSON.parse(readFileSync(`${SHARED}vectors/lz4.json`, "utf8")) as { pageSize: number; vectors: Lz4Vector[] };
const PAGE = vectorFile.pageSize;
const vectorPages = new Uint8Array(readFileSync(`${SHARED}vectors/pages.bin`));
const vectorPage = (i: number) => vectorPages.subarray(i * PAGE, (i + 1) * PAGE);
const fromHex = (hex: string) => new Uint8Array(Buffer.from(hex, "hex"));
/** Byte equality without the element-wise diff machinery of toEqual (slow on large arrays). */
const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.compare(a, b) === 0;

/** Our block for `src`, given room for the worst case. */
function compress(src: Uint8Array): Uint8Array {
  const out = new Uint8Array(lz4CompressBound(src.length));
  return out.slice(0, lz4CompressBlock(src, out));
}

function decompress(block: Uint8Array, capacity: number): Uint8Array {
  const out = new Uint8Array(capacity);
  return out.subarray(0, lz4DecompressBlock(block, out));
}

function decodeError(block: Uint8Array, capacity: number): CodecError {
  try {
    lz4DecompressBlock(block, new Uint8Array(capacity));
  } catch (e) {
    if (e instanceof CodecError) return e;
    throw e;
  }
  throw new Error("block decoded without error");
}

/**
 * Inputs that look like data: runs of one byte, random bytes, text from a
 * small alphabet, and copies of earlier stretches (near and far), mixed.
 */
const structuredInput = (maxLength: number) =>
  fc
    .array(
      fc.oneof(
        fc.record({ kind: fc.constant("run" as const), byte: fc.integer({ min: 0, max: 255 }), n: fc.integer({ min: 1, max: 600 }) }),
        fc.record({ kind: fc.constant("random" as const), bytes: fc.uint8Array({ maxLength: 300 }) }),
        fc.record({ kind: fc.constant("text" as const), chars: fc.array(fc.integer({ min: 97, max: 101 }), { maxLength: 400 }) }),
        fc.record({ kind: fc.constant("copy" as const), back: fc.integer({ min: 1, max: 70000 }), n: fc.integer({ min: 1, max: 2000 }) }),
      ),
      { maxLength: 60 },
    )
    .map((parts) => {
      const out: number[] = [];
      for (const p of parts) {
        if (out.length >= maxLength) break;
        if (p.kind === "run") for (let i = 0; i < p.n; i++) out.push(p.byte);
        else if (p.kind === "random") out.push(...p.bytes);
        else if (p.kind === "text") out.push(...p.chars);
        else if (out.length > 0) {
          const from = out.length - 1 - (p.back % out.length);
          for (let i = 0; i < p.n; i++) out.push(out[from + i]!);
        }
      }
      return Uint8Array.from(out.slice(0, maxLength));
    });

describe("lz4 golden vectors (LZ4 1.9 LZ4_compress_default)", () => {
  it("decodes every reference block back to its page", () => {
    for (const v of vectorFile.vectors) {
      const block = fromHex(v.hex);
      expect(block.length, `page ${v.page}`).toBe(v.ret);
      expect(same(decompress(block, PAGE), vectorPage(v.page)), `page ${v.page} (${v.kind})`).toBe(true);
    }
  });

  it("reproduces every reference block byte for byte", () => {
    let exact = 0;
    for (const v of vectorFile.vectors) {
      const ours = compress(vectorPage(v.page));
      if (Buffer.from(ours).toString("hex") === v.hex) exact++;
      expect(ours.length, `page ${v.page} (${v.kind})`).toBe(v.ret);
    }
    // 84 of 84 at the time of writing: the encoder makes LZ4's decisions.
    expect(exact).toBe(vectorFile.vectors.length);
  });

  it("returns 0 when out is one byte short of the block, the block when it is exactly long enough", () => {
    for (const v of vectorFile.vectors) {
      const exactRoom = new Uint8Array(v.ret);
      expect(lz4CompressBlock(vectorPage(v.page), exactRoom)).toBe(v.ret);
      expect(Buffer.from(exactRoom).toString("hex")).toBe(v.hex);
      expect(lz4CompressBlock(vectorPage(v.page), new Uint8Array(v.ret - 1))).toBe(0);
    }
  });

  it("the batch codec sends a page raw exactly when the reference block is not shorter than it", () => {
    const codec = new Lz4Codec();
    const count = vectorPages.length / PAGE;
    const batch = new PageBatch(count, PAGE).set(vectorPages);
    const encoded = codec.encodeBatch(batch);
    for (const v of vectorFile.vectors) {
      const k = v.page;
      const payload = encoded.data.subarray(encoded.offsets[k], encoded.offsets[k]! + encoded.lengths[k]!);
      if (v.ret < PAGE) {
        expect(encoded.encodings[k], `page ${k}`).toBe(Encoding.LZ4);
        expect(Buffer.from(payload).toString("hex")).toBe(v.hex);
      } else {
        expect(encoded.encodings[k], `page ${k}`).toBe(Encoding.RAW);
        expect(same(payload, vectorPage(k))).toBe(true);
      }
    }
    const back = new PageBatch(count, PAGE);
    codec.decodeBatch(encoded, back);
    expect(back.count).toBe(count);
    expect(same(back.bytes(), vectorPages)).toBe(true);
    const raw = vectorFile.vectors.filter((v) => v.ret >= PAGE).length;
    expect(codec.stats.notFit).toBe(raw);
    expect(codec.stats.byEncoding.raw).toBe(raw);
    expect(codec.stats.pages).toBe(count);
    expect(codec.stats.outputBytes).toBe(encoded.data.length);
    batch.dispose();
    back.dispose();
    codec.dispose();
  });
});

describe("lz4 on real pages", () => {
  for (const name of TRACE_NAMES) {
    it(`round-trips every page of the ${name} image through the batch codec`, async () => {
      const { pageSize, count, pages } = await sharedTraceImagePages(name, Infinity);
      expect(pages.length).toBe(count * pageSize);
      const codec = new Lz4Codec();
      const chunk = 4096;
      const batch = new PageBatch(chunk, pageSize);
      const back = new PageBatch(chunk, pageSize);
      for (let first = 0; first < count; first += chunk) {
        const slice = pages.subarray(first * pageSize, Math.min(count, first + chunk) * pageSize);
        const encoded = codec.encodeBatch(batch.set(slice));
        codec.decodeBatch(encoded, back);
        expect(same(back.bytes(), slice), `${name} pages ${first}..`).toBe(true);
        // Every few hundred pages, the plain decoder must read our block too.
        for (let k = 0; k < encoded.count; k += 97) {
          if (encoded.encodings[k] !== Encoding.LZ4) continue;
          const block = encoded.data.subarray(encoded.offsets[k], encoded.offsets[k]! + encoded.lengths[k]!);
          const ref = referenceLz4Decode(block, pageSize);
          expect(ref.ok && same(ref.bytes, slice.subarray(k * pageSize, (k + 1) * pageSize))).toBe(true);
        }
      }
      expect(codec.stats.pages).toBe(count);
      expect(codec.stats.outputBytes).toBeLessThan(count * pageSize);
      batch.dispose();
      back.dispose();
      codec.dispose();
    });
  }
});

describe("lz4 single-block API", () => {
  it("round-trips structured and random inputs of any length up to 70000, agreeing with the plain decoder", () => {
    fc.assert(
      fc.property(fc.oneof(structuredInput(70000), fc.uint8Array({ maxLength: 70000 })), (src) => {
        const block = compress(src);
        expect(block.length).toBeGreaterThan(0);
        expect(block.length).toBeLessThanOrEqual(lz4CompressBound(src.length));
        expect(same(decompress(block, src.length), src)).toBe(true);
        const ref = referenceLz4Decode(block, src.length);
        expect(ref.ok && same(ref.bytes, src)).toBe(true);
      }),
      { numRuns: 150 },
    );
  });

  it("round-trips every length from 0 to 300 and around the 64 KiB table switch", () => {
    const lengths = [...Array.from({ length: 301 }, (_, n) => n), ...Array.from({ length: 40 }, (_, i) => 65520 + i), 65546, 65547, 65548, 131072 + 7];
    const pattern = new Uint8Array(131079);
    for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 7) % 13 === 0 ? i & 0xff : (i >> 5) % 3;
    for (const n of lengths) {
      const src = pattern.subarray(0, n);
      const block = compress(src);
      expect(same(decompress(block, n), src), `length ${n}`).toBe(true);
      if (n < 13) expect(block.length, `length ${n} is all literals`).toBe(1 + n);
    }
  });

  it("keeps the end-of-block rules: last 5 bytes literal, last match starting 12 or more bytes before the end", () => {
    fc.assert(
      fc.property(structuredInput(20000), (src) => {
        const block = compress(src);
        // Walk the sequences to find where the last match starts and ends.
        let ip = 0;
        let op = 0;
        let lastMatchStart = -1;
        let lastMatchEnd = 0;
        for (;;) {
          const token = block[ip++]!;
          let lit = token >> 4;
          if (lit === 15) for (let b = 255; b === 255; ) lit += b = block[ip++]!;
          ip += lit;
          op += lit;
          if (ip === block.length) break;
          ip += 2;
          let len = token & 15;
          if (len === 15) for (let b = 255; b === 255; ) len += b = block[ip++]!;
          lastMatchStart = op;
          op += len + 4;
          lastMatchEnd = op;
        }
        expect(op).toBe(src.length);
        if (lastMatchStart >= 0) {
          expect(src.length - lastMatchStart).toBeGreaterThanOrEqual(12);
          expect(src.length - lastMatchEnd).toBeGreaterThanOrEqual(5);
        }
      }),
      { numRuns: 100 },
    );
  });

  it("with a smaller out, returns 0 or exactly the unlimited block, and never 0 when the block fits", () => {
    fc.assert(
      fc.property(structuredInput(9000), fc.double({ min: 0, max: 1.2, noNaN: true }), (src, share) => {
        const full = compress(src);
        const room = Math.floor(full.length * share);
        const out = new Uint8Array(room + 32).fill(0xee);
        const n = lz4CompressBlock(src, out.subarray(0, room));
        if (room >= full.length) expect(same(out.subarray(0, n), full)).toBe(true);
        else expect(n).toBe(0);
        expect(out.subarray(room).every((b) => b === 0xee)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it("names what is wrong with a bad block", () => {
    const src = new TextEncoder().encode("pagemill pagemill pagemill pagemill pagemill!");
    const block = compress(src);
    expect(decodeError(block, src.length - 1).code).toBe("overrun");
    expect(decodeError(block.subarray(0, block.length - 3), src.length).code).toBe("truncated");
    expect(decodeError(new Uint8Array(0), 10).code).toBe("truncated");
    // One literal, then a match 2 bytes back: before the start of the output.
    expect(decodeError(Uint8Array.of(0x10, 0x61, 0x02, 0x00, 0x00), 100).code).toBe("malformed");
    expect(decodeError(Uint8Array.of(0x10, 0x61, 0x00, 0x00, 0x00), 100).code).toBe("malformed");
    // A literal length extension that runs off the end.
    expect(decodeError(Uint8Array.of(0xf0, 0xff, 0xff), 100).code).toBe("truncated");
    expect(decompress(Uint8Array.of(0x00), 0)).toEqual(new Uint8Array(0));
    expect(compress(new Uint8Array(0))).toEqual(Uint8Array.of(0));
  });

  it("rejects misuse with RangeError or TypeError naming the argument", () => {
    expect(() => lz4CompressBound(-1)).toThrow(/\bn\b/);
    expect(() => lz4CompressBound(2 ** 31)).toThrow(RangeError);
    expect(() => lz4CompressBlock([1, 2, 3] as unknown as Uint8Array, new Uint8Array(8))).toThrow(/src/);
    expect(() => lz4DecompressBlock(new Uint8Array(4), "x" as unknown as Uint8Array)).toThrow(/out/);
  });

  it("the batch decoder names the page of a corrupt block and checks the table", () => {
    const codec = new Lz4Codec();
    const pages = vectorPages.subarray(0, 8 * PAGE);
    const batch = new PageBatch(8, PAGE).set(pages);
    const encoded = codec.encodeBatch(batch);
    const k = encoded.encodings.findIndex((e, i) => e === Encoding.LZ4 && i > 0);
    const shortened = { ...encoded, lengths: encoded.lengths.slice() };
    shortened.lengths[k] = shortened.lengths[k]! - 1;
    expect(() => codec.decodeBatch(shortened, batch)).toThrow(CodecError);
    try {
      codec.decodeBatch(shortened, batch);
    } catch (e) {
      expect((e as CodecError).page).toBe(k);
    }
    const outside = { ...encoded, offsets: encoded.offsets.slice() };
    outside.offsets[k] = encoded.data.length;
    expect(() => codec.decodeBatch(outside, batch)).toThrow(/page \d+: payload/);
    const unknown = { ...encoded, encodings: encoded.encodings.slice() };
    unknown.encodings[k] = Encoding.WKDM;
    expect(() => codec.decodeBatch(unknown, batch)).toThrow(/neither lz4 nor raw/);
    const otherSize = new PageBatch(8, 8192);
    expect(() => codec.decodeBatch(encoded, otherSize)).toThrow(RangeError);
    otherSize.dispose();
    batch.dispose();
    codec.dispose();
  });
});

// The lz4 command (Debian package lz4) reads frames: magic, FLG, BD, header
// checksum, then blocks (u32 size, top bit set for a stored block), then 0.
const FRAME_MAGIC = 0x184d2204;
const { h32Raw } = await xxhash();

function frameOf(blocks: { bytes: Uint8Array; stored: boolean }[]): Uint8Array {
  // FLG: version 01, independent blocks, no checksums, no content size; BD: 64 KiB blocks.
  const descriptor = Uint8Array.of(0x60, 0x40);
  const checksum = (h32Raw(descriptor, 0) >>> 8) & 0xff;
  const parts: Uint8Array[] = [];
  const head = new DataView(new ArrayBuffer(7));
  head.setUint32(0, FRAME_MAGIC, true);
  head.setUint8(4, descriptor[0]!);
  head.setUint8(5, descriptor[1]!);
  head.setUint8(6, checksum);
  parts.push(new Uint8Array(head.buffer));
  for (const b of blocks) {
    const size = new DataView(new ArrayBuffer(4));
    size.setUint32(0, (b.bytes.length | (b.stored ? 0x80000000 : 0)) >>> 0, true);
    parts.push(new Uint8Array(size.buffer), b.bytes);
  }
  parts.push(new Uint8Array(4));
  return Buffer.concat(parts);
}

/** Blocks of an lz4 frame with independent blocks and no checksums (what `lz4 --no-frame-crc -BI` writes). */
function blocksOfFrame(frame: Uint8Array): { bytes: Uint8Array; stored: boolean }[] {
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  expect(dv.getUint32(0, true)).toBe(FRAME_MAGIC);
  const flg = frame[4]!;
  expect(flg & 0x20).toBe(0x20); // independent blocks
  expect(flg & 0x10).toBe(0); // no block checksum
  expect(flg & 0x04).toBe(0); // no content checksum
  expect((h32Raw(frame.subarray(4, 6 + (flg & 0x08 ? 8 : 0)), 0) >>> 8) & 0xff).toBe(frame[6 + (flg & 0x08 ? 8 : 0)]);
  let at = 7 + (flg & 0x08 ? 8 : 0);
  const blocks: { bytes: Uint8Array; stored: boolean }[] = [];
  for (;;) {
    const word = dv.getUint32(at, true);
    at += 4;
    if (word === 0) break;
    const size = word & 0x7fffffff;
    blocks.push({ bytes: frame.subarray(at, at + size), stored: word >>> 31 === 1 });
    at += size;
  }
  expect(at).toBe(frame.length);
  return blocks;
}

describe.skipIf(withoutTools("lz4"))("lz4 interop with the lz4 command", () => {
  it("lz4 -d reads our blocks of real pages and of larger inputs in a frame", async () => {
    const { pageSize, pages } = await sharedTraceImagePages("redis", 3000);
    const big = fc.sample(structuredInput(65536), { numRuns: 12, seed: 7 });
    const inputs = [...Array.from({ length: 3000 }, (_, k) => pages.subarray(k * pageSize, (k + 1) * pageSize)), ...big];
    const blocks = inputs.map((src) => ({ bytes: compress(src), stored: false }));
    const plain = execFileSync("lz4", ["-d", "-c"], { input: frameOf(blocks), maxBuffer: 1 << 28, stdio: ["pipe", "pipe", "pipe"] });
    expect(same(plain, Buffer.concat(inputs))).toBe(true);
  });

  it("our decoder reads every block of `lz4 -1 -B4 -BI --no-frame-crc`, and our encoder writes the same blocks", async () => {
    const parts: Uint8Array[] = [];
    for (const name of TRACE_NAMES) parts.push((await sharedTraceImagePages(name, 256)).pages);
    parts.push(...fc.sample(fc.oneof(structuredInput(50000), fc.uint8Array({ maxLength: 50000 })), { numRuns: 20, seed: 11 }));
    expectSameBlocksAsLz4(Buffer.concat(parts), "-B4", 64 << 10);
  });

  it("the same with 4 MiB blocks (`-B7`), where the reference hashes 5 bytes into a u32 table and skips far candidates", async () => {
    const parts: Uint8Array[] = [];
    for (const name of TRACE_NAMES) parts.push((await sharedTraceImagePages(name, 1024)).pages);
    const far = fc.sample(structuredInput(40000), { numRuns: 4, seed: 5 });
    // Repeats 100 KB apart: beyond the 65535-byte reach of an offset.
    for (let i = 0; i < 3; i++) parts.push(...far, new Uint8Array(100000).fill(i), ...far);
    expectSameBlocksAsLz4(Buffer.concat(parts), "-B7", 4 << 20);
  });
});

describe("lz4 interop with other encoders", () => {
  it("reads the blocks of lz4-wasm (lz4_flex) and lz4js for real pages and structured inputs", async () => {
    const { pageSize, pages } = await sharedTraceImagePages("node-gc", 1500);
    const inputs = [
      ...Array.from({ length: 1500 }, (_, k) => pages.subarray(k * pageSize, (k + 1) * pageSize)),
      ...fc.sample(structuredInput(60000), { numRuns: 30, seed: 3 }),
    ];
    for (const src of inputs) {
      // lz4-wasm prefixes its block with the input length (u32 little-endian).
      const flex = lz4wasm.compress(src).subarray(4);
      expect(same(decompress(flex, src.length), src)).toBe(true);
      const room = new Uint8Array(lz4js.compressBound(src.length));
      const n = lz4js.compressBlock(src, room, 0, src.length, new Uint32Array(1 << 16));
      // lz4js writes nothing (0) for an input it finds no match in.
      if (n > 0) expect(same(decompress(room.subarray(0, n), src.length), src)).toBe(true);
    }
  });
});

function expectSameBlocksAsLz4(input: Uint8Array, blockFlag: string, blockSize: number): void {
  const frame = execFileSync("lz4", ["-1", blockFlag, "-BI", "--no-frame-crc", "-c"], { input, maxBuffer: 1 << 28, stdio: ["pipe", "pipe", "pipe"] });
  const blocks = blocksOfFrame(new Uint8Array(frame));
  expect(blocks.length).toBe(Math.ceil(input.length / blockSize));
  let identical = 0;
  let compressed = 0;
  blocks.forEach((b, i) => {
    const original = input.subarray(i * blockSize, (i + 1) * blockSize);
    if (b.stored) {
      expect(same(b.bytes, original)).toBe(true);
      return;
    }
    compressed++;
    expect(same(decompress(b.bytes, blockSize), original)).toBe(true);
    if (same(compress(original), b.bytes)) identical++;
  });
  expect(compressed).toBeGreaterThan(0);
  expect(identical).toBe(compressed);
}

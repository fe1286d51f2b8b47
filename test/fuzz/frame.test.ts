// Frame decoding fed hostile bytes: random buffers (some with a real magic
// and a valid header check, some with valid checks throughout, so they reach
// the table and payload checks), and real frames mutated at random and
// resealed (so only the format's own checks and the codecs' stand between
// them and the destination). Every case: a CodecError and the destination
// untouched, or a decode; never a trap, another error, or memory past the
// stated limits. 10^4 random buffers in `npm test`, 10^6 with PAGEMILL_FUZZ.

import { describe, expect, it } from "vitest";
import { CodecError } from "../../src/index.js";
import { createCodec } from "../../src/codecs/registry.js";
import { wasm } from "../../src/wasm/module.js";
import { FRAME_VERSION, HEADER_BYTES, MAX_FRAME_BYTES, encodeControl, readFrameHeader } from "../../src/wire/frame.js";
import { FrameDecoder } from "../../src/wire/decoder.js";
import { FrameSplitter } from "../../src/wire/stream.js";
import { CHOICES, dispose, encodeAll, mixedPages, pipeline, reseal } from "../helpers/frames.js";
import { u32Stream } from "../helpers/random.js";

const FUZZ = Boolean(process.env.PAGEMILL_FUZZ);


/** Decodes `bytes`; on a CodecError the destination must be as it was. Returns the error code, or "ok". */
function attempt(decoder: FrameDecoder, bytes: Uint8Array, memory: Uint8Array, snapshot: Uint8Array, what: string): string {
  try {
    decoder.decode(bytes, memory);
    snapshot.set(memory);
    return "ok";
  } catch (err) {
    if (!(err instanceof CodecError)) throw new Error(`${what}: ${String(err)}`, { cause: err });
    if (Buffer.compare(memory, snapshot) !== 0) throw new Error(`${what}: rejected after writing the destination`);
    return err.code;
  }
}

describe("frames fuzzed", () => {
  it("answers random bytes with a CodecError, without traps or growth past the limits", () => {
    const runs = FUZZ ? 1_000_000 : 10_000;
    const snapshot = new Uint8Array(8 * 4096);
    const memory = snapshot.slice();
    const { heap } = wasm();
    const before = heap.memoryBytes;
    const decoder = new FrameDecoder();
    const next = u32Stream(12345);
    const codes: Record<string, number> = {};
    for (let i = 0; i < runs; i++) {
      const length = next() % 160;
      const bytes = new Uint8Array(length);
      for (let b = 0; b < length; b++) bytes[b] = next() & 0xff;
      // Most cases get a real magic, plausible fields and a valid header check
      // (some a valid frame check too), so they reach the later checks.
      if (i % 4 !== 0 && length >= HEADER_BYTES) {
        const dv = new DataView(bytes.buffer);
        bytes.set([0x50, 0x4d, 0x46, 0x52, FRAME_VERSION, 1 + (next() % 6), 0, 0]);
        if (next() & 1) dv.setUint32(12, next() & 1 ? 0 : 512 << (next() % 8), true);
        if (next() & 1) dv.setUint32(16, next() % 8, true);
        if (next() & 1) dv.setUint32(20, length - 32, true);
        reseal(bytes, i % 4 === 1);
      }
      const code = attempt(decoder, bytes, memory, snapshot, `random buffer ${i}`);
      codes[code] = (codes[code] ?? 0) + 1;
      if (length >= HEADER_BYTES) {
        try {
          expect(readFrameHeader(bytes).frameLength).toBeLessThanOrEqual(MAX_FRAME_BYTES);
        } catch (err) {
          if (!(err instanceof CodecError)) throw err;
        }
      }
    }
    decoder.dispose();
    // The cases reached every kind of check, not only the checksums.
    for (const code of ["truncated", "checksum", "length", "malformed"]) expect(codes[code] ?? 0, code).toBeGreaterThan(0);
    expect((codes["length"] ?? 0) + (codes["malformed"] ?? 0)).toBeGreaterThan(runs / 4);
    expect(heap.memoryBytes - before).toBeLessThanOrEqual(MAX_FRAME_BYTES);
  });

  it("rejects or decodes real frames mutated and resealed, never half-writing the destination", () => {
    const runs = FUZZ ? 200_000 : 3_000;
    const pageSize = 4096;
    const pages = mixedPages(pageSize, 10, 77);
    const frames: Uint8Array[] = [];
    for (const choice of CHOICES) {
      const codecs = { ...pipeline(choice), delta: createCodec("xbzrle"), dedup: createCodec("dedup") };
      // Twice over: the second pass has deltas and dedup references to send.
      const indices = [4, 1, 7, 0, 9, 2, 5, 3, 8, 6];
      frames.push(...encodeAll(pages, indices, pageSize, 10, codecs).frames);
      pages.copyWithin(0, 3 * pageSize, 4 * pageSize);
      pages[5 * pageSize + 17]! ^= 0x21;
      frames.push(...encodeAll(pages, indices, pageSize, 10, codecs).frames);
      dispose(codecs);
    }
    const next = u32Stream(99);
    const snapshot = mixedPages(pageSize, 12, 5);
    const memory = snapshot.slice();
    const decoder = new FrameDecoder();
    const codes: Record<string, number> = {};
    for (let i = 0; i < runs; i++) {
      const bytes = frames[i % frames.length]!.slice();
      // A few random byte writes anywhere past the magic, then valid checks again.
      const edits = 1 + (next() % 4);
      for (let e = 0; e < edits; e++) {
        const at = 4 + (next() % (bytes.byteLength - 8));
        bytes[at] = next() % 3 === 0 ? bytes[at]! ^ (1 << (next() % 8)) : next() & 0xff;
      }
      const code = attempt(decoder, reseal(bytes), memory, snapshot, `mutated frame ${i}`);
      codes[code] = (codes[code] ?? 0) + 1;
    }
    decoder.dispose();
    expect(codes["ok"] ?? 0).toBeGreaterThan(0);
    expect(Object.keys(codes).length).toBeGreaterThan(3);
  });

  it("splits random byte streams without ever waiting on or buffering an unchecked length", () => {
    const runs = FUZZ ? 100_000 : 2_000;
    const next = u32Stream(7);
    const good = encodeControl({ type: "round-start", round: 1, pages: 2 }, 0);
    for (let i = 0; i < runs; i++) {
      const splitter = new FrameSplitter(false);
      const stream = new Uint8Array(next() % 300);
      for (let b = 0; b < stream.byteLength; b++) stream[b] = next() & 0xff;
      if (i & 1) stream.set(good.subarray(0, Math.min(good.byteLength, stream.byteLength)));
      try {
        for (let at = 0; at < stream.byteLength; ) {
          const size = 1 + (next() % 40);
          for (const frame of splitter.push(stream.subarray(at, at + size))) expect(frame.byteLength).toBeLessThanOrEqual(MAX_FRAME_BYTES);
          at += size;
        }
        splitter.finish();
      } catch (err) {
        if (!(err instanceof CodecError)) throw err;
      }
    }
  });
});

import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CodecError, PageBatch } from "../src/index.js";
import { Encoding } from "../src/codecs/codec.js";
import { codecNamesFor, createCodec } from "../src/codecs/registry.js";
import { ENTRY_BYTES, HEADER_BYTES, encodeControl, maxFramePages, writePagesFrame, type ControlMessage, type FramePart } from "../src/wire/frame.js";
import { Scratch } from "../src/wasm/arena.js";
import { FrameDecoder, decodeFrame } from "../src/wire/decoder.js";
import { FrameEncoder, encodeFrame, newWireStats, type PipelineCodecs } from "../src/wire/pipeline.js";
import { sharedTraceImagePages, TRACE_NAMES } from "./helpers/traces.js";
import { readTraceEpochs } from "./helpers/trace-epochs.js";
import { CHOICES, dispose, encodeAll, mixedPages, pipeline, reseal } from "./helpers/frames.js";
import { withoutTools } from "./helpers/tools.js";

const FUZZ = Boolean(process.env.PAGEMILL_FUZZ);

describe("frame pipeline: round trips", () => {
  it("carries the traces' images through every codec choice and batch size", async () => {
    for (const name of TRACE_NAMES) {
      const { pageSize, pages, count } = await sharedTraceImagePages(name, 800);
      const indices = Array.from({ length: count }, (_, k) => k);
      for (const choice of CHOICES) {
        for (const batchPages of [1, 37, 256, count]) {
          const codecs = pipeline(choice);
          const { frames, stats } = encodeAll(pages, indices, pageSize, batchPages, codecs);
          dispose(codecs);
          const memory = new Uint8Array(count * pageSize).fill(0xee);
          for (const frame of frames) decodeFrame(frame, memory);
          expect(Buffer.compare(memory, pages), `${name} ${choice} batch ${batchPages}`).toBe(0);
          expect(stats.pages).toBe(count);
          expect(stats.frames).toBe(frames.length);
          expect(stats.frameBytes).toBe(frames.reduce((a, f) => a + f.byteLength, 0));
          if (choice !== "raw") expect(stats.frameBytes).toBeLessThan(count * pageSize);
        }
      }
    }
  });

  it("sends a guest's epochs through dedup, delta and compress stages and keeps the destination equal", async () => {
    const trace = await readTraceEpochs("node-gc", 3);
    const { pageSize, pageCount, image } = trace;
    // Each epoch's new contents of its dirty pages, from the XOR deltas.
    const memory = image.slice();
    const epochs = trace.epochs.map(({ pages, deltas }) => {
      const contents = new Uint8Array(deltas.length);
      pages.forEach((p, i) => {
        const page = memory.subarray(p * pageSize, (p + 1) * pageSize);
        for (let b = 0; b < pageSize; b++) page[b]! ^= deltas[i * pageSize + b]!;
        contents.set(page, i * pageSize);
      });
      return { pages, contents };
    });
    for (const choice of CHOICES) {
      const codecs: PipelineCodecs = { ...pipeline(choice), delta: createCodec("xbzrle"), dedup: createCodec("dedup") };
      const all = Array.from({ length: pageCount }, (_, k) => k);
      const destination = new Uint8Array(pageCount * pageSize);
      const decoder = new FrameDecoder();
      const first = encodeAll(image, all, pageSize, 512, codecs);
      for (const frame of first.frames) decoder.decode(frame, destination);
      expect(Buffer.compare(destination, image)).toBe(0);
      const source = image.slice();
      for (const [e, epoch] of epochs.entries()) {
        for (let i = 0; i < epoch.pages.length; i++) source.set(epoch.contents.subarray(i * pageSize, (i + 1) * pageSize), epoch.pages[i]! * pageSize);
        const sent = encodeAll(epoch.contents, epoch.pages, pageSize, 300, codecs);
        for (const frame of sent.frames) decoder.decode(frame, destination);
        expect(Buffer.compare(destination, source), `${choice} epoch ${e + 1}`).toBe(0);
        expect(sent.stats.byEncoding["xbzrle"] ?? 0).toBeGreaterThan(0);
      }
      expect(first.stats.byEncoding["dedup"] ?? 0).toBeGreaterThan(0);
      decoder.dispose();
      dispose(codecs);
    }
  });

  it("resolves dedup references in page order, within a frame and across frames (fast-check)", () => {
    // Few distinct contents over many pages, rewritten batch after batch:
    // references land on pages earlier in the frame, later in it, and outside it.
    let references = 0;
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.tuple(fc.nat(39), fc.nat(5)), { minLength: 1, maxLength: 30 }), { minLength: 1, maxLength: 6 }),
        fc.constantFrom(...CHOICES),
        (batches, choice) => {
          const pageSize = 4096;
          const codecs: PipelineCodecs = { ...pipeline(choice), dedup: createCodec("dedup"), delta: createCodec("xbzrle") };
          const source = new Uint8Array(40 * pageSize);
          const destination = new Uint8Array(40 * pageSize);
          const encoder = new FrameEncoder(codecs);
          const batch = new PageBatch(30, pageSize);
          try {
            for (const writes of batches) {
              const seen = new Map<number, number>();
              for (const [page, content] of writes) seen.set(page, content);
              const pages = [...seen.keys()];
              for (const [page, content] of seen) source.fill(content * 37, page * pageSize, (page + 1) * pageSize).fill(content, page * pageSize, page * pageSize + 9);
              batch.load(source, pages);
              decodeFrame(encoder.pages(batch, pages), destination);
              expect(Buffer.compare(destination, source)).toBe(0);
            }
            references += encoder.stats.byEncoding["dedup"] ?? 0;
          } finally {
            batch.dispose();
            dispose(codecs);
          }
        },
      ),
      { numRuns: FUZZ ? 1000 : 60 },
    );
    expect(references).toBeGreaterThan(100);
  });

  it("gives the same pages for any batch size and any destination kind (fast-check)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(512, 4096, 8192),
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer(),
        fc.constantFrom(...CHOICES),
        (anySize, count, batchPages, seed, choice) => {
          const pageSize = choice === "wkdm" ? 4096 : anySize; // WKdm is word-based on 4 KiB pages
          const pages = mixedPages(pageSize, count, seed);
          // Scattered guest indices, distinct.
          const indices = Array.from({ length: count }, (_, k) => 3 * k + (seed & 1));
          const codecs = pipeline(choice);
          const { frames } = encodeAll(pages, indices, pageSize, batchPages, codecs);
          dispose(codecs);
          const memory = new Uint8Array((3 * count + 2) * pageSize);
          const inFrameOrder: Uint8Array[] = [];
          const batch = new PageBatch(batchPages, pageSize);
          try {
            for (const frame of frames) {
              const viaMemory = decodeFrame(frame, memory);
              const viaNone = decodeFrame(frame);
              const viaBatch = decodeFrame(frame, batch);
              if (viaNone.type !== "pages" || viaBatch.type !== "pages" || viaMemory.type !== "pages") throw new Error("not a pages frame");
              expect(Array.from(viaBatch.indices)).toEqual(Array.from(viaNone.indices));
              expect(Buffer.compare(batch.bytes(), viaNone.pages!)).toBe(0);
              inFrameOrder.push(viaNone.pages!);
            }
          } finally {
            batch.dispose();
          }
          for (let k = 0; k < count; k++) {
            const want = pages.subarray(k * pageSize, (k + 1) * pageSize);
            expect(Buffer.compare(memory.subarray(indices[k]! * pageSize, (indices[k]! + 1) * pageSize), want)).toBe(0);
          }
        },
      ),
      { numRuns: FUZZ ? 2000 : 150 },
    );
  });

  it("encodes zero pages as zero whatever the codec, and counts pages by encoding", () => {
    const pageSize = 4096;
    const pages = mixedPages(pageSize, 50, 7);
    for (const choice of CHOICES) {
      const codecs = pipeline(choice);
      const { frames, stats } = encodeAll(pages, Array.from({ length: 50 }, (_, k) => k), pageSize, 50, codecs);
      dispose(codecs);
      const frame = decodeFrame(frames[0]!);
      if (frame.type !== "pages") throw new Error("not a pages frame");
      for (let k = 0; k < 50; k++) {
        const index = frame.indices[k]!;
        if (index % 5 === 0) expect(frame.encodings[k]).toBe(Encoding.ZERO);
        if (index % 5 === 3) expect(frame.encodings[k]).toBe(Encoding.RAW);
      }
      expect(stats.byEncoding["zero"]).toBe(10);
      expect(Object.values(stats.byEncoding).reduce((a, b) => a + b, 0)).toBe(50);
    }
  });

  it("reads the caller's batch without changing it, whatever the stages", () => {
    const pageSize = 4096;
    const pages = mixedPages(pageSize, 40, 21);
    for (const choice of CHOICES) {
      const codecs: PipelineCodecs = { ...pipeline(choice), delta: createCodec("xbzrle"), dedup: createCodec("dedup") };
      const batch = new PageBatch(40, pageSize).set(pages);
      const stats = newWireStats();
      for (let round = 0; round < 2; round++) encodeFrame(batch, Array.from({ length: 40 }, (_, k) => 39 - k), codecs, stats);
      expect(Buffer.compare(batch.bytes(), pages), choice).toBe(0);
      expect(batch.count).toBe(40);
      batch.dispose();
      dispose(codecs);
    }
  });

  it("round-trips every control frame", () => {
    const messages: ControlMessage[] = [
      { type: "round-start", round: 3, pages: 12345 },
      { type: "round-end", round: 3, pages: 12000 },
      { type: "switch-over", state: new Uint8Array([1, 2, 3, 250]) },
      { type: "switch-over", state: new Uint8Array(0) },
      { type: "page-request", pages: [7, 0, 4294967295] },
      { type: "page-request", pages: [] },
      { type: "done", memoryBytes: 161458176 + 17, digestName: "md5", digest: new Uint8Array(16).fill(0xab) },
    ];
    messages.forEach((message, sequence) => {
      const frame = decodeFrame(encodeControl(message, sequence));
      expect(frame.sequence).toBe(sequence);
      expect(frame.type).toBe(message.type);
      const { type: _t, sequence: _s, ...fields } = frame as unknown as Record<string, unknown>;
      const want = { ...message } as Record<string, unknown>;
      delete want.type;
      if (message.type === "page-request") want.pages = Uint32Array.from(message.pages);
      expect(fields).toEqual(want);
    });
  });

  it.skipIf(withoutTools("xxhsum"))("writes checks that xxhsum -H3 (the reference XXH3-64, low 32 bits) agrees with", () => {
    const dir = mkdtempSync(join(tmpdir(), "pagemill-frame-"));
    try {
      const frames = [
        encodeAll(mixedPages(4096, 5, 4), [0, 1, 2, 3, 4], 4096, 5, {}).frames[0]!,
        encodeControl({ type: "switch-over", state: new Uint8Array(1000).map((_, i) => i * 7) }, 9),
      ];
      for (const frame of frames) {
        const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
        for (const [length, at] of [
          [24, 24],
          [frame.byteLength - 4, frame.byteLength - 4],
        ] as const) {
          writeFileSync(join(dir, "part"), frame.subarray(0, length));
          // "XXH3 (file) = <16 hex digits>"
          const printed = execFileSync("xxhsum", ["-H3", join(dir, "part")], { encoding: "utf8" }).trim().split(" = ")[1]!;
          expect(dv.getUint32(at, true).toString(16).padStart(8, "0")).toBe(printed.slice(8));
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("rejects API misuse with a RangeError naming the argument", () => {
    const batch = new PageBatch(4, 4096).set(new Uint8Array(3 * 4096));
    const stats = newWireStats();
    expect(() => encodeFrame(batch, [1, 2], {}, stats)).toThrow(/pageIndices.length/);
    expect(() => encodeFrame(batch, [1, 2, 1], {}, stats)).toThrow(/page 1 appears twice/);
    expect(() => encodeFrame(batch, [2, 1, 0], {}, stats)).not.toThrow();
    expect(() => encodeFrame(batch, [1, 2, -1], {}, stats)).toThrow(RangeError);
    expect(() => encodeFrame(batch, [0, 1, 2], {}, stats, 2 ** 32)).toThrow(/sequence/);
    expect(() => encodeControl({ type: "round-start", round: -1, pages: 0 }, 0)).toThrow(/round/);
    expect(() => encodeControl({ type: "done", memoryBytes: 1, digestName: "", digest: new Uint8Array(1) }, 0)).toThrow(/digestName/);
    expect(() => encodeControl({ type: "page-request", pages: new Array(16385).fill(0) }, 0)).toThrow(/pages.length/);
    const frame = encodeFrame(batch, [0, 1, 2], {}, stats);
    expect(() => decodeFrame(frame, new PageBatch(2, 4096))).toThrow(/holds 2 pages/);
    batch.dispose();
    expect(maxFramePages(4096)).toBe(16384);
    expect(maxFramePages(65536)).toBe(1024);
  });
});

describe("frame pipeline: bad frames", () => {
  /** Sample frames: pages of every kind through each codec, and one of each control type. */
  function sampleFrames(): Uint8Array[] {
    const frames: Uint8Array[] = [];
    for (const choice of CHOICES) {
      // Small frames keep the flips few: 512 B pages of every kind, or for
      // WKdm (4 KiB only) the compressible kinds.
      const [pageSize, count] = choice === "wkdm" ? [4096, 3] : [512, 4];
      const codecs = pipeline(choice);
      frames.push(...encodeAll(mixedPages(pageSize, count, 99), [9, 3, 4, 0, 7].slice(0, count), pageSize, 5, codecs).frames);
      dispose(codecs);
    }
    frames.push(encodeControl({ type: "round-end", round: 1, pages: 2 }, 4));
    frames.push(encodeControl({ type: "page-request", pages: [1, 2, 3] }, 5));
    frames.push(encodeControl({ type: "done", memoryBytes: 40960, digestName: "xxh64", digest: new Uint8Array(8).fill(1) }, 6));
    return frames;
  }

  function expectRejected(bytes: Uint8Array, memory: Uint8Array, snapshot: Uint8Array, what: string): CodecError {
    let error: unknown;
    try {
      decodeFrame(bytes, memory);
    } catch (err) {
      error = err;
    }
    expect(error, what).toBeInstanceOf(CodecError);
    expect(Buffer.compare(memory, snapshot), `${what}: destination changed`).toBe(0);
    return error as CodecError;
  }

  it("rejects every single-bit flip and every truncation before writing a page", () => {
    const snapshot = mixedPages(4096, 10, 5);
    const memory = snapshot.slice();
    for (const frame of sampleFrames()) {
      for (let bit = 0; bit < frame.byteLength * 8; bit++) {
        const bad = frame.slice();
        bad[bit >> 3]! ^= 1 << (bit & 7);
        expectRejected(bad, memory, snapshot, `bit ${bit}`);
      }
      for (let length = 0; length < frame.byteLength; length++) {
        const error = expectRejected(frame.subarray(0, length), memory, snapshot, `cut at ${length}`);
        expect(error.code).toBe("truncated");
      }
      expect(expectRejected(Buffer.concat([frame, new Uint8Array(1)]), memory, snapshot, "one byte more").code).toBe("length");
    }
  });

  it("rejects frames with valid checks but impossible contents, naming the cause", () => {
    const pageSize = 4096;
    const pages = mixedPages(pageSize, 5, 3);
    const { frames } = encodeAll(pages, [0, 1, 2, 3, 4], pageSize, 5, {});
    const good = frames[0]!;
    const snapshot = new Uint8Array(6 * pageSize).fill(0x5a);
    const memory = snapshot.slice();
    const edit = (fn: (dv: DataView, bytes: Uint8Array) => void): Uint8Array => {
      const bytes = good.slice();
      fn(new DataView(bytes.buffer), bytes);
      return reseal(bytes);
    };
    const entry = (k: number) => HEADER_BYTES + 8 * k;
    const cases: [string, Uint8Array, string, RegExp][] = [
      ["magic", edit((dv) => dv.setUint32(0, 0x46524d50, true)), "malformed", /magic/],
      ["version", edit((dv) => dv.setUint8(4, 1)), "malformed", /version/],
      ["type", edit((dv) => dv.setUint8(5, 9)), "malformed", /type/],
      ["flags", edit((dv) => dv.setUint16(6, 2, true)), "malformed", /flags/],
      ["page size", edit((dv) => dv.setUint32(12, 4000, true)), "length", /page size/],
      ["too many pages", edit((dv) => dv.setUint32(16, 16385, true)), "length", /limit/],
      ["body too short for the table", edit((dv) => dv.setUint32(16, 5000, true)), "length", /body length/],
      ["wire id", edit((dv) => dv.setUint8(entry(1) + 4, 7)), "malformed", /wire id 7/],
      ["zero with a payload", edit((dv) => dv.setUint32(entry(0) + 4, Encoding.ZERO | (4 << 8), true)), "length", /payload of 4 B/],
      ["raw too short", edit((dv) => dv.setUint32(entry(3) + 4, Encoding.RAW | (4095 << 8), true)), "length", /payload/],
      ["duplicate index", edit((dv) => dv.setUint32(entry(2), dv.getUint32(entry(1), true), true)), "malformed", /twice/],
      // Out of order, the repeat not next to its first (pages 0 1 2 3 4 → 3 1 2 3 4, and 0 4 2 3 1 → 0 4 2 3 0).
      ["duplicate index, out of order", edit((dv) => dv.setUint32(entry(0), 3, true)), "malformed", /page 3 appears twice/],
      ["duplicate index, after a step back", edit((dv) => {
        dv.setUint32(entry(1), 4, true);
        dv.setUint32(entry(4), 0, true);
      }), "malformed", /page 0 appears twice/],
      ["index outside", edit((dv) => dv.setUint32(entry(2), 6, true)), "overrun", /outside the destination/],
      ["wkdm on pages of another size", (() => {
        const small = encodeAll(mixedPages(512, 2, 1), [0, 1], 512, 2, {}).frames[0]!;
        new DataView(small.buffer).setUint32(HEADER_BYTES + 8 + 4, Encoding.WKDM | (512 << 8), true);
        return reseal(small);
      })(), "malformed", /wkdm pages are 4096 B/],
      ["dedup length", edit((dv) => dv.setUint8(entry(3) + 4, Encoding.DEDUP)), "length", /payload of 4096 B/],
      ["a round frame with a page size", edit((dv) => dv.setUint8(5, 2)), "length", /page size 4096 is not 0/],
      ["frame check", (() => {
        const bytes = good.slice();
        bytes[bytes.length - 1]! ^= 0x80;
        return bytes;
      })(), "checksum", /frame check/],
    ];
    for (const [what, bytes, code, message] of cases) {
      const error = expectRejected(bytes, memory, snapshot, what);
      expect(error.code, what).toBe(code);
      expect(error.message, what).toMatch(message);
    }
  });

  it("rejects a codec payload that does not decode, leaving the destination as it was", () => {
    const lz4 = codecNamesFor("compress").includes("lz4");
    if (!lz4) return;
    const pageSize = 4096;
    const pages = mixedPages(pageSize, 5, 11);
    const codecs = pipeline("lz4");
    const { frames } = encodeAll(pages, [0, 1, 2, 3, 4], pageSize, 5, codecs);
    dispose(codecs);
    const frame = frames[0]!;
    const dv = new DataView(frame.buffer);
    // Find an LZ4 page and break its block: a match offset of 0 after one literal.
    let payload = HEADER_BYTES + 5 * 8;
    for (let k = 0; k < 5; k++) {
      const word = dv.getUint32(HEADER_BYTES + 8 * k + 4, true);
      if ((word & 0xff) === Encoding.LZ4) {
        frame[payload] = 0x10;
        frame[payload + 2] = 0;
        frame[payload + 3] = 0;
        break;
      }
      payload += word >>> 8;
    }
    const snapshot = new Uint8Array(5 * pageSize).fill(0x77);
    const memory = snapshot.slice();
    const error = expectRejected(reseal(frame), memory, snapshot, "broken lz4 block");
    expect(error.message).toMatch(/^page \d: lz4 pages of frame 0: /);
  });
});

describe("frames written and read where they lie", () => {
  /** A scratch that remembers the most it was asked to hold. */
  class Recording extends Scratch {
    most = 0;
    override reserve(bytes: number): number {
      this.most = Math.max(this.most, bytes);
      return super.reserve(bytes);
    }
  }

  it("a PAGES frame copies each payload once from where it lies: the scratch holds the table and the JavaScript payloads, never the frame; its bytes and check as an independent XXH3 says (fast-check)", () => {
    const ps = 512;
    const slots = 24;
    const batch = new PageBatch(slots, ps);
    const outside = new Uint8Array(8 * ps);
    try {
      batch.set(mixedPages(ps, slots, 7));
      outside.set(mixedPages(ps, 8, 8));
      // Each entry: empty, a batch slot (linear memory), or a run of bytes in JavaScript memory.
      const entry = fc.oneof(
        fc.constant({ kind: "empty" as const }),
        fc.record({ kind: fc.constant("batch" as const), slot: fc.nat(slots - 1) }),
        fc.record({ kind: fc.constant("js" as const), from: fc.nat(7 * ps), length: fc.integer({ min: 1, max: ps }) }),
      );
      fc.assert(
        fc.property(fc.array(entry, { maxLength: 40 }), fc.boolean(), (entries, pooled) => {
          const parts: FramePart[] = entries.map((e, index) =>
            e.kind === "empty"
              ? { index, encoding: 1, length: 0, data: undefined, from: 0 }
              : e.kind === "batch"
                ? { index, encoding: 0, length: ps, data: undefined, from: batch.ptr + e.slot * ps }
                : { index, encoding: 3, length: e.length, data: outside, from: e.from },
          );
          const payloads = parts.map((p) => (p.data ? p.data.subarray(p.from, p.from + p.length) : batch.bytes().slice(p.from - batch.ptr, p.from - batch.ptr + p.length)));
          const scratch = new Recording();
          let given: Uint8Array | undefined;
          const frame = writePagesFrame(scratch, 9, ps, parts, 0, pooled ? (n) => (given = new Uint8Array(n + 3).subarray(1, n + 1)) : undefined);
          scratch.dispose();
          if (pooled) expect(frame).toBe(given);
          const table = HEADER_BYTES + parts.length * ENTRY_BYTES;
          const staged = parts.reduce((a, p) => a + (p.data ? p.length : 0), 0);
          expect(scratch.most).toBe(table + staged);
          // The frame as the grammar lays it out, sealed by hash-wasm's XXH3.
          const expected = new Uint8Array(frame.byteLength);
          expected.set(frame.subarray(0, HEADER_BYTES));
          const dv = new DataView(expected.buffer);
          parts.forEach((p, k) => {
            dv.setUint32(HEADER_BYTES + k * ENTRY_BYTES, p.index, true);
            dv.setUint32(HEADER_BYTES + k * ENTRY_BYTES + 4, p.encoding | (p.length << 8), true);
          });
          let at = table;
          for (const payload of payloads) {
            expected.set(payload, at);
            at += payload.byteLength;
          }
          expect(at + 4).toBe(frame.byteLength);
          expect(dv.getUint32(20, true)).toBe(frame.byteLength - HEADER_BYTES - 4);
          expect(Buffer.compare(frame, reseal(expected))).toBe(0);
        }),
        { numRuns: FUZZ ? 2000 : 150 },
      );
    } finally {
      batch.dispose();
    }
  });

  it("a raw frame (no codec stage) is laid out by one kernel call: zero pages as flags, the others raw in slot order, its bytes and check as an independent XXH3 says, the pooled memory used (fast-check)", () => {
    const ps = 512;
    const slots = 24;
    const batch = new PageBatch(slots, ps);
    try {
      fc.assert(
        fc.property(fc.array(fc.boolean(), { minLength: 0, maxLength: slots }), fc.nat(4000), fc.boolean(), (zeros, start, pooled) => {
          const n = zeros.length;
          // Pages each either all zero or with one non-zero byte somewhere (the last one too); indices descending across a gap.
          const pages = new Uint8Array(n * ps);
          zeros.forEach((zero, k) => {
            if (!zero) pages[k * ps + ((start + k * 131) % ps)] = 1 + (k % 255);
          });
          batch.set(pages);
          const indices = Array.from({ length: n }, (_, k) => (k % 2 ? start + 1000 - k : start + k));
          let given: Uint8Array | undefined;
          const allocate = pooled ? (bytes: number) => (given = new Uint8Array(bytes + 3).subarray(1, bytes + 1)) : undefined;
          const content = new FrameEncoder({}, 0, allocate).content(batch, indices);
          if (pooled) expect(content.frame).toBe(given);
          const table = HEADER_BYTES + n * ENTRY_BYTES;
          const expected = new Uint8Array(table + zeros.filter((z) => !z).length * ps + 4);
          expected.set(content.frame.subarray(0, HEADER_BYTES));
          const dv = new DataView(expected.buffer);
          let at = table;
          zeros.forEach((zero, k) => {
            dv.setUint32(HEADER_BYTES + k * ENTRY_BYTES, indices[k]!, true);
            dv.setUint32(HEADER_BYTES + k * ENTRY_BYTES + 4, zero ? Encoding.ZERO : Encoding.RAW | (ps << 8), true);
            if (!zero) expected.set(pages.subarray(k * ps, (k + 1) * ps), (at += ps) - ps);
          });
          expect(dv.getUint32(20, true)).toBe(expected.byteLength - HEADER_BYTES - 4);
          expect(Buffer.compare(content.frame, reseal(expected))).toBe(0);
          expect([...content.encodings]).toEqual(zeros.map((z) => (z ? Encoding.ZERO : Encoding.RAW)));
          expect([...content.lengths]).toEqual(zeros.map((z) => (z ? 0 : ps)));
          expect(content.zeroPages).toBe(zeros.filter((z) => z).length);
          const memory = new Uint8Array((start + 1001) * ps);
          expect(decodeFrame(content.frame, memory).type).toBe("pages");
          zeros.forEach((_, k) => expect(Buffer.compare(memory.subarray(indices[k]! * ps, (indices[k]! + 1) * ps), pages.subarray(k * ps, (k + 1) * ps))).toBe(0));
        }),
        { numRuns: FUZZ ? 2000 : 100 },
      );
    } finally {
      batch.dispose();
    }
  });

  it("a frame that arrived under a record tag (tagged) is not hashed again: a wrong frame check lands its pages; untagged it is refused; a wrong header check is refused either way", () => {
    const ps = 4096;
    const pages = mixedPages(ps, 5, 3);
    const [frame] = encodeAll(pages, [0, 1, 2, 3, 4], ps, 5, {}).frames;
    const wrongCheck = frame!.slice();
    wrongCheck[wrongCheck.length - 1]! ^= 0x80;
    const decoder = new FrameDecoder();
    try {
      const landed = new Uint8Array(5 * ps).fill(0x5a);
      decoder.decode(wrongCheck, landed, { tagged: true });
      expect(Buffer.compare(landed, pages)).toBe(0);
      const untouched = new Uint8Array(5 * ps).fill(0x5a);
      expect(() => decoder.decode(wrongCheck, untouched)).toThrow(/frame check does not match/);
      expect(untouched.every((b) => b === 0x5a)).toBe(true);
      const wrongHeader = frame!.slice();
      wrongHeader[24]! ^= 1;
      expect(() => decoder.decode(wrongHeader, untouched, { tagged: true })).toThrow(/header check/);
      expect(untouched.every((b) => b === 0x5a)).toBe(true);
    } finally {
      decoder.dispose();
    }
  });
});

import { afterAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { TraceError, TraceReader, TraceWriter, applyEpoch, replayTrace, type TraceErrorCode } from "../src/guest/pagetrace.js";
import { CONTENT_MODELS, ContentStats, IMAGE_PROFILES, TRACE_CHANGED_BYTES } from "../src/guest/workloads.js";
import { ChunkedPages } from "../src/guest/chunks.js";
import { flatBytes } from "../src/guest/pages.js";
import { SHARED, TRACE_NAMES, tracePath } from "./helpers/traces.js";

const FUZZ = process.env.PAGEMILL_FUZZ ? 20 : 1;
const CHECKER = `${SHARED}tools/check-pagetrace`;
const dir = mkdtempSync(join(tmpdir(), "pagemill-pagetrace-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
const tempFile = (name = "t") => join(dir, `${name}-${fileNo++}.ptrace.gz`);

// SHA-256 of each shared trace's final image, as written by the independent
// checker: `check-pagetrace --write-final FINAL TRACE && sha256sum FINAL`.
const FINAL_SHA256: Record<string, string> = {
  redis: "342a1ae3ef4b88e6431a1a36d31d5835e123b80f9a6639e1a2c761ba1b8cb88c",
  "node-gc": "b3edbcb8f2439654d26b7033504a476f1b5bc22dc9a8a13dceae7bd717ee7081",
  memstream: "88a0c5fe8a709b4f96ddac7501cd0b248fc5d0ccb2e0230ab0b4fdce12350dc0",
};
// Facts from ../shared/traces/README.md.
const FACTS: Record<string, { pages: number; epochs: number; meanDirty: number; maxDirty: number; intervalMicros: number }> = {
  redis: { pages: 39419, epochs: 40, meanDirty: 3423, maxDirty: 5794, intervalMicros: 300_000 },
  "node-gc": { pages: 14988, epochs: 24, meanDirty: 1368, maxDirty: 1860, intervalMicros: 250_000 },
  memstream: { pages: 32857, epochs: 40, meanDirty: 26286, maxDirty: 31233, intervalMicros: 200_000 },
};

function isZeroPage(bytes: Uint8Array): boolean {
  const words = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
  return true;
}

/** Byte equality without vitest's element-by-element diffing of large arrays. */
function expectSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  expect(actual.byteLength, what).toBe(expected.byteLength);
  expect(Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength)), what).toBe(true);
}

describe("reading the shared traces", () => {
  for (const name of TRACE_NAMES) {
    it(`${name}: reads every epoch and rebuilds the final image the checker rebuilds`, async () => {
      const facts = FACTS[name]!;
      const stats = new ContentStats();
      const sampleStep = name === "memstream" ? 64 : 8;
      let dirty = 0;
      let maxDirty = 0;
      let lastElapsed = 0;
      let zeroPages = 0;
      const reader = await TraceReader.open(tracePath(name));
      const { header, image } = reader;
      const ps = header.pageSize;
      for (let p = 0; p < header.pageCount; p++) if (isZeroPage(image.subarray(p * ps, (p + 1) * ps))) zeroPages++;
      for await (const epoch of reader.epochs()) {
        expect(epoch.elapsedMicros).toBeGreaterThanOrEqual(lastElapsed);
        lastElapsed = epoch.elapsedMicros;
        dirty += epoch.pages.length;
        maxDirty = Math.max(maxDirty, epoch.pages.length);
        // Calibration figures, on a sample of the dirty pages (before their deltas are applied).
        for (let k = 0; k < epoch.pages.length; k += sampleStep) {
          const p = epoch.pages[k]!;
          stats.add(image.subarray(p * ps, (p + 1) * ps), epoch.deltas.subarray(k * ps, (k + 1) * ps));
        }
        applyEpoch(image, ps, epoch);
      }
      expect(header.pageSize).toBe(4096);
      expect(header.pageCount).toBe(facts.pages);
      expect(header.epochCount).toBe(facts.epochs);
      expect(header.intervalMicros).toBe(facts.intervalMicros);
      expect(header.meta.regions!.reduce((s, r) => s + r.pages, 0)).toBe(facts.pages);
      expect(Math.round(dirty / header.epochCount)).toBe(facts.meanDirty);
      expect(maxDirty).toBe(facts.maxDirty);
      expect(createHash("sha256").update(image).digest("hex")).toBe(FINAL_SHA256[name]);
      // The calibration constants of the workload models agree with the trace.
      const model = stats.model();
      const expected = CONTENT_MODELS[name];
      expect(stats.meanChangedBytes / TRACE_CHANGED_BYTES[name]).toBeCloseTo(1, 1);
      expect(Math.abs(model.whole - expected.whole)).toBeLessThan(0.02);
      expect(Math.abs(model.zeroed - expected.zeroed)).toBeLessThan(0.02);
      // Partial changes are heavy-tailed: an eighth of the pages lands within 25%.
      if (expected.whole < 1) expect(Math.abs(model.partialBytes / expected.partialBytes - 1)).toBeLessThan(0.25);
      expect(zeroPages / header.pageCount).toBeCloseTo(IMAGE_PROFILES[name].zeroShare, 3);
    });
  }
});

/** A random trace: initial image and per-epoch new contents of some pages. */
const traceArb = fc
  .record({
    pageSize: fc.constantFrom(512, 1024, 4096),
    pageCount: fc.integer({ min: 0, max: 24 }),
    seed: fc.integer(),
    epochs: fc.array(fc.tuple(fc.nat(2_000_000), fc.array(fc.tuple(fc.nat(), fc.nat(), fc.boolean()), { maxLength: 12 })), { maxLength: 6 }),
  })
  .map(({ pageSize, pageCount, seed, epochs }) => {
    let x = seed | 1;
    const byte = () => ((x = (Math.imul(x, 1103515245) + 12345) | 0) >>> 16) & 0xff;
    const image = new Uint8Array(pageCount * pageSize);
    for (let i = 0; i < image.length; i += 7) image[i] = byte();
    let elapsed = 0;
    const plan = epochs.map(([gap, writes]) => {
      elapsed += gap;
      // Writes to pages (possibly repeated, possibly with the same content).
      const pages = pageCount ? [...new Set(writes.map(([p]) => p % pageCount))].sort((a, b) => a - b) : [];
      const changes = pages.map((p, k) => ({ page: p, offset: writes[k]![1] % pageSize, same: writes[k]![2] }));
      return { elapsed, changes };
    });
    return { pageSize, pageCount, image, plan };
  });

describe("writer → reader round trip", () => {
  it("gives back the image and exactly the pages whose content changed, with their deltas", async () => {
    await fc.assert(
      fc.asyncProperty(traceArb, async ({ pageSize, pageCount, image, plan }) => {
        const path = tempFile("rt");
        const expectedStates: Uint8Array[] = [];
        const expectedDirty: number[][] = [];
        const writer = await TraceWriter.create(path, image.slice(), { pageSize, intervalMicros: 1000, meta: { program: "fast-check" } });
        const state = image.slice();
        for (const { elapsed, changes } of plan) {
          const contents = new Uint8Array(changes.length * pageSize);
          const dirty: number[] = [];
          changes.forEach(({ page, offset, same }, k) => {
            const content = contents.subarray(k * pageSize, (k + 1) * pageSize);
            content.set(state.subarray(page * pageSize, (page + 1) * pageSize));
            if (!same) {
              content[offset]! ^= 0x5a;
              dirty.push(page);
            }
            state.set(content, page * pageSize);
          });
          const written = await writer.epoch(elapsed, changes.map((c) => c.page), contents);
          expect(written).toBe(dirty.length);
          expectedDirty.push(dirty);
          expectedStates.push(state.slice());
        }
        expectSameBytes(writer.current, state, "writer.current");
        const { epochs } = await writer.close();
        expect(epochs).toBe(plan.length);

        const reader = await TraceReader.open(path);
        expect(reader.header).toMatchObject({ pageSize, pageCount, epochCount: plan.length, intervalMicros: 1000, meta: { program: "fast-check" } });
        expectSameBytes(reader.image, image, "image");
        let e = 0;
        for await (const epoch of reader.epochs()) {
          expect(epoch.epoch).toBe(e + 1);
          expect(epoch.elapsedMicros).toBe(plan[e]!.elapsed);
          expect(Array.from(epoch.pages)).toEqual(expectedDirty[e]);
          applyEpoch(reader.image, pageSize, epoch);
          expectSameBytes(reader.image, expectedStates[e]!, `state after epoch ${e + 1}`);
          e++;
        }
        expect(e).toBe(plan.length);
      }),
      { numRuns: 30 * FUZZ },
    );
  });

  it("writes files the independent checker accepts, with the statistics it computes", async () => {
    const pageSize = 4096;
    const pageCount = 64;
    const image = new Uint8Array(pageCount * pageSize);
    for (let p = 0; p < 40; p++) image.fill(p + 1, p * pageSize, p * pageSize + 100);
    const meta = { program: "test", regions: [{ start: "0x1000", pages: 32, perms: "rw-p", name: "a" }, { start: "0x100000", pages: 32, perms: "rw-p", name: "b" }] };
    const path = tempFile("check");
    const spoolDir = mkdtempSync(join(dir, "spool-"));
    const writer = await TraceWriter.create(path, image.slice(), { pageSize, intervalMicros: 200_000, meta, level: 9, spoolDir });
    expect(readdirSync(spoolDir)).toHaveLength(1);
    let changed = 0;
    for (let e = 1; e <= 5; e++) {
      const pages = [e, e + 10, e + 50];
      const contents = new Uint8Array(pages.length * pageSize);
      pages.forEach((p, k) => {
        contents.set(writer.current.subarray(p * pageSize, (p + 1) * pageSize), k * pageSize);
        contents.fill(0xee, k * pageSize + 8 * e, k * pageSize + 8 * e + 10 * e);
      });
      changed += 3 * 10 * e;
      await writer.epoch(e * 200_000, pages, contents);
    }
    // Deltas taken from another reader are accepted as they are.
    await writer.epochDeltas(1_200_000, [63], new Uint8Array(pageSize).fill(1));
    changed += pageSize;
    await writer.close();
    expect(readdirSync(spoolDir)).toEqual([]);
    const out = JSON.parse(execFileSync("python3", [CHECKER, "--json", path], { encoding: "utf8" }));
    expect(out).toMatchObject({ pages: 64, epochs: 6, totalDirtyPages: 16, maxDirtyPerEpoch: 3, intervalMicros: 200_000, lastElapsedMicros: 1_200_000 });
    expect(out.meanChangedBytesPerDirtyPage * 16).toBeCloseTo(changed, 6);
  });

  it("rejects misuse with RangeErrors naming the argument", async () => {
    const path = tempFile("misuse");
    await expect(TraceWriter.create(path, new Uint8Array(1000), { intervalMicros: 1000 })).rejects.toThrow(/multiple of pageSize/);
    await expect(TraceWriter.create(path, new Uint8Array(8192), { pageSize: 3000, intervalMicros: 1000 })).rejects.toThrow(/pageSize/);
    await expect(TraceWriter.create(path, new Uint8Array(8192), { intervalMicros: 1000, meta: { regions: [{ start: "0x0", pages: 1 }] } })).rejects.toThrow(/regions/);
    const writer = await TraceWriter.create(path, new Uint8Array(4 * 4096), { intervalMicros: 1000 });
    await expect(writer.epoch(10, [2, 1], new Uint8Array(8192))).rejects.toThrow(/ascending/);
    await expect(writer.epoch(10, [4], new Uint8Array(4096))).rejects.toThrow(/pages\[0\]/);
    await expect(writer.epoch(10, [1], new Uint8Array(100))).rejects.toThrow(/contents/);
    await expect(writer.epochDeltas(10, [1], new Uint8Array(4096))).rejects.toThrow(/all zero/);
    await writer.epoch(10, [], new Uint8Array(0));
    await expect(writer.epoch(5, [], new Uint8Array(0))).rejects.toThrow(/elapsedMicros/);
    await writer.abort();
  });
});

// A small valid trace as raw (decompressed) bytes, and where each field starts.
function rawTrace(): { raw: Uint8Array; fields: { start: number; end: number }[]; layout: Record<string, number> } {
  const pageSize = 512;
  const pageCount = 6;
  const meta = Buffer.from(JSON.stringify({ program: "corrupt", regions: [{ start: "0x10000", pages: 6 }] }));
  const parts: Buffer[] = [];
  const fields: { start: number; end: number }[] = [];
  let at = 0;
  const push = (b: Buffer) => {
    if (b.length) fields.push({ start: at, end: at + b.length });
    parts.push(b);
    at += b.length;
  };
  const layout: Record<string, number> = {};
  push(Buffer.from("PTRACE1\0", "latin1"));
  const head = Buffer.alloc(20);
  [pageSize, pageCount, 2, 100_000, meta.length].forEach((v, i) => head.writeUInt32LE(v, 4 * i));
  push(head);
  layout.meta = at;
  push(meta);
  const image = Buffer.alloc(pageCount * pageSize);
  image.fill(3, 0, 700);
  push(image);
  for (const [e, pages] of [[1, [1, 4]], [2, [0, 2, 5]]] as const) {
    layout[`epoch${e}`] = at;
    const rec = Buffer.alloc(12);
    rec.writeUInt32LE(e, 0);
    rec.writeUInt32LE(e * 100_000, 4);
    rec.writeUInt32LE(pages.length, 8);
    push(rec);
    layout[`indices${e}`] = at;
    const idx = Buffer.alloc(4 * pages.length);
    pages.forEach((p, k) => idx.writeUInt32LE(p, 4 * k));
    push(idx);
    layout[`deltas${e}`] = at;
    push(Buffer.alloc(pages.length * pageSize, 0x11 * e));
  }
  layout.end = at;
  return { raw: new Uint8Array(Buffer.concat(parts)), fields, layout };
}

async function readAll(path: string): Promise<number> {
  const reader = await TraceReader.open(path);
  let n = 0;
  for await (const epoch of reader.epochs()) n += epoch.pages.length;
  return n;
}

async function expectTraceError(bytes: Uint8Array, code: TraceErrorCode, offset: number, message?: RegExp): Promise<void> {
  const path = tempFile("bad");
  writeFileSync(path, gzipSync(bytes));
  const err = await readAll(path).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected a TraceError ${code}`).toBeInstanceOf(TraceError);
  const te = err as TraceError;
  expect({ code: te.code, offset: te.offset }).toEqual({ code, offset });
  expect(te.file).toBe(path);
  expect(te.message).toContain(`${path}: offset ${offset}:`);
  if (message) expect(te.message).toMatch(message);
}

describe("corrupt traces", () => {
  const { raw, fields, layout } = rawTrace();
  const edit = (fn: (b: Buffer) => void): Uint8Array => {
    const b = Buffer.from(raw);
    fn(b);
    return b;
  };

  it("the unbroken trace reads", async () => {
    const path = tempFile("good");
    writeFileSync(path, gzipSync(raw));
    expect(await readAll(path)).toBe(5);
    const seen: number[] = [];
    const { header, image } = await replayTrace(path, (epoch) => seen.push(epoch.epoch));
    expect(seen).toEqual([1, 2]);
    expect(header).toMatchObject({ pageSize: 512, pageCount: 6, epochCount: 2 });
    // Page 1 got 0x11 then nothing; page 0 got 0x22 over 3s (its first 512 bytes).
    expect(image[512 + 1]).toBe(3 ^ 0x11);
    expect(image[0]).toBe(3 ^ 0x22);
    expect(image[5 * 512]).toBe(0x22);
  });

  it("names the rule, the file and the offset for every broken rule", async () => {
    await expectTraceError(edit((b) => b.write("PTRACE2", 0, "latin1")), "magic", 0, /wrong magic/);
    await expectTraceError(edit((b) => b.writeUInt32LE(3000, 8)), "page-size", 8, /pageSize 3000/);
    await expectTraceError(edit((b) => b.writeUInt32LE(256, 8)), "page-size", 8);
    await expectTraceError(edit((b) => b.writeUInt32LE(131072, 8)), "page-size", 8);
    await expectTraceError(edit((b) => b.write("[", layout.meta!, "latin1")), "meta", layout.meta!, /JSON/);
    await expectTraceError(edit((b) => b.writeUInt32LE(7, 12)), "meta", layout.meta!, /regions add up/);
    await expectTraceError(edit((b) => b.writeUInt32LE(3, layout.epoch2!)), "epoch", layout.epoch2!, /says 3, expected 2/);
    await expectTraceError(edit((b) => b.writeUInt32LE(50_000, layout.epoch2! + 4)), "epoch", layout.epoch2! + 4, /time order/);
    await expectTraceError(edit((b) => b.writeUInt32LE(7, layout.epoch1! + 8)), "index", layout.epoch1! + 8, /dirtyCount 7/);
    await expectTraceError(edit((b) => b.writeUInt32LE(6, layout.indices1! + 4)), "index", layout.indices1! + 4, /out of range/);
    await expectTraceError(edit((b) => b.writeUInt32LE(2, layout.indices2! + 8)), "index", layout.indices2! + 8, /not strictly ascending/);
    await expectTraceError(edit((b) => b.writeUInt32LE(0, layout.indices2! + 4)), "index", layout.indices2! + 4, /not strictly ascending/);
    await expectTraceError(edit((b) => b.fill(0, layout.deltas2! + 512, layout.deltas2! + 1024)), "delta", layout.deltas2! + 512, /page 2 is all zero/);
    await expectTraceError(Buffer.concat([raw, Buffer.from([1, 2, 3])]), "trailing", layout.end!, /after the last epoch/);
    // A second gzip member is more bytes after the last epoch.
    const path = tempFile("members");
    writeFileSync(path, Buffer.concat([gzipSync(raw), gzipSync(Buffer.from("x"))]));
    await expect(readAll(path)).rejects.toMatchObject({ code: "trailing", offset: layout.end });
  });

  it("rejects the stream truncated at any offset, naming the field that was cut", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: raw.length - 1 }), async (cut) => {
        const field = fields.find((f) => f.start <= cut && cut < f.end)!;
        await expectTraceError(raw.subarray(0, cut), "truncated", field.start, /truncated/);
      }),
      { numRuns: 60 * FUZZ },
    );
  });

  it("rejects the gzip file cut short or damaged, with a TraceError", async () => {
    const gz = gzipSync(raw);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 10, max: gz.length - 1 }), fc.nat(255), fc.boolean(), async (at, value, cut) => {
        const path = tempFile("gz");
        const bad = Buffer.from(gz);
        if (!cut) bad[at] = (bad[at]! + 1 + (value % 255)) & 0xff;
        writeFileSync(path, cut ? bad.subarray(0, at) : bad);
        const result = await readAll(path).then(
          (n) => n,
          (e: unknown) => e,
        );
        // Past the gzip header (whose mtime and flags nothing checks), a
        // damaged byte breaks the deflate data, the format or the CRC,
        // unless it sits in bits that do not change the output (unused
        // Huffman code lengths, padding): then the trace must read as before.
        let intact = false;
        try {
          intact = Buffer.from(raw).equals(gunzipSync(cut ? bad.subarray(0, at) : bad));
        } catch {
          intact = false;
        }
        if (intact) expect(result).toBe(5);
        else expect(result).toBeInstanceOf(TraceError);
      }),
      { numRuns: 40 * FUZZ },
    );
  });

  it("names a missing file", async () => {
    await expect(TraceReader.open(join(dir, "nope.ptrace.gz"))).rejects.toMatchObject({ code: "io", message: expect.stringMatching(/no such file/) });
  });

  it("an independent gunzip of the writer's output is the same raw bytes", async () => {
    const path = tempFile("raw");
    const reader0 = raw;
    // Re-write the corrupt-test trace through the writer and compare the bytes.
    const image = reader0.slice(layout.meta! + (layout.epoch1! - layout.meta! - 6 * 512), layout.epoch1!);
    const meta = JSON.parse(Buffer.from(reader0.subarray(layout.meta!, layout.epoch1! - 6 * 512)).toString());
    const writer = await TraceWriter.create(path, image, { pageSize: 512, intervalMicros: 100_000, meta });
    await writer.epochDeltas(100_000, [1, 4], reader0.subarray(layout.deltas1!, layout.epoch2!));
    await writer.epochDeltas(200_000, [0, 2, 5], reader0.subarray(layout.deltas2!, layout.end!));
    await writer.close();
    expectSameBytes(new Uint8Array(gunzipSync(readFileSync(path))), raw, "raw stream");
  });
});

describe("reading an image into sparse memory", () => {
  const bundled = new URL("../data/redis-sample.ptrace.gz", import.meta.url).pathname;

  it("holds the same pages as the flat image, and only the non-zero ones", async () => {
    const flat = await TraceReader.open(bundled);
    const sparse = await TraceReader.open(bundled, { into: ({ pageCount, pageSize }) => new ChunkedPages(pageCount, pageSize) });
    try {
      const { pageCount, pageSize } = flat.header;
      expect(sparse.image.byteLength).toBe(0);
      expect(Buffer.from(flatBytes(sparse.memory!)).equals(Buffer.from(flat.image))).toBe(true);
      let nonZero = 0;
      for (let p = 0; p < pageCount; p++) if (flat.image.subarray(p * pageSize, (p + 1) * pageSize).some((b) => b !== 0)) nonZero++;
      expect(nonZero).toBeLessThan(pageCount);
      expect(sparse.memory!.heldBytes).toBe(nonZero * pageSize);
    } finally {
      flat.close();
      sparse.close();
    }
  });

  it("refuses a memory of another shape", async () => {
    await expect(TraceReader.open(bundled, { into: () => new ChunkedPages(5, 4096) })).rejects.toThrow(/options.into gave 5 pages of 4096 B, the image has \d+ of 4096 B/);
  });
});

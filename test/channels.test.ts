import { beforeAll, describe, expect, it } from "vitest";
import { execSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { codecNamesFor } from "../src/codecs/registry.js";
import { ParallelEncoder } from "../src/wire/channels.js";
import { createCodec } from "../src/codecs/registry.js";
import { ChunkedPages, PageBatch } from "../src/index.js";
import { encodeControl, type Frame, type PagesFrame } from "../src/wire/frame.js";
import { decodeFrame, FrameDecoder } from "../src/wire/decoder.js";
import { encodeFrame, newWireStats } from "../src/wire/pipeline.js";
import { sharedTraceImagePages, TRACE_NAMES } from "./helpers/traces.js";

const CHOICES = ["raw", ...codecNamesFor("compress")];
/**
 * Codecs whose per-page choices learn from the pages they encoded before
 * (MECOM's class evidence, auto's ratios): their frames depend on how a
 * stream's batches are spread over threads; what the frames decode to does not.
 */
const LEARNING = new Set(["mecom", "auto"]);
const ROOT = fileURLToPath(new URL("..", import.meta.url));

// Workers run the compiled JavaScript (src/wire/channels.ts explains why):
// build it when this file runs alone, before `npm test` has.
beforeAll(() => {
  if (!existsSync(`${ROOT}dist/wire/worker.js`)) execSync("npx tsc -p tsconfig.json", { cwd: ROOT, stdio: "ignore" });
});

/** Cuts an image into frames of `batchPages` pages and encodes them on a pool; returns frames in delivery order. */
async function encodeImage(pool: ParallelEncoder, pages: Uint8Array, pageSize: number, batchPages: number, transfer: boolean): Promise<Uint8Array[]> {
  const count = pages.byteLength / pageSize;
  const pending: Promise<Uint8Array>[] = [];
  for (let first = 0; first < count; first += batchPages) {
    const end = Math.min(count, first + batchPages);
    const chunk = pages.slice(first * pageSize, end * pageSize);
    pending.push(pool.encode(chunk, Array.from({ length: end - first }, (_, i) => first + i), { transfer }));
  }
  pending.push(pool.control({ type: "done", memoryBytes: pages.byteLength, digestName: "none", digest: new Uint8Array(0) }));
  const frames: Uint8Array[] = [];
  // Collect in completion order to see what the pool delivers when.
  await Promise.all(pending.map((p) => p.then((f) => frames.push(f))));
  return frames;
}

describe("parallel channels", () => {
  let image: { pageSize: number; count: number; pages: Uint8Array }[] = [];
  beforeAll(async () => {
    image = await Promise.all(TRACE_NAMES.map((name) => sharedTraceImagePages(name, 500)));
  });

  it("gives the same frames on 1..4 channels as in one thread, in sequence order", async () => {
    for (const choice of CHOICES) {
      // The frames one thread makes, numbered the same way.
      const reference: Uint8Array[] = [];
      const codecs = choice === "raw" ? {} : { compress: createCodec(choice) };
      const stats = newWireStats();
      for (const { pageSize, count, pages } of image) {
        const batch = new PageBatch(100, pageSize);
        for (let first = 0; first < count; first += 100) {
          const end = Math.min(count, first + 100);
          batch.set(pages.subarray(first * pageSize, end * pageSize));
          reference.push(encodeFrame(batch, Array.from({ length: end - first }, (_, i) => first + i), codecs, stats, reference.length));
        }
        batch.dispose();
        reference.push(encodeControl({ type: "done", memoryBytes: pages.byteLength, digestName: "none", digest: new Uint8Array(0) }, reference.length));
      }
      codecs.compress?.dispose();
      for (const channels of [1, 2, 3, 4]) {
        const pool = new ParallelEncoder({ channels, codec: choice });
        const frames: Uint8Array[] = [];
        for (const { pageSize, pages } of image) frames.push(...(await encodeImage(pool, pages, pageSize, 100, channels % 2 === 0)));
        await pool.close();
        // Sequence numbers run on across the three images: one stream.
        const sequences = frames.map((f) => decodeFrame(f).sequence);
        expect(sequences).toEqual(sequences.map((_, i) => i));
        expect(frames.length).toBe(reference.length);
        frames.forEach((f, i) => {
          if (!LEARNING.has(choice)) expect(Buffer.compare(f, reference[i]!), `${choice}, ${channels} channels, frame ${i}`).toBe(0);
          else if (decodeFrame(reference[i]!).type === "pages") {
            const got = decodeFrame(f) as PagesFrame;
            expect(Array.from(got.indices)).toEqual(Array.from((decodeFrame(reference[i]!) as PagesFrame).indices));
            expect(Buffer.compare(got.pages!, (decodeFrame(reference[i]!) as PagesFrame).pages!), `${choice}, ${channels} channels, frame ${i}`).toBe(0);
          } else expect(Buffer.compare(f, reference[i]!)).toBe(0);
        });
        expect(pool.stats.frames).toBe(frames.length);
        expect(pool.stats.pages).toBe(image.reduce((a, i) => a + i.count, 0));
      }
      // And the frames decode to the images.
      const decoder = new FrameDecoder();
      let at = 0;
      for (const { pageSize, count, pages } of image) {
        const memory = new Uint8Array(count * pageSize);
        let frame: Frame;
        do frame = decoder.decode(reference[at++]!, memory);
        while (frame.type !== "done");
        expect(Buffer.compare(memory, pages), choice).toBe(0);
      }
      decoder.dispose();
    }
  });

  it("delivers in completion order when not asked for order, still numbering every frame", async () => {
    const pool = new ParallelEncoder({ channels: 2, codec: CHOICES[CHOICES.length - 1], ordered: false });
    const { pageSize, pages } = image[0]!;
    const frames = await encodeImage(pool, pages, pageSize, 50, true);
    await pool.close();
    const sequences = frames.map((f) => decodeFrame(f).sequence).sort((a, b) => a - b);
    expect(sequences).toEqual(sequences.map((_, i) => i));
  });

  it("reads pages straight from shared guest memory, giving the frames one thread gives", async () => {
    const { pageSize, count, pages } = image[1]!;
    const shared = new Uint8Array(new SharedArrayBuffer(pages.byteLength));
    shared.set(pages);
    const codecs = { compress: createCodec(CHOICES[CHOICES.length - 1]!) };
    const stats = newWireStats();
    const batch = new PageBatch(64, pageSize);
    for (const channels of [1, 3]) {
      const pool = new ParallelEncoder({ channels, codec: codecs.compress.name });
      // Scattered pages, in batches of 64, the way an engine walks a dirty bitmap.
      const order = Array.from({ length: count }, (_, k) => (k * 37) % count).filter((_, k) => k % 3 !== 1);
      const pending: Promise<Uint8Array>[] = [];
      const reference: Uint8Array[] = [];
      for (let first = 0; first < order.length; first += 64) {
        const indices = order.slice(first, first + 64).sort((a, b) => a - b);
        pending.push(pool.encodeFromMemory(shared, indices));
        reference.push(encodeFrame(batch.load(pages, indices), indices, codecs, stats, reference.length));
      }
      const frames = await Promise.all(pending);
      await pool.close();
      frames.forEach((f, i) => expect(Buffer.compare(f, reference[i]!), `${channels} channels, frame ${i}`).toBe(0));
    }
    batch.dispose();
    codecs.compress.dispose();
    const pool = new ParallelEncoder({ channels: 1 });
    expect(() => pool.encodeFromMemory(new Uint8Array(4096), [0])).toThrow(/SharedArrayBuffer/);
    expect(() => pool.encodeFromMemory(shared, [count])).toThrow(/not a page of memory/);
    await pool.close();
  });

  it("transfers the pages without copying them, and rejects what it cannot take", async () => {
    const pool = new ParallelEncoder({ channels: 1 });
    const pages = new Uint8Array(2 * 4096).fill(3);
    const frame = pool.encode(pages, [5, 6], { transfer: true });
    expect(pages.byteLength).toBe(0); // detached: moved to the worker
    expect(decodeFrame(await frame).type).toBe("pages");
    expect(() => pool.encode(new Uint8Array(4096), [1, 2])).toThrow(RangeError);
    expect(() => pool.encode(new Uint8Array(8192).subarray(4096), [1], { transfer: true })).toThrow(/whole ArrayBuffer/);
    // Pages in shared memory are read where they lie, any part of it: nothing is detached.
    const shared = new Uint8Array(new SharedArrayBuffer(3 * 4096)).fill(3);
    const sharedFrame = await pool.encode(shared.subarray(4096), [5, 6], { transfer: true });
    expect(shared.byteLength).toBe(3 * 4096);
    const [fromShared, fromMoved] = [decodeFrame(sharedFrame), decodeFrame(await frame)];
    if (fromShared.type !== "pages" || fromMoved.type !== "pages") throw new Error("expected pages frames");
    expect(Array.from(fromShared.indices)).toEqual([5, 6]);
    expect(Buffer.compare(fromShared.pages!, fromMoved.pages!)).toBe(0);
    await pool.close();
    expect(() => new ParallelEncoder({ channels: 0 })).toThrow(/channels/);
    expect(() => new ParallelEncoder({ channels: 1, codec: "gzip" })).toThrow(/gzip/);
  });

  it("reads pages where a sparse memory locates them: the frames decode to those pages", async () => {
    const { pageSize, count, pages } = image[0]!;
    const store = new ChunkedPages(count, pageSize);
    for (let p = 0; p < count; p++) store.write(p, pages, p * pageSize);
    const codec = CHOICES[CHOICES.length - 1]!;
    const pool = new ParallelEncoder({ channels: 2, codec, pageSize });
    try {
      for (let first = 0; first < count; first += 100) {
        const indices = Array.from({ length: Math.min(100, count - first) }, (_, k) => first + k).filter((p) => p % 5 !== 2);
        const located = await pool.encodeLocated(store.locate(indices), indices);
        const copied = new Uint8Array(indices.length * pageSize);
        indices.forEach((p, k) => store.readRange(p, 1, copied, k * pageSize));
        const frame = decodeFrame(located.frame);
        if (frame.type !== "pages") throw new Error("expected a pages frame");
        expect(Array.from(frame.indices)).toEqual(indices);
        expect(Buffer.compare(frame.pages!, copied)).toBe(0);
      }
      expect(() => pool.encodeLocated(store.locate([1, 2]), [1, 2, 3])).toThrow(/located must place/);
    } finally {
      await pool.close();
    }
  });
});

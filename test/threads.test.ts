import { beforeAll, describe, expect, it } from "vitest";
import { execSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createCodec } from "../src/codecs/registry.js";
import { ChunkedPages, PageBatch } from "../src/index.js";
import { PagemillError } from "../src/errors.js";
import { encodeFrame, newWireStats } from "../src/wire/pipeline.js";
import { ChannelThreads } from "../src/wire/threads.js";
import type { Worker } from "node:worker_threads";
import { sharedTraceImagePages } from "./helpers/traces.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

// Threads run the compiled JavaScript (src/wire/threads.ts): build it when this file runs alone.
beforeAll(() => {
  if (!existsSync(`${ROOT}dist/wire/thread.js`)) execSync("npx tsc -p tsconfig.json", { cwd: ROOT, stdio: "ignore" });
});

describe("channel threads driven through shared memory", () => {
  it("encode the shares of a real image read where they lie, byte for byte as one thread does, while this thread waits on none but the one it takes", async () => {
    const { pageSize, count, pages } = await sharedTraceImagePages("redis", 600);
    const store = new ChunkedPages(count, pageSize);
    for (let p = 0; p < count; p++) store.write(p, pages, p * pageSize);
    const threads = ChannelThreads.shared(2);
    expect(ChannelThreads.shared(2)).toBe(threads);
    for (const codec of ["raw", "lz4", "wkdm"]) {
      const codecs = codec === "raw" ? {} : { compress: createCodec(codec) };
      const batch = new PageBatch(100, pageSize);
      try {
        for (let first = 0; first < count; first += 200) {
          // Two shares at once, every third page left out so the shares are not runs.
          const shares = [0, 1].map((k) => Array.from({ length: 100 }, (_, i) => first + k * 100 + i).filter((p) => p < count && p % 3 !== 1));
          shares.forEach((indices, k) => threads.post(k, { indices: Uint32Array.from(indices), located: store.locate(indices), pageSize, codec, bandwidth: 0, sequence: first + k }));
          // Taken in the other order: each thread's answer waits on its own port.
          for (const k of [1, 0]) {
            const indices = shares[k]!;
            const { frame, zeroPages, stats } = threads.take(k);
            batch.load(store, indices);
            const expected = encodeFrame(batch, indices, codecs, newWireStats(), first + k);
            expect(Buffer.compare(frame, expected)).toBe(0);
            expect(zeroPages).toBe(indices.filter((p) => store.isZero(p) || pages.subarray(p * pageSize, (p + 1) * pageSize).every((b) => b === 0)).length);
            expect(stats.frames).toBe(1);
          }
        }
      } finally {
        batch.dispose();
      }
    }
  });

  it("report a task's failure on take, naming the thread and the error, and serve the next task", () => {
    const threads = ChannelThreads.shared(1);
    const pages = new Uint8Array(new SharedArrayBuffer(2 * 4096)).fill(7);
    const located = { buffers: [pages.buffer as SharedArrayBuffer], buffer: new Int32Array(2), offset: Uint32Array.of(0, 4096) };
    threads.post(0, { indices: Uint32Array.of(0, 1), located, pageSize: 4096, codec: "gzip", bandwidth: 0, sequence: 0 });
    expect(() => threads.take(0)).toThrow(PagemillError);
    threads.post(0, { indices: Uint32Array.of(0, 1), located, pageSize: 4096, codec: "gzip", bandwidth: 0, sequence: 0 });
    expect(() => threads.take(0)).toThrow(/channel thread 0: .*gzip/);
    // Located past the end of its memory: the thread's RangeError, named.
    threads.post(0, { indices: Uint32Array.of(0, 1), located: { ...located, offset: Uint32Array.of(0, 8192) }, pageSize: 4096, codec: "raw", bandwidth: 0, sequence: 0 });
    expect(() => threads.take(0)).toThrow(/channel thread 0: RangeError: located page 1 lies outside its memory/);
    threads.post(0, { indices: Uint32Array.of(5, 6), located, pageSize: 4096, codec: "raw", bandwidth: 0, sequence: 1 });
    const { frame, zeroPages } = threads.take(0);
    expect(zeroPages).toBe(0);
    // The two pages of sevens as pages 5 and 6, byte for byte as this thread frames them.
    const batch = new PageBatch(2, 4096).set(pages);
    try {
      expect(Buffer.compare(frame, encodeFrame(batch, [5, 6], {}, newWireStats(), 1))).toBe(0);
    } finally {
      batch.dispose();
    }
  });

  it("refuse a second task before the first is taken, and a take with no task", () => {
    const threads = ChannelThreads.shared(1);
    const pages = new Uint8Array(new SharedArrayBuffer(4096));
    const task = { indices: Uint32Array.of(0), located: { buffers: [pages.buffer as SharedArrayBuffer], buffer: new Int32Array(1), offset: new Uint32Array(1) }, pageSize: 4096, codec: "raw", bandwidth: 0, sequence: 0 };
    expect(() => threads.take(0)).toThrow(/channel thread 0 has no task/);
    threads.post(0, task);
    expect(() => threads.post(0, { ...task, indices: Uint32Array.of(0) })).toThrow(/channel thread 0 still has a task/);
    expect(threads.take(0).zeroPages).toBe(1);
  });
});

describe("a channel thread that stops", () => {
  it("is named on the next post instead of a 60 s wait, and the process's set for that count is replaced by one that works", async () => {
    const threads = ChannelThreads.shared(3);
    const worker = (threads as unknown as { threads: { worker: Worker }[] }).threads[1]!.worker;
    const exited = new Promise((resolve) => worker.once("exit", resolve));
    await worker.terminate();
    await exited;
    const pages = new Uint8Array(new SharedArrayBuffer(4096)).fill(9);
    const task = { indices: Uint32Array.of(0), located: { buffers: [pages.buffer as SharedArrayBuffer], buffer: new Int32Array(1), offset: new Uint32Array(1) }, pageSize: 4096, codec: "raw", bandwidth: 0, sequence: 0 };
    expect(() => threads.post(1, task)).toThrow(/channel thread 1 stopped \(exit code \d+\)/);
    const fresh = ChannelThreads.shared(3);
    expect(fresh).not.toBe(threads);
    fresh.post(1, task);
    expect(fresh.take(1).zeroPages).toBe(0);
  });
});

// Memory a program owns, migrated while it runs: dirty pages found by
// hashing (exactly the pages another thread changed), sendMemory /
// receiveMemory over TCP with a WebAssembly program writing its shared
// memory in a worker, the README's two-process example, and bad input.
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { beforeAll, describe, expect, it } from "vitest";
import { receiveMemory, sendMemory } from "../src/engine/memory.js";
import { sendMigration } from "../src/engine/remote.js";
import { HashTrackedWorkload } from "../src/guest/hashed.js";
import { PoissonWorkload, syntheticGuest } from "../src/guest/workloads.js";
import { connectChannel, listenChannel } from "../src/net/tcp.js";
import { Random } from "../src/random.js";
import { FrameType, encodeControl, readFrameHeader } from "../src/wire/frame.js";
import { init } from "../src/wasm/module.js";
import { listening, runNode } from "./helpers/processes.js";
import { compile, newMemory, reach, start, steps } from "../examples/wasm-memory/program.mjs";
import { flatBytes } from "../src/index.js";

const PAGE = 4096;

beforeAll(async () => {
  await init();
});

/** Changes one byte in each of `pages` of `memory` from another thread. */
function writeFromWorker(memory: SharedArrayBuffer, pages: number[]): Promise<void> {
  const code = `
    const { workerData, parentPort } = require("node:worker_threads");
    const bytes = new Uint8Array(workerData.memory);
    for (const p of workerData.pages) bytes[p * ${PAGE} + ((p * 37) % ${PAGE})] ^= 0x5a;
    parentPort.postMessage("done");`;
  return new Promise((resolve, reject) => {
    const worker = new Worker(code, { eval: true, workerData: { memory, pages } });
    worker.once("message", () => resolve());
    worker.once("error", reject);
  });
}

function dirtyPages(workload: HashTrackedWorkload): number[] {
  return [...workload.guest.dirtyLog.extract()];
}

describe("dirty pages found by hashing", () => {
  it("a scan finds exactly the pages another thread changed, and copies them", async () => {
    const memory = new SharedArrayBuffer(512 * PAGE);
    new Uint8Array(memory).set(new Random(3).bytes(memory.byteLength));
    const workload = new HashTrackedWorkload(memory);
    try {
      expect(Buffer.from(flatBytes(workload.guest.memory)).equals(Buffer.from(new Uint8Array(memory)))).toBe(true);
      const random = new Random(9);
      for (let round = 0; round < 4; round++) {
        workload.guest.dirtyLog.clearRange();
        const pages = [...new Set(Array.from({ length: 40 }, () => random.int(512)))].sort((a, b) => a - b);
        await writeFromWorker(memory, pages);
        expect(workload.scan()).toBe(pages.length);
        expect(dirtyPages(workload)).toEqual(pages);
        expect(Buffer.from(flatBytes(workload.guest.memory)).equals(Buffer.from(new Uint8Array(memory)))).toBe(true);
      }
      // Written and written back between two scans: the content is the same, so nothing to send.
      workload.guest.dirtyLog.clearRange();
      await writeFromWorker(memory, [7, 7]);
      expect(workload.scan()).toBe(0);
      expect(dirtyPages(workload)).toEqual([]);
    } finally {
      await workload.close();
    }
  });

  it("stop() resolves with the wall time the program paused at, before its last scan (the scan is inside the downtime)", async () => {
    let pausedAt = 0;
    const workload = new HashTrackedWorkload(new SharedArrayBuffer(2048 * PAGE), { pause: () => void (pausedAt = (performance.timeOrigin + performance.now()) / 1000) });
    try {
      const stopped = await workload.stop();
      const returned = (performance.timeOrigin + performance.now()) / 1000;
      expect(typeof stopped).toBe("number");
      expect(stopped).toBeGreaterThanOrEqual(pausedAt);
      // The last scan (2048 pages) came after it.
      expect(stopped).toBeLessThan(returned);
    } finally {
      await workload.close();
    }
  });

  it("refuses memory that is not whole pages, or that changes size", () => {
    expect(() => new HashTrackedWorkload(new ArrayBuffer(PAGE + 1))).toThrow(/not a positive multiple of the 4096-byte page/);
    expect(() => new HashTrackedWorkload(new ArrayBuffer(0))).toThrow(/0 bytes/);
    expect(() => new HashTrackedWorkload({} as ArrayBuffer)).toThrow(/must be a WebAssembly.Memory/);
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 4 });
    const workload = new HashTrackedWorkload(memory);
    memory.grow(1);
    expect(() => workload.scan()).toThrow(/changed size during the migration \(65536 → 131072 bytes\)/);
    void workload.close();
  });
});

describe("sendMemory / receiveMemory", () => {
  it("migrates a running WebAssembly program's shared memory: the destination has it as the program paused", async () => {
    const memory = newMemory(8 * 2 ** 20, 128 * 1024) as WebAssembly.Memory;
    const program = start(compile(), memory, 500);
    const listener = await listenChannel("127.0.0.1", 0);
    try {
      await reach(memory, 1000);
      const into = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
      let pausedAt = -1;
      const [stats, received] = await Promise.all([
        (async () => {
          const channel = await connectChannel("127.0.0.1", listener.port);
          return sendMemory(memory, channel, {
            pause: async () => {
              await program.pause();
              pausedAt = steps(memory);
            },
            codec: "lz4",
          });
        })(),
        listener.accept().then((channel) => receiveMemory(channel, { into })),
      ]);
      expect(pausedAt).toBeGreaterThan(0);
      expect(steps(into)).toBe(pausedAt);
      expect(received.memory.byteLength).toBe(memory.buffer.byteLength);
      expect(Buffer.from(received.memory).equals(Buffer.from(new Uint8Array(memory.buffer)))).toBe(true);
      expect(stats.verifiedPages).toBe(memory.buffer.byteLength / PAGE);
      expect(stats.scans).toBeGreaterThanOrEqual(2);
      // The program kept writing while the first round went: its hot pages went again.
      expect(stats.changedPages).toBeGreaterThan(0);
      expect(stats.pagesTransferred).toBeGreaterThan(memory.buffer.byteLength / PAGE);
    } finally {
      await program.stop();
      listener.close();
    }
  }, 30_000);

  it("a failed migration lets the program go on at the source, and the destination keeps nothing", async () => {
    const memory = new SharedArrayBuffer(64 * PAGE);
    const listener = await listenChannel("127.0.0.1", 0);
    let resumed = 0;
    try {
      const sending = (async () => {
        const channel = await connectChannel("127.0.0.1", listener.port, { recoverTimeout: 2 });
        return sendMemory(memory, channel, { pause: () => {}, resume: () => void resumed++ });
      })();
      const channel = await listener.accept();
      await channel.receive();
      await channel.send(encodeControl({ type: "info", json: JSON.stringify({ ready: true }) }, 0));
      // The destination goes away once the program has paused at the source.
      for (let frame = await channel.receive(); frame; frame = await channel.receive()) if (readFrameHeader(frame).type === FrameType.SWITCHOVER) break;
      channel.destroy();
      await expect(sending).rejects.toThrow(/cut|closed|failed/);
      expect(resumed).toBe(1);
    } finally {
      listener.close();
    }
  });

  it("refuses a migration that would run the program here, or memory too small to take it", async () => {
    const listener = await listenChannel("127.0.0.1", 0);
    const source = new PoissonWorkload(syntheticGuest(64, { seed: 1 }), { rate: 1, seed: 1 });
    try {
      const [sent, received] = await Promise.allSettled([
        connectChannel("127.0.0.1", listener.port).then((c) => sendMigration("postcopy", source, c)),
        listener.accept().then((c) => receiveMemory(c)),
      ]);
      expect(String((received as PromiseRejectedResult).reason)).toMatch(/runs the program here, and this receiver cannot start one/);
      // The source hears the destination's reason.
      expect(String((sent as PromiseRejectedResult).reason)).toMatch(/did not verify the migration: .*cannot start one/);

      const small = new Uint8Array(PAGE);
      const [, tooSmall] = await Promise.allSettled([
        connectChannel("127.0.0.1", listener.port).then((c) => sendMemory(new Uint8Array(4 * PAGE), c)),
        listener.accept().then((c) => receiveMemory(c, { into: small })),
      ]);
      expect(String((tooSmall as PromiseRejectedResult).reason)).toMatch(/16384 bytes; the memory to put it in has 4096/);
    } finally {
      listener.close();
      source.guest.dispose();
    }
  });
});

const example = (name: string) => fileURLToPath(new URL(`../examples/wasm-memory/${name}`, import.meta.url));

describe("the README's example: a WebAssembly program's memory between two processes", () => {
  it("the program resumes at the destination at the step it paused at the source", async () => {
    const destination = await listening(example("destination.mjs"), ["0"]);
    const source = await runNode(example("source.mjs"), [`127.0.0.1:${destination.port}`]);
    const received = await destination.done;
    expect(source.code, source.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    const paused = /paused at step (\d+)/.exec(source.stdout)![1];
    expect(received.stdout).toContain(`resumed at step ${paused}`);
    const ranTo = Number(/ran on here to step (\d+)/.exec(received.stdout)![1]);
    expect(ranTo).toBeGreaterThan(Number(paused));
  }, 60_000);
});

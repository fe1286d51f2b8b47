import { afterAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { createHash } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BLOCK_MODELS, BlockWorkload, DiskError, DiskTraceWorkload, checkBlockSize, modelDisk, newDisk, type BlockModelName } from "../src/guest/disk.js";
import type { AccessKind, Workload } from "../src/guest/guest.js";
import { TraceReader } from "../src/guest/pagetrace.js";
import { flatBytes } from "../src/index.js";

const DISK_TRACE = fileURLToPath(new URL("../data/sqlite-disk.ptrace.gz", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "pagemill-disk-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sha = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex");

/** Every access through the hook, in order. */
function accesses(w: Workload): { block: number; kind: AccessKind }[] {
  const log: { block: number; kind: AccessKind }[] = [];
  w.guest.hook = (block, kind) => log.push({ block, kind });
  return log;
}

describe("block size and shape", () => {
  it("takes powers of two from 4 to 64 KiB only", () => {
    for (const ok of [4096, 8192, 65536]) expect(() => checkBlockSize(ok)).not.toThrow();
    for (const bad of [512, 2048, 6144, 131072, 4096.5, NaN]) expect(() => checkBlockSize(bad)).toThrow(RangeError);
    expect(() => newDisk(2 ** 28 + 1, 4096)).toThrow(/blockCount/); // past the 1 TiB (and 2^28 blocks) one disk holds
    expect(() => newDisk(0)).toThrow(/blockCount/);
  });
});

describe("block workload models", () => {
  it("are deterministic however advance() slices time", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...(Object.keys(BLOCK_MODELS) as BlockModelName[])), fc.array(fc.double({ min: 0.001, max: 0.4, noNaN: true }), { minLength: 1, maxLength: 8 }), async (name, steps) => {
        const whole = modelDisk(name, 512, { seed: 7 });
        const sliced = modelDisk(name, 512, { seed: 7 });
        const a = accesses(whole);
        const b = accesses(sliced);
        const end = steps.reduce((x, y) => x + y, 0);
        await whole.advance(end);
        let t = 0;
        for (const step of steps) await sliced.advance((t = Math.min(end, t + step)));
        await sliced.advance(end);
        expect(sha(flatBytes(sliced.guest.memory))).toBe(sha(flatBytes(whole.guest.memory)));
        expect(b).toEqual(a);
        whole.guest.dispose();
        sliced.guest.dispose();
      }),
      { numRuns: 12 },
    );
  });

  it("oltp puts its hot area's share of writes on the hot blocks, which blockRates() names", async () => {
    const w = modelDisk("oltp", 4096, { seed: 3 });
    const log = accesses(w);
    await w.advance(20);
    const rates = w.blockRates();
    const total = rates.reduce((x, y) => x + y, 0);
    expect(total).toBeCloseTo(BLOCK_MODELS.oltp.writeRate, 6);
    const hotRate = Math.max(...rates);
    const writes = log.filter((a) => a.kind !== "read");
    const onHot = writes.filter((a) => rates[a.block] === hotRate).length;
    expect(writes.length).toBeGreaterThan(0.9 * 20 * BLOCK_MODELS.oltp.writeRate);
    expect(onHot / writes.length).toBeGreaterThan(0.75);
    expect(onHot / writes.length).toBeLessThan(0.85);
    // Most OLTP writes change one sector: the old content is needed.
    expect(writes.filter((a) => a.kind === "write").length / writes.length).toBeGreaterThan(0.7);
    w.guest.dispose();
  });

  it("read-mostly reads in sequential streams as well as single blocks", async () => {
    const w = modelDisk("read-mostly", 4096, { seed: 5 });
    const log = accesses(w);
    await w.advance(5);
    const reads = log.filter((a) => a.kind === "read").map((a) => a.block);
    let sequential = 0;
    for (let i = 1; i < reads.length; i++) if (reads[i] === reads[i - 1]! + 1) sequential++;
    expect(reads.length).toBeGreaterThan(4000);
    // A fifth of read events start streams of 32 blocks on average: most reads are in a stream.
    expect(sequential / reads.length).toBeGreaterThan(0.5);
    w.guest.dispose();
  });

  it("log-append writes its region in order, each block partially then whole", async () => {
    const w = new BlockWorkload(newDisk(100), "log-append", 1);
    const log = accesses(w);
    await w.advance(1);
    const writes = log.filter((a) => a.kind !== "read");
    expect(writes.length).toBeGreaterThan(100);
    writes.forEach((a, i) => expect(a).toEqual({ block: Math.floor(i / 2) % 10, kind: i % 2 ? "overwrite" : "write" }));
    w.guest.dispose();
  });

  it("refuses bad parameters", () => {
    const disk = newDisk(16);
    expect(() => new BlockWorkload(disk, "nope" as BlockModelName)).toThrow(/unknown block model 'nope'/);
    expect(() => new BlockWorkload(disk, { ...BLOCK_MODELS.oltp, hotWrites: 2 })).toThrow(/hotWrites/);
    expect(() => new BlockWorkload(disk, { ...BLOCK_MODELS.oltp, reads: { ...BLOCK_MODELS.oltp.reads, streamBlocks: 0 } })).toThrow(/streamBlocks/);
    disk.dispose();
  });
});

describe("storage traces", () => {
  it("replay the trace's writes exactly, with modelled reads beside them", async () => {
    const w = await DiskTraceWorkload.open(DISK_TRACE, undefined, { seed: 2 });
    const reader = await TraceReader.open(DISK_TRACE);
    const log = accesses(w);
    const epochs: number[] = [];
    const last = (await (async () => {
      let t = 0;
      for await (const epoch of reader.epochs()) {
        epochs.push(epoch.pages.length);
        t = epoch.elapsedMicros;
      }
      return t;
    })()) / 1e6;
    await w.advance(last);
    expect(log.filter((a) => a.kind !== "read").length).toBe(epochs.reduce((x, y) => x + y, 0));
    const reads = log.filter((a) => a.kind === "read").length;
    expect(reads).toBeGreaterThan(0.8 * 200 * last);
    expect(reads).toBeLessThan(1.2 * 200 * last);
    await w.close();
    w.guest.dispose();
  });

  it("are refused before anything runs, naming the file and the cause", async () => {
    const shape = await TraceReader.open(DISK_TRACE, { skipImage: true });
    const { pageSize, pageCount } = shape.header;
    await expect(DiskTraceWorkload.open(DISK_TRACE, undefined, { expect: { blockSize: 8192 } })).rejects.toThrow(new RegExp(`disk trace .*sqlite-disk.ptrace.gz: its blocks are ${pageSize} B, the flags say 8192 B`));
    await expect(DiskTraceWorkload.open(DISK_TRACE, undefined, { expect: { blockCount: pageCount + 1 } })).rejects.toThrow(DiskError);
    const cut = join(dir, "cut.ptrace.gz");
    const bytes = readFileSync(DISK_TRACE);
    writeFileSync(cut, bytes.subarray(0, bytes.length >> 1));
    await expect(DiskTraceWorkload.open(cut, undefined)).rejects.toThrow(/disk trace .*cut.ptrace.gz: .*truncated/);
    const corrupt = join(dir, "corrupt.ptrace.gz");
    copyFileSync(DISK_TRACE, corrupt);
    const flipped = readFileSync(corrupt);
    flipped[flipped.length >> 1] ^= 0xff;
    writeFileSync(corrupt, flipped);
    await expect(DiskTraceWorkload.open(corrupt, undefined)).rejects.toThrow(/disk trace .*corrupt.ptrace.gz: /);
    await expect(DiskTraceWorkload.open(join(dir, "absent.ptrace.gz"), undefined)).rejects.toThrow(/disk trace .*absent.ptrace.gz/);
  });
});

// Real demand paging: a destination's program in a worker thread blocks on
// an access to a page the destination does not hold until the page arrives,
// checks each page it holds against the source's before first changing it,
// and takes each page's digest at the stop before changing it. The worker
// runs compiled code, so this runs on dist/ (built by `npm test`).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import type { Workload } from "../src/guest/guest.js";
import { flatBytes } from "../src/index.js";

const DIST = fileURLToPath(new URL("../dist/engine/demand.js", import.meta.url));
const MIGRATE = new URL("../dist/cli/migrate.js", import.meta.url).href;
const MODEL = { workload: "hot-cold", pages: "1024", rate: "200", seed: "3" };
const SHAPE = { pageSize: 4096, pageCount: 1024 };
const PRESENT = 1;
const SEED = 5n;

// All from dist/: one copy of the modules (and of their WebAssembly instance).
let DemandPagedProgram: typeof import("../src/engine/demand.js").DemandPagedProgram;
let openWorkload: typeof import("../src/cli/migrate.js").openWorkload;
let xxh3: typeof import("../src/hash/xxhash.js").xxh3;
beforeAll(async () => {
  if (!existsSync(DIST)) return;
  ({ DemandPagedProgram } = (await import(DIST)) as typeof import("../src/engine/demand.js"));
  ({ openWorkload } = (await import(MIGRATE)) as typeof import("../src/cli/migrate.js"));
  const index = (await import(fileURLToPath(new URL("../dist/index.js", import.meta.url)))) as typeof import("../src/index.js");
  await index.init();
  ({ xxh3 } = (await import(fileURLToPath(new URL("../dist/hash/xxhash.js", import.meta.url)))) as typeof import("../src/hash/xxhash.js"));
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const page = (memory: Uint8Array, p: number) => memory.subarray(p * 4096, (p + 1) * 4096);

/** The program opened in a thread (held there for resume()) and the same program here, both replayed to `stop` work seconds. */
async function atStop(stop: number) {
  const program = await DemandPagedProgram.start({ module: MIGRATE, name: "openWorkload", args: [MODEL] }, SHAPE, SEED);
  const replica: Workload = await openWorkload(MODEL);
  await program.replayTo(stop, true);
  await replica.advance(stop);
  return { program, replica, stopped: flatBytes(replica.guest.memory).slice() };
}

describe.skipIf(!existsSync(DIST))("a destination's program in a thread of its own", () => {
  it("replays to the stop, blocks on a missing page until it arrives, and digests pages before changing them", async () => {
    const { program, replica, stopped } = await atStop(0.2);
    try {
      expect(Buffer.from(program.memory).equals(Buffer.from(stopped))).toBe(true);
      // The destination holds the first half; the rest is missing.
      for (let p = 0; p < 512; p++) {
        program.received.set(page(stopped, p), p * 4096);
        program.pageState[p] = PRESENT;
      }
      const faults: number[] = [];
      const failures: Error[] = [];
      program.resume(
        (p) => faults.push(p),
        (e) => failures.push(e),
      );
      for (let t = 0; t < 200 && faults.length === 0; t++) await sleep(5);
      expect(faults.length).toBe(1);
      expect(faults[0]).toBeGreaterThanOrEqual(512);
      // Blocked: no further access, no step finished (nothing published).
      await sleep(100);
      expect(faults.length).toBe(1);
      expect(Buffer.from(program.memory).equals(Buffer.from(stopped))).toBe(true);
      // The page arrives: the program goes on (and may fault on others; serve them as they come).
      const deliver = (p: number) => {
        program.received.set(page(stopped, p), p * 4096);
        program.pageState[p] = PRESENT;
        program.arrived();
      };
      deliver(faults[0]!);
      let served = 1;
      for (let t = 0; t < 40; t++) {
        await sleep(5);
        while (served < faults.length) deliver(faults[served++]!);
      }
      for (let p = 512; p < 1024; p++) if (!(program.pageState[p]! & PRESENT)) deliver(p);
      const { faultStall } = await program.finish();
      expect(failures).toEqual([]);
      expect(faultStall).toBeGreaterThanOrEqual(0.09);
      // It ran on: pages changed, and each changed page's digest is that of its content at the stop.
      expect(program.taken.size).toBeGreaterThan(0);
      for (const [p, digest] of program.taken) expect(digest, `page ${p}`).toBe(xxh3(page(stopped, p), SEED));
      let changed = 0;
      for (let p = 0; p < 1024; p++) if (!Buffer.from(page(program.memory, p)).equals(Buffer.from(page(stopped, p)))) changed++;
      expect(changed).toBeGreaterThan(0);
      for (let p = 0; p < 1024; p++) if (changed && !program.taken.has(p)) expect(Buffer.from(page(program.memory, p)).equals(Buffer.from(page(stopped, p))), `page ${p}`).toBe(true);
    } finally {
      await program.close();
      await replica.close();
      replica.guest.dispose();
    }
  });

  it("resume() lets only a thread held at the stop run (it hears it through shared memory, not a message), which says when it ran again", async () => {
    const program = await DemandPagedProgram.start({ module: MIGRATE, name: "openWorkload", args: [MODEL] }, SHAPE, SEED);
    try {
      // Replayed part of the way (pre-copy's progress), not held: not at the stop yet.
      await program.replayTo(0.05);
      expect(() => program.resume(() => {}, () => {})).toThrow(/before the program was replayed to the stop and held/);
      await program.replayTo(0.1, true);
      program.pageState.fill(PRESENT);
      program.received.set(program.memory);
      const failures: Error[] = [];
      expect(program.resumedWallTime).toBeUndefined();
      const resumed = (performance.timeOrigin + performance.now()) / 1000;
      program.resume(() => {}, (e) => failures.push(e));
      await sleep(50);
      // When it ran again, as the thread saw it (the downtime ends there): after resume(), once it had a core.
      expect(program.resumedWallTime).toBeGreaterThanOrEqual(resumed);
      expect(program.resumedWallTime).toBeLessThan(resumed + 0.05);
      await program.finish();
      expect(failures).toEqual([]);
      // It ran: pages changed after the stop were digested first.
      expect(program.taken.size).toBeGreaterThan(0);
    } finally {
      await program.close();
    }
  });

  it("says it is held at the stop through shared memory: the switch-over's replay ends without this thread's loop turning", async () => {
    const program = await DemandPagedProgram.start({ module: MIGRATE, name: "openWorkload", args: [MODEL] }, SHAPE, SEED);
    try {
      // Progress frames took it to where the source stopped; the switch-over's replay has nothing left to run.
      await program.replayTo(0.1);
      // A message from the thread ("replayed") comes through this thread's event loop, after this.
      let turned = false;
      setImmediate(() => (turned = true));
      await program.replayTo(0.1, true);
      expect(turned).toBe(false);
      program.pageState.fill(PRESENT);
      program.received.set(program.memory);
      const failures: Error[] = [];
      program.resume(() => {}, (e) => failures.push(e));
      await program.finish();
      expect(failures).toEqual([]);
    } finally {
      await program.close();
    }
  });

  it("refuses to change a page it holds that differs from the source's, naming the page", async () => {
    const { program, replica, stopped } = await atStop(0.1);
    try {
      // Every page present, but what arrived is not the source's: the first write is refused.
      program.pageState.fill(PRESENT);
      for (let p = 0; p < 1024; p++) program.received.set(page(stopped, p).map((b) => b ^ 1), p * 4096);
      const failure = new Promise<Error>((resolve) => program.resume(() => {}, resolve));
      const error = await failure;
      expect(error.name).toBe("VerificationError");
      expect(error.message).toMatch(/page \d+ at the destination differs from the source's at switch-over/);
      await expect(program.finish()).rejects.toThrow(/differs/);
    } finally {
      await program.close();
      await replica.close();
      replica.guest.dispose();
    }
  });

  it("is open once start() resolves: its memory already in the shared copy (the copy does not run into the migration)", async () => {
    // 64 MiB: its copy into shared memory takes milliseconds, long after an "opened" message sent before it would arrive.
    const big = { ...MODEL, pages: "16384" };
    const program = await DemandPagedProgram.start({ module: MIGRATE, name: "openWorkload", args: [big] }, { pageSize: 4096, pageCount: 16384 }, SEED);
    // A copy, taken before anything else runs here.
    const atStart = Buffer.from(program.memory);
    const replica: Workload = await openWorkload(big);
    try {
      const initial = Buffer.from(flatBytes(replica.guest.memory));
      expect(initial.some((b) => b !== 0)).toBe(true);
      expect(atStart.equals(initial)).toBe(true);
    } finally {
      await program.close();
      await replica.close();
      replica.guest.dispose();
    }
  });

  it("refuses a program of another shape before it runs", async () => {
    await expect(DemandPagedProgram.start({ module: MIGRATE, name: "openWorkload", args: [MODEL] }, { pageSize: 4096, pageCount: 2048 }, SEED)).rejects.toThrow(
      /1024 pages of 4096 B, the source's 2048 of 4096/,
    );
    await expect(DemandPagedProgram.start({ module: MIGRATE, name: "openWorkload", args: [{ trace: "/nonexistent.ptrace.gz" }] }, SHAPE, SEED)).rejects.toThrow(/cannot open the program/);
  });
});

// A guest whose program runs in a worker thread on the real clock: its
// writes reach the shared memory and the dirty log, a stop leaves memory as
// the program made it by then (the same as a replay to that point), and it
// can run on after a stop. The worker runs compiled code, so this runs on
// dist/ (built by `npm test`).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { flatBytes } from "../src/index.js";
import { PAUSED, endStep, enterStep, holdGate, openGate } from "../src/guest/threaded.js";

const DIST = fileURLToPath(new URL("../dist/guest/threaded.js", import.meta.url));
const MIGRATE = new URL("../dist/cli/migrate.js", import.meta.url).href;
const MODEL = { workload: "hot-cold", pages: "1024", rate: "20", seed: "3" };

// All from dist/: one copy of the modules (and of their WebAssembly instance).
let ThreadedWorkload: typeof import("../src/guest/threaded.js").ThreadedWorkload;
let openWorkload: typeof import("../src/cli/migrate.js").openWorkload;
beforeAll(async () => {
  if (!existsSync(DIST)) return;
  ({ ThreadedWorkload } = (await import(DIST)) as typeof import("../src/guest/threaded.js"));
  ({ openWorkload } = (await import(MIGRATE)) as typeof import("../src/cli/migrate.js"));
  await ((await import(fileURLToPath(new URL("../dist/index.js", import.meta.url)))) as typeof import("../src/index.js")).init();
});

/** Wall clock, seconds. */
const wallSeconds = (): number => (performance.timeOrigin + performance.now()) / 1000;

/** Stops `guest`, expecting the pause time it resolves with (where the downtime starts) to fall within the call; returns it. */
async function stopWithinCall(guest: Awaited<ReturnType<typeof ThreadedWorkload.start>>): Promise<number> {
  const called = wallSeconds();
  const paused = await guest.stop();
  expect(paused).toBeGreaterThanOrEqual(called - 1e-6);
  expect(paused).toBeLessThanOrEqual(wallSeconds() + 1e-6);
  return paused;
}

describe.skipIf(!existsSync(DIST))("a guest in a worker thread", () => {
  it("publishes every write: at a stop, memory and dirty log are what a replay to the same time gives", async () => {
    const guest = await ThreadedWorkload.start({ module: MIGRATE, name: "openWorkload", args: [MODEL] });
    const replica = await openWorkload(MODEL);
    try {
      const initial = flatBytes(replica.guest.memory).slice();
      // Its thread runs when the machine gives it a core: up to 2 s on a busy one.
      await new Promise((resolve) => setTimeout(resolve, 150));
      for (const started = performance.now(); guest.workTime <= 0.05 && performance.now() - started < 2000; ) await new Promise((resolve) => setTimeout(resolve, 10));
      const report = await guest.advance();
      await guest.stop();
      expect(guest.workTime).toBeGreaterThan(0.05);
      expect(report.ran).toBeGreaterThan(0);
      expect(report.ran).toBeLessThanOrEqual(guest.workTime);
      // Stopped, it runs no more: the next report's interval is empty (it gave the whole run's time again).
      expect(await guest.advance()).toEqual({ ran: 0, writes: 0, overwrites: 0, reads: 0 });
      await replica.advance(guest.workTime);
      expect(Buffer.from(flatBytes(guest.guest.memory)).equals(Buffer.from(flatBytes(replica.guest.memory)))).toBe(true);
      // Every page the program changed is in the dirty log.
      const dirty = new Set(guest.guest.dirtyLog.extract());
      let changed = 0;
      for (let p = 0; p < 1024; p++) {
        const a = initial.subarray(p * 4096, (p + 1) * 4096);
        if (!Buffer.from(a).equals(Buffer.from(guest.guest.page(p)))) {
          changed++;
          expect(dirty.has(p), `page ${p}`).toBe(true);
        }
      }
      expect(changed).toBeGreaterThan(0);
      // Paused, it writes nothing; resumed, it runs on.
      const at = guest.workTime;
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(guest.workTime).toBe(at);
      guest.resume();
      // (As above: 50 ms was not always enough.)
      for (const started = performance.now(); guest.workTime === at && performance.now() - started < 2000; ) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(guest.workTime).toBeGreaterThan(at);
    } finally {
      await guest.close();
      await replica.close();
      replica.guest.dispose();
    }
  });

  it("its clock (clockTime) is the wall time since it started less its pauses, wherever its last step got to", async () => {
    const before = performance.timeOrigin + performance.now();
    const guest = await ThreadedWorkload.start({ module: MIGRATE, name: "openWorkload", args: [MODEL] });
    const after = performance.timeOrigin + performance.now();
    try {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const wall = performance.timeOrigin + performance.now();
      const t = guest.clockTime();
      // Started between the two stamps.
      expect(t).toBeGreaterThanOrEqual((wall - after) / 1000 - 1e-6);
      expect(t).toBeLessThanOrEqual((performance.timeOrigin + performance.now() - before) / 1000 + 1e-6);
      await guest.stop();
      const stopped = guest.clockTime();
      await new Promise((resolve) => setTimeout(resolve, 60));
      expect(guest.clockTime()).toBe(stopped);
      const resumedAt = performance.now();
      guest.resume();
      await new Promise((resolve) => setTimeout(resolve, 30));
      const resumed = guest.clockTime();
      const since = (performance.now() - resumedAt) / 1000;
      // On again from where it stopped: the time paused does not count.
      expect(resumed - stopped).toBeGreaterThan(since - 1e-3);
      expect(resumed - stopped).toBeLessThanOrEqual(since + 1e-3);
    } finally {
      await guest.close();
    }
  });

  it("stop() resolves with the wall time at which the worker paused, within the call (the downtime starts there)", async () => {
    const guest = await ThreadedWorkload.start({ module: MIGRATE, name: "openWorkload", args: [MODEL] });
    try {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const paused = await stopWithinCall(guest);
      expect(typeof paused).toBe("number");
      // Stopped already: the same time again.
      expect(await guest.stop()).toBe(paused);
    } finally {
      await guest.close();
    }
  });

  it("an idle program's thread (no writes) steps every 20 ms, not every millisecond, and pauses at once", async () => {
    const guest = await ThreadedWorkload.start({ module: MIGRATE, name: "openWorkload", args: [{ workload: "idle", pages: "64" }] });
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    try {
      await sleep(20);
      // Each step publishes the program's time (now): sampled about every millisecond for 200 ms.
      const seen = new Set<number>();
      const until = performance.now() + 200;
      while (performance.now() < until) {
        seen.add(guest.now);
        await sleep(1);
      }
      expect(seen.size).toBeGreaterThanOrEqual(2);
      expect(seen.size).toBeLessThanOrEqual(12);
      await stopWithinCall(guest);
      // Its time is at most a step old.
      expect(guest.clockTime() - guest.workTime).toBeLessThan(0.1);
    } finally {
      await guest.close();
    }
  });

  it("a stop asked right after a resume is a new pause: its time is after the resume, not the last pause's", async () => {
    const guest = await ThreadedWorkload.start({ module: MIGRATE, name: "openWorkload", args: [MODEL] });
    try {
      await new Promise((resolve) => setTimeout(resolve, 50));
      for (let round = 0; round < 20; round++) {
        const first = await guest.stop();
        const resumed = wallSeconds();
        // The worker has not woken from its pause yet: its "paused" flag is still the last pause's.
        guest.resume();
        const second = await guest.stop();
        expect(second).toBeGreaterThan(first);
        expect(second).toBeGreaterThanOrEqual(resumed - 1e-6);
        guest.resume();
      }
    } finally {
      await guest.close();
    }
  });

  it("the step gate: a stop between steps pauses the program at once, during a step at the step's end; a resume opens it", () => {
    const control = new Int32Array(new SharedArrayBuffer(2 * 4));
    const clock = new Float64Array(new SharedArrayBuffer(5 * 8));
    // Between steps: stop() pauses the program there, with no answer from the worker, and no step starts.
    expect(holdGate(control)).toBe(true);
    expect(enterStep(control)).toBe(false);
    expect(() => holdGate(control)).toThrow(/held already/);
    openGate(control);
    // During a step: asked, the program pauses at the step's end, at the time the worker says.
    expect(enterStep(control)).toBe(true);
    expect(holdGate(control)).toBe(false);
    const ended = performance.timeOrigin + performance.now();
    endStep(control, clock);
    expect(clock[PAUSED]).toBeGreaterThanOrEqual(ended);
    expect(enterStep(control)).toBe(false);
    openGate(control);
    // A step with no pause asked leaves the gate open.
    expect(enterStep(control)).toBe(true);
    endStep(control, clock);
    expect(holdGate(control)).toBe(true);
  });

  it("stop() on a guest between steps pauses it at once, and it runs no step after: memory is a replay to the stop", async () => {
    const guest = await ThreadedWorkload.start({ module: MIGRATE, name: "openWorkload", args: [MODEL] });
    const replica = await openWorkload(MODEL);
    try {
      for (let round = 0; round < 20; round++) {
        await new Promise((resolve) => setTimeout(resolve, 3));
        const called = wallSeconds();
        const paused = await guest.stop();
        expect(paused).toBeGreaterThanOrEqual(called - 1e-6);
        const at = guest.workTime;
        await new Promise((resolve) => setTimeout(resolve, 5));
        expect(guest.workTime).toBe(at);
        guest.resume();
      }
      await guest.stop();
      await replica.advance(guest.workTime);
      expect(Buffer.from(flatBytes(guest.guest.memory)).equals(Buffer.from(flatBytes(replica.guest.memory)))).toBe(true);
    } finally {
      await guest.close();
      await replica.close();
      replica.guest.dispose();
    }
  });

  it("a page's dirty bit is set as it is first written, not only once its step ends", async () => {
    const guest = await ThreadedWorkload.start({ module: new URL("./helpers/slow-writer.mjs", import.meta.url).href, name: "openSlowWriter", args: [] });
    try {
      // Its step writes page 5, then works 1.5 s: a sync meanwhile finds the page (it found nothing until the step ended).
      for (const started = performance.now(); guest.guest.dirtyLog.count() === 0 && performance.now() - started < 1000; ) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        await guest.advance();
      }
      expect(guest.guest.dirtyLog.extract()).toEqual(new Uint32Array([5]));
      // Taken before the step copied it: set again once the page is in the shared memory, so it goes again.
      guest.guest.dirtyLog.clearRange();
      await guest.stop();
      expect(guest.guest.dirtyLog.extract()).toEqual(new Uint32Array([5]));
      expect(guest.guest.page(5).every((b) => b === 7)).toBe(true);
    } finally {
      await guest.close();
    }
  });

  it("a workload that cannot open fails the start, naming why", async () => {
    await expect(ThreadedWorkload.start({ module: MIGRATE, name: "openWorkload", args: [{ trace: "/nonexistent.ptrace.gz" }] })).rejects.toThrow(/thread failed to start: .*does not exist/);
  });
});

// Flavor qemu (src/engine/qemu.ts): pre-copy as QEMU 7.2's migration/ram.c
// does it, with its query-migrate counters. Hand-computed counts on small
// guests, the differences from Xen's flavour, every shipped trace verified.

import { describe, expect, it } from "vitest";
import type { MigrationStats } from "../src/engine/metrics.js";
import type { LinkSpec } from "../src/engine/migrate.js";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EOS_BYTES, QemuHostError, loadQemuHost, parseQemuHost, qemuDeltaBytes, qemuPageBytes, type QemuHost } from "../src/engine/qemu.js";
import { Guest, type Workload } from "../src/guest/guest.js";
import { BaseWorkload, IdleWorkload, PoissonWorkload, SweepWorkload, TraceReplay, syntheticGuest } from "../src/guest/workloads.js";
import { migrateCli } from "./helpers/migrate.js";
import { FREE_CPU, LAN, WAN, run } from "./helpers/simulate.js";
import { TRACE_NAMES, sharedAvailable, tracePath } from "./helpers/traces.js";

const PAGE = 4096;

/** An idle guest whose first `normal` pages hold bytes and whose other `zero` pages are zero. */
function mixedGuest(normal: number, zero: number): Workload {
  const guest = new Guest(normal + zero, PAGE);
  for (let p = 0; p < normal; p++) guest.memory.writable(p).fill((p % 251) + 1);
  return new IdleWorkload(guest);
}

/** Every `period` s of work time, bytes 100..107 of each page of `pages` take a new value. */
class HotWords extends BaseWorkload {
  readonly name = "hot-words";
  private ticks = 0;
  constructor(
    guest: Guest,
    private readonly pages: number[],
    private readonly period: number,
  ) {
    super(guest);
  }
  protected run(_from: number, to: number): void {
    for (; this.ticks < Math.floor(to / this.period + 1e-9); this.ticks++) {
      for (const page of this.pages) {
        this.guest.beginWrite(page, false).fill((this.ticks % 200) + 1, 100, 108);
      }
    }
  }
}

/**
 * transferred less what ram.c counts for the pages themselves: the
 * end-of-section markers, which must be whole 8-byte markers.
 */
function markers(stats: MigrationStats): number {
  const extra = stats.transferred - qemuPageBytes(stats.normal, stats.duplicate, stats.pageSize, true);
  expect(extra % EOS_BYTES).toBe(0);
  expect(extra).toBeGreaterThanOrEqual(0);
  return extra / EOS_BYTES;
}

describe("flavor qemu: QEMU's counters on hand-computed guests", () => {
  it("k zero pages and n normal ones: transferred = 8-byte header per page + the pages + 1 byte per zero page + the block id once", async () => {
    const normal = 24;
    const zero = 40;
    // 96 KiB at 40 Mbit/s: the pass ends before the first 100 ms measurement, so no marker and no sync in between.
    const stats = await run("precopy", mixedGuest(normal, zero), WAN, { flavor: "qemu", cost: FREE_CPU, stateBytes: 4096 });
    expect(stats.flavor).toBe("qemu");
    expect(stats.normal).toBe(normal);
    expect(stats.duplicate).toBe(zero);
    expect(stats.transferred).toBe((normal + zero) * 8 + normal * 4096 + zero * 1 + 1 + "pc.ram".length);
    expect(stats.transferred).toBe(98863);
    // Setup's sync and the one after the stop.
    expect(stats.dirtySyncCount).toBe(2);
    expect(stats.stopReason).toBe("converged");
    expect(stats.verifiedPages).toBe(normal + zero);
    // The link carried pagemill's own frames, counted apart.
    expect(stats.wireBytes).toBeGreaterThan(normal * PAGE);
    expect(stats.wireBytes).not.toBe(stats.transferred);
  });

  it("the formula's parts: an 8-byte header a page, the block id 'pc.ram' after a length byte once, a byte a zero page, 3 bytes before a delta", () => {
    expect(qemuPageBytes(0, 0, PAGE, true)).toBe(0);
    expect(qemuPageBytes(1, 0, PAGE, true)).toBe(8 + 4096 + 7);
    expect(qemuPageBytes(0, 1, PAGE, false)).toBe(9);
    expect(qemuPageBytes(3, 2, 65536, false)).toBe(5 * 8 + 3 * 65536 + 2);
    expect(qemuDeltaBytes(10)).toBe(8 + 3 + 10);
    expect(qemuDeltaBytes(0)).toBe(0);
  });

  it("an idle guest longer than a measurement: one sync when the pending bytes fall below bandwidth × downtime limit, then the stop", async () => {
    const pages = 2048; // 8 MiB: about 1.7 s at 40 Mbit/s
    const stats = await run("precopy", mixedGuest(pages, 0), WAN, { flavor: "qemu", cost: FREE_CPU, stateBytes: 4096 });
    expect(stats.pagesTransferred).toBe(pages);
    expect(stats.normal).toBe(pages);
    expect(stats.rounds).toHaveLength(1);
    expect(stats.dirtySyncCount).toBe(3);
    expect(stats.stopReason).toBe("downtime-limit");
    // What was left at the stop fit 300 ms at the measured rate: it went in the downtime,
    // behind the frame (256 pages) the channel still carried, as QEMU's does not count its socket's buffer.
    expect(stats.downtimeBytes).toBeGreaterThan(0);
    expect(stats.downtime).toBeLessThan(0.3 + ((256 * PAGE + stats.stateBytes) * 8) / WAN.bitsPerSecond + WAN.rtt);
    // One end-of-section marker per 100 ms window of iteration.
    const iterating = stats.totalTime - stats.downtime;
    expect(Math.abs(markers(stats) - iterating / 0.1)).toBeLessThanOrEqual(2);
  });
});

describe("flavor qemu against xen on the same guest", () => {
  it("no skip: a page re-dirtied during its round is sent anyway (Xen leaves it for the next round)", async () => {
    const guest = () => new PoissonWorkload(syntheticGuest(1024, { seed: 5 }), { rate: 1, seed: 5 });
    const xen = await run("precopy", guest(), WAN, { cost: FREE_CPU });
    const qemu = await run("precopy", guest(), WAN, { flavor: "qemu", cost: FREE_CPU });
    expect(xen.rounds.some((r) => r.skipped > 0)).toBe(true);
    expect(xen.flavor).toBeUndefined();
    expect(qemu.rounds.every((r) => r.skipped === 0)).toBe(true);
    // Round 1 sent every page, re-dirtied or not.
    expect(qemu.rounds[0]!.pages + qemu.rounds[0]!.zeroPages).toBeGreaterThanOrEqual(1024 - 400);
    expect(qemu.verifiedPages).toBe(1024);
    markers(qemu);
  });

  it("auto-converge looks at most once a second: steps of +10% at least two looks apart", async () => {
    // 512 pages swept at 4 MiB/s over 16 Mbit/s: never converges unthrottled.
    const link: LinkSpec = { bitsPerSecond: 16e6, rtt: 0.002 };
    const sweep = () => new SweepWorkload(syntheticGuest(512, { seed: 3 }), { rate: 4 * 2 ** 20 });
    const plain = await run("precopy", sweep(), link, { flavor: "qemu", cost: FREE_CPU, maxIterations: 40 });
    expect(plain.stopReason).toBe("iteration-limit");
    expect(plain.throttleSteps).toHaveLength(0);
    const throttled = await run("precopy", sweep(), link, { flavor: "qemu", cost: FREE_CPU, autoConverge: true, maxIterations: 200 });
    expect(throttled.stopReason).toBe("downtime-limit");
    const steps = throttled.throttleSteps;
    expect(steps[0]!.percent).toBe(20);
    expect(steps[0]!.at).toBeGreaterThan(2);
    for (let i = 1; i < steps.length; i++) {
      expect(steps[i]!.percent - steps[i - 1]!.percent).toBe(10);
      expect(steps[i]!.at - steps[i - 1]!.at).toBeGreaterThan(2);
    }
    expect(throttled.verifiedPages).toBe(512);
  });

  it("post-copy starts after the first pre-copy round", async () => {
    const guest = () => new PoissonWorkload(syntheticGuest(1024, { seed: 7 }), { rate: 0.5, seed: 7 });
    const stats = await run("postcopy", guest(), WAN, { flavor: "qemu", cost: FREE_CPU });
    expect(stats.strategy).toBe("postcopy");
    expect(stats.rounds).toHaveLength(1);
    expect(stats.stopReason).toBe("round-limit");
    expect(stats.remoteUptime).toBeGreaterThan(0);
    expect(stats.verifiedPages).toBe(1024);
    markers(stats);
  });

  it("XBZRLE: off in the first pass, then a miss sent whole and cached, then each hit as 8 + 3 + delta bytes, the stop-and-copy's too", async () => {
    // Page 2's bytes 100..107 get a new value every millisecond: dirty at every sync, one 10-byte delta per send.
    // 12.5 kB/s: a round of one delta outlasts a millisecond; threshold 3750 B < a page, so it iterates to the cap.
    const slow: LinkSpec = { bitsPerSecond: 100e3, rtt: 0.005 };
    const guest = mixedGuest(16, 0);
    const stats = await run("precopy", new HotWords(guest.guest, [2], 0.001), slow, { flavor: "qemu", codec: "xbzrle", cost: FREE_CPU, stateBytes: 4096, maxIterations: 5, batchPages: 1 });
    expect(stats.stopReason).toBe("iteration-limit");
    expect(stats.verifiedPages).toBe(16);
    // Round 1: 16 pages whole (no XBZRLE yet); round 2: page 2 misses, whole; rounds 3-5 and the stop-and-copy: 4 hits.
    expect(stats.normal).toBe(17);
    expect(stats.duplicate).toBe(0);
    expect(stats.xbzrleCache).toMatchObject({ pages: 4, bytes: 4 * 10, cacheMiss: 1, overflow: 0 });
    const rest = stats.transferred - qemuPageBytes(17, 0, PAGE, true) - 4 * qemuDeltaBytes(10);
    // What remains is whole end-of-section markers (21-byte deltas miscounted would leave a remainder).
    expect(rest % EOS_BYTES).toBe(0);
    expect(rest / EOS_BYTES).toBeGreaterThan(0);
    expect(rest / EOS_BYTES).toBeLessThanOrEqual(Math.ceil(stats.totalTime / 0.1) + 1);
    // Setup, one per round, the stop.
    expect(stats.dirtySyncCount).toBe(7);
  });

  it("the scan resumes where it was after a sync, and XBZRLE starts when it first wraps: pages left from the first pass go uncached", async () => {
    // 1024 pages; pages 0..499 rewritten every 10 ms (2 MB, above the 1.5 MB threshold at 40 Mbit/s).
    // Round 1 stops at the threshold with 768..1023 left; round 2 sends them first (XBZRLE still off), wraps, then
    // misses and caches 0..255; round 3 resumes at 256 and caches 256..499; then deltas, until what is pending (pages,
    // whatever their encoding) fits. Every hot page misses once, no other page.
    const guest = mixedGuest(1024, 0);
    const hot = Array.from({ length: 500 }, (_, p) => p);
    const stats = await run("precopy", new HotWords(guest.guest, hot, 0.01), WAN, { flavor: "qemu", codec: "xbzrle", cost: FREE_CPU, maxIterations: 6 });
    expect(stats.stopReason).toBe("downtime-limit");
    expect(stats.verifiedPages).toBe(1024);
    expect(stats.rounds[0]!.pages).toBe(768);
    expect(stats.rounds[1]!.pages).toBe(512);
    expect(stats.xbzrleCache?.cacheMiss).toBe(500);
    expect(stats.normal).toBe(1024 + 500);
  });

  it("max-bandwidth limits pre-copy iterations only: the stop-and-copy goes at the link's rate", async () => {
    // 2048 pages of content (8.4 MB with headers) under a 40 Mbit/s limit on a 1 Gbit/s link: what is left once it
    // fits the downtime (under 5 MB/s × 300 ms) goes at 1 Gbit/s, the rest at 5 MB/s, the first window's at once.
    const limited = await run("precopy", mixedGuest(2048, 0), LAN, { flavor: "qemu", cost: FREE_CPU, maxBandwidth: 5e6 });
    const seconds = limited.transferred / 5e6;
    expect(limited.totalTime).toBeGreaterThan(seconds - (5e6 * 0.3 + 5e6 * 0.1) / 5e6);
    expect(limited.totalTime).toBeLessThan(seconds);
    expect(limited.verifiedPages).toBe(2048);
    // 200 pages rewritten every 10 ms: pending 0.8 MB fits 40 Mbit/s × 300 ms, so they go in the stop-and-copy,
    // at 1 Gbit/s (~7 ms) with the limit, at 40 Mbit/s (~170 ms) when the link itself is 40 Mbit/s.
    const hot = Array.from({ length: 200 }, (_, p) => p);
    const stop = (link: LinkSpec, maxBandwidth?: number) =>
      run("precopy", new HotWords(mixedGuest(2048, 0).guest, hot, 0.01), link, { flavor: "qemu", cost: FREE_CPU, ...(maxBandwidth && { maxBandwidth }) });
    const fast = await stop(LAN, 5e6);
    const slow = await stop(WAN);
    expect(fast.stopReason).toBe("downtime-limit");
    expect(slow.stopReason).toBe("downtime-limit");
    expect(fast.downtime).toBeLessThan(0.02);
    expect(slow.downtime).toBeGreaterThan(0.15);
    expect(fast.totalTime).toBeGreaterThan(seconds - 0.4);
  });

  it("under max-bandwidth the bandwidth measured, and the threshold made of it, stay at the limit: a hot set above it never converges", async () => {
    // 600 pages rewritten every 10 ms: 2.5 MB pending after every sync, above 5 MB/s × 300 ms. Frames of 256 pages
    // (1 MiB, two windows) once made windows that measured 2-4 times the limit, and a stop with 2.5 MB left.
    const hot = Array.from({ length: 600 }, (_, p) => p);
    const stats = await run("precopy", new HotWords(mixedGuest(2048, 0).guest, hot, 0.01), LAN, { flavor: "qemu", cost: FREE_CPU, maxBandwidth: 5e6, maxIterations: 30 });
    expect(stats.stopReason).toBe("iteration-limit");
    expect(stats.verifiedPages).toBe(2048);
    // What the iterations sent went at the limit (each window's excess counted in the next).
    const iterating = stats.rounds.slice(1);
    const bytes = iterating.reduce((sum, r) => sum + r.bytes, 0);
    const seconds = iterating.reduce((sum, r) => sum + r.duration, 0);
    expect(bytes / seconds).toBeLessThan(5e6 * 1.05);
    expect(bytes / seconds).toBeGreaterThan(5e6 * 0.9);
  });

  it("refuses what QEMU's flavour does not model, naming it", async () => {
    await expect(run("precopy", mixedGuest(4, 4), WAN, { flavor: "kvm" as "qemu" })).rejects.toThrow(/flavor must be xen or qemu, got 'kvm'/);
    await expect(run("precopy", mixedGuest(4, 4), WAN, { flavor: "qemu", codec: "lz4" })).rejects.toThrow(/codec must be raw or xbzrle, got 'lz4'/);
    await expect(run("precopy", mixedGuest(4, 4), WAN, { maxBandwidth: 1e6 })).rejects.toThrow(/maxBandwidth is QEMU's rate limit: it needs flavor qemu/);
    await expect(migrateCli(["--workload", "idle", "--pages", "16", "--max-bandwidth", "10mbit"])).rejects.toThrow(/--max-bandwidth: is QEMU's rate limit/);
    await expect(run("ada", mixedGuest(4, 4), WAN, { flavor: "qemu" })).rejects.toThrow(/flavor qemu runs precopy, postcopy, hybrid, not ada/);
    await expect(run("precopy", mixedGuest(4, 4), WAN, { flavor: "qemu", deadline: 10 })).rejects.toThrow(/no deadline rule/);
    await expect(run("precopy", mixedGuest(4, 4), WAN, { flavor: "qemu", pageOrder: [7, 6, 5, 4, 3, 2, 1, 0] })).rejects.toThrow(/address order/);
    await expect(migrateCli(["--workload", "idle", "--pages", "16", "--flavor", "vmware"])).rejects.toThrow(/--flavor: must be xen or qemu/);
    await expect(migrateCli(["--workload", "idle", "--pages", "16", "--flavor", "qemu", "--codec", "lz4"])).rejects.toThrow(/--flavor: qemu sends pages whole/);
  });

  it("the table and --json say which flavour ran", async () => {
    const args = ["--workload", "idle", "--pages", "64", "--strategy", "precopy"];
    expect(await migrateCli([...args, "--flavor", "qemu"])).toMatch(/qemu flavour[\s\S]*flavor +qemu/);
    expect(await migrateCli(args)).toMatch(/xen flavour[\s\S]*flavor +xen/);
    const json = JSON.parse(await migrateCli([...args, "--flavor", "qemu", "--json"])) as MigrationStats;
    expect(json.flavor).toBe("qemu");
    expect(json.transferred).toBe(qemuPageBytes(json.normal, json.duplicate, 4096, true) + EOS_BYTES * markers(json));
  });
});

describe("flavor qemu: the time QEMU's process takes on its host (QemuHost)", () => {
  /** A loopback-like link: the host's time, not the link's, makes the run. */
  const LOOPBACK: LinkSpec = { bitsPerSecond: 10e9, rtt: 0 };
  const HOST: QemuHost = { setupTime: 0.25, pageTime: 1e-3, zeroPageTime: 2e-4, switchoverTime: 0.003 };

  it("adds the setup, each page's time while the guest runs and the stop's fixed part, on top of the link's time", async () => {
    const normal = 64;
    const zero = 192;
    const options = { flavor: "qemu", cost: FREE_CPU, stateBytes: 4096 } as const;
    const bare = await run("precopy", mixedGuest(normal, zero), LOOPBACK, options);
    const host = await run("precopy", mixedGuest(normal, zero), LOOPBACK, { ...options, qemuHost: HOST });
    // One frame of 256 pages: 64 ms for the pages with content, 38.4 ms for the zero ones.
    const thread = normal * HOST.pageTime + zero * HOST.zeroPageTime;
    // Within the 0.2 ms the last frame takes on the link: the stop's fixed part overlaps its drain.
    expect(host.totalTime - bare.totalTime).toBeCloseTo(HOST.setupTime + thread + HOST.switchoverTime, 3);
    expect(host.downtime - bare.downtime).toBeCloseTo(HOST.switchoverTime, 3);
    expect(host.setupTime).toBeCloseTo(HOST.setupTime + thread, 6);
    // The same pages went; the longer pass only spans one more rate-limit window (an end-of-section marker).
    expect([host.normal, host.duplicate]).toEqual([bare.normal, bare.duplicate]);
    expect(markers(host) - markers(bare)).toBe(1);
    expect(host.verifiedPages).toBe(normal + zero);
  });

  it("under max-bandwidth the first window starts with the migration thread, before setup: after a longer setup its allowance goes at once", async () => {
    // migration_thread stamps iteration_start_time before qemu_savevm_state_setup; the first ram_save_iterate then
    // spends the window's allowance and finds the window over, so a second allowance follows without a wait (QEMU's
    // counters in bench/results/qemu/fit-precopy-500mbit-run*: two windows' bytes by the first poll after setup).
    // 8192 pages of content at 50 MB/s (a window's allowance, 1218 pages, is more than a frame of 256): a setup
    // shorter than a window hides in it (the first pages still wait for its end, at 0.1 s); a longer one swallows
    // the first window whole, so it ends 0.25 − 0.1 s later, not 0.25 − 0.05.
    const options = { flavor: "qemu", cost: FREE_CPU, maxBandwidth: 50e6 } as const;
    const migrate = (setupTime: number) => run("precopy", mixedGuest(8192, 0), LOOPBACK, { ...options, qemuHost: { ...HOST, setupTime, pageTime: 0, zeroPageTime: 0 } });
    const short = await migrate(0.05);
    const long = await migrate(0.25);
    expect(long.totalTime - short.totalTime).toBeCloseTo(0.25 - 0.1, 2);
    expect(long.verifiedPages).toBe(8192);
  });

  it("pages sent once the guest stopped take no thread time: the downtime is the fixed part and the link's", async () => {
    const hot = [3, 9, 17, 40];
    const guest = new Guest(512, PAGE);
    for (let p = 0; p < 512; p++) guest.memory.writable(p).fill((p % 13) + 1);
    const stats = await run("precopy", new HotWords(guest, hot, 0.01), LOOPBACK, { flavor: "qemu", cost: FREE_CPU, stateBytes: 4096, qemuHost: HOST });
    expect(stats.downtimeBytes).toBeGreaterThanOrEqual(hot.length * PAGE);
    expect(stats.downtime).toBeGreaterThanOrEqual(HOST.switchoverTime);
    // Charged at pageTime they would take 4 ms more.
    expect(stats.downtime).toBeLessThan(HOST.switchoverTime + 0.5e-3);
    expect(stats.verifiedPages).toBe(512);
  });

  it("refuses a bad host description, naming the field, and a host without flavor qemu", async () => {
    expect(parseQemuHost({ host: HOST })).toEqual(HOST);
    expect(() => parseQemuHost({ ...HOST, pageTime: -1 }, "h.json")).toThrow(QemuHostError);
    expect(() => parseQemuHost({ ...HOST, pageTime: -1 }, "h.json")).toThrow(/h.json: pageTime must be a number of seconds ≥ 0, got -1/);
    expect(() => parseQemuHost({ setupTime: 0, pageTime: 0, zeroPageTime: 0 })).toThrow(/switchoverTime must be a number of seconds ≥ 0, got undefined/);
    expect(() => parseQemuHost([1, 2])).toThrow(/expected a JSON object/);
    expect(() => parseQemuHost({ ...HOST, setupTime: Infinity })).toThrow(/setupTime must be/);
    await expect(run("precopy", mixedGuest(4, 4), WAN, { qemuHost: HOST })).rejects.toThrow(/qemuHost is the time QEMU's process takes: it needs flavor qemu/);
    await expect(run("precopy", mixedGuest(4, 4), WAN, { flavor: "qemu", qemuHost: { ...HOST, zeroPageTime: Number.NaN } })).rejects.toThrow(/qemuHost: zeroPageTime must be/);
    const dir = mkdtempSync(join(tmpdir(), "pagemill-qemu-host-"));
    try {
      expect(() => loadQemuHost(join(dir, "missing.json"))).toThrow(/cannot read QEMU host file .*missing.json/);
      writeFileSync(join(dir, "bad.json"), "{ setupTime");
      expect(() => loadQemuHost(join(dir, "bad.json"))).toThrow(/bad.json: not JSON/);
      writeFileSync(join(dir, "host.json"), JSON.stringify({ host: HOST, fittedOn: {} }));
      const args = ["--workload", "idle", "--pages", "64", "--strategy", "precopy", "--json", "--qemu-host", join(dir, "host.json")];
      await expect(migrateCli(args)).rejects.toThrow(/--qemu-host: is the time QEMU's process takes: give --flavor qemu/);
      const json = JSON.parse(await migrateCli([...args, "--flavor", "qemu"])) as MigrationStats;
      expect(json.totalTime).toBeGreaterThan(HOST.setupTime + HOST.switchoverTime);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!sharedAvailable())("flavor qemu on every shipped trace", () => {
  // At 1 Gbit/s: memstream streams through its memory and never converges unthrottled (QEMU has no cap; the test stops at 8 iterations).
  for (const name of TRACE_NAMES) {
    for (const [label, strategy, options] of [
      ["precopy", "precopy", { maxIterations: 8 }],
      ["precopy+auto-converge", "precopy", { autoConverge: true }],
      ["postcopy", "postcopy", {}],
    ] as const) {
      it(`${name} ${label}: every page verified, QEMU's counts consistent`, async () => {
        const workload = await TraceReplay.open(tracePath(name));
        const pages = workload.guest.pageCount;
        const stats = await run(strategy, workload, LAN, { flavor: "qemu", ...options });
        expect(stats.verifiedPages).toBe(pages);
        expect(stats.flavor).toBe("qemu");
        expect(stats.normal + stats.duplicate).toBe(stats.pagesTransferred);
        expect(stats.pagesTransferred).toBeGreaterThanOrEqual(pages - stats.duplicate);
        markers(stats);
        expect(stats.rounds.every((r) => r.skipped === 0)).toBe(true);
        // Setup, one per iteration (the last may complete without one), the stop.
        expect(stats.dirtySyncCount).toBeGreaterThanOrEqual(stats.rounds.length + 1);
        expect(stats.dirtySyncCount).toBeLessThanOrEqual(stats.rounds.length + 2);
      });
    }
  }
});

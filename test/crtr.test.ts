// Checkpoint + trace/replay (src/engine/crtr.ts), a model: the checkpoint is
// real and checked against the memory as it was when it began; the log's
// bytes and the replay's time follow the documented parameters; every page
// at the end equals the source's; the modelled replay refuses a destination
// whose checkpoint is wrong; the model stops when the replay cannot gain.
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { replayFromSource } from "../src/engine/crtr.js";
import { FlatPages, flatBytes } from "../src/guest/pages.js";
import { SwitchoverView } from "../src/engine/frozen.js";
import type { MigrationStats } from "../src/engine/metrics.js";
import { VerificationError } from "../src/errors.js";
import { Guest } from "../src/guest/guest.js";
import { PoissonWorkload, TraceReplay, syntheticGuest } from "../src/guest/workloads.js";
import { migrateCli } from "./helpers/migrate.js";
import { LAN, WAN, run } from "./helpers/simulate.js";
import { sharedAvailable, tracePath } from "./helpers/traces.js";

const BUNDLED = fileURLToPath(new URL("../data/redis-sample.ptrace.gz", import.meta.url));
const PAGE = 4096;

/** What every CR/TR run must show, whatever the trace. */
function checkRun(stats: MigrationStats, pageCount: number): void {
  const c = stats.crtr!;
  expect(c.model).toBe(true);
  expect(stats.verifiedPages).toBe(pageCount);
  // The checkpoint is every page once; nothing else goes as a page.
  expect(stats.pagesTransferred).toBe(pageCount);
  // The log is its rate times the execution it covers (rounded up per iteration).
  expect(c.logBytes).toBeGreaterThanOrEqual(c.logRate * c.replayedSeconds - 1e-6);
  expect(c.logBytes).toBeLessThanOrEqual(c.logRate * c.replayedSeconds + c.iterations);
  // Every second the guest ran at the source is replayed: it ran from the start to the stop, and the migration ends at the resume.
  expect(c.replayedSeconds + stats.downtime).toBeCloseTo(stats.totalTime, 6);
  // What crossed the link: the checkpoint, the log (INFO frames, a few bytes of header each), control frames.
  expect(stats.transferred).toBeGreaterThanOrEqual(c.checkpointBytes + c.logBytes);
  if (stats.converged) expect(stats.downtime).toBeLessThanOrEqual(0.3 + 1e-9);
}

describe("checkpoint + trace/replay (model)", () => {
  it("migrates the bundled trace: one checkpoint, a log, the downtime within the limit, every page verified", async () => {
    const stats = await run("crtr", await TraceReplay.open(BUNDLED), WAN);
    expect(stats.stopReason).toBe("downtime-limit");
    expect(stats.converged).toBe(true);
    checkRun(stats, 3072);
    // The guest wrote pages while the checkpoint went (copy-on-write kept them as they were); the replay re-creates them.
    expect(stats.crtr!.replayedPages).toBeGreaterThan(0);
    expect(stats.crtr!.iterations).toBeGreaterThanOrEqual(2);
  });

  it("a faster replay ends sooner in fewer iterations; a larger log rate sends more log", async () => {
    const at = async (replaySpeed: number, logRate?: number) => run("crtr", await TraceReplay.open(BUNDLED), WAN, { replaySpeed, ...(logRate === undefined ? {} : { logRate }) });
    const slow = await at(1.25);
    const fast = await at(4);
    expect(fast.totalTime).toBeLessThan(slow.totalTime);
    expect(fast.crtr!.iterations).toBeLessThan(slow.crtr!.iterations);
    const chatty = await at(2, 512 * 1024);
    const quiet = await at(2, 0);
    expect(quiet.crtr!.logBytes).toBe(0);
    expect(chatty.crtr!.logBytes).toBeGreaterThan(100 * quiet.crtr!.iterations);
    for (const s of [slow, fast, chatty, quiet]) checkRun(s, 3072);
  });

  it("stops with the lag as downtime when the replay cannot gain on the source (replay speed 1): not converged, still verified", async () => {
    const stats = await run("crtr", await TraceReplay.open(BUNDLED), WAN, { replaySpeed: 1 });
    expect(stats.stopReason).toBe("replay-lag");
    expect(stats.converged).toBe(false);
    // The destination replays the whole checkpoint's time again: far past the limit.
    expect(stats.downtime).toBeGreaterThan(stats.crtr!.checkpointSeconds * 0.9);
    checkRun(stats, 3072);
  });

  it("keeps the checkpoint as it was when the guest writes every page during it (copy-on-write)", async () => {
    const workload = new PoissonWorkload(syntheticGuest(2048, { seed: 5 }), { rate: 20, popularity: { kind: "uniform" }, seed: 9 });
    const stats = await run("crtr", workload, WAN);
    checkRun(stats, 2048);
    expect(stats.crtr!.replayedPages).toBeGreaterThan(2000);
  });

  it.skipIf(!sharedAvailable())("migrates the shared traces, every page verified (memstream on a LAN: it rewrites its memory every 250 ms)", async () => {
    for (const [name, link] of [["redis", WAN], ["node-gc", WAN], ["memstream", LAN]] as const) {
      const workload = await TraceReplay.open(tracePath(name));
      const pages = workload.guest.pageCount;
      checkRun(await run("crtr", workload, link), pages);
    }
  }, 120_000);
});

describe("the modelled replay", () => {
  it("writes the pages written since the checkpoint and refuses a destination whose checkpoint differs from the snapshot", () => {
    // The guest flat (as a program thread's), the destinations too: the replay reads and writes any PageMemory.
    const guest = new Guest(4, PAGE, new Uint8Array(4 * PAGE).fill(1));
    const flat = (bytes: Uint8Array) => new FlatPages(bytes, PAGE);
    try {
      const snapshot = new SwitchoverView(guest);
      // Page 2 is written after the checkpoint began: its checkpoint content is kept.
      snapshot.preserve(2);
      guest.memory.writable(2).fill(7);
      const destination = new Uint8Array(4 * PAGE).fill(1);
      expect(replayFromSource(flat(destination), guest.memory, snapshot)).toBe(1);
      expect(destination).toEqual(flatBytes(guest.memory));
      // A destination that lost page 1 of the checkpoint is refused, naming it.
      const lost = new Uint8Array(4 * PAGE).fill(1);
      lost[PAGE + 5] = 0;
      expect(() => replayFromSource(flat(lost), guest.memory, snapshot)).toThrow(VerificationError);
      expect(() => replayFromSource(flat(lost), guest.memory, snapshot)).toThrow(/differ from the checkpoint before the replay: 1$/);
      // One holding page 2 as written later, not as at the checkpoint, is refused too.
      const late = new Uint8Array(4 * PAGE).fill(1);
      late.fill(7, 2 * PAGE, 3 * PAGE);
      expect(() => replayFromSource(flat(late), guest.memory, snapshot)).toThrow(/: 2$/);
    } finally {
      guest.dispose();
    }
  });
});

describe("crtr with a disk", () => {
  it("checkpoints the disk's blocks after memory's, replays its writes, and ends with every page and block verified", async () => {
    const disk = fileURLToPath(new URL("../data/sqlite-disk.ptrace.gz", import.meta.url));
    const json = JSON.parse(await migrateCli(["--strategy", "crtr", "--disk", disk, "--json"]));
    const alone = JSON.parse(await migrateCli(["--strategy", "crtr", "--json"]));
    expect(json.verified).toBe(true);
    expect(json.disk.verifiedBlocks).toBe(json.disk.blockCount);
    expect(json.disk.blocksSent).toBe(json.disk.blockCount);
    // The checkpoint carries the disk's bytes beside memory's, and the replay re-creates the blocks written since.
    expect(json.crtr.checkpointBytes).toBeGreaterThanOrEqual(alone.crtr.checkpointBytes + json.disk.blockCount * 4096 * 0.9);
    expect(json.crtr.replayedBlocks).toBeGreaterThan(0);
    expect(json.crtr.replayedBlocks).toBeLessThanOrEqual(json.disk.blockCount);
    expect(alone.crtr.replayedBlocks).toBeUndefined();
    const model = JSON.parse(await migrateCli(["--strategy", "crtr", "--disk-workload", "oltp", "--disk-blocks", "64", "--json"]));
    expect(model.verified).toBe(true);
    expect(model.disk.verifiedBlocks).toBe(64);
  });
});

describe("crtr's options", () => {
  it("are refused where they do not apply or make no sense, naming the option", async () => {
    await expect(migrateCli(["--strategy", "precopy", "--log-rate", "1k"])).rejects.toThrow(/--log-rate: applies to --strategy crtr only/);
    await expect(migrateCli(["--strategy", "crtr", "--replay-speed", "0"])).rejects.toThrow(/--replay-speed: must be above 0/);
    const workload = new PoissonWorkload(syntheticGuest(64, { seed: 1 }), { rate: 0.1, popularity: { kind: "uniform" }, seed: 1 });
    await expect(run("crtr", workload, WAN, { replaySpeed: -1 })).rejects.toThrow(/replaySpeed must be a positive finite number/);
  });

  it("label the run a model in the table and in --json", async () => {
    const json = JSON.parse(await migrateCli(["--strategy", "crtr", "--json"]));
    expect(json.strategy).toBe("crtr");
    expect(json.crtr.model).toBe(true);
    expect(json.verified).toBe(true);
    const text = await migrateCli(["--strategy", "crtr"]);
    expect(text).toMatch(/CR\/TR \(model\)\s+checkpoint/);
  });
});

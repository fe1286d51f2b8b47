import { describe, expect, it, vi } from "vitest";
import { UsageError } from "../src/cli/args.js";
import { COMPARE_CODECS, compare, compareMethods, compareTable, run, type CompareRow } from "../src/cli/compare.js";
import { simulationSetup } from "../src/cli/migrate.js";
import { STRATEGY_NAMES } from "../src/engine/migrate.js";
import type { StrategyName } from "../src/engine/metrics.js";
import { commandOutput, migrateCli } from "./helpers/migrate.js";

interface CompareJson {
  link: { bitsPerSecond: number; rtt: number };
  rows: CompareRow[];
}

describe("pagemill compare", () => {
  it("runs every registered strategy (and pre-copy with auto-converge) × raw, mecom, xbzrle, auto on the bundled trace, each verified, each as migrate runs it", async () => {
    const out = JSON.parse(await commandOutput(run, ["--json"])) as CompareJson;
    expect(out.link).toMatchObject({ bitsPerSecond: 40e6, rtt: 0.005 });
    const methods = [...STRATEGY_NAMES.flatMap((s) => (s === "precopy" ? [s, "precopy+auto-converge"] : [s]))];
    expect(out.rows.map((r) => `${r.method} ${r.codec}`)).toEqual(methods.flatMap((m) => COMPARE_CODECS.map((c) => `${m} ${c}`)));
    for (const row of out.rows) {
      expect(row.error, `${row.method} ${row.codec}`).toBeUndefined();
      expect(row.verified).toBe(true);
      expect(row.stats!.verifiedPages).toBe(3072);
      expect(row.stats!.codec).toBe(row.codec);
    }
    // the rows are the engine's own results: the same figures as migrate gives for that strategy and codec
    for (const [strategy, codec, extra] of [["hybrid", "xbzrle", []], ["precopy", "raw", ["--auto-converge"]]] as const) {
      const single = JSON.parse(await migrateCli(["--strategy", strategy, "--codec", codec, ...extra, "--json"]));
      const row = out.rows.find((r) => r.strategy === strategy && r.codec === codec && r.method.includes("auto-converge") === extra.length > 0)!;
      const { verified: _verified, timeUnit: _unit, wallSeconds: _wall, ...stats } = single;
      expect(row.stats, `${strategy} ${codec} ${extra.join(" ")}`).toEqual(stats);
    }
    // compression matters on a 40 Mbit/s link: MECOM sends far fewer bytes than raw pre-copy
    const bytes = (method: string, codec: string) => out.rows.find((r) => r.method === method && r.codec === codec)!.stats!.transferred;
    expect(bytes("precopy", "mecom")).toBeLessThan(bytes("precopy", "raw") / 4);
  });

  it("prints one table with the best of each column marked, and writes no progress to a stderr that is not a terminal", async () => {
    const stderr = vi.spyOn(process.stderr, "write");
    try {
      const text = await commandOutput(run, ["--workload", "hot-cold", "--pages", "1024", "--codecs", "raw,lz4"]);
      expect(text).toMatch(/^method\s+codec\s+T\s+D\s+U\s+bytes\s+pages\s+faults\s+rounds\s+verified$/m);
      expect(text).toMatch(/^precopy\+auto-converge\s+lz4\s/m);
      for (const column of ["T", "D", "bytes"]) expect(text.split("\n").some((l) => /\d \*/.test(l)), column).toBe(true);
      expect(text).toMatch(/wall time/);
      expect(stderr).not.toHaveBeenCalled();
    } finally {
      stderr.mockRestore();
    }
  });

  it("shows a failed row with its reason and still runs the others", async () => {
    const setup = simulationSetup({ workload: "idle", pages: "256" });
    const methods = [{ label: "teleport", strategy: "teleport" as StrategyName, options: {} }, ...compareMethods().slice(0, 1)];
    const rows = await compare(setup, methods, ["raw"]);
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({ method: "teleport", verified: false });
    expect(rows[0]!.error).toMatch(/unknown strategy 'teleport'/);
    expect(rows[1]!.verified).toBe(true);
    const table = compareTable(rows);
    expect(table).toMatch(/^teleport\s+raw\s+failed/m);
    expect(table).toMatch(/teleport with raw failed: unknown strategy 'teleport'/);
  });

  it("refuses what migrate refuses, and bad --codecs, before running anything", async () => {
    const log = vi.spyOn(console, "log");
    try {
      for (const args of [
        ["--bandwidth", "fast"],
        ["--rtt", "5"],
        ["--workload", "juggle"],
        ["--trace", "/nonexistent.ptrace.gz"],
        ["--workload", "idle", "--trace", "x"],
        ["--codecs", "zip"],
        ["--codecs", "raw,,lz4"],
        ["--codecs", "lz4+"],
        ["--state", "64MiB"],
        ["--strategy", "precopy"],
        ["extra"],
      ]) {
        await expect(run(args), args.join(" ")).rejects.toThrow(UsageError);
      }
      expect(log).not.toHaveBeenCalled();
    } finally {
      log.mockRestore();
    }
  });
});

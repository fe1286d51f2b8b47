import { describe, expect, it, vi } from "vitest";
import { UsageError } from "../src/cli/args.js";
import { COMPARE_CODECS, compare, compareMethods, compareTable, restorationAgility, run, type CompareRow } from "../src/cli/compare.js";
import type { MigrationStats } from "../src/engine/metrics.js";
import { simulationSetup } from "../src/cli/migrate.js";
import { markedTable } from "../src/cli/table.js";
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
    const planned = out.rows.filter((r) => r.strategy === "fractional");
    const ada = out.rows.filter((r) => r.strategy === "ada");
    expect(out.rows.slice(0, -planned.length - ada.length).map((r) => `${r.method} ${r.codec}`)).toEqual(methods.flatMap((m) => COMPARE_CODECS.map((c) => `${m} ${c}`)));
    // Ada-copy, each row named with the method it chose
    expect(ada.map((r) => r.codec)).toEqual(COMPARE_CODECS);
    for (const row of ada) expect(row.method).toBe(`ada→${row.stats!.adaptive!.method}`);
    // a trace also gets fractional at the plan's M
    expect(planned.map((r) => r.codec)).toEqual(COMPARE_CODECS);
    for (const row of planned) expect(row.method).toMatch(/^fractional M=\d+%$/);
    for (const row of out.rows) {
      expect(row.error, `${row.method} ${row.codec}`).toBeUndefined();
      expect(row.verified).toBe(true);
      expect(row.stats!.verifiedPages).toBe(3072);
      expect(row.stats!.codec).toBe(row.codec);
    }
    // the rows are the engine's own results: the same figures as migrate gives for that strategy and codec
    for (const [strategy, codec, extra] of [["hybrid", "xbzrle", []], ["precopy", "raw", ["--auto-converge"]], ["fractional", "mecom", []]] as const) {
      const single = JSON.parse(await migrateCli(["--strategy", strategy, "--codec", codec, ...extra, "--json"]));
      const row = out.rows.find((r) => r.strategy === strategy && r.codec === codec && r.method.includes("auto-converge") === extra.length > 0)!;
      const { verified: _verified, timeUnit: _unit, wallSeconds: _wall, ...stats } = single;
      expect(row.stats, `${strategy} ${codec} ${extra.join(" ")}`).toEqual(stats);
    }
    // Γ from each row's own figures: raw post-copy's 546 faults cost more than pre-copy's longer downtime; with MECOM there are none
    for (const row of out.rows) expect(row.agility).toBe(restorationAgility(row.stats!));
    const agility = (method: string, codec: string) => out.rows.find((r) => r.method === method && r.codec === codec)!.agility!;
    expect(agility("postcopy", "raw")).toBeLessThan(agility("precopy", "raw"));
    expect(agility("postcopy", "mecom")).toBeGreaterThan(agility("precopy", "mecom"));
    // the predictor's T and D for the rows it models (raw, no auto-converge; Ada-copy's is the chosen method's), within 5% of the emulation here; none elsewhere
    const [adaRaw] = ada.filter((r) => r.codec === "raw");
    expect(adaRaw!.predicted).toEqual(out.rows.find((r) => r.method === adaRaw!.stats!.adaptive!.method && r.codec === "raw")!.predicted);
    for (const row of ada.filter((r) => r.codec !== "raw")) expect(row.stats!.adaptive!.reason).toContain(`(no forecast: the predictor models the raw codec, not ${row.codec})`);
    for (const row of out.rows) {
      const modelled = row.codec === "raw" && !row.method.includes("auto-converge");
      expect(row.predicted !== undefined, `${row.method} ${row.codec}`).toBe(modelled);
      if (!row.predicted) continue;
      expect(Math.abs(row.predicted.totalTime / row.stats!.totalTime - 1), `${row.method} T`).toBeLessThan(0.05);
      expect(Math.abs(row.predicted.downtime / row.stats!.downtime - 1), `${row.method} D`).toBeLessThan(0.05);
    }
    // compression matters on a 40 Mbit/s link: MECOM sends far fewer bytes than raw pre-copy
    const bytes = (method: string, codec: string) => out.rows.find((r) => r.method === method && r.codec === codec)!.stats!.transferred;
    expect(bytes("precopy", "mecom")).toBeLessThan(bytes("precopy", "raw") / 4);
  });

  it("prints one table with the best of each column marked, and writes no progress to a stderr that is not a terminal", async () => {
    const stderr = vi.spyOn(process.stderr, "write");
    try {
      const text = await commandOutput(run, ["--workload", "hot-cold", "--pages", "1024", "--codecs", "raw,lz4"]);
      expect(text).toMatch(/^method\s+codec\s+T\s+D\s+U\s+Γ\s+bytes\s+pages\s+faults\s+rounds\s+predicted T\s+predicted D\s+verified$/m);
      // a model workload is no trace: nothing to predict from
      expect(text).not.toMatch(/\d%/);
      expect(text).toMatch(/^precopy\+auto-converge\s+lz4\s/m);
      // Each column's cells lie under its run of dashes in the rule below the header.
      const lines = text.split("\n");
      const header = lines.findIndex((l) => l.startsWith("method"));
      const spans = [...lines[header + 1]!.matchAll(/-+/g)].map((m) => [m.index!, m.index! + m[0].length] as const);
      const labels = spans.map(([from, to]) => lines[header]!.slice(from, to).trim());
      const rows = lines.slice(header + 2, lines.indexOf("", header));
      for (const column of ["T", "D", "bytes"]) {
        const [from, to] = spans[labels.indexOf(column)]!;
        expect(rows.filter((l) => / \*$/.test(l.slice(from, to))).length, column).toBeGreaterThan(0);
      }
      expect(text).toMatch(/wall time/);
      expect(stderr).not.toHaveBeenCalled();
    } finally {
      stderr.mockRestore();
    }
  });

  it("Γ = δT / (D + ΔT): pre-copy loses only D; post-copy's stalls slow δT of work, or add to it when pages stop arriving first", () => {
    const stats = (downtime: number, workloadSlowdown: number, faultStall: number) => ({ downtime, workloadSlowdown, faultStall }) as MigrationStats;
    expect(restorationAgility(stats(0.1, 1, 0))).toBeCloseTo(20 / 20.1, 12);
    // 60 s of post-copy at half speed: δT of work takes 40 s
    expect(restorationAgility(stats(0.1, 2, 30))).toBeCloseTo(20 / 40.1, 12);
    // 3 s of post-copy, stalled 2 s of it: the rest of δT runs at full speed
    expect(restorationAgility(stats(0.1, 3, 2))).toBeCloseTo(20 / 22.1, 12);
    expect(restorationAgility(stats(0, 1, 0))).toBe(1);
    expect(restorationAgility(stats(0.1, 2, 30), 10)).toBeCloseTo(10 / 20.1, 12);
  });

  it("marks the highest value where higher is better, the lowest elsewhere, and nothing in a column of one", () => {
    const rows = [1, 3, 2];
    const table = markedTable([{ label: "n", show: String }, { label: "low", show: String, value: (n) => n }, { label: "high", show: String, value: (n) => n, higherIsBetter: true }], rows);
    expect(table.split("\n").slice(2).map((l) => l.split(/\s{2,}/).slice(1))).toEqual([["1 *", "1"], ["3", "3 *"], ["2", "2"]]);
    expect(markedTable([{ label: "n", show: String, value: (n) => n }], [5])).not.toMatch(/\*/);
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

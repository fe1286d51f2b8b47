// pagemill plan's text view: the same predictions as its JSON, in the table
// and time format migrate and compare print.

import { describe, expect, it } from "vitest";
import { fileURLToPath } from "node:url";
import { run } from "../src/cli/plan.js";
import { seconds } from "../src/cli/migrate.js";
import { commandOutput } from "./helpers/migrate.js";

const SAMPLE = fileURLToPath(new URL("../data/redis-sample.ptrace.gz", import.meta.url));

interface Predicted {
  strategy: string;
  totalTime: number;
  remoteUptime: number;
  downtime: number;
  faultStall: number;
  gamma: number;
}

describe("pagemill plan, text", () => {
  it("prints each prediction of its JSON as a row under a header and a rule; a zero time reads 0", async () => {
    const json = JSON.parse(await commandOutput(run, [SAMPLE, "--json"])) as { strategies: Predicted[]; plan: { prediction: Predicted; memoryPrecopy: number } };
    const lines = (await commandOutput(run, [SAMPLE])).split("\n");
    expect(lines[0]).toMatch(/redis-sample\.ptrace\.gz: 3072 pages, link 40\.0 Mbit\/s, RTT 5\.0 ms, model replay/);
    expect(lines[1]!.split(/\s{2,}/)).toEqual(["strategy", "T", "U", "D", "fault stall", "Γ"]);
    expect(lines[2]).toMatch(/^-+( +-+){5}$/);
    const predictions = [...json.strategies, json.plan.prediction];
    const rows = lines.slice(3, 3 + predictions.length).map((line) => line.split(/\s{2,}/).map((cell) => cell.trim()));
    expect(rows).toEqual(
      predictions.map((p) => [
        p.strategy === "fractional" ? `fractional M=${json.plan.memoryPrecopy}% S=0%` : p.strategy,
        seconds(p.totalTime),
        seconds(p.remoteUptime),
        seconds(p.downtime),
        seconds(p.faultStall),
        p.gamma.toFixed(4),
      ]),
    );
    // Pre-copy never runs the guest remotely nor stalls it on a fault.
    expect(rows[0]!.slice(0, 3)).toEqual(["precopy", seconds(predictions[0]!.totalTime), "0"]);
    expect(rows[0]![4]).toBe("0");
    expect(lines[3 + predictions.length]).toBe("");
    expect(lines[4 + predictions.length]).toMatch(new RegExp(`^plan: pre-copy the ${json.plan.memoryPrecopy}% coldest pages, then post-copy the rest`));
  });
});

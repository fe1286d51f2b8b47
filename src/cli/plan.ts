// pagemill plan TRACE: seed 001's adaptive step. Profiles the trace, predicts
// T, U, D and Γ of each strategy over the link without moving a byte, and
// finds the fractional hybrid-copy's (M, S) with the best Γ by the two-step
// ternary search.

import { existsSync } from "node:fs";
import { plan, type Plan } from "../adaptive/plan.js";
import { predict, type Prediction, type PredictOptions } from "../adaptive/predict.js";
import { profileTrace, type Profile } from "../adaptive/profile.js";
import { UsageError, durationOption, intOption, onePositional, parse, positiveDurationOption, rateOption, sizeOption } from "./args.js";
import { seconds } from "./migrate.js";
import { markedTable, type Column } from "./table.js";

export const summary = "Predicts T, U, D and Γ of each strategy for a pagetrace over a link, and plans the fractional hybrid-copy's (M, S).";
export const usage = `usage: pagemill plan TRACE [--disk DISK.ptrace.gz] [--bandwidth 40mbit] [--rtt 5ms] [--downtime-limit 300ms]
         [--state 256KiB] [--rounds 1] [--model replay|poisson] [--delta-t 20s] [--json]
  --disk: a disk trace migrated with the memory (every strategy's row predicted with it); the plan then
  has S, the disk's share pre-copied.`;

const STRATEGIES = ["precopy", "postcopy", "hybrid"] as const;

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    json: { type: "boolean" },
    bandwidth: { type: "string" },
    rtt: { type: "string" },
    "downtime-limit": { type: "string" },
    state: { type: "string" },
    rounds: { type: "string" },
    model: { type: "string" },
    "delta-t": { type: "string" },
    disk: { type: "string" },
  });
  const path = onePositional(positionals, "TRACE");
  const model = values.model ?? "replay";
  if (model !== "replay" && model !== "poisson") throw new UsageError(`--model must be replay or poisson, got '${String(model)}'`);
  const deltaT = positiveDurationOption("delta-t", values["delta-t"], 20);
  const stateBytes = sizeOption("state", values.state, 256 * 1024);
  if (stateBytes > 32 * 2 ** 20) throw new UsageError("--state must be at most 32MiB");
  const options: PredictOptions = {
    bitsPerSecond: rateOption("bandwidth", values.bandwidth, 40e6),
    rtt: durationOption("rtt", values.rtt, 0.005),
    downtimeLimit: durationOption("downtime-limit", values["downtime-limit"], 0.3),
    stateBytes,
    precopyRounds: intOption("rounds", values.rounds, 1, 1, 1e6),
    model,
    deltaT,
  };
  if (!existsSync(path)) throw new UsageError(`TRACE: ${path} does not exist`);
  const diskPath = values.disk;
  if (diskPath !== undefined && (typeof diskPath !== "string" || !existsSync(diskPath))) throw new UsageError(`--disk: ${String(diskPath)} does not exist`);
  const profile: Profile = { ...(await profileTrace(path)), ...(diskPath !== undefined && { disk: (await profileTrace(diskPath)).memory }) };
  const started = performance.now();
  const strategies: Prediction[] = STRATEGIES.map((s) => predict(profile.memory, s, { ...options, ...(profile.disk && { disk: { profile: profile.disk } }) }));
  const best: Plan = plan(profile, options);
  const wallSeconds = (performance.now() - started) / 1000;
  if (values.json) {
    console.log(JSON.stringify({ trace: path, ...(diskPath !== undefined && { disk: diskPath }), link: { bitsPerSecond: options.bitsPerSecond, rtt: options.rtt }, model, strategies, plan: best, timeUnit: "s", wallSeconds }, null, 2));
    return 0;
  }
  const diskLine = profile.disk ? `, disk ${diskPath} (${profile.disk.pageCount} blocks)` : "";
  console.log(`${path}: ${profile.memory.pageCount} pages${diskLine}, link ${(options.bitsPerSecond / 1e6).toFixed(1)} Mbit/s, RTT ${seconds(options.rtt)}, model ${model}, δT ${deltaT} s`);
  const columns: Column<Prediction>[] = [
    { label: "strategy", show: (p) => (p.strategy === "fractional" ? `fractional M=${best.memoryPrecopy}% S=${best.storagePrecopy}%` : p.strategy) },
    { label: "T", show: (p) => seconds(p.totalTime) },
    { label: "U", show: (p) => seconds(p.remoteUptime) },
    { label: "D", show: (p) => seconds(p.downtime) },
    { label: "fault stall", show: (p) => seconds(p.faultStall) },
    { label: "Γ", show: (p) => p.gamma.toFixed(4) },
  ];
  console.log(markedTable(columns, [...strategies, best.prediction]));
  const storage = profile.disk ? `the ${best.storagePrecopy}% coldest disk blocks first, then` : "(S = 0: no disk)";
  console.log(`\nplan: pre-copy ${profile.disk ? storage + " " : ""}the ${best.memoryPrecopy}% coldest pages, then post-copy the rest${profile.disk ? "" : " " + storage}; ${best.evaluations} predictions, ${wallSeconds.toFixed(2)} s`);
  return 0;
}

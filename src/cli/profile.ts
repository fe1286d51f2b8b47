// pagemill profile TRACE: the per-page write model of a recorded program
// (seed 001's profiler): λ per page, the writable working set, the dirty-rate
// series and its variation, and how well λ predicts the next epoch's writes
// on epochs it was not fitted on.

import { existsSync } from "node:fs";
import { profileTrace, summarise } from "../adaptive/profile.js";
import { UsageError, formatBytes, onePositional, parse, positiveDurationOption } from "./args.js";

export const summary = "Per-page write rates (Poisson λ), writable working set, dirty-rate variation and held-out write prediction of a pagetrace.";
export const usage = "usage: pagemill profile TRACE [--window 1s] [--json]";

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: "boolean" }, window: { type: "string" } });
  const path = onePositional(positionals, "TRACE");
  if (!existsSync(path)) throw new UsageError(`TRACE: ${path} does not exist`);
  const window = positiveDurationOption("window", values.window, 1);
  const s = summarise(await profileTrace(path), window);
  if (values.json) {
    console.log(JSON.stringify(s, null, 2));
    return 0;
  }
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const rate = (x: number | null) => (x === null ? "every epoch" : `${x.toFixed(3)}/s`);
  console.log(`${s.source}: ${s.pages} pages × ${s.pageSize} B (${formatBytes(s.pages * s.pageSize)}), ${s.epochs} epochs of ${(s.interval * 1000).toFixed(0)} ms`);
  console.log(`  write rate λ        never written ${s.lambda.neverWritten}, every epoch ${s.lambda.everyEpoch}, mean of the rest ${s.lambda.meanFinite.toFixed(3)}/s`);
  console.log(`                      median ${rate(s.lambda.quantiles.p50!)}, p90 ${rate(s.lambda.quantiles.p90!)}, p99 ${rate(s.lambda.quantiles.p99!)}`);
  console.log(`  writable working set ${Math.round(s.writableWorkingSet.pages)} pages in ${s.writableWorkingSet.seconds} s (${pct(s.writableWorkingSet.share)})`);
  console.log(`  dirty rate          mean ${s.dirtyRate.mean.toFixed(0)} pages/s, sd ${s.dirtyRate.sd.toFixed(0)}, CV ${s.dirtyRate.cv.toFixed(3)}`);
  console.log(`  whole-page writes   ${pct(s.wholeWriteShare)} of writes`);
  const c = s.writePrediction;
  if (!c) console.log("  write prediction    needs at least 2 epochs");
  else {
    console.log(`  write prediction on held-out epochs (${c.samples} page-epochs; seed 001 Table I: 96.1%)`);
    console.log(`      predicted \\ actual      0        1`);
    console.log(`      0                 ${pct(c.trueNegative).padStart(7)}  ${pct(c.falseNegative).padStart(7)}`);
    console.log(`      1                 ${pct(c.falsePositive).padStart(7)}  ${pct(c.truePositive).padStart(7)}`);
    console.log(`      accuracy ${pct(c.accuracy)}`);
  }
  console.log("  read prediction     traces record no reads (seed 001 Table I: 86.1%)");
  return 0;
}

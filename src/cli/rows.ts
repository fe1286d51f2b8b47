// One row of `pagemill compare` and how its predicted cells read: shared by
// the text table (compare.ts) and the HTML report (report.ts).

import type { MigrationStats, StrategyName } from "../engine/metrics.js";
import { seconds } from "./migrate.js";

export interface CompareRow {
  method: string;
  strategy: StrategyName;
  codec: string;
  /** the migration's figures; absent when it failed */
  stats?: MigrationStats;
  /** why the migration failed */
  error?: string;
  /** Γ of the migration (restorationAgility); absent when it failed */
  agility?: number;
  /** src/adaptive's prediction for a trace, where it models the row (raw codec, no auto-converge, a constant link) */
  predicted?: { totalTime: number; downtime: number; gamma: number };
  /** every page of the destination equals the source's */
  verified: boolean;
  wallSeconds: number;
}

/** A predicted time and its error against the emulated one ("–" where the predictor does not model the row). */
export function predictedCell(predicted: number | undefined, emulated: number | undefined): string {
  if (predicted === undefined) return "–";
  if (!emulated) return seconds(predicted);
  const error = Math.round((1000 * (predicted - emulated)) / emulated) / 10;
  return `${seconds(predicted)} ${error < 0 ? "−" : "+"}${Math.abs(error).toFixed(1)}%`;
}

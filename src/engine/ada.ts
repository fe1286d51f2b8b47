// Ada-copy (seed 000): start with pre-copy and watch the dirty rate; stay
// with pre-copy while it will converge soon, switch to post-copy (of what is
// left: a hybrid) when the rate's level or its variation says it will not.
// The abstract gives no formula; this is the rule, from pre-copy's own
// arithmetic. With the send rate R and the dirty rate d (pages/s), a round
// that sends L pages lasts L/R and leaves about d·L/R dirtied: each round
// shrinks what is left by ρ = d/R, and after the first round what is left
// must shrink to what the downtime limit carries (R·limit) before the stop.
//
//   0f. Before anything is sent, when each fixed method's T and D were
//      predicted before the migration (EngineOptions.forecast: the CLI's
//      come from src/adaptive's predictor on the trace's profile, within 1%
//      of the emulation on every trace, docs/adaptive.md): run the method
//      predicted fastest, or, of those within ADA_FORECAST_TIE of its T (the
//      predictor's error), the one with the least predicted D, exactly as
//      that strategy runs (round 0). Rules 0-3 decide without a forecast.
//   0. Before anything is sent, when the dirty rate was measured before the
//      migration (EngineOptions.dirtyRateBefore: QEMU's calc-dirty-rate; the
//      CLI's is the trace profile's mean) and the link's rate is known, R
//      being that rate over a page's wire bytes: ρ ≥ 0.5 → post-copy at once,
//      exactly the post-copy strategy ("postcopy", round 0). Rule 1 below
//      can decide only once the guest has written and a frame has left (at
//      40 Mbit/s a 256-page frame takes 0.2 s), and a program that writes
//      fast makes every page sent before that a page sent twice, and the
//      pages it wrote last at the source (which its reads then touch) faults.
//      Without a measurement, or below 0.5, rules 1-3 decide as the
//      migration goes.
//   1. During the first round, at each bandwidth period: ρ ≥ 0.5 means each
//      round would re-send at least half of the one before, so pre-copy's
//      rounds cost more than post-copying what is left once, and the sooner
//      the switch the less is sent twice: switch now (post-copy of everything
//      not sent; "postcopy").
//   2. At each round end: switch ("hybrid") when
//      - ρ ≥ 0.5, for the same reason;
//      - or pre-copy needs more than 3 more rounds at this ρ to fit the
//        downtime limit (ln(R·limit / left) / ln ρ): Clark et al. see most
//        workloads converge within a few rounds or not at all;
//      - or, from the second round on, the rounds' dirty rates vary with a
//        coefficient of variation above 0.5: the rate of the next round is
//        not the last one's, so the projection above cannot be trusted,
//        the "variation of the dirty page rate" the seed decides on.
//   3. Otherwise pre-copy goes on, and ends as pre-copy does (its downtime
//      rule or Xen's caps; "precopy").
//
// The thresholds are not fitted to any trace: 0.5 is the point where a
// round re-sends half of what it sends; 3 rounds and a CV of 0.5 are round
// figures. (A first version switched in round 1 only at ρ ≥ 1; on the
// bundled trace that let a full round go before the switch, and both rules
// are the same argument, so they now share 0.5.) A distinct-page count over
// a long window undercounts the write rate (pages written twice count
// once), so round 1's ρ reads low on programs with a small working set. The decision and its reason go in the stats
// (MigrationStats.adaptive) and the tables.

import type { AdaDecision, StopReason } from "./metrics.js";
import type { AdaForecast } from "./options.js";
import { hybrid } from "./hybrid.js";
import { ENTRY_BYTES } from "../wire/frame.js";
import { postcopy, switchToPostcopy } from "./postcopy.js";
import { precopy, runRounds, stopAndCopy, type RoundCheck } from "./precopy.js";
import { projectPrecopy } from "./projection.js";
import type { Source } from "./source.js";
import { mirrorDisk } from "./storage.js";

/** Switch during the first round at this ratio of dirty rate to send rate (checked at each bandwidth period). */
export const ADA_ABORT_RATIO = 0.5;
/** Switch at a round end at this ratio. */
export const ADA_SWITCH_RATIO = 0.5;
/** Switch when pre-copy needs more rounds than this to fit the downtime limit. */
export const ADA_MAX_ROUNDS_LEFT = 3;
/** Switch when the rounds' dirty rates vary more than this (coefficient of variation). */
export const ADA_MAX_CV = 0.5;

/** Rule 0f: predicted times this close (a share of the least) count as a tie, broken by the least predicted downtime. */
export const ADA_FORECAST_TIE = 0.01;

/** The rule above, fed the migration's figures as it runs. */
export class AdaRule {
  private readonly rates: number[] = [];
  decision: AdaDecision | undefined;

  constructor(private readonly downtimeLimit: number) {}

  /**
   * Rule 0: with `dirtyRate` pages/s measured before the start and the link
   * carrying `sendRate` pages/s, whether to post-copy at once.
   */
  before(dirtyRate: number, sendRate: number): boolean {
    if (!(sendRate > 0)) return false;
    const rho = dirtyRate / sendRate;
    if (rho < ADA_ABORT_RATIO) return false;
    this.decide("postcopy", `dirtied ${fmt(dirtyRate)} pages/s before the start against ${fmt(sendRate)} the link carries (ρ ${rho.toFixed(2)} ≥ ${ADA_ABORT_RATIO})`, { round: 0, rho, dirtyRate, sendRate });
    return true;
  }

  /** Rule 0f: the fixed method to run, from each one's predicted T and D. */
  choose(forecast: readonly AdaForecast[], dirtyRate: number, sendRate: number): AdaDecision["method"] {
    const fastest = Math.min(...forecast.map((f) => f.totalTime));
    const near = forecast.filter((f) => f.totalTime <= fastest * (1 + ADA_FORECAST_TIE));
    const pick = near.reduce((a, b) => (b.downtime < a.downtime ? b : a));
    const listed = forecast.map((f) => `${f.strategy} ${f.totalTime.toFixed(2)} s / ${(f.downtime * 1000).toFixed(0)} ms`).join(", ");
    const why = near.length > 1 ? `the least D of those within ${ADA_FORECAST_TIE * 100}% of the least T` : "the least T";
    this.decide(pick.strategy, `predicted T / D before the start: ${listed}; ${why}`, { round: 0, rho: sendRate > 0 ? dirtyRate / sendRate : 0, dirtyRate, sendRate });
    return pick.strategy;
  }

  /** Whether to switch to post-copy now, and why (undefined: go on with pre-copy). */
  check(c: RoundCheck): string | undefined {
    if (!(c.sendRate > 0)) return undefined;
    const rho = c.dirtyRate / c.sendRate;
    const at = { round: c.round, rho, dirtyRate: c.dirtyRate, sendRate: c.sendRate };
    if (!c.roundEnd) {
      if (c.round !== 1 || rho < ADA_ABORT_RATIO) return undefined;
      return this.decide("postcopy", `dirtied ${fmt(c.dirtyRate)} pages/s against ${fmt(c.sendRate)} sent (ρ ${rho.toFixed(2)} ≥ ${ADA_ABORT_RATIO}) during the first round`, at);
    }
    this.rates.push(c.dirtyRate);
    if (rho >= ADA_SWITCH_RATIO) return this.decide("hybrid", `ρ ${rho.toFixed(2)} ≥ ${ADA_SWITCH_RATIO} after round ${c.round}`, at);
    const roundsLeft = projectPrecopy(c.left, c.dirtyRate, c.sendRate, this.downtimeLimit).rounds;
    if (roundsLeft > ADA_MAX_ROUNDS_LEFT) return this.decide("hybrid", `${roundsLeft.toFixed(1)} more rounds to fit the downtime limit at ρ ${rho.toFixed(2)} (> ${ADA_MAX_ROUNDS_LEFT})`, at);
    const cv = variation(this.rates);
    if (this.rates.length >= 2 && cv > ADA_MAX_CV) return this.decide("hybrid", `the rounds' dirty rates vary (CV ${cv.toFixed(2)} > ${ADA_MAX_CV}) after round ${c.round}`, at);
    return undefined;
  }

  private decide(method: AdaDecision["method"], reason: string, at: Omit<AdaDecision, "method" | "reason" | "cv">): string {
    this.decision = { method, reason, ...at, cv: variation(this.rates) };
    return reason;
  }
}

const fmt = (x: number): string => x.toFixed(0);

/** Coefficient of variation (0 for fewer than two values or a zero mean). */
function variation(xs: readonly number[]): number {
  if (xs.length < 2) return 0;
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  if (mean === 0) return 0;
  const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length;
  return Math.sqrt(variance) / mean;
}

/** The fixed methods rule 0f runs, each exactly as its own strategy. */
const FIXED = { precopy, postcopy, hybrid } as const;

/** Ada-copy migration (see the module comment). */
export async function ada(s: Source): Promise<{ reason: StopReason; converged: boolean }> {
  const rule = new AdaRule(s.settings.downtimeLimit);
  const { dirtyRateBefore, pageSize, forecast, noForecast } = s.settings;
  /** Rules 0-3's decision, with why there was no forecast to decide on when the caller said. */
  const decided = (decision: AdaDecision): AdaDecision => (noForecast === undefined ? decision : { ...decision, reason: `${decision.reason} (no forecast: ${noForecast})` });
  const sendRate = s.linkBandwidth() / (pageSize + ENTRY_BYTES);
  if (forecast?.length) {
    const method = rule.choose(forecast, dirtyRateBefore ?? 0, sendRate);
    s.setAdaptive(rule.decision!);
    const run = await FIXED[method](s);
    return method === "precopy" ? run : { reason: "adaptive", converged: true };
  }
  if (dirtyRateBefore !== undefined && rule.before(dirtyRateBefore, sendRate)) {
    s.setAdaptive(decided(rule.decision!));
    await postcopy(s);
    return { reason: "adaptive", converged: true };
  }
  if (s.disk) await mirrorDisk(s, { downtimeRule: true, maxPasses: s.settings.maxIterations });
  const { reason, converged, left } = await runRounds(s, {
    downtimeRule: true,
    maxRounds: Infinity,
    budget: Infinity,
    // Pre-copy's end stops the guest at once; a switch lets the channel drain first, as hybrid does.
    stopAtOnce: (why) => why !== "adaptive",
    switchWhen: (c) => rule.check(c),
  });
  s.setAdaptive(decided(rule.decision ?? { method: "precopy", reason: `pre-copy ended (${reason})`, round: s.round, rho: 0, dirtyRate: s.counters.dirtyPagesRate, sendRate: 0, cv: 0 }));
  try {
    if (reason !== "adaptive") {
      await stopAndCopy(s, left);
      return { reason, converged };
    }
    await switchToPostcopy(s, left);
    return { reason, converged: true };
  } finally {
    left.dispose();
  }
}

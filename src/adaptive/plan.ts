// The planner (seed 001): the fractional hybrid-copy's (M, S) that maximises
// Γ on the predictor, by the paper's two steps: first S, the share of storage
// pre-copied, with memory taken as copied instantly; then M, the share of
// memory pre-copied (coldest pages by λ first), with that S. Each step is a
// ternary search over whole percent, which assumes Γ is unimodal in the
// share (the two ends, the fixed methods, are checked too); `gridSearch` is
// the brute force it is checked against. Without a disk S is 0.

import { predict, type Prediction, type PredictOptions } from "./predict.js";
import type { Profile } from "./profile.js";

export interface Plan {
  /** percent of memory pre-copied */
  readonly memoryPrecopy: number;
  /** percent of storage pre-copied (0 without a disk) */
  readonly storagePrecopy: number;
  readonly prediction: Prediction;
  /** predictions the search made */
  readonly evaluations: number;
}

/** The fractional strategy's prediction at M and S percent (S applies to a disk). */
function atPercent(profile: Profile, m: number, options: PredictOptions, s = 0): Prediction {
  return predict(profile.memory, "fractional", { ...options, memoryPrecopy: m / 100, ...(profile.disk && { disk: { profile: profile.disk, precopy: s / 100 } }) });
}

/** Ternary search of an integer x in [lo, hi] maximising f (unimodal); ties go to the lower x. */
export function ternaryMax(lo: number, hi: number, f: (x: number) => number): number {
  while (hi - lo > 2) {
    const a = lo + Math.floor((hi - lo) / 3);
    const b = hi - Math.floor((hi - lo) / 3);
    if (f(a) >= f(b)) hi = b - 1;
    else lo = a + 1;
  }
  let best = lo;
  for (let x = lo + 1; x <= hi; x++) if (f(x) > f(best)) best = x;
  return best;
}

/** Whole percent in [0, 100] maximising f: the ternary search, and the ends (where f need not be unimodal). */
function bestPercent(f: (x: number) => number): number {
  return [ternaryMax(0, 100, f), 0, 100].reduce((a, b) => (f(b) > f(a) ? b : a));
}

/** Two-step ternary search of (M, S) on the predictor; a given `storagePrecopy` skips the first step. */
export function plan(profile: Profile, options: PredictOptions, fixedStorage?: number): Plan {
  const cache = new Map<string, Prediction>();
  const at = (m: number, s: number): Prediction => {
    const key = `${m} ${s}`;
    let p = cache.get(key);
    if (!p) cache.set(key, (p = atPercent(profile, m, options, s)));
    return p;
  };
  // Step 1: S with memory taken as copied at once, i.e. the disk migrated alone (the predictor's model of a memory, reads and all).
  const disk = profile.disk;
  const alone = new Map<number, number>();
  const storagePrecopy = fixedStorage ?? (disk
    ? bestPercent((s) => {
        if (!alone.has(s)) alone.set(s, predict(disk, "fractional", { ...options, memoryPrecopy: s / 100 }).gamma);
        return alone.get(s)!;
      })
    : 0);
  // Step 2: M with that S.
  const m = bestPercent((x) => at(x, storagePrecopy).gamma);
  return { memoryPrecopy: m, storagePrecopy, prediction: at(m, storagePrecopy), evaluations: cache.size + alone.size };
}

/** Every M (and, with a disk, every S) at `step` percent: the brute force the search is checked against. */
export function gridSearch(profile: Profile, options: PredictOptions, step = 5): Plan {
  let best: Plan | undefined;
  let evaluations = 0;
  for (let s = 0; s <= (profile.disk ? 100 : 0); s += step) {
    for (let m = 0; m <= 100; m += step) {
      const prediction = atPercent(profile, m, options, s);
      evaluations++;
      if (!best || prediction.gamma > best.prediction.gamma) best = { memoryPrecopy: m, storagePrecopy: s, prediction, evaluations: 0 };
    }
  }
  return { ...best!, evaluations };
}

// The planner (seed 001): the fractional hybrid-copy's (M, S) that maximises
// Γ on the predictor, by the paper's two steps: first S, the share of storage
// pre-copied, with memory taken as copied instantly; then M, the share of
// memory pre-copied (coldest pages by λ first), with that S. Each step is a
// ternary search over whole percent, which assumes Γ is unimodal in the
// share; `gridSearch` is the brute force it is checked against. Until
// storage lands a profile has no disk and S is 0.

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

/** The fractional strategy's prediction at M percent. */
function atPercent(profile: Profile, m: number, options: PredictOptions): Prediction {
  return predict(profile.memory, "fractional", { ...options, memoryPrecopy: m / 100 });
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

/** Two-step ternary search of (M, S) on the predictor. */
export function plan(profile: Profile, options: PredictOptions): Plan {
  const cache = new Map<number, Prediction>();
  const at = (m: number): Prediction => {
    let p = cache.get(m);
    if (!p) cache.set(m, (p = atPercent(profile, m, options)));
    return p;
  };
  // Step 1 (S with memory instant) has nothing to search without a disk.
  const storagePrecopy = profile.disk ? Number.NaN : 0;
  if (Number.isNaN(storagePrecopy)) throw new RangeError("disk profiles are not planned yet");
  // The ends are the fixed methods (post-copy; every page pre-copied once), where Γ need not be unimodal: checked too.
  const m = [ternaryMax(0, 100, (x) => at(x).gamma), 0, 100].reduce((a, b) => (at(b).gamma > at(a).gamma ? b : a));
  return { memoryPrecopy: m, storagePrecopy, prediction: at(m), evaluations: cache.size };
}

/** Every M at `step` percent: the brute force the search is checked against. */
export function gridSearch(profile: Profile, options: PredictOptions, step = 5): Plan {
  let best: Plan | undefined;
  let evaluations = 0;
  for (let m = 0; m <= 100; m += step) {
    const prediction = atPercent(profile, m, options);
    evaluations++;
    if (!best || prediction.gamma > best.prediction.gamma) best = { memoryPrecopy: m, storagePrecopy: 0, prediction, evaluations: 0 };
  }
  return { ...best!, evaluations };
}

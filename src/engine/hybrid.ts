// Hybrid pre/post-copy (seed 001's fractional hybrid-copy, in its memory-only
// form): pre-copy for `precopyRounds` rounds, or until `precopyBudget` bytes
// went out, whichever comes first (Xen's caps still apply); then stop the
// guest and switch to post-copy for the pages the destination does not hold
// current: those never sent and those dirtied since they were sent. Round 1
// sends zero pages as flags, so unlike pure post-copy no separate scan is
// needed.

import type { StopReason } from "./metrics.js";
import { switchToPostcopy } from "./postcopy.js";
import { runRounds } from "./precopy.js";
import type { Source } from "./source.js";
import { mirrorDisk } from "./storage.js";

export async function hybrid(s: Source): Promise<{ reason: StopReason; converged: boolean }> {
  const { precopyRounds, precopyBudget } = s.settings;
  // A disk is mirrored first for as many passes as memory has rounds (storage.ts).
  if (s.disk) await mirrorDisk(s, { downtimeRule: false, maxPasses: precopyRounds });
  const { reason, left } = await runRounds(s, { downtimeRule: false, maxRounds: precopyRounds, budget: precopyBudget, stopAtOnce: false });
  try {
    await switchToPostcopy(s, left);
  } finally {
    left.dispose();
  }
  return { reason, converged: true };
}

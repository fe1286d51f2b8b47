// A deadline for pre-copy (issue 12: migrations that never get stuck, as
// KubeVirt's do when pre-copy never converges). At each bandwidth period and
// round end, pre-copy's own projection (projectPrecopy: what is left
// shrinking by ρ = dirty rate / send rate each round) says when it would
// end. When that is past the deadline:
//   - by default, stop the rounds and post-copy what is left (the migration
//     then ends when the push does, the guest already at the destination);
//   - with noPostcopy (a destination that cannot demand-page), double the
//     downtime limit, each raise recorded, so pre-copy's own rule stops it
//     sooner with a longer downtime; never past what the pages left take
//     at the measured rate, which fits at once.

import type { DeadlineOutcome } from "./metrics.js";
import type { RoundCheck } from "./precopy.js";
import { projectPrecopy } from "./projection.js";
import type { Source } from "./source.js";

/** The rule for runRounds' switchWhen: a reason to switch to post-copy, or undefined. */
export function deadlineRule(s: Source, deadline: number): (check: RoundCheck) => string | undefined {
  const outcome: DeadlineOutcome = { deadline, raised: [] };
  s.setDeadline(outcome);
  return (c) => {
    if (!(c.sendRate > 0) || outcome.switchedAt !== undefined) return undefined;
    const now = s.elapsed();
    const end = now + projectPrecopy(c.left, c.dirtyRate, c.sendRate, s.downtimeLimit).seconds;
    if (end <= deadline) return undefined;
    const projected = Number.isFinite(end) ? `${end.toFixed(1)} s` : "never (ρ ≥ 1)";
    if (!s.settings.noPostcopy) {
      outcome.switchedAt = now;
      outcome.reason = `pre-copy projected to end ${projected}, past the ${deadline} s deadline`;
      return outcome.reason;
    }
    const all = c.left / c.sendRate;
    if (s.downtimeLimit < all) outcome.raised.push({ at: now, downtimeLimit: Math.min(all, s.downtimeLimit * 2) });
    return undefined;
  };
}

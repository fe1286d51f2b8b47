// Pre-copy's arithmetic, shared by the rules that watch a migration (Ada-copy,
// the deadline) and the progress line's ETA.

/**
 * Pre-copy's own arithmetic: each round sends what is left at `sendRate`
 * while `dirtyRate` dirties it again, so it shrinks by ρ = dirtyRate /
 * sendRate. The rounds (fractional) until `left` pages fit what `limit`
 * seconds carry, and the seconds to the end, stop-and-copy included; both
 * Infinity when ρ ≥ 1.
 */
export function projectPrecopy(left: number, dirtyRate: number, sendRate: number, limit: number): { rounds: number; seconds: number } {
  const target = sendRate * limit;
  if (left <= target) return { rounds: 0, seconds: left / sendRate };
  const rho = dirtyRate / sendRate;
  if (rho >= 1) return { rounds: Infinity, seconds: Infinity };
  if (rho <= 0) return { rounds: 1, seconds: left / sendRate };
  const rounds = Math.log(target / left) / Math.log(rho);
  return { rounds, seconds: ((left / sendRate) * (1 - rho ** Math.ceil(rounds))) / (1 - rho) + limit };
}

// Running one migration: a strategy over a Session, on whatever Clock and
// Channel the caller gives, followed by the end-of-migration check. Also the
// usual set-up for simulations: a fresh VirtualClock and a simulated link (or
// the loopback channel) between the two ends.

import type { Workload } from "../guest/guest.js";
import { SimulatedLink, type RateStep } from "../net/link.js";
import { LoopbackPair } from "../net/loopback.js";
import { VirtualClock } from "./clock.js";
import { hybrid } from "./hybrid.js";
import type { MigrationStats, StopReason, StrategyName } from "./metrics.js";
import { postcopy } from "./postcopy.js";
import { precopy } from "./precopy.js";
import { Session, type MigrationOptions } from "./session.js";
import { verifyMemory } from "./verify.js";

export type Strategy = (session: Session) => Promise<{ reason: StopReason; converged: boolean }>;

export const STRATEGIES: Readonly<Record<StrategyName, Strategy>> = { precopy, postcopy, hybrid };
export const STRATEGY_NAMES = Object.keys(STRATEGIES) as StrategyName[];

/**
 * Migrates `options.workload`'s guest with `strategy`, then checks that the
 * destination's memory equals the source's (VerificationError otherwise).
 * The workload is left where the migration left it (advanced, unthrottled).
 */
export async function migrate(strategy: StrategyName, options: MigrationOptions): Promise<MigrationStats> {
  const run = STRATEGIES[strategy];
  if (!run) throw new RangeError(`unknown strategy '${strategy}' (have: ${STRATEGY_NAMES.join(", ")})`);
  const session = new Session(strategy, options);
  try {
    const stats = await options.clock.run(async () => {
      session.spawn(session.receive());
      session.spawn(session.serveRequests());
      const { reason, converged } = await Promise.race([run(session), session.failed]);
      const stats = session.finalStats(reason, converged);
      session.src.close();
      session.dst.close();
      return stats;
    });
    stats.verifiedPages = verifyMemory(session.guest.memory, session.memory, session.pageSize);
    return stats;
  } finally {
    options.workload.throttle = 1;
    session.dispose();
  }
}

/** A link for a simulated migration. */
export interface LinkSpec {
  /** bit/s */
  readonly bitsPerSecond: number;
  /** seconds */
  readonly rtt: number;
  readonly schedule?: readonly RateStep[];
  /** "link" (SimulatedLink, default) or "loopback" (LoopbackPair: constant rate only). */
  readonly channel?: "link" | "loopback";
}

export type SimulationOptions = Omit<MigrationOptions, "workload" | "clock" | "source" | "destination">;

/** Migrates over a simulated link on a fresh virtual clock. */
export async function simulate(
  strategy: StrategyName,
  workload: Workload,
  link: LinkSpec,
  options: SimulationOptions = {},
): Promise<MigrationStats> {
  const clock = new VirtualClock();
  let ends: { a: SimulatedLink["a"]; b: SimulatedLink["b"] };
  if (link.channel === "loopback") {
    if (link.schedule?.length) throw new RangeError("the loopback channel has a constant rate: no schedule");
    ends = new LoopbackPair(clock, link);
  } else ends = new SimulatedLink(clock, link);
  const stats = await migrate(strategy, { ...options, workload, clock, source: ends.a, destination: ends.b });
  stats.bandwidth = link.bitsPerSecond;
  return stats;
}

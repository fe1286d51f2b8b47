// What the engine tests share: a CPU that costs nothing, the two usual
// links, a simulation that frees its guest afterwards, and a channel end
// whose frames a test sees.

import { CostModel, DEFAULT_COSTS, parseCostTable } from "../../src/codecs/cost.js";
import type { MigrationStats, StrategyName } from "../../src/engine/metrics.js";
import { simulate, type LinkSpec, type SimulationOptions } from "../../src/engine/migrate.js";
import type { Workload } from "../../src/guest/guest.js";
import type { Channel } from "../../src/net/channel.js";

/** CPU so fast it never matters: for cases whose answer is link time alone. */
const INSTANT = { encode: 1e18, decode: 1e18 };
export const FREE_CPU = new CostModel(
  parseCostTable({
    codecs: Object.fromEntries(Object.keys(DEFAULT_COSTS.codecs).map((name) => [name, INSTANT])),
    zeroScan: 1e18,
    hash: 1e18,
    fallback: INSTANT,
  }),
);
export const LAN: LinkSpec = { bitsPerSecond: 1e9, rtt: 0.001 };
export const WAN: LinkSpec = { bitsPerSecond: 40e6, rtt: 0.005 };

/** Simulates `strategy` on `workload`, then closes it and frees its guest. */
export async function run(strategy: StrategyName, workload: Workload, link: LinkSpec, options: SimulationOptions = {}): Promise<MigrationStats> {
  try {
    return await simulate(strategy, workload, link, options);
  } finally {
    await workload.close();
    workload.guest.dispose();
  }
}

/**
 * `end`, with `onSend` shown every frame sent on it before it goes (it may
 * change it, or return false to lose it). Only a plain channel's part is
 * passed on (no priority lane, no frame memory), so every frame goes
 * through send.
 */
export function tapped(end: Channel, onSend: (frame: Uint8Array) => boolean | void): Channel {
  return {
    send: (frame) => (onSend(frame) === false ? Promise.resolve() : end.send(frame)),
    receive: () => end.receive(),
    close: () => end.close(),
    get rtt() {
      return end.rtt;
    },
    get bitsPerSecond() {
      return end.bitsPerSecond;
    },
    get sentBytes() {
      return end.sentBytes;
    },
  };
}

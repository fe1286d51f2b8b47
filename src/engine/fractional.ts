// Fractional hybrid-copy (seed 001, memory part): pre-copy a chosen share of
// the pages once (the plan's M%, coldest by λ: src/adaptive/plan.ts), while
// the guest runs; then stop, switch over and post-copy the rest: the pages
// never pre-copied and those dirtied since they were sent. M = 0 is
// post-copy; M = 100% is hybrid with one round. A disk goes the same way
// with its own share S% (diskPrecopyBlocks, coldest first by write rate):
// those blocks are sent once first, the rest post-copied with the memory.

import { DirtyBitmap } from "../guest/bitmap.js";
import type { StopReason } from "./metrics.js";
import { postcopy, switchToPostcopy } from "./postcopy.js";
import { runRounds } from "./precopy.js";
import type { Source } from "./source.js";
import { precopyDiskShare } from "./storage.js";

export async function fractional(s: Source): Promise<{ reason: StopReason; converged: boolean }> {
  const pages = s.settings.precopyPages;
  if (!pages) throw new RangeError("the fractional strategy needs precopyPages: the pages to pre-copy (pagemill plan finds them)");
  if (s.disk?.settings.precopyBlocks?.length) await precopyDiskShare(s);
  if (pages.length === 0) return postcopy(s);
  const { reason, left } = await runRounds(s, { downtimeRule: false, maxRounds: 1, budget: Infinity, stopAtOnce: false, first: pages });
  const rest = new DirtyBitmap(s.settings.pageCount);
  try {
    rest.setRange();
    for (const p of pages) rest.clear(p);
    left.or(rest);
    await switchToPostcopy(s, left);
  } finally {
    rest.dispose();
    left.dispose();
  }
  return { reason, converged: true };
}

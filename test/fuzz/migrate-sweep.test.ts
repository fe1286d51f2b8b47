// Migrations swept over strategies × codecs × link speeds × recorded traces,
// each ended by the page-for-page check. Races between frames on the wire and
// the program at the destination depend on where frame boundaries fall in
// virtual time, which the codec (frame sizes) and the link speed move: one
// speed can pass where 733 Mbit/s loses a push frame. `npm test` runs the
// cases that once lost pages and a seeded sample of the space;
// `PAGEMILL_FUZZ=1` runs all of it on the whole traces. RTT 5 ms (the CLI's default).

import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type { StrategyName } from "../../src/engine/metrics.js";
import { simulate } from "../../src/engine/migrate.js";
import { TraceReplay } from "../../src/guest/workloads.js";
import { TRACE_NAMES, sharedAvailable, tracePath } from "../helpers/traces.js";
import { u32Stream } from "../helpers/random.js";

const FUZZ = Boolean(process.env.PAGEMILL_FUZZ);

type Variant = StrategyName | "precopy+auto-converge";
const VARIANTS: readonly Variant[] = ["precopy", "precopy+auto-converge", "postcopy", "hybrid"];
const CODECS = ["raw", "lz4", "mecom", "wkdm", "xbzrle", "xbzrle+lz4", "dedup+mecom"];
const BITS_PER_SECOND = [10e6, 100e6, 500e6, 733e6, 1e9, 2e9, 3.1e9, 10e9, 25e9];
const SAMPLE = new URL("../../data/redis-sample.ptrace.gz", import.meta.url).pathname;

interface Case {
  readonly trace: string;
  readonly variant: Variant;
  readonly codec: string;
  readonly bitsPerSecond: number;
}

function traces(): string[] {
  const shared = sharedAvailable() ? TRACE_NAMES.map(tracePath) : [];
  return existsSync(SAMPLE) ? [...shared, SAMPLE] : shared;
}

function label(c: Case): string {
  const name = c.trace.split("/").pop()!.replace(".ptrace.gz", "");
  return `${name} ${c.variant} ${c.codec} ${c.bitsPerSecond / 1e6} Mbit/s`;
}

/** Migrates the whole trace (played once) and returns the pages verified. */
async function migrateCase(c: Case): Promise<{ verified: number; pages: number }> {
  const workload = await TraceReplay.open(c.trace, { loop: false });
  try {
    const strategy = c.variant === "precopy+auto-converge" ? "precopy" : c.variant;
    const stats = await simulate(strategy, workload, { bitsPerSecond: c.bitsPerSecond, rtt: 0.005 }, {
      codec: c.codec,
      autoConverge: c.variant === "precopy+auto-converge",
    });
    expect(stats.remaining, label(c)).toBe(0);
    return { verified: stats.verifiedPages, pages: workload.guest.pageCount };
  } finally {
    await workload.close();
    workload.guest.dispose();
  }
}

function everyCase(): Case[] {
  const all: Case[] = [];
  for (const trace of traces())
    for (const variant of VARIANTS)
      for (const codec of CODECS) for (const bitsPerSecond of BITS_PER_SECOND) all.push({ trace, variant, codec, bitsPerSecond });
  return all;
}

/** A seeded sample of `count` cases (the same ones every run). */
function sample(count: number, seed: number): Case[] {
  const all = everyCase();
  const next = u32Stream(seed);
  const picked: Case[] = [];
  for (let i = 0; i < count && all.length; i++) picked.push(all.splice(next() % all.length, 1)[0]!);
  return picked;
}

describe("migration sweep: every page verified", () => {
  const memstream = sharedAvailable() ? tracePath("memstream") : "";
  // Each of these lost one 32-page push frame: the destination decoded a push
  // frame over a page the program had replaced whole, and the run ended
  // before the page states caught up with memory.
  const regressions: Case[] = [
    { trace: memstream, variant: "postcopy", codec: "mecom", bitsPerSecond: 1e9 },
    { trace: memstream, variant: "postcopy", codec: "lz4", bitsPerSecond: 10e9 },
  ];
  for (const c of regressions) {
    it.skipIf(!sharedAvailable())(`${label(c)} (once lost a push frame)`, async () => {
      const { verified, pages } = await migrateCase(c);
      expect(verified).toBe(pages);
    });
  }

  const cases = FUZZ ? everyCase() : sample(10, 0x5eed);
  it.skipIf(cases.length === 0)(`${cases.length} cases${FUZZ ? "" : " (seeded sample; PAGEMILL_FUZZ=1 runs all)"}`, async () => {
    const failed: string[] = [];
    for (const c of cases) {
      try {
        const { verified, pages } = await migrateCase(c);
        if (verified !== pages) failed.push(`${label(c)}: ${verified} of ${pages} pages verified`);
      } catch (err) {
        failed.push(`${label(c)}: ${(err as Error).message}`);
      }
    }
    expect(failed).toEqual([]);
  }, FUZZ ? 4 * 3600_000 : 300_000);
});

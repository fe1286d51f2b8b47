// Virtual-time results must not move when the code is reorganised: every
// `migrate --json` result of the cases below is recorded in
// test/golden/migrate.json (a few headline figures to read, plus a SHA-256 of
// the whole result with its keys sorted, wall time left out).
//
// `npm test` checks a subset (the bundled trace, every strategy, two
// pipelines); PAGEMILL_GOLDEN=all checks every shipped trace × strategy ×
// codec × bandwidth (a few minutes); PAGEMILL_GOLDEN=write re-records them all
// — only when a change is meant to alter results, and say so in the commit.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { migrateCli } from "./helpers/migrate.js";
import { SHARED, TRACE_NAMES, sharedAvailable } from "./helpers/traces.js";

const GOLDEN = fileURLToPath(new URL("./golden/migrate.json", import.meta.url));
const BUNDLED = fileURLToPath(new URL("../data/redis-sample.ptrace.gz", import.meta.url));
const MODE = process.env.PAGEMILL_GOLDEN ?? "";

const TRACES: Record<string, string> = {
  "redis-sample": BUNDLED,
  ...Object.fromEntries(TRACE_NAMES.map((name) => [name, `${SHARED}traces/${name}.ptrace.gz`])),
};
const CODECS = ["raw", "mecom", "xbzrle", "dedup+xbzrle+mecom"];
const BANDWIDTHS = ["40mbit", "200mbit"];
/** `--strategy all` (pre-copy, post-copy, hybrid), and pre-copy with auto-converge. */
const MODES: Record<string, string[]> = { all: ["--strategy", "all"], "auto-converge": ["--strategy", "precopy", "--auto-converge"] };

interface Case {
  key: string;
  args: string[];
}

function cases(): Case[] {
  const out: Case[] = [];
  for (const [trace, path] of Object.entries(TRACES))
    for (const codec of CODECS)
      for (const bandwidth of BANDWIDTHS)
        for (const [mode, modeArgs] of Object.entries(MODES))
          out.push({ key: `${trace} ${codec} ${bandwidth} ${mode}`, args: ["--trace", path, "--codec", codec, "--bandwidth", bandwidth, ...modeArgs, "--json"] });
  return out;
}

/** What `npm test` checks: the bundled trace, every strategy, the plain and the full pipeline. */
function quick(c: Case): boolean {
  return c.key.startsWith("redis-sample ") && c.key.includes(" 40mbit ") && (c.key.includes(" raw ") || c.key.includes(" dedup+xbzrle+mecom "));
}

/** JSON with object keys sorted, so a reordering of fields is not a change. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object")
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(",")}}`;
  return JSON.stringify(value);
}

interface Recorded {
  strategy: string;
  totalTime: number;
  downtime: number;
  transferred: number;
  verifiedPages: number;
  sha256: string;
}

async function record(args: string[]): Promise<Recorded[]> {
  const printed = JSON.parse(await migrateCli(args)) as Record<string, unknown> | Array<Record<string, unknown>>;
  // One strategy prints its result, several an array.
  return (Array.isArray(printed) ? printed : [printed]).map(({ wallSeconds: _wall, ...result }) => ({
    strategy: result.strategy as string,
    totalTime: result.totalTime as number,
    downtime: result.downtime as number,
    transferred: result.transferred as number,
    verifiedPages: result.verifiedPages as number,
    sha256: createHash("sha256").update(canonical(result)).digest("hex"),
  }));
}

const selected = cases().filter((c) => MODE === "all" || MODE === "write" || quick(c));

describe.skipIf(!existsSync(BUNDLED))("migrate --json matches the recorded results", () => {
  if (MODE === "write") {
    it("records every case", async () => {
      const golden: Record<string, Recorded[]> = {};
      expect(sharedAvailable(), "the shared traces, to record every case").toBe(true);
      for (const c of selected) golden[c.key] = await record(c.args);
      writeFileSync(GOLDEN, `${JSON.stringify(golden, null, 1)}\n`);
    }, 3_600_000);
    return;
  }
  const golden = JSON.parse(readFileSync(GOLDEN, "utf8")) as Record<string, Recorded[]>;
  it("records every case of the matrix", () => {
    expect(Object.keys(golden).sort()).toEqual(cases().map((c) => c.key).sort());
  });
  for (const c of selected)
    it.skipIf(!c.key.startsWith("redis-sample ") && !sharedAvailable())(c.key, async () => {
      expect(await record(c.args)).toEqual(golden[c.key]);
    }, 600_000);
});

// The codec pipeline built from a spec ("raw", "lz4", "dedup+xbzrle+mecom"):
// at most one codec per stage (dedup, delta, compress), named in the
// registry. Every caller that turns a spec into codecs — the engine's
// session, `pagemill pack`, the worker channels, `pagemill bench` — builds
// it here, and the CLI checks a spec here without making any codec.

import { codecEntry, codecNames, type CodecEntry } from "../codecs/registry.js";
import type { LinkConditions } from "../codecs/codec.js";
import type { PipelineCodecs } from "./frame.js";

/** A pipeline's stages, as built (any may be absent: pages go on to the next). */
export type PipelineStages = { -readonly [K in keyof PipelineCodecs]: PipelineCodecs[K] };

/**
 * The registry entries a spec names, in order, checked: every stage is a
 * registered codec, none is empty, no two serve one stage. "raw" names no
 * stage. A RangeError says what was wrong.
 */
export function pipelineEntries(spec: string): CodecEntry[] {
  const parts = spec.split("+").map((s) => s.trim());
  if (parts.some((s) => s === "")) throw new RangeError(`codec '${spec}' names an empty stage (say 'raw' for no codec)`);
  const entries: CodecEntry[] = [];
  for (const name of parts.filter((s) => s !== "raw")) {
    const entry = codecEntry(name);
    if (!entry) throw new RangeError(`unknown codec '${name}' (have: ${codecNames().join(", ") || "none"})`);
    if (entries.some((e) => e.role === entry.role)) throw new RangeError(`codec '${spec}' has two ${entry.role} stages`);
    entries.push(entry);
  }
  return entries;
}

/** Fresh codecs for the stages `spec` names (see pipelineEntries), told about the link when one is given. */
export function buildPipeline(spec: string, link?: LinkConditions): PipelineStages {
  const stages: PipelineStages = {};
  for (const entry of pipelineEntries(spec)) stages[entry.role] = entry.create();
  if (link) for (const codec of Object.values(stages)) codec?.setLink?.(link);
  return stages;
}

/** Frees every stage's codec. */
export function disposePipeline(stages: PipelineCodecs): void {
  for (const codec of Object.values(stages)) codec?.dispose();
}

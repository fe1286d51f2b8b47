// The codecs by name (the CLI's --codec choices) and by wire id (what a
// frame decoder needs for each page encoding). Each entry makes a fresh
// codec: codecs hold WebAssembly memory and, for XBZRLE and dedup, state.

import { Encoding, type PageCodec } from "./codec.js";

export interface CodecEntry {
  /** as the CLI spells it */
  readonly name: string;
  /** the wire id the codec produces (MECOM: its main one; it also uses others) */
  readonly encoding: Encoding;
  /** what it is for, one line */
  readonly summary: string;
  /** true when the codec also decodes pages of `encoding` (so a frame decoder may use it) */
  readonly decodes: boolean;
  create(): PageCodec;
}

const ENTRIES: CodecEntry[] = [];

/** The registered codecs' names, in registration order. */
export function codecNames(): string[] {
  return ENTRIES.map((e) => e.name);
}

/** The entry named `name`, or undefined. */
export function codecEntry(name: string): CodecEntry | undefined {
  return ENTRIES.find((e) => e.name === name);
}

/** A new codec named `name`; a RangeError names the choices when there is none. */
export function createCodec(name: string): PageCodec {
  const entry = codecEntry(name);
  if (!entry) throw new RangeError(`unknown codec '${name}' (have: ${codecNames().join(", ") || "none"})`);
  return entry.create();
}

/** A new codec that decodes pages of wire id `encoding`, or undefined when none is registered. */
export function decoderFor(encoding: Encoding): PageCodec | undefined {
  return ENTRIES.find((e) => e.decodes && e.encoding === encoding)?.create();
}


// The codecs by name (the CLI's --codec choices) and by wire id (what a
// frame decoder needs for each page encoding). Each entry makes a fresh
// codec: codecs hold WebAssembly memory and, for XBZRLE and dedup, state.

import { DedupCodec } from "./dedup.js";
import { AutoCodec } from "./auto.js";
import { Encoding, type PageCodec } from "./codec.js";
import { Lz4Codec } from "./lz4.js";
import { MecomCodec } from "./mecom.js";
import { WkdmCodec } from "./wkdm.js";
import { XbzrleCodec, type XbzrleCacheOptions } from "./xbzrle.js";

export interface CodecEntry {
  /** as the CLI spells it */
  readonly name: string;
  /** the wire id the codec produces (MECOM: its main one; it also uses others) */
  readonly encoding: Encoding;
  /** the pipeline stage it serves (src/wire/frame.ts PipelineCodecs) */
  readonly role: "compress" | "delta" | "dedup";
  /** what it is for, one line */
  readonly summary: string;
  /** true when the codec also decodes pages of `encoding` (so a frame decoder may use it) */
  readonly decodes: boolean;
  /** `xbzrle`: the cache's options (the delta codec's; others ignore them). */
  create(xbzrle?: XbzrleCacheOptions): PageCodec;
}

const ENTRIES: CodecEntry[] = [
  { name: "mecom", encoding: Encoding.LZ4, role: "compress", summary: "MECOM: zero / same-value / WKdm / LZ4 / raw chosen per page", decodes: false, create: () => new MecomCodec() },
  { name: "lz4", encoding: Encoding.LZ4, role: "compress", summary: "LZ4 block per page (general purpose)", decodes: true, create: () => new Lz4Codec() },
  { name: "auto", encoding: Encoding.LZ4, role: "compress", summary: "per batch raw, LZ4 or MECOM: whichever gets across this link first", decodes: false, create: () => new AutoCodec() },
  { name: "wkdm", encoding: Encoding.WKDM, role: "compress", summary: "WKdm 16-word dictionary (4 KiB pages only)", decodes: true, create: () => new WkdmCodec() },
  { name: "xbzrle", encoding: Encoding.XBZRLE, role: "delta", summary: "QEMU XBZRLE delta against a 64 MiB cache of pages sent", decodes: true, create: (xbzrle) => new XbzrleCodec(xbzrle) },
  { name: "dedup", encoding: Encoding.DEDUP, role: "dedup", summary: "references to pages the destination already holds", decodes: true, create: () => new DedupCodec() },
];

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

/** The names of the registered codecs serving `role`. */
export function codecNamesFor(role: CodecEntry["role"]): string[] {
  return ENTRIES.filter((e) => e.role === role).map((e) => e.name);
}

/** A new codec that decodes pages of wire id `encoding`, or undefined when none is registered. */
export function decoderFor(encoding: Encoding): PageCodec | undefined {
  return ENTRIES.find((e) => e.decodes && e.encoding === encoding)?.create();
}


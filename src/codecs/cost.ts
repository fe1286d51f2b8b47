// CPU time of the per-page work, in virtual time. A migration in virtual time
// must charge the encoder and decoder for their work, or a codec that
// compresses 10× would look free; charging what this machine happened to
// take would make results differ between machines and runs. So the charge
// comes from a table of throughputs (bytes of page input per second, one
// core): the default table below, or one measured on a machine by
// `pagemill bench --calibrate` and loaded with `--cost FILE`.

import { PagemillError } from "../errors.js";
import { readJsonFile } from "../files.js";

/** Throughput of one codec on one core, in bytes of raw page input per second. */
export interface CodecCost {
  readonly encode: number;
  readonly decode: number;
}

export interface CostTable {
  /** Where the figures come from ("default", or the host that measured them). */
  readonly source: string;
  /** Per codec name as the CLI spells it ("raw", "lz4", "mecom", ...). */
  readonly codecs: Readonly<Record<string, CodecCost>>;
  /** Zero-page scan, bytes/s. */
  readonly zeroScan: number;
  /** XXH3-64 digests of pages and blocks (disk dedup's index), bytes/s. */
  readonly hash: number;
  /**
   * Codecs missing from `codecs` are charged this. Every codec of the
   * registry has an entry (a table read from a file keeps the defaults it
   * does not give), so what reaches it is the destination's decode of wire
   * ids that name no codec: SAME_VALUE pages (MECOM's, WKdm's, auto's), at
   * the fallback's decode rate. `bench --calibrate` does not measure it.
   */
  readonly fallback: CodecCost;
}

/**
 * The default table: conservative round figures for one busy core of a
 * hypervisor host, of the order the LZ4, xxHash and QEMU projects report
 * for native code on memory pages (LZ4 ~0.6 GB/s compress, several GB/s
 * decompress; WKdm and MECOM, which classifies then runs WKdm or LZ4 per
 * page, below; an XBZRLE delta near memory speed; a copy or a zero check at
 * memory speed). pagemill's own kernels are faster than this on an idle
 * machine: `pagemill bench --calibrate` on the project's 2-core VM
 * (2026-11-23, trace pages) measured LZ4 4.4 / 14.8 GB/s, WKdm 0.94 / 1.2,
 * XBZRLE 7.4 / 13.2, zero scan 59 GB/s. The defaults keep runs comparable
 * across machines; calibrate for a prediction of one machine.
 */
export const DEFAULT_COSTS: CostTable = {
  source: "default",
  codecs: {
    raw: { encode: 8e9, decode: 8e9 },
    zero: { encode: 10e9, decode: 10e9 },
    lz4: { encode: 600e6, decode: 3e9 },
    wkdm: { encode: 500e6, decode: 700e6 },
    xbzrle: { encode: 3e9, decode: 4e9 },
    mecom: { encode: 400e6, decode: 600e6 },
    dedup: { encode: 2e9, decode: 8e9 },
  },
  zeroScan: 10e9,
  // XXH3-64 as native XXH3 runs on one core of this machine's kind (ours in `bench hash`).
  hash: 10e9,
  fallback: { encode: 500e6, decode: 1e9 },
};

/** Dedup's digests (src/engine/storage.ts), charged per byte digested, one core: MD5 as native MD5 runs (our kernel's own is measured in `bench storage`). */
export const MD5_BYTES_PER_SECOND = 600e6;

/** A cost file that cannot be used. */
export class CostTableError extends PagemillError {}

function positiveRate(where: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new CostTableError(`${where} must be a positive number of bytes per second, got ${JSON.stringify(value)}`);
  }
  return value;
}

function codecCost(where: string, value: unknown): CodecCost {
  if (typeof value !== "object" || value === null) throw new CostTableError(`${where} must be an object { encode, decode }`);
  const v = value as Record<string, unknown>;
  return { encode: positiveRate(`${where}.encode`, v.encode), decode: positiveRate(`${where}.decode`, v.decode) };
}

const COST_TABLE_FIELDS = ["source", "codecs", "zeroScan", "hash", "fallback"];

/**
 * Reads a cost table from parsed JSON, checking every field; figures it does
 * not give are taken from DEFAULT_COSTS.
 */
export function parseCostTable(json: unknown, name = "cost table"): CostTable {
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new CostTableError(`${name}: expected a JSON object`);
  const j = json as Record<string, unknown>;
  const unknown = Object.keys(j).filter((key) => !COST_TABLE_FIELDS.includes(key));
  if (unknown.length) throw new CostTableError(`${name}: unknown field '${unknown[0]}' (a cost table has ${COST_TABLE_FIELDS.join(", ")})`);
  const codecs: Record<string, CodecCost> = { ...DEFAULT_COSTS.codecs };
  if (j.codecs !== undefined) {
    if (typeof j.codecs !== "object" || j.codecs === null) throw new CostTableError(`${name}: codecs must be an object`);
    for (const [codec, cost] of Object.entries(j.codecs)) codecs[codec] = codecCost(`${name}: codecs.${codec}`, cost);
  }
  return {
    source: typeof j.source === "string" ? j.source : name,
    codecs,
    zeroScan: j.zeroScan === undefined ? DEFAULT_COSTS.zeroScan : positiveRate(`${name}: zeroScan`, j.zeroScan),
    hash: j.hash === undefined ? DEFAULT_COSTS.hash : positiveRate(`${name}: hash`, j.hash),
    fallback: j.fallback === undefined ? DEFAULT_COSTS.fallback : codecCost(`${name}: fallback`, j.fallback),
  };
}

/** Loads a cost table written by `pagemill bench --calibrate`. */
export function loadCostTable(path: string): CostTable {
  return parseCostTable(readJsonFile(path, "cost file", CostTableError), path);
}

/** Seconds of CPU the per-page work costs, from a table. */
export class CostModel {
  constructor(readonly table: CostTable = DEFAULT_COSTS) {}

  private codec(name: string): CodecCost {
    return this.table.codecs[name] ?? this.table.fallback;
  }

  encodeSeconds(codec: string, bytes: number): number {
    return bytes / this.codec(codec).encode;
  }

  decodeSeconds(codec: string, bytes: number): number {
    return bytes / this.codec(codec).decode;
  }

  zeroScanSeconds(bytes: number): number {
    return bytes / this.table.zeroScan;
  }

  hashSeconds(bytes: number): number {
    return bytes / this.table.hash;
  }
}

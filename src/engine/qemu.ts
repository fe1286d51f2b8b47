// QEMU's flavour of pre-copy, after migration/ram.c of QEMU 7.2 (the same
// in 8.x and 9.x where noted in docs/engines.md): what differs from Xen's is
// decided here and applied by runRounds (precopy.ts).
//   - No skip: every page of the migration bitmap goes when the scan reaches
//     it, even if dirtied again since the last sync.
//   - The dirty bitmap is synced (dirty-sync-count) once at setup, whenever
//     the bytes still to send fall below threshold = bandwidth measured over
//     the last 100 ms × downtime-limit, and once more after the stop. After
//     a sync, what is pending either still exceeds the threshold (another
//     iteration) or does not (stop and copy). There are no caps.
//   - auto-converge looks at most once a second, at a sync: the bytes
//     dirtied since the last look against throttle-trigger-threshold % of
//     the bytes transferred meanwhile, twice in a row
//     (migration_trigger_throttle).
//   - transferred counts what ram.c adds: per page an 8-byte offset+flags
//     header (plus the block's id string, length-prefixed, on the first page
//     sent from the block), then the page (normal) or one byte (zero page),
//     and an 8-byte end-of-section marker per ram_save_iterate call (one
//     each 100 ms rate-limit window).
//   - The scan resumes where it was after a sync and wraps to page 0 at the
//     end (ram.c's last_seen_block/last_page), instead of a fresh pass.
//   - XBZRLE (codec "xbzrle"): off until the scan first wraps (the first
//     pass is over), then a page sent
//     is looked up in QEMU's direct-mapped cache (policy "qemu" of
//     XbzrleCache: xbzrle-cache-size / page size slots, ages in dirty syncs):
//     a miss goes whole and is cached if its slot is free or stale; a hit is
//     encoded against the cached copy and goes as 8 + 1 + 2 + delta bytes,
//     as a whole page when the delta passes a page (overflow), or not at all
//     when unchanged. Zero pages replace their cached copy. In the
//     stop-and-copy (last_stage) hits are encoded, nothing is cached; in
//     post-copy XBZRLE is off.
//   - maxBandwidth (QEMU's max-bandwidth) limits pre-copy iterations only,
//     per bandwidth measurement period as QEMU's (frames cut to the window,
//     the pending bytes looked at once a window; a window is measured as a
//     ram_save_iterate call returns, and the first began with the migration
//     thread, before setup, so a setup longer than a window hides one
//     window's wait): QEMU lifts the limit for
//     the stop-and-copy, and post-copy runs at max-postcopy-bandwidth,
//     unlimited by default.

import { PagemillError } from "../errors.js";
import { readJsonFile } from "../files.js";

/** The id string of x86's main RAM block. */
export const QEMU_BLOCK_ID = "pc.ram";
/** be64 offset | flags before every page (save_page_header). */
export const PAGE_HEADER_BYTES = 8;
/** RAM_SAVE_FLAG_EOS at the end of each ram_save_iterate. */
export const EOS_BYTES = 8;
/** ENCODING_FLAG_XBZRLE and the be16 delta length after an XBZRLE page's header. */
export const XBZRLE_HEADER_BYTES = 3;
/** QEMU's dirty-rate and auto-converge period: at least a second between looks. */
export const THROTTLE_PERIOD = 1;
/** ram_save_iterate returns after this long (ram.c's MAX_WAIT, 50 ms) even when its rate-limit window's allowance is not spent. */
export const MAX_WAIT = 0.05;

/**
 * Bytes ram.c adds to transferred for `normal` pages sent whole and `zero`
 * zero pages of `pageSize` B, when `nameBlock` the first of them carries the
 * block's id string.
 */
export function qemuPageBytes(normal: number, zero: number, pageSize: number, nameBlock: boolean): number {
  const pages = normal + zero;
  if (pages === 0) return 0;
  return pages * PAGE_HEADER_BYTES + normal * pageSize + zero + (nameBlock ? 1 + QEMU_BLOCK_ID.length : 0);
}

/** Bytes ram.c adds for an XBZRLE delta of `length` bytes (save_xbzrle_page); an unchanged page (0) sends nothing. */
export function qemuDeltaBytes(length: number): number {
  return length === 0 ? 0 : PAGE_HEADER_BYTES + XBZRLE_HEADER_BYTES + length;
}

/**
 * What QEMU's own process took on the host a reference ran on, which ram.c's
 * rules do not say (bench/qemu/fit.py measures it from QEMU runs; none by
 * default: the migration thread is then free and setup and switch-over take
 * no time). All in seconds.
 */
export interface QemuHost {
  /** setup-time: from `migrate` to the first page, the guest running (dirty log start, bitmaps, the connection). */
  readonly setupTime: number;
  /** The migration thread's time per zero page while the guest runs (find it, test it, its header). */
  readonly zeroPageTime: number;
  /** The migration thread's time per page sent with content (whole or as a delta) while the guest runs. */
  readonly pageTime: number;
  /** The stop's fixed part, RAM aside: stopping the vCPUs, the last sync, saving the device state. */
  readonly switchoverTime: number;
}

/** A QEMU host description that cannot be used. */
export class QemuHostError extends PagemillError {}

const QEMU_HOST_FIELDS = ["setupTime", "zeroPageTime", "pageTime", "switchoverTime"] as const;

/** Reads a QemuHost from parsed JSON (fit.py's `host` object; other fields, such as how it was fitted, are left alone). */
export function parseQemuHost(json: unknown, name = "QEMU host"): QemuHost {
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new QemuHostError(`${name}: expected a JSON object`);
  const j = json as Record<string, unknown>;
  const host = typeof j.host === "object" && j.host !== null && !Array.isArray(j.host) ? (j.host as Record<string, unknown>) : j;
  const out: Record<string, number> = {};
  for (const field of QEMU_HOST_FIELDS) {
    const v = host[field];
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new QemuHostError(`${name}: ${field} must be a number of seconds ≥ 0, got ${JSON.stringify(v)}`);
    out[field] = v;
  }
  return out as unknown as QemuHost;
}

/** Loads a QemuHost written by bench/qemu/fit.py. */
export function loadQemuHost(path: string): QemuHost {
  return parseQemuHost(readJsonFile(path, "QEMU host file", QemuHostError), path);
}

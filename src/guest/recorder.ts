// Recording a running process (or a file) as a pagetrace, on Linux kernels
// without soft-dirty tracking: the pages are read again every interval and
// hashed, and the pages whose hash changed are written as XOR deltas.
// With a sweep of K, a pass reads a K-th of the pages in turn plus those that
// changed lately, so that a pass costs a fraction of a full one and the
// interval can be that much shorter: a hot page is seen at the interval, a
// cold page that changes within K passes. The image pass is then settled: the
// pages that changed while it ran are read again, and time 0 is then.
//
// A process: its writable private mappings from /proc/PID/maps ([vvar],
// [vsyscall] and the like skipped), fixed at the start and concatenated in
// address order, read through /proc/PID/mem in 8 MiB chunks; a page that
// cannot be read (unmapped since) reads as zero. A file: its pages at the
// start, read the same way (a short last page zero-padded). The target is
// never stopped, so a page's content is the one seen when the pass reached
// it, and an epoch's elapsedMicros is the start of its pass.

import { open, readFile, stat, type FileHandle } from "node:fs/promises";
import { PagemillError, checkPageSize } from "../errors.js";
import { xxh3Batch } from "../hash/xxhash.js";
import { PageBatch } from "../wasm/arena.js";
import { TraceWriter, type RegionKind, type TraceMeta, type TraceRegion } from "./pagetrace.js";
import { checkDistinct } from "../files.js";

/** Bytes read from the target per read call. */
const CHUNK_BYTES = 8 << 20;
/**
 * With a sweep, a page that changed is read every pass for this long after:
 * a hot set written about once a second stays read at the interval, a page
 * written once goes back to the sweep's turn.
 */
export const WARM_SECONDS = 10;
/** Pages read between two wanted ones rather than a second read call (a call costs more than a few pages' copy). */
const COALESCE_PAGES = 8;

export type RecordErrorCode = "no-process" | "permission" | "no-memory" | "no-mapping" | "too-large" | "not-a-file";

/** The target cannot be recorded; names it and why. */
export class RecordError extends PagemillError {
  constructor(
    readonly code: RecordErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Sent after each pass, awaited before the next one starts. */
export interface PassInfo {
  /** 0 for the image, then 1, 2, ... */
  epoch: number;
  elapsedMicros: number;
  /** Pages whose content changed (0 for the image). */
  dirty: number;
  /** Seconds the pass took. */
  seconds: number;
}

export interface RecordOptions {
  /** Seconds between the starts of two passes. */
  interval: number;
  /** Also record shared mappings of files on disk (--include-file-mappings); process targets only. */
  includeFileMappings?: boolean;
  /**
   * Only the mappings whose /proc/PID/maps name contains this (--mapping):
   * a VM's guest RAM alone (QEMU's memory-backend-memfd shows as
   * "/memfd:memory-backend-memfd (deleted)"), not the emulator's heap.
   */
  mapping?: string;
  /**
   * Each pass after the image reads one K-th of the pages in turn plus every
   * page that changed in the last WARM_SECONDS (--sweep K; 1, every page each
   * pass, by default).
   */
  sweep?: number;
  /** Seconds to record after the image (epochs = floor(duration / interval)). */
  duration: number;
  /** The pagetrace to write. */
  out: string;
  pageSize?: number;
  /** gzip level of the output (6 by default). */
  level?: number;
  /** Where epochs are spooled until the end (see TraceWriterOptions.spoolDir). */
  spoolDir?: string;
  /** Free text for meta.program (the command line by default). */
  program?: string;
  onPass?: (info: PassInfo) => void | Promise<void>;
}

export interface RecordResult {
  out: string;
  pages: number;
  epochs: number;
  /** Compressed size of the trace. */
  bytes: number;
  /** Pages hashed, over all passes. */
  pagesHashed: number;
  /** Seconds spent reading and hashing (not sleeping). */
  busySeconds: number;
  /** Pages that could not be read in some pass (read as zero). */
  unreadablePages: number;
  /** Set when the target went away before the end: what was kept. */
  endedEarly?: string;
}

interface Target {
  readonly label: string;
  readonly regions: TraceRegion[];
  readonly program: string;
  readonly method: string;
  /** Reads `length` bytes at target address `address` into `into`; returns bytes read (short or 0 when unreadable). */
  read(into: Uint8Array, length: number, address: number): Promise<number>;
  /** Why reading stopped making sense (the process exited), or undefined. */
  gone(): Promise<string | undefined>;
  close(): Promise<void>;
}

/**
 * What a shared mapping of /proc/PID/maps is, from its name: anonymous shared
 * memory shows as "/dev/zero (deleted)", "/SYSV<key> (deleted)" or
 * "[anon_shmem:...]"; memfd as "/memfd:<name> (deleted)"; POSIX shared memory
 * under /dev/shm; anything else is a file on disk.
 */
function sharedKind(name: string): RegionKind {
  if (name === "" || /^\/dev\/zero( \(deleted\))?$/.test(name) || /^\/SYSV[0-9a-f]{8}( \(deleted\))?$/.test(name) || name.startsWith("[anon_shmem")) return "shared-anonymous";
  if (name.startsWith("/memfd:") || name.startsWith("/dev/shm/")) return "shmem";
  return "file-shared";
}

/**
 * Parses /proc/PID/maps into the writable mappings worth recording: private
 * ones and shared memory (anonymous, SysV, memfd, /dev/shm), each with its
 * kind; shared mappings of files on disk only with `includeFileMappings`
 * (writing them is writing the file, not the program's memory).
 */
export function writableMappings(maps: string, pageSize: number, includeFileMappings = false): TraceRegion[] {
  const regions: TraceRegion[] = [];
  for (const line of maps.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+)\s+(\S{4})\s+\S+\s+\S+\s+\S+\s*(.*)$/.exec(line.trim());
    if (!m) continue;
    const [, lo, hi, perms, name] = m;
    // Readable and writable; the kernel's special pages are not the program's memory.
    if (perms![0] !== "r" || perms![1] !== "w") continue;
    if (/^\[(vvar|vvar_vclock|vsyscall|vdso)\]$/.test(name!)) continue;
    const kind: RegionKind = perms![3] === "p" ? "private" : sharedKind(name!);
    if (kind === "file-shared" && !includeFileMappings) continue;
    const start = parseInt(lo!, 16);
    const pages = (parseInt(hi!, 16) - start) / pageSize;
    if (pages > 0) regions.push({ start: `0x${lo}`, pages, perms: perms!, name: name!, kind });
  }
  return regions;
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException)?.code;
}

async function processTarget(pid: number): Promise<Omit<Target, "regions"> & { maps: string }> {
  if (!Number.isInteger(pid) || pid <= 0) throw new RangeError(`pid must be a positive integer, got ${pid}`);
  let maps: string;
  try {
    maps = await readFile(`/proc/${pid}/maps`, "utf8");
  } catch (err) {
    if (errno(err) === "ENOENT" || errno(err) === "ESRCH") throw new RecordError("no-process", `no process ${pid}`);
    if (errno(err) === "EACCES" || errno(err) === "EPERM") throw new RecordError("permission", `no permission to read the memory map of process ${pid} (run as its user or root)`);
    throw err;
  }
  let mem: FileHandle;
  try {
    mem = await open(`/proc/${pid}/mem`, "r");
  } catch (err) {
    if (errno(err) === "ENOENT" || errno(err) === "ESRCH") throw new RecordError("no-process", `no process ${pid}`);
    if (errno(err) === "EACCES" || errno(err) === "EPERM") {
      throw new RecordError("permission", `no permission to read /proc/${pid}/mem (run as its user or root; check kernel.yama.ptrace_scope)`);
    }
    throw err;
  }
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  const gone = async (): Promise<string | undefined> => {
    try {
      // Field 3 of stat is the state; a zombie has no memory left to read.
      const statLine = await readFile(`/proc/${pid}/stat`, "utf8");
      const state = statLine.slice(statLine.lastIndexOf(")") + 2, statLine.lastIndexOf(")") + 3);
      return state === "Z" || state === "X" ? `process ${pid} exited` : undefined;
    } catch {
      return `process ${pid} exited`;
    }
  };
  return {
    label: `process ${pid}`,
    maps,
    program: cmdline.split("\0").filter(Boolean).join(" ") || `pid ${pid}`,
    method: "xxh3 hash diff of /proc/PID/mem every intervalMicros (pagemill record)",
    async read(into, length, address) {
      try {
        const { bytesRead } = await mem.read(into, 0, length, address);
        return bytesRead;
      } catch (err) {
        if (errno(err) === "EIO" || errno(err) === "EFAULT" || errno(err) === "ESRCH") return 0;
        throw err;
      }
    },
    gone,
    close: () => mem.close(),
  };
}

async function fileTarget(path: string, pageSize: number): Promise<Target> {
  let size: number;
  let handle: FileHandle;
  try {
    const info = await stat(path);
    if (!info.isFile() && !info.isBlockDevice()) throw new RecordError("not-a-file", `${path} is not a regular file or block device`);
    handle = await open(path, "r");
    size = info.isFile() ? info.size : (await handle.stat()).size;
  } catch (err) {
    if (err instanceof RecordError) throw err;
    if (errno(err) === "ENOENT") throw new RecordError("not-a-file", `cannot record ${path}: no such file`);
    if (errno(err) === "EACCES" || errno(err) === "EPERM") throw new RecordError("permission", `cannot record ${path}: permission denied`);
    throw err;
  }
  const pages = Math.ceil(size / pageSize);
  return {
    label: path,
    regions: pages ? [{ start: "0x0", pages, perms: "rw-p", name: path }] : [],
    program: `file ${path}`,
    method: "xxh3 hash diff of the file every intervalMicros (pagemill record --file)",
    async read(into, length, address) {
      const { bytesRead } = await handle.read(into, 0, length, address);
      return bytesRead;
    },
    gone: async () => stat(path).then(
      () => undefined,
      () => `${path} was removed`,
    ),
    close: () => handle.close(),
  };
}

/** Records process `pid` into a pagetrace. */
export async function recordProcess(pid: number, options: RecordOptions): Promise<RecordResult> {
  const pageSize = options.pageSize ?? 4096;
  checkPageSize(pageSize);
  if (options.mapping === "") throw new RangeError("mapping must name part of a mapping's name, got an empty string");
  const target = await processTarget(pid);
  const writable = writableMappings(target.maps, pageSize, options.includeFileMappings);
  const regions = options.mapping === undefined ? writable : writable.filter((r) => (r.name ?? "").includes(options.mapping!));
  if (regions.length === 0 && writable.length > 0 && options.mapping !== undefined) {
    await target.close();
    const names = [...new Set(writable.map((r) => r.name || "(anonymous)"))];
    throw new RecordError(
      "no-mapping",
      `no writable mapping of process ${pid} has '${options.mapping}' in its name (its ${names.length} names: ${names.slice(0, 8).join(", ")}${names.length > 8 ? ", ..." : ""})`,
    );
  }
  if (regions.length === 0) {
    await target.close();
    throw new RecordError((await target.gone()) ? "no-process" : "no-memory", `process ${pid} has no writable memory to record${(await target.gone()) ? " (it exited)" : ""}`);
  }
  return record({ ...target, regions }, options, pageSize);
}

/** Records the file (or disk image) at `path` into a pagetrace. */
export async function recordFile(path: string, options: RecordOptions): Promise<RecordResult> {
  const pageSize = options.pageSize ?? 4096;
  checkPageSize(pageSize);
  await checkDistinct(options.out, [path]);
  return record(await fileTarget(path, pageSize), options, pageSize);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function record(target: Target, options: RecordOptions, pageSize: number): Promise<RecordResult> {
  const sweep = options.sweep ?? 1;
  if (!(options.interval > 0) || !(options.duration >= 0) || !Number.isInteger(sweep) || sweep < 1) {
    await target.close();
    throw new RangeError(`interval must be > 0, duration >= 0 and sweep a whole number >= 1, got ${options.interval}, ${options.duration} and ${sweep}`);
  }
  const pageCount = target.regions.reduce((sum, r) => sum + r.pages, 0);
  if (pageCount * pageSize > 2 ** 32) {
    await target.close();
    throw new RecordError("too-large", `${target.label} has ${pageCount} writable pages (more than 4 GiB): too large to record`);
  }
  const epochs = Math.floor(options.duration / options.interval + 1e-9);
  const chunkPages = CHUNK_BYTES / pageSize;
  const batch = new PageBatch(chunkPages, pageSize);
  const chunk = new Uint8Array(CHUNK_BYTES);
  const digests = new BigUint64Array(pageCount);
  const digestWords = new Uint32Array(digests.buffer);
  const fresh = new BigUint64Array(chunkPages);
  const freshWords = new Uint32Array(fresh.buffer);
  const image = new Uint8Array(pageCount * pageSize);
  /** Trace index of each region's first page. */
  const regionFirst: number[] = [];
  for (let first = 0, r = 0; r < target.regions.length; first += target.regions[r]!.pages, r++) regionFirst.push(first);
  /** With a sweep: the last pass that reads each page whatever its turn (it changed in the WARM_SECONDS before). */
  const warmUntil = sweep > 1 ? new Uint32Array(pageCount) : undefined;
  const warmPasses = Math.ceil(WARM_SECONDS / options.interval);
  const slicePages = Math.ceil(pageCount / sweep);
  let contents = new Uint8Array(0);
  let changed: number[] = [];
  const passTimes: number[] = [];
  let unreadable = 0;
  let pagesHashed = 0;
  let busy = 0;

  /** Reads a page range of the target into `into` (page-sized reads where a chunk fails); returns pages unreadable. */
  async function readRange(into: Uint8Array, address: number, pages: number): Promise<number> {
    const length = pages * pageSize;
    let got = await target.read(into, length, address);
    if (got === length) return 0;
    let missing = 0;
    for (let p = Math.floor(got / pageSize); p < pages; p++) {
      const page = into.subarray(p * pageSize, (p + 1) * pageSize);
      got = await target.read(page, pageSize, address + p * pageSize);
      if (got < pageSize) {
        page.fill(0, got);
        if (got === 0) missing++;
      }
    }
    return missing;
  }

  /**
   * Reads and hashes pages [first, first + count), in chunks within one
   * region: into the image (its pass and the settling), otherwise keeping
   * the pages whose hash changed (in ascending order when runs are).
   */
  async function scan(first: number, count: number, isImage: boolean, pass: number): Promise<void> {
    let r = 0;
    while (regionFirst[r]! + target.regions[r]!.pages <= first) r++;
    for (let page = first, end = first + count; page < end; ) {
      if (page >= regionFirst[r]! + target.regions[r]!.pages) r++;
      const region = target.regions[r]!;
      const n = Math.min(chunkPages, end - page, regionFirst[r]! + region.pages - page);
      const into = isImage ? image.subarray(page * pageSize, (page + n) * pageSize) : chunk;
      unreadable += await readRange(into, parseInt(region.start, 16) + (page - regionFirst[r]!) * pageSize, n);
      xxh3Batch(batch.set(into.subarray(0, n * pageSize)), { out: fresh });
      for (let k = 0; k < n; k++) {
        const w = 2 * (page + k);
        if (isImage || digestWords[w] !== freshWords[2 * k] || digestWords[w + 1] !== freshWords[2 * k + 1]) {
          digestWords[w] = freshWords[2 * k]!;
          digestWords[w + 1] = freshWords[2 * k + 1]!;
          if (isImage) continue;
          const kept = changed.length;
          if (contents.byteLength < (kept + 1) * pageSize) {
            const grown = new Uint8Array(Math.max((kept + 1) * pageSize, contents.byteLength * 2));
            grown.set(contents.subarray(0, kept * pageSize));
            contents = grown;
          }
          contents.set(chunk.subarray(k * pageSize, (k + 1) * pageSize), kept * pageSize);
          changed.push(page + k);
          if (warmUntil) warmUntil[page + k] = pass + warmPasses;
        }
      }
      pagesHashed += n;
      page += n;
    }
  }

  /** Ascending page ranges [start, end) as runs [first, count] to read, those closer than COALESCE_PAGES joined. */
  function joined(ranges: Iterable<[number, number]>): [number, number][] {
    const runs: [number, number][] = [];
    for (const [start, end] of ranges) {
      const last = runs[runs.length - 1];
      if (last && start <= last[0] + last[1] + COALESCE_PAGES) last[1] = Math.max(last[1], end - last[0]);
      else runs.push([start, end - start]);
    }
    return runs;
  }

  /** Pass `pass`'s ranges with a sweep: slice (pass - 1) mod K, and the warm pages. */
  function* swept(pass: number): Generator<[number, number]> {
    const from = ((pass - 1) % sweep) * slicePages;
    const to = Math.min(pageCount, from + slicePages);
    for (let p = 0; p < pageCount; p++) {
      if (p === from) {
        yield [from, to];
        p = to - 1;
      } else if (warmUntil![p]! >= pass) yield [p, p + 1];
    }
  }

  let writer: TraceWriter | undefined;
  let creating: Promise<TraceWriter> | undefined;
  let endedEarly: string | undefined;
  let written = 0;
  try {
    let start = performance.now();
    await scan(0, pageCount, true, 0);
    passTimes.push((performance.now() - start) / 1000);
    busy += passTimes[0]!;
    const settleSeconds: number[] = [];
    if (warmUntil) {
      // The image pass is slow (~1 s for 384 MiB on a busy machine): the pages
      // that changed meanwhile, found by a second full pass, are read again
      // at once and the trace starts then, so the image is close to one
      // moment's memory and those pages are warm from the first pass on.
      let began = performance.now();
      changed = [];
      await scan(0, pageCount, false, 0);
      const moving = changed;
      settleSeconds.push((performance.now() - began) / 1000);
      began = start = performance.now();
      for (const [first, count] of joined(moving.map((p) => [p, p + 1]))) await scan(first, count, true, 0);
      settleSeconds.push((performance.now() - began) / 1000);
      busy += settleSeconds[0]! + settleSeconds[1]!;
    }
    if (await target.gone()) throw new RecordError("no-process", `${target.label} exited before its memory could be read`);
    const meta: TraceMeta = {
      program: options.program ?? target.program,
      captured: new Date().toISOString().slice(0, 10),
      method: sweep > 1 ? `${target.method}, a ${sweep}th of the pages in turn and those changed in the last ${WARM_SECONDS} s each pass` : target.method,
      regions: target.regions,
    };
    // Spooling the image takes a while (1.4 s for 384 MiB): the passes keep
    // their times meanwhile, their epochs wait here, not the first pass.
    creating = TraceWriter.create(options.out, image, { pageSize, intervalMicros: Math.round(options.interval * 1e6), meta, level: options.level, spoolDir: options.spoolDir });
    let failed: unknown;
    creating.then(
      (made) => (writer = made),
      (err: unknown) => (failed = err),
    );
    const waiting: { elapsedMicros: number; pages: number[]; contents: Uint8Array }[] = [];
    await options.onPass?.({ epoch: 0, elapsedMicros: 0, dirty: 0, seconds: passTimes[0]! });
    for (let e = 1; e <= epochs; e++) {
      const due = start + e * options.interval * 1000;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      const began = performance.now();
      changed = [];
      for (const [first, count] of warmUntil ? joined(swept(e)) : [[0, pageCount]]) await scan(first!, count!, false, e);
      const seconds = (performance.now() - began) / 1000;
      busy += seconds;
      if (failed) throw failed;
      // A pass that raced the target's exit read zeros, not memory: drop it.
      const why = await target.gone();
      if (why) {
        endedEarly = `${why} during epoch ${e}; kept the image and ${e - 1} epoch${e === 2 ? "" : "s"}`;
        break;
      }
      const elapsedMicros = Math.round((began - start) * 1000);
      let dirty = changed.length;
      if (writer) {
        for (const w of waiting.splice(0)) await writer.epoch(w.elapsedMicros, w.pages, w.contents);
        dirty = await writer.epoch(elapsedMicros, changed, contents.subarray(0, changed.length * pageSize));
      } else waiting.push({ elapsedMicros, pages: changed, contents: contents.slice(0, changed.length * pageSize) });
      written = e;
      passTimes.push(seconds);
      await options.onPass?.({ epoch: e, elapsedMicros, dirty, seconds });
    }
    writer = await creating;
    for (const w of waiting.splice(0)) await writer.epoch(w.elapsedMicros, w.pages, w.contents);
    meta.recorder = { passSeconds: passTimes.map((t) => Number(t.toFixed(4))), sweep, settleSeconds, unreadablePages: unreadable, endedEarly: endedEarly ?? null };
    const { bytes } = await writer.close();
    return { out: options.out, pages: pageCount, epochs: written, bytes, pagesHashed, busySeconds: busy, unreadablePages: unreadable, endedEarly };
  } catch (err) {
    await (writer ?? (await creating?.catch(() => undefined)))?.abort();
    throw err;
  } finally {
    batch.dispose();
    await target.close().catch(() => undefined);
  }
}

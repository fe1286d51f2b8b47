// A migration between two processes: the Source in one, the Destination in
// the other, on the real clock, over any Channel (a TcpChannel in practice).
// Both ends are the same objects the simulation composes; what changes is
// what the destination can know:
//
// - The source's first frame is an INFO frame (MigrationInfo, JSON): the
//   guest's shape, the strategy, the options the destination needs, and how
//   to start the program for post-copy.
// - The switch-over record says where the guest stopped (its work time, the
//   wall clock), so downtime is measured across the two clocks.
// - The destination cannot read the source's memory to check pages against.
//   The source ends with a "done" frame holding a digest of its memory at
//   the stop. Pre-copy: the destination's memory must hash the same. After
//   post-copy the program has changed pages at the destination, so the
//   destination replays the program to the stop (it is deterministic: a
//   trace or a seeded model) before resuming it, hashes that replica's
//   memory, which must match the source's digest, and checks every arriving
//   page against the replica and its final memory against the program's.
// - A disk migrated with the memory (storage.ts) is described in INFO too,
//   and held, replayed and digested the same way, block for page.
// - The destination answers with an INFO frame of its own (DestinationReport)
//   and the source combines both ends' counters into the MigrationStats.

import { createHash, randomBytes } from "node:crypto";
import { RealClock, wallTime } from "../clock.js";
import { PagemillError, VerificationError } from "../errors.js";
import type { Workload } from "../guest/guest.js";
import { ChunkedPages } from "../guest/chunks.js";
import { FlatPages, asPageMemory, flatBytes, zeroPage, type PageMemory } from "../guest/pages.js";
import type { Channel } from "../net/channel.js";
import { FrameDecoder } from "../wire/decoder.js";
import { decodeSwitchover, encodeControl, encodeSwitchover } from "../wire/frame.js";
import { xxh3, xxh3Batch } from "../hash/xxhash.js";
import { PageBatch } from "../wasm/arena.js";
import { Destination, pendingStates, type DestinationDiskCounters, type SharedDisk, type SharedGuest } from "./destination.js";
import { DemandPagedProgram } from "./demand.js";
import type { WorkloadSpec } from "../guest/threaded.js";
import { checkDiskShape } from "../guest/disk.js";
import { diskStats } from "./storage.js";
import { SwitchoverView } from "./frozen.js";
import { combineStats, type DestinationCounters, type MigrationStats, type StrategyName, type TrafficCounters } from "./metrics.js";
import { STRATEGIES } from "./migrate.js";
import { normaliseOptions, type EngineOptions, type EngineSettings } from "./options.js";
import { Source } from "./source.js";
import { Tasks } from "./tasks.js";
import { verifyMemory } from "./verify.js";

/**
 * The migration's protocol over a channel (INFO's `protocol`). 3: before the
 * migration's time starts, a source whose destination runs the program asks
 * it to say when its replay has caught up with the guest (docs/tcp.md). 4:
 * after a post-copy switch-over a page may come twice (on the priority lane
 * and in the push), and the destination keeps the first; a version-3
 * destination would fail the migration on the second.
 */
export const REMOTE_PROTOCOL = 4;
/** Largest guest a receiver takes unless told otherwise (it holds the memory whole). */
export const DEFAULT_MAX_GUEST_BYTES = 4 * 2 ** 30;
/** Largest disk a receiver takes unless told otherwise. */
export const DEFAULT_MAX_DISK_BYTES = 4 * 2 ** 30;

/** The options of a migration that the destination needs too. */
const SHARED_OPTIONS = ["codec", "stateBytes", "batchPages", "prepageWindow", "faultQuantum"] as const;
type SharedOptions = Pick<EngineOptions, (typeof SHARED_OPTIONS)[number] | "diskDedup" | "prefetch" | "prefetchWindow">;

function sharedOptions(settings: EngineSettings): SharedOptions {
  const memory = Object.fromEntries(SHARED_OPTIONS.map((k) => [k, settings[k]]));
  const disk = settings.disk;
  return disk ? { ...memory, diskDedup: disk.dedup, prefetch: disk.prefetch, prefetchWindow: disk.prefetchWindow } : memory;
}

/** The source's first frame. */
export interface MigrationInfo {
  readonly protocol: number;
  readonly strategy: StrategyName;
  readonly pageSize: number;
  readonly pageCount: number;
  /** the XXH3 seed of the end check's digest (memoryDigest), a decimal u64 */
  readonly digestSeed: string;
  readonly options: SharedOptions;
  /** How the destination starts the program for post-copy (the CLI sends its workload options); opaque here. */
  readonly program?: unknown;
  /** The disk migrated with the memory, when there is one. */
  readonly disk?: { readonly blockSize: number; readonly blockCount: number };
}

/** The destination's last frame. */
export interface DestinationReport {
  readonly verified: boolean;
  /** why not, when not */
  readonly error?: string;
  readonly pages: number;
  /** wall clock (s since the epoch) when the program resumed, and when the last page was there */
  readonly resumeWallTime: number;
  readonly completeWallTime: number;
  /** wall clock when the source stopped the guest (from the switch-over record) */
  readonly stopWallTime: number;
  /**
   * Seconds the switch-over waited here for the program's replay (memory's
   * and the disk's) to reach the stop: how pagemill recreates the guest's
   * state at the destination, where a hypervisor loads the CPU and device
   * state (which the state bytes sent stand for). Left out of the downtime,
   * reported apart.
   */
  readonly replayWait: number;
  readonly counters: DestinationCounters;
  readonly traffic: TrafficCounters;
  /** with a disk: its counters here (MigrationStats.disk) */
  readonly diskCounters?: DestinationDiskCounters;
}

/** The guest's stop to its resume, on the wall clock both ends share, less the replay's wait (DestinationReport.replayWait). */
export function downtimeOf(report: DestinationReport): number {
  return report.resumeWallTime - report.stopWallTime - report.replayWait;
}

/**
 * How the done frame's digest is made: memoryDigest() of the memory, and
 * with a disk that of the disk (its blocks for pages) after it.
 */
const DIGEST_NAME = "xxh3pages+sha256";
const DIGEST_BYTES = 32;

/**
 * The digest both ends compare: SHA-256 over every page's XXH3-64 under
 * `seed` (the batch kernel). Hashing the memory itself with SHA-256 took
 * longer than sending it over loopback; this is a few percent of that. The
 * source picks a random seed each migration (in its INFO frame), so a page
 * differing at the two ends goes unseen only if its two contents share a
 * 64-bit XXH3 under that seed, which is not the seed dirty tracking by
 * hashing uses (0): a change that tracking missed is caught here.
 */
export function memoryDigest(memory: Uint8Array | PageMemory, pageSize: number, seed: bigint): Uint8Array {
  return combineDigests(pageDigests(memory, pageSize, seed));
}

/**
 * Every page's XXH3-64 under `seed`. A page the memory knows is all zero (a
 * sparse memory's unwritten pages) takes the zero page's digest without
 * being copied into WebAssembly memory and hashed: 30 -> 20 ms of CPU for
 * the receiver of the idle benchmark guest (256 MiB, 45% zero pages).
 * (Looking for zero pages in flat memory, a compare per page, cost more
 * than it saved: 30 -> 40 ms.)
 */
function pageDigests(memory: Uint8Array | PageMemory, pageSize: number, seed: bigint): BigUint64Array {
  const pages = asPageMemory(memory, pageSize);
  const zero = xxh3(zeroPage(pageSize), seed);
  const digests = new BigUint64Array(pages.pageCount);
  const batch = new PageBatch(DIGEST_PAGES, pageSize);
  const hashed = new Uint32Array(DIGEST_PAGES);
  const some = new BigUint64Array(DIGEST_PAGES);
  try {
    // Per page work only in the two helpers: a loop over the pages here made V8 compile this function
    // (OSR) with all it calls inlined, 25-45 ms at each end of an uncapped TCP migration (--trace-opt).
    for (let first = 0; first < pages.pageCount; first += DIGEST_PAGES) {
      const end = Math.min(first + DIGEST_PAGES, pages.pageCount);
      const n = notKnownZero(pages, first, end, hashed);
      if (n === end - first) {
        // None known zero (a flat memory's every page): hashed straight into place.
        xxh3Batch(batch.loadRange(pages, first, n), { seed, out: digests.subarray(first, end) });
        continue;
      }
      digests.fill(zero, first, end);
      if (n === 0) continue;
      const indices = hashed.subarray(0, n);
      xxh3Batch(batch.load(pages, indices), { seed, out: some.subarray(0, n) });
      placeDigests(digests, indices, some);
    }
  } finally {
    batch.dispose();
  }
  return digests;
}

/** Writes into `into` the pages of [first, end) that `pages` does not know to be zero; returns how many. */
function notKnownZero(pages: PageMemory, first: number, end: number, into: Uint32Array): number {
  let n = 0;
  for (let p = first; p < end; p++) if (!pages.isZero(p)) into[n++] = p;
  return n;
}

/** digests[indices[k]] = some[k] for each k. */
function placeDigests(digests: BigUint64Array, indices: Uint32Array, some: BigUint64Array): void {
  for (let k = 0; k < indices.length; k++) digests[indices[k]!] = some[k]!;
}
const DIGEST_PAGES = 256;

function combineDigests(digests: BigUint64Array): Uint8Array {
  return createHash("sha256").update(new Uint8Array(digests.buffer, digests.byteOffset, digests.byteLength)).digest();
}

/**
 * memoryDigest() of a guest as it was at the stop, taken while its program
 * runs on: a page's digest just before the program first changes it
 * (take), the rest at the end (they are unchanged). Hashing the whole
 * memory at the switch-over would add its time to the downtime.
 */
export class StopDigest {
  private readonly taken = new Map<number, bigint>();

  constructor(
    private readonly guest: { readonly memory: PageMemory; readonly pageSize: number },
    private readonly seed: bigint,
  ) {}

  /** The program is about to change page `p`. */
  take(p: number): void {
    if (!this.taken.has(p)) this.taken.set(p, xxh3(this.guest.memory.page(p), this.seed));
  }

  /** Page `p`'s digest under the seed, taken elsewhere (a program thread) before the program changed it. */
  took(p: number, digest: bigint): void {
    if (!this.taken.has(p)) this.taken.set(p, digest);
  }

  /** The digest, once the program has stopped changing pages it was not about to (the end). */
  finish(): Uint8Array {
    const digests = pageDigests(this.guest.memory, this.guest.pageSize, this.seed);
    for (const [p, digest] of this.taken) digests[p] = digest;
    return combineDigests(digests);
  }
}


export interface SendOptions extends EngineOptions {
  /** How the destination starts the program (and its disk), for strategies with a post-copy phase. */
  readonly program?: unknown;
  /** The program's disk, migrated with the memory. */
  readonly disk?: Workload;
}

/**
 * The source end: migrates `workload`'s guest with `strategy` over `channel`
 * to a receiveMigration() at the other end, on the real clock. Resolves with
 * both ends' figures once the destination has reported every page verified;
 * a VerificationError carries the destination's reason otherwise.
 */
export async function sendMigration(strategy: StrategyName, workload: Workload, channel: Channel, options: SendOptions = {}): Promise<MigrationStats> {
  const run = STRATEGIES[strategy];
  if (!run) throw new RangeError(`unknown strategy '${strategy}' (have: ${Object.keys(STRATEGIES).join(", ")})`);
  const { disk } = options;
  const settings = normaliseOptions(options, workload.guest, disk?.guest);
  const clock = new RealClock();
  const tasks = new Tasks();
  const source = new Source({ settings, workload, clock, channel, tasks, remote: true, disk });
  try {
    const digestSeed = randomBytes(8).readBigUInt64LE();
    const info: MigrationInfo = {
      protocol: REMOTE_PROTOCOL,
      strategy,
      pageSize: settings.pageSize,
      pageCount: settings.pageCount,
      digestSeed: digestSeed.toString(),
      options: sharedOptions(settings),
      program: options.program,
      ...(settings.disk && { disk: { blockSize: settings.disk.blockSize, blockCount: settings.disk.blockCount } }),
    };
    await source.sendControl({ type: "info", json: JSON.stringify(info) });
    // The destination answers once it can take the migration (its program started): the guest
    // must not stop here while the destination is still getting ready.
    const ready = await peerAnswer(channel);
    if (ready.ready !== true) throw new VerificationError(`the destination did not verify the migration: ${ready.error ?? "it is not ready"}`, []);
    // The guest has run since before the connection. A destination that runs the program replays that
    // far before the migration's time starts (node-gc: 0.55 s of it, 60-100 ms of a thread, which
    // otherwise ran beside a post-copy's switch-over record); pre-copy's runs none.
    if (strategy === "precopy") await source.sendProgress();
    else await catchUp(source, channel, settings.bandwidthPeriod);
    // The migration's time starts here, as QEMU's starts at `migrate` with the destination already listening.
    const startWall = wallTime();
    // (A program on the real clock may still be in a step: where its clock is, not where the step got to.)
    const guestStartTime = workload.clockTime?.() ?? workload.now;
    // The destination's report ends the connection from its side; a failed one ends the migration at once.
    const reported = source.serveRequests().then(() => {
      if (source.peerInfo === undefined) throw new PagemillError("the destination closed the connection without reporting");
      const report = JSON.parse(source.peerInfo) as DestinationReport;
      if (!report.verified) throw new VerificationError(`the destination did not verify the migration: ${report.error ?? "no reason given"}`, []);
      return report;
    });
    tasks.spawn(reported);
    const { reason, converged } = await Promise.race([run(source), tasks.failed]);
    // The source has sent everything: the migration ends here or when the destination holds every page,
    // as QEMU's total-time does, not once the end check's digests are made and the report is back
    // (100-120 ms of node-gc's post-copy that the emulation, which checks nothing, does not have).
    const sentWall = wallTime();
    // Nothing writes the source's memory (or disk) after the stop: this is it at switch-over.
    const digests = [memoryDigest(workload.guest.memory, settings.pageSize, digestSeed)];
    if (disk) digests.push(memoryDigest(disk.guest.memory, disk.guest.pageSize, digestSeed));
    await source.sendControl({ type: "done", memoryBytes: workload.guest.memory.byteLength, digestName: DIGEST_NAME, digest: Buffer.concat(digests) });
    channel.close();
    const report = await Promise.race([reported, tasks.failed]);
    const end = Math.max(report.completeWallTime, sentWall);
    const stats = combineStats(
      {
        strategy,
        codec: settings.codec,
        converged,
        stopReason: reason,
        totalTime: end - startWall,
        downtime: downtimeOf(report),
        remoteUptime: strategy === "precopy" ? 0 : report.completeWallTime - report.resumeWallTime,
        total: settings.pageCount * settings.pageSize,
        pageSize: settings.pageSize,
        remaining: 0,
        stateBytes: settings.stateBytes,
        rtt: channel.rtt,
      },
      source.counters,
      report.counters,
      [source.traffic, report.traffic],
      source.pipeline.report(settings.pageSize),
    );
    stats.verifiedPages = report.pages;
    if (source.disk) stats.disk = diskStats(source.disk.stats, report.diskCounters!, source.disk.settings.blockCount);
    stats.bandwidth = channel.bitsPerSecond ?? 0;
    stats.guestStartTime = guestStartTime;
    return stats;
  } finally {
    workload.throttle = 1;
    if (disk) disk.throttle = 1;
    source.dispose();
  }
}

export interface ReceiveOptions {
  /**
   * Starts the program named by the source's `program` (a fresh copy, at its
   * start), for strategies with a post-copy phase. Without it only pre-copy
   * is accepted.
   */
  readonly startProgram?: (program: unknown, info: MigrationInfo) => Promise<Workload>;
  /**
   * Runs the program in a worker thread with real demand paging instead
   * (./demand.ts): where the thread finds the function that opens it, for
   * the program `program` names. Taken over startProgram when given, except
   * with a disk (its program runs here, with the memory's, in quanta).
   */
  readonly programThread?: (program: unknown, info: MigrationInfo) => WorkloadSpec;
  /** Starts the program's disk as `program` names it (fresh, at its start), for a disk migrated with a post-copy phase. */
  readonly startDisk?: (program: unknown, info: MigrationInfo) => Promise<Workload>;
  /** Largest guest accepted, bytes (default 4 GiB). */
  readonly maxGuestBytes?: number;
  /**
   * Seconds this end may spend, before it answers that it is ready (so
   * before the migration's time starts at the source), mapping the memory
   * the pages will land in: every page touched once, so none faults as it
   * arrives (QEMU's -mem-prealloc at a destination). The whole guest is
   * mapped, its zero pages too. Absent: memory is mapped as pages arrive.
   * Not with a program thread (its memory is written when it opens).
   */
  readonly prealloc?: number;
  /** Largest disk accepted, bytes (default 4 GiB, the most DEFAULT_MAX_DISK_BYTES: a receiver holds it whole to write it out). */
  readonly maxDiskBytes?: number;
}

export interface ReceiveResult {
  readonly info: MigrationInfo;
  readonly report: DestinationReport;
  /** the migrated memory, verified, as the destination holds it (sparse: zero pages take no memory) */
  readonly pages: PageMemory;
  /**
   * The same memory flat, copied out of `pages` on first read: a receiver
   * that keeps the pages does not pay for the copy (for a 256 MiB guest it
   * was a third of the receiving process's CPU over an uncapped migration).
   */
  readonly memory: Uint8Array;
  /** the migrated disk, verified, when there was one */
  readonly disk?: Uint8Array;
  /** with ReceiveOptions.prealloc: the bytes of memory mapped before the answer, the seconds it took, and the CPU seconds (this process's, every thread) */
  readonly prealloc?: { readonly bytes: number; readonly seconds: number; readonly cpuSeconds: number };
}

function readInfo(json: string, options: ReceiveOptions): MigrationInfo {
  const { maxGuestBytes = DEFAULT_MAX_GUEST_BYTES, maxDiskBytes = DEFAULT_MAX_DISK_BYTES } = options;
  let info: MigrationInfo;
  try {
    info = JSON.parse(json) as MigrationInfo;
  } catch {
    throw new PagemillError("the source's first frame is not a migration description (bad JSON)");
  }
  const fail = (what: string): never => {
    throw new PagemillError(`the source's migration description: ${what}`);
  };
  if (typeof info !== "object" || info === null) fail("not an object");
  if (info.protocol !== REMOTE_PROTOCOL) fail(`protocol ${String(info.protocol)} is not ${REMOTE_PROTOCOL}`);
  if (!Object.hasOwn(STRATEGIES, info.strategy)) fail(`unknown strategy '${String(info.strategy)}'`);
  const { pageSize, pageCount } = info;
  if (!(Number.isInteger(pageSize) && pageSize >= 512 && pageSize <= 65536 && (pageSize & (pageSize - 1)) === 0)) fail(`page size ${String(pageSize)} is not a power of two 512..65536`);
  if (!(Number.isInteger(pageCount) && pageCount >= 1)) fail(`page count ${String(pageCount)} is not a positive integer`);
  if (pageSize * pageCount > maxGuestBytes) fail(`a guest of ${pageSize * pageCount} bytes is larger than this receiver takes (${maxGuestBytes})`);
  if (typeof info.options !== "object" || info.options === null) fail("options missing");
  if (!(typeof info.digestSeed === "string" && /^\d{1,20}$/.test(info.digestSeed) && BigInt(info.digestSeed) < 2n ** 64n)) fail(`digest seed ${JSON.stringify(info.digestSeed)} is not a u64 in decimal`);
  if (info.disk !== undefined) {
    if (typeof info.disk !== "object" || info.disk === null) fail("the disk's description is not an object");
    const { blockSize, blockCount } = info.disk;
    try {
      checkDiskShape(blockCount, blockSize);
    } catch (err) {
      fail(`the disk: ${(err as Error).message}`);
    }
    if (blockSize * blockCount > maxDiskBytes) fail(`a disk of ${blockSize * blockCount} bytes is larger than this receiver takes (${maxDiskBytes})`);
  }
  return info;
}

/** Runs `program` until it has worked `guestTime` seconds (no further: the source's guest stopped there or later). */
async function replayTo(program: Workload, guestTime: number): Promise<void> {
  if (guestTime > program.workTime) await program.advance(program.now + (guestTime - program.workTime));
}

/** What the destination runs: the program (and its disk) for strategies with a post-copy phase. */
interface Accepted {
  readonly info: MigrationInfo;
  readonly settings: EngineSettings;
  readonly program?: Workload;
  readonly thread?: DemandPagedProgram;
  readonly diskProgram?: Workload;
}

/** Reads the source's description and starts the program it names, when the strategy runs one here. */
async function accept(first: Uint8Array, options: ReceiveOptions): Promise<Accepted> {
  const greeter = new FrameDecoder();
  let info: MigrationInfo;
  try {
    const frame = greeter.decode(first);
    if (frame.type !== "info") throw new PagemillError(`the source's first frame is a ${frame.type} frame, not its migration description`);
    info = readInfo(frame.json, options);
  } finally {
    greeter.dispose();
  }
  const diskShape = info.disk && { pageSize: info.disk.blockSize, pageCount: info.disk.blockCount };
  const settings = normaliseOptions(info.options, info, diskShape);
  if (info.strategy === "precopy") return { info, settings };
  if (options.programThread && !diskShape) {
    return { info, settings, thread: await DemandPagedProgram.start(options.programThread(info.program, info), info, BigInt(info.digestSeed)) };
  }
  if (!options.startProgram) throw new PagemillError(`a ${info.strategy} migration runs the program here, and this receiver cannot start one`);
  if (diskShape && !options.startDisk) throw new PagemillError(`a ${info.strategy} migration with a disk runs the program's disk here, and this receiver cannot start one`);
  const program = await options.startProgram(info.program, info);
  checkShape("program", program, info);
  const diskProgram = diskShape && (await options.startDisk!(info.program, info));
  if (diskProgram) checkShape("program's disk", diskProgram, diskShape);
  return { info, settings, program, diskProgram };
}

function checkShape(what: string, started: Workload, expected: { pageSize: number; pageCount: number }): void {
  const { pageSize, pageCount } = started.guest;
  if (pageSize !== expected.pageSize || pageCount !== expected.pageCount) {
    throw new PagemillError(`the ${what} started here has ${pageCount} pages of ${pageSize} B, the source's ${expected.pageCount} of ${expected.pageSize}`);
  }
}

/** What the destination answers before the migration's time starts: ready (or why it refused), and how far its program replayed. */
interface PeerAnswer {
  readonly ready?: boolean;
  readonly error?: string;
  readonly replayed?: number;
}

/** The destination's next frame, an answer (INFO) before the migration's time starts. */
async function peerAnswer(channel: Channel): Promise<PeerAnswer> {
  const bytes = await channel.receive();
  if (!bytes) throw new PagemillError("the destination closed the connection without answering the migration's description");
  const decoder = new FrameDecoder();
  try {
    const frame = decoder.decode(bytes);
    if (frame.type !== "info") throw new PagemillError(`the destination answered with a ${frame.type} frame, not an INFO frame`);
    return JSON.parse(frame.json) as PeerAnswer;
  } finally {
    decoder.dispose();
  }
}

/**
 * Tells the destination how far the guest has run and waits until its
 * program has replayed that far; again while the guest ran on more than
 * `period` meanwhile (at most 4 times): the replay of what is left then
 * fits within the first period, as it does every period after.
 */
async function catchUp(source: Source, channel: Channel, period: number): Promise<void> {
  for (let k = 0; k < 4; k++) {
    const from = source.workload.workTime;
    await source.sendProgress(true);
    const answer = await peerAnswer(channel);
    if (typeof answer.replayed !== "number") throw new PagemillError("the destination answered the guest's time without saying how far it replayed");
    if (source.workload.workTime - from <= period) return;
  }
}

/** Tells the source whether this end can take the migration. */
async function answer(channel: Channel, json: object): Promise<void> {
  await channel.send(encodeControl({ type: "info", json: JSON.stringify(json) }, 0));
}

/**
 * The destination end: receives one migration on `channel` (the source's
 * sendMigration), verifies it, reports to the source, and returns the memory.
 * Throws (after telling the source why) when the migration cannot be
 * verified; nothing is returned then.
 */
export async function receiveMigration(channel: Channel, options: ReceiveOptions = {}): Promise<ReceiveResult> {
  const first = await channel.receive();
  if (!first) throw new PagemillError("the source closed the connection before describing the migration");
  let accepted: Accepted;
  try {
    accepted = await accept(first, options);
  } catch (error) {
    // The source hears why, instead of waiting for an answer that never comes.
    await answer(channel, { ready: false, error: (error as Error).message }).catch(() => {});
    channel.close();
    throw error;
  }
  const { info, settings, program, thread, diskProgram } = accepted;
  // The memory pages land in (a program thread's is its own, already written); mapped ahead with prealloc.
  const landing = thread ? undefined : new ChunkedPages(settings.pageCount, settings.pageSize);
  const prealloc = preallocate(landing, options.prealloc);
  rehearseSwitchover(settings.pageCount);
  await answer(channel, { ready: true });
  const clock = new RealClock();
  // Times on this clock, as wall-clock times: the source's are wall-clock too.
  const wallOrigin = wallTime() - clock.now();
  const wallAt = (t: number): number => wallOrigin + t;
  const tasks = new Tasks();
  const seed = BigInt(info.digestSeed);
  const memory = program ? new Replica(program, seed) : thread && new ThreadReplica(thread, settings.pageSize, seed);
  const disk = diskProgram && new Replica(diskProgram, seed);
  const destination = new Destination({
    settings,
    clock,
    channel,
    tasks,
    ...(landing && { memory: landing }),
    shared: {
      ...(memory?.shared() ?? NO_PROGRAM),
      progress: (json) => {
        // The replicas follow the source's guest while pre-copy runs, never past where it has been.
        const { guestTime, diskTime, answer } = JSON.parse(json) as { guestTime?: unknown; diskTime?: unknown; answer?: unknown };
        const replayed = Promise.all([memory?.follow(guestTime), disk?.follow(diskTime)]);
        // Before the migration's time starts, the source waits for this (a failed replay surfaces at the switch-over).
        if (answer === true) void replayed.then(() => destination.sendInfo(JSON.stringify({ replayed: guestTime })).catch(() => {}));
      },
    },
    disk: info.disk && (disk?.shared() ?? NO_PROGRAM),
  });
  // Pre-copy: what is here is final once the guest would resume (the destination refuses pages after
  // that), so it is hashed then, while the source hashes its own, not after the source's digest came.
  const received = memory
    ? undefined
    : destination.resumed.then(() => ({
        memory: memoryDigest(destination.memory, settings.pageSize, seed),
        disk: info.disk && memoryDigest(destination.diskMemory!, info.disk.blockSize, seed),
      }));
  try {
    let error: string | undefined;
    try {
      await Promise.race([destination.receive(), tasks.failed]);
      error = await verify();
    } catch (err) {
      // The source hears why before the connection closes.
      error = (err as Error).message;
    }
    const report: DestinationReport = {
      verified: error === undefined,
      ...(error === undefined ? {} : { error }),
      pages: error === undefined ? settings.pageCount : 0,
      // A program thread says when it ran again: after the destination let it, once it had a core.
      resumeWallTime: thread?.resumedWallTime ?? wallAt(destination.resumeAt),
      completeWallTime: wallAt(destination.completeAt),
      stopWallTime: destination.stop?.wallTime ?? wallAt(destination.resumeAt),
      replayWait: (memory?.replayWait ?? 0) + (disk?.replayWait ?? 0),
      counters: { ...destination.counters, workloadSlowdown: destination.slowdown(destination.completeAt) },
      traffic: destination.traffic,
      ...(info.disk && { diskCounters: destination.diskCounters }),
    };
    await destination.sendInfo(JSON.stringify(report)).catch(() => {});
    channel.close();
    if (error !== undefined) throw new VerificationError(`the migration did not verify: ${error}`, []);
    // With a program thread, what it ran on is the migrated memory (its pages were checked on arrival and first change).
    const pages = thread ? new FlatPages(thread.memory, settings.pageSize) : destination.memory;
    let flat: Uint8Array | undefined;
    return {
      info,
      report,
      pages,
      get memory() {
        return (flat ??= flatBytes(pages));
      },
      ...(destination.diskMemory && { disk: flatBytes(destination.diskMemory) }),
      ...(prealloc && { prealloc }),
    };
  } finally {
    destination.dispose();
    await thread?.close();
  }

  /** Why the memory (or disk) here is not the source's, or undefined when it is. */
  async function verify(): Promise<string | undefined> {
    if (!destination.complete) return `the source closed the connection with ${destination.missingPages} page(s) not sent`;
    const digest = destination.sourceDigest;
    const parts = info.disk ? 2 : 1;
    if (!digest || digest.name !== DIGEST_NAME || digest.digest.byteLength !== parts * DIGEST_BYTES) return `the source sent no digest of its memory${info.disk ? " and disk" : ""} (${DIGEST_NAME})`;
    const theirs = (k: number): Buffer => Buffer.from(digest.digest.buffer, digest.digest.byteOffset + k * DIGEST_BYTES, DIGEST_BYTES);
    const here = await received;
    const ours = memory ? await memory.digest() : here!.memory;
    if (!theirs(0).equals(ours)) {
      return memory ? "the program replayed here does not reach the source's memory at the stop" : "the memory received does not hash as the source's";
    }
    if (info.disk) {
      const oursDisk = disk ? await disk.digest() : here!.disk!;
      if (!theirs(1).equals(oursDisk)) {
        return disk ? "the program's disk replayed here does not reach the source's disk at the stop" : "the disk received does not hash as the source's";
      }
    }
    if (program) verifyMemory(program.guest.memory, destination.memory, settings.pageSize);
    if (diskProgram) verifyMemory(diskProgram.guest.memory, destination.diskMemory!, info.disk!.blockSize, "disk block");
    return undefined;
  }
}

/**
 * Decodes a switch-over frame of no consequence and sets scratch page
 * states from it, before the migration's time starts. Inside the downtime
 * this code runs for the first time in the process, and a first run is
 * slow (V8 looks up each property access and call afresh until it has
 * feedback): the frame's decoding and the page states took 0.27-0.35 ms
 * for 3072 pages on a first run, 0.17-0.2 after one (14988 pages: 0.85,
 * 0.23-0.3).
 */
function rehearseSwitchover(pageCount: number): void {
  const decoder = new FrameDecoder();
  try {
    const record = encodeSwitchover({ state: new Uint8Array(0), pending: new BigUint64Array(Math.ceil(pageCount / 64)), stop: { guestTime: 0, wallTime: 0 } }, pageCount);
    const frame = decoder.decode(encodeControl({ type: "switch-over", state: record }, 0), undefined, { tagged: true });
    if (frame.type === "switch-over") pendingStates(new Uint8Array(pageCount), decodeSwitchover(frame.state, pageCount).pending, new Set());
  } finally {
    decoder.dispose();
  }
}

/**
 * ReceiveOptions.prealloc: maps `memory` for every page before the
 * destination answers that it is ready, for at most `seconds`.
 */
function preallocate(memory: ChunkedPages | undefined, seconds: number | undefined): ReceiveResult["prealloc"] {
  if (!memory || seconds === undefined) return undefined;
  const started = performance.now();
  const cpu = process.cpuUsage();
  const bytes = memory.prefault(started + seconds * 1000);
  const spent = process.cpuUsage(cpu);
  return { bytes, seconds: (performance.now() - started) / 1000, cpuSeconds: (spent.user + spent.system) / 1e6 };
}

/** Pre-copy runs no program here: nothing asks for the source's switch-over content. */
const NO_PROGRAM: Pick<SharedGuest, "original" | "preserve" | "release"> = {
  original: noProgram,
  preserve: noProgram,
  release: noProgram,
};
function noProgram(): never {
  throw new PagemillError("a pre-copy destination has no program to check pages against");
}

/** The program's copy in a thread of its own (DemandPagedProgram), as Replica is in this one. */
class ThreadReplica {
  private readonly stopDigest: StopDigest;
  /** seconds the switch-over waited for the replay (DestinationReport.replayWait) */
  replayWait = 0;

  constructor(
    private readonly thread: DemandPagedProgram,
    private readonly pageSize: number,
    seed: bigint,
  ) {
    this.stopDigest = new StopDigest({ memory: new FlatPages(thread.memory, pageSize), pageSize }, seed);
  }

  /** Replays up to `workTime` (a work time the source's program reached), when it is one; settles when done, failed or not. */
  follow(workTime: unknown): Promise<void> {
    // A failed replay surfaces at the switch-over (prepare), which waits for it.
    if (typeof workTime === "number" && Number.isFinite(workTime)) return this.thread.replayTo(workTime).catch(() => {});
    return Promise.resolve();
  }

  shared(): Omit<SharedGuest, "progress"> {
    const { thread, pageSize: ps } = this;
    return {
      thread,
      // The thread has not changed a page this end does not hold: its copy is the source's at the stop.
      original: (p) => thread.memory.subarray(p * ps, (p + 1) * ps),
      preserve: () => {},
      release: () => {},
      prepare: async (record) => {
        if (!record.stop) throw new PagemillError("a post-copy switch-over without the stop's time");
        const started = performance.now();
        await thread.replayTo(record.stop.guestTime, true);
        this.replayWait += (performance.now() - started) / 1000;
      },
    };
  }

  /** The memory's digest at the stop, once the thread has finished. */
  async digest(): Promise<Uint8Array> {
    await this.thread.finished;
    for (const [p, digest] of this.thread.taken) this.stopDigest.took(p, digest);
    return this.stopDigest.finish();
  }
}

/**
 * The program's copy here (its memory, or its disk) for a strategy with a
 * post-copy phase: replayed to where the source's stopped, the source's
 * content at the switch-over kept for checks (view), and its digest at the
 * stop taken as the program goes on changing it.
 */
class Replica {
  readonly view: SwitchoverView;
  private readonly stopDigest: StopDigest;
  private replaying = Promise.resolve();
  /** seconds the switch-over waited for the replay (DestinationReport.replayWait) */
  replayWait = 0;

  constructor(
    readonly program: Workload,
    seed: bigint,
  ) {
    this.view = new SwitchoverView(program.guest);
    this.stopDigest = new StopDigest(program.guest, seed);
  }

  /** The digest of its memory at the stop, at the end. */
  async digest(): Promise<Uint8Array> {
    return this.stopDigest.finish();
  }

  /** Replays in the background up to `workTime` (a work time the source's program reached), when it is one; settles when done, failed or not. */
  follow(workTime: unknown): Promise<void> {
    if (typeof workTime === "number" && Number.isFinite(workTime)) this.replaying = this.replaying.then(() => replayTo(this.program, workTime));
    return this.replaying.catch(() => {});
  }

  /** What the Destination sees of it (SharedGuest's part, SharedDisk). */
  shared(): SharedDisk & { workload: Workload } {
    const { view, program } = this;
    return {
      workload: program,
      original: (p) => view.page(p),
      preserve: (p) => view.preserve(p),
      release: (p) => view.release(p),
      firstChange: (p) => this.stopDigest.take(p),
      prepare: async (record) => {
        if (!record.stop) throw new PagemillError("a post-copy switch-over without the stop's time");
        // The replica runs up to where the source stopped: the same program, the same writes.
        const started = performance.now();
        await this.replaying;
        await replayTo(program, record.stop.guestTime);
        this.replayWait += (performance.now() - started) / 1000;
      },
    };
  }
}

// Storage migration (issue 11): the source's half of moving a disk with
// the memory, on the same link, through the same Source. A disk is a Guest
// of blocks (src/guest/disk.ts); its frames carry the DISK flag and form a
// stream of their own (its own pipeline, sequence numbers and decoder).
//
// Pre-copy is QEMU's drive-mirror: a bulk pass over every block, then
// passes over the blocks dirtied meanwhile (a block dirtied again since its
// pass began waits for the next pass, as memory's rounds do), until what is
// left fits. Bandwidth is shared by one policy, in the order QEMU runs a
// storage migration (the mirror job reaches "ready" before memory starts):
//   1. the disk first, alone on the link: bulk pass and dirty passes until
//      its dirty blocks fit the downtime limit at the measured bandwidth (or
//      a cap: maxIterations passes, maxSentFactor × the disk sent); a disk is
//      usually far larger than memory and dirtied far slower, so sending it
//      first does not make memory's pages go twice;
//   2. then memory's rounds, the mirror keeping the disk in sync: one disk
//      frame after each memory frame while the disk has dirty blocks (so
//      memory keeps at least half the link), and the rest of the disk's pass
//      at the end of each memory round;
//   3. the stop rule counts the disk's dirty blocks with memory's pages; the
//      stop-and-copy sends memory's pages, then the disk's last blocks, then
//      the one switch-over (a disk switch-over frame with the disk's pending
//      map, then memory's).
// Post-copy: the disk's non-zero blocks (and those dirtied before the stop)
// are pending; the destination fetches a block its program reads or partly
// writes, and the source pushes the rest, requests first (memory's, then the
// disk's), then memory and disk frames in turn.
//
// FlimCD's three ideas, each switchable (EngineOptions):
// - dedup (diskDedup): before the switch-over, every block sent (and, with
//   blocks of the page size, every memory page sent) is digested with XXH3-64
//   (one kernel call per batch), the index's key; a block whose XXH3 is that
//   of content the destination holds (a block or a memory page already sent,
//   and not sent anew since) is a candidate, digested with MD5 too, and
//   travels as a reference in a REFS frame with both digests; the
//   destination writes it only when both digests of the content it holds
//   match, and otherwise asks for the block (so neither an XXH3 nor an MD5
//   collision can corrupt the disk). FlimCD digests every dirty block with
//   MD5; here MD5 runs on the candidates only (a filter that never changes
//   which blocks are deduplicated, short of an XXH3 collision, which the
//   destination refuses), so it costs in proportion to the duplicates, not
//   to the blocks sent. After the switch-over the destination's program
//   changes what it holds, so dedup stops (as the memory pipeline's does).
// - prefetch (destination.ts): a read following the read of the block just
//   before it is a sequential stream; the destination asks for the next
//   `prefetchWindow` blocks it lacks before the program reaches them.
// - hot-area scheduling (hotArea): every pass sends its blocks coldest
//   first by their write rate (diskHeat: the model's rates or the trace's
//   profile; without it, the passes each block was dirty in so far), so the
//   blocks most likely to be written again go last and are sent once.

import { DirtyBitmap } from "../guest/bitmap.js";
import type { Guest, Workload } from "../guest/guest.js";
import { md5 } from "../hash/md5.js";
import { xxh3, xxh3Batch } from "../hash/xxhash.js";
import { PageBatch } from "../wasm/arena.js";
import { FrameFlags, type BlockRef } from "../wire/frame.js";
import { Pipeline } from "../wire/pipeline.js";
import { SwitchoverView } from "./frozen.js";
import type { DiskSettings } from "./options.js";
import type { Source } from "./source.js";

import { MD5_BYTES_PER_SECOND, type CostModel } from "../codecs/cost.js";
export { MD5_BYTES_PER_SECOND };

/** The disk's figures of a migration (MigrationStats.disk). */
export interface DiskStats {
  blockSize: number;
  blockCount: number;
  /** wire bytes of the disk's frames (blocks, references, its switch-over) */
  bytes: number;
  /** blocks sent with content or as zero flags, resends included */
  blocksSent: number;
  /** of those, zero blocks */
  zeroBlocks: number;
  /** blocks sent as a reference to content the destination held (FlimCD dedup) */
  dedupHits: number;
  /** of those, references to memory pages */
  dedupFromMemory: number;
  /** references the destination refused (its content's digests differed) and fetched instead */
  dedupRefused: number;
  /** mirror passes (bulk pass included) */
  passes: number;
  /** post-copy: program accesses that found their block missing */
  blockMisses: number;
  /** post-copy: program writes that replaced a missing block whole (so it was not fetched) */
  blockOverwrites: number;
  /** post-copy: blocks asked for ahead of a sequential read stream */
  prefetchedBlocks: number;
  /** blocks compared at the end */
  verifiedBlocks: number;
  /** modelled CPU seconds charged for MD5 digests of dedup candidates (MD5_BYTES_PER_SECOND; part of sourceCpu) */
  md5Cpu: number;
  /** modelled CPU seconds charged for the index's XXH3 digests of blocks and memory pages (the cost table's hash rate; part of sourceCpu) */
  xxh3Cpu: number;
  /** wall seconds the MD5 digests took, the XXH3 digests, and the rest of the disk's encoding */
  md5WallSeconds: number;
  xxh3WallSeconds: number;
  encodeWallSeconds: number;
}

/** The disk's figures of a migration: the source's, the destination's counters, and the blocks the end check compared. */
export function diskStats(source: DiskStats, destination: Pick<DiskStats, "blockMisses" | "blockOverwrites" | "prefetchedBlocks" | "dedupRefused">, verifiedBlocks: number): DiskStats {
  const { blockMisses, blockOverwrites, prefetchedBlocks, dedupRefused } = destination;
  return { ...source, blockMisses, blockOverwrites, prefetchedBlocks, dedupRefused, verifiedBlocks };
}

/** Where content the destination holds lies. */
interface Location {
  readonly space: "disk" | "memory";
  readonly index: number;
}

/**
 * The dedup index: XXH3-64 → a place at the destination holding content of
 * that digest, kept exact while only the source writes there (before the
 * switch-over): a place sent anew loses its old entry. Zero content is not
 * indexed (a zero block goes as a zero flag), so the index grows with the
 * data sent, not with the disk's size.
 */
class ContentIndex {
  private readonly byDigest = new Map<bigint, Location>();
  /** each place holding non-zero content: its digest (disk blocks, then memory pages at index + diskBlocks) */
  private readonly digestAt = new Map<number, bigint>();

  constructor(
    private readonly diskBlocks: number,
    private readonly zero: bigint,
  ) {}

  find(digest: bigint): Location | undefined {
    return this.byDigest.get(digest);
  }

  /** `space`'s `index` now holds content of XXH3 `digest` at the destination. */
  put(space: Location["space"], index: number, digest: bigint): void {
    const key = space === "disk" ? index : this.diskBlocks + index;
    const old = this.digestAt.get(key);
    if (old !== undefined) {
      const at = this.byDigest.get(old);
      if (at && at.space === space && at.index === index) this.byDigest.delete(old);
    }
    if (digest === this.zero) {
      this.digestAt.delete(key);
      return;
    }
    this.digestAt.set(key, digest);
    if (!this.byDigest.has(digest)) this.byDigest.set(digest, { space, index });
  }
}

/** XXH3-64 of an all-zero block, per block size. */
const zeroDigests = new Map<number, bigint>();
function zeroDigest(blockSize: number): bigint {
  const known = zeroDigests.get(blockSize);
  if (known !== undefined) return known;
  const digest = xxh3(new Uint8Array(blockSize));
  zeroDigests.set(blockSize, digest);
  return digest;
}

/** The source's disk: its program, what it sends, and the mirror's state. */
export class SourceDisk {
  readonly guest: Guest;
  readonly pipeline: Pipeline;
  readonly switchover: SwitchoverView;
  readonly stats: DiskStats;
  /** Blocks requested by the destination (faults, prefetch, refused references), oldest first. */
  readonly requests: number[] = [];
  /** Blocks last sent as a reference: the destination may refuse it and ask for the block. */
  readonly referenced = new Set<number>();
  /** Post-copy: the blocks the destination still needs (set by the strategy before the switch-over). */
  pending: DirtyBitmap | undefined;
  /** Fractional: the blocks sent once before the switch-over (precopyDiskShare). */
  precopied: DirtyBitmap | undefined;
  /** The blocks of the mirror's next pass. */
  readonly next: DirtyBitmap;
  private readonly batch: PageBatch;
  private readonly index: ContentIndex | undefined;
  /** Passes each block was dirty in (hot-area without a given heat). */
  private readonly dirtyPasses: Uint16Array | undefined;
  /** The mirror's current pass, in sending order, and how far it got. */
  private pass: Uint32Array = new Uint32Array(0);
  private passAt = 0;
  private dedupOn: boolean;
  /** The mirror has started (pre-copy and hybrid): memory's rounds keep it in sync. */
  mirroring = false;

  constructor(
    readonly workload: Workload,
    readonly settings: DiskSettings,
    codec: string,
    /** memory's page size: memory pages are dedup candidates only when it equals the block size */
    pageSize: number,
    /** what the index's digests cost (its hash rate) */
    private readonly cost: CostModel,
  ) {
    this.guest = workload.guest;
    this.pipeline = new Pipeline(codec, FrameFlags.DISK);
    this.switchover = new SwitchoverView(this.guest);
    this.batch = new PageBatch(settings.batchBlocks, settings.blockSize);
    this.next = new DirtyBitmap(settings.blockCount);
    this.index = settings.dedup ? new ContentIndex(settings.blockCount, zeroDigest(settings.blockSize)) : undefined;
    this.dedupOn = settings.dedup;
    this.indexesMemory = settings.dedup && pageSize === settings.blockSize;
    this.dirtyPasses = settings.hotArea && !settings.heat ? new Uint16Array(settings.blockCount) : undefined;
    this.stats = {
      blockSize: settings.blockSize,
      blockCount: settings.blockCount,
      bytes: 0,
      blocksSent: 0,
      zeroBlocks: 0,
      dedupHits: 0,
      dedupFromMemory: 0,
      dedupRefused: 0,
      passes: 0,
      blockMisses: 0,
      blockOverwrites: 0,
      prefetchedBlocks: 0,
      verifiedBlocks: 0,
      md5Cpu: 0,
      xxh3Cpu: 0,
      md5WallSeconds: 0,
      xxh3WallSeconds: 0,
      encodeWallSeconds: 0,
    };
  }

  /** Memory pages sent are dedup candidates (dedup on, blocks of the page size, before the switch-over). */
  indexesMemory: boolean;

  /** The destination's program runs from now on: nothing it holds can be referenced. */
  stopDedup(): void {
    this.dedupOn = false;
    this.indexesMemory = false;
  }

  /** Indexes memory pages loaded in `batch` (`pages[k]` in slot k), just sent. Returns the seconds of CPU charged. */
  indexMemory(batch: PageBatch, pages: ArrayLike<number>): number {
    const digests = this.digest(batch);
    for (let k = 0; k < batch.count; k++) this.index!.put("memory", pages[k]!, digests[k]!);
    return this.xxh3Charge(batch.count);
  }

  /** The XXH3-64 of every page in `batch`, timed. */
  private digest(batch: PageBatch): BigUint64Array {
    const started = performance.now();
    const digests = xxh3Batch(batch);
    this.stats.xxh3WallSeconds += (performance.now() - started) / 1000;
    return digests;
  }

  /** The MD5 of one block, timed. */
  private md5(block: Uint8Array): Uint8Array {
    const started = performance.now();
    const digest = md5(block);
    this.stats.md5WallSeconds += (performance.now() - started) / 1000;
    return digest;
  }

  /** Charges the XXH3 digests of `count` blocks; returns the seconds. */
  private xxh3Charge(count: number): number {
    const cpu = this.cost.hashSeconds(count * this.settings.blockSize);
    this.stats.xxh3Cpu += cpu;
    return cpu;
  }

  /**
   * Loads `blocks` as they were at switch-over and splits them: references
   * (dedup hits) and the blocks to send with content, loaded in the batch.
   * Returns the CPU seconds the digests cost.
   */
  prepare(blocks: readonly number[], dedup: boolean): { refs: BlockRef[]; batch: PageBatch; send: number[]; cpu: number } {
    const batch = this.load(blocks);
    for (const b of blocks) this.referenced.delete(b);
    if (!this.dedupOn || !dedup) return { refs: [], batch, send: blocks.slice(), cpu: 0 };
    const own = this.digest(batch);
    let cpu = this.xxh3Charge(blocks.length);
    const refs: BlockRef[] = [];
    const send: number[] = [];
    const probe = this.settings.dedupProbe;
    const zero = zeroDigest(this.settings.blockSize);
    blocks.forEach((block, k) => {
      const digest = own[k]!;
      // A zero block goes as a zero flag, smaller than a reference.
      const nonZero = digest !== zero;
      // The test hook: the index answers with another place, as if the digests were equal (a collision).
      const forced = nonZero ? probe?.(block) : undefined;
      const at = nonZero ? (forced ?? this.index!.find(digest)) : undefined;
      if (at && !(at.space === "disk" && at.index === block)) {
        // A candidate: its reference carries its MD5 too, digested for candidates only.
        refs.push({ block, space: at.space, ref: at.index, md5: forced ? Uint8Array.from(Buffer.from(forced.md5, "hex")) : this.md5(batch.page(k)), xxh3: digest });
        this.referenced.add(block);
        if (at.space === "memory") this.stats.dedupFromMemory++;
      } else send.push(block);
      this.index!.put("disk", block, digest);
    });
    const md5Cpu = (refs.length * this.settings.blockSize) / MD5_BYTES_PER_SECOND;
    this.stats.md5Cpu += md5Cpu;
    cpu += md5Cpu;
    this.stats.dedupHits += refs.length;
    return { refs, batch: refs.length ? this.load(send) : batch, send, cpu };
  }

  private load(blocks: readonly number[]): PageBatch {
    const batch = this.batch.load(this.guest.memory, blocks);
    if (this.switchover.size) {
      blocks.forEach((b, k) => {
        const saved = this.switchover.changed(b);
        if (saved) batch.page(k).set(saved);
      });
    }
    return batch;
  }

  // ---------------------------------------------------------------- the mirror

  /** Blocks left in the current pass plus those dirtied and not yet in a pass. */
  leftBlocks(): number {
    return this.pass.length - this.passAt + this.guest.dirtyLog.count();
  }

  /** Starts a pass over `blocks` (a bitmap, cleared), in sending order. */
  startPass(blocks: DirtyBitmap): void {
    const list = blocks.extract();
    blocks.clearRange();
    if (this.settings.hotArea) {
      const heat = this.settings.heat ?? this.dirtyPasses!;
      // Coldest first; ties (and rates of ∞: written in every epoch) in block order, a stable sort of an ascending list.
      const sorted = Array.from(list).sort((a, b) => (heat[a]! < heat[b]! ? -1 : heat[a]! > heat[b]! ? 1 : 0));
      this.pass = Uint32Array.from(sorted);
    } else this.pass = list;
    this.passAt = 0;
    this.stats.passes++;
  }

  /** The current pass is done. */
  get passDone(): boolean {
    return this.passAt >= this.pass.length;
  }

  /**
   * The next frame's blocks of the current pass (ascending, at most a
   * batch), leaving out blocks dirtied again since the pass began: the next
   * pass sends them.
   */
  nextOfPass(): number[] {
    const out: number[] = [];
    const log = this.guest.dirtyLog;
    while (out.length < this.settings.batchBlocks && this.passAt < this.pass.length) {
      const b = this.pass[this.passAt++]!;
      if (!log.test(b)) out.push(b);
    }
    return out.sort((a, b) => a - b);
  }

  /** Moves the dirty log into `into` (a dirty sync of the disk); counts each block's dirty passes for hot-area. */
  syncDirty(into: DirtyBitmap): number {
    if (this.dirtyPasses) for (const b of this.guest.dirtyLog.extract()) this.dirtyPasses[b] = Math.min(0xffff, this.dirtyPasses[b]! + 1);
    const n = this.guest.dirtyLog.count();
    into.syncFrom(this.guest.dirtyLog);
    return n;
  }

  /** Adds what the current pass has not sent to `into`. */
  takeRestOfPass(into: DirtyBitmap): void {
    for (; this.passAt < this.pass.length; this.passAt++) into.set(this.pass[this.passAt]!);
  }

  /**
   * The blocks asked for that are still owed, oldest first, at most `max`:
   * pending ones (cleared from `pending`; `cleared` counts them) and refused
   * references. A request for a block sent since is dropped: it is on its way.
   */
  takeAsked(max: number): { blocks: number[]; cleared: number } {
    const blocks: number[] = [];
    let cleared = 0;
    while (blocks.length < max && this.requests.length) {
      const b = this.requests.shift()!;
      if (this.pending?.test(b)) {
        this.pending.clear(b);
        cleared++;
      } else if (!this.referenced.has(b)) continue;
      this.referenced.delete(b);
      blocks.push(b);
    }
    return { blocks: blocks.sort((a, b) => a - b), cleared };
  }

  dispose(): void {
    this.next.dispose();
    this.batch.dispose();
    this.pipeline.dispose();
    this.pending?.dispose();
    this.precopied?.dispose();
  }
}

// ---------------------------------------------------------------- the strategies' disk steps

/** Sends the blocks the destination asked for (refused references), with content. Returns whether there were any. */
async function serveBlockRequests(s: Source): Promise<boolean> {
  const d = s.disk!;
  const { blocks } = d.takeAsked(d.settings.batchBlocks);
  if (blocks.length) await s.sendBlocks(blocks, false);
  return blocks.length > 0;
}

/**
 * The mirror before memory starts (policy step 1): the bulk pass, then
 * passes over the dirtied blocks, the guest running, until the dirtied
 * blocks fit the downtime limit (`downtimeRule`), or `maxPasses` passes, or
 * maxSentFactor × the disk sent.
 */
export async function mirrorDisk(s: Source, limits: { readonly downtimeRule: boolean; readonly maxPasses: number }): Promise<void> {
  const d = s.disk!;
  const { settings } = s;
  const { blockSize, blockCount } = d.settings;
  d.mirroring = true;
  d.guest.dirtyLog.clearRange();
  d.next.setRange();
  d.startPass(d.next);
  for (;;) {
    if (!(await serveBlockRequests(s))) {
      const blocks = d.nextOfPass();
      if (blocks.length) await s.sendBlocks(blocks, true);
    }
    await s.runGuest();
    s.samplePeriod();
    if (!d.passDone) continue;
    const left = d.guest.dirtyLog.count() * blockSize + s.bufferedBytes;
    const rate = s.bandwidth || s.linkBandwidth();
    if (limits.downtimeRule && left <= rate * settings.downtimeLimit) return;
    if (d.stats.passes >= limits.maxPasses || d.stats.blocksSent > settings.maxSentFactor * blockCount) return;
    d.syncDirty(d.next);
    d.startPass(d.next);
  }
}

/** Bytes the disk still has to send (its pass's rest and the blocks dirtied since). */
export function diskLeftBytes(s: Source): number {
  const d = s.disk!;
  return d.mirroring ? d.leftBlocks() * d.settings.blockSize : 0;
}

/**
 * One disk frame while memory's rounds run (policy step 2): a requested
 * block, or the current pass's next blocks, or, the pass done, a new pass
 * over the blocks dirtied since.
 */
export async function diskStep(s: Source): Promise<void> {
  const d = s.disk!;
  if (!d.mirroring) return;
  if (await serveBlockRequests(s)) return;
  if (d.passDone) {
    if (d.guest.dirtyLog.count() === 0) return;
    d.syncDirty(d.next);
    d.startPass(d.next);
  }
  const blocks = d.nextOfPass();
  if (blocks.length) await s.sendBlocks(blocks, true);
}

/** Sends the rest of the disk's current pass (at the end of a memory round). */
export async function finishDiskPass(s: Source): Promise<void> {
  const d = s.disk!;
  while (d.mirroring && !d.passDone) {
    await serveBlockRequests(s);
    const blocks = d.nextOfPass();
    if (blocks.length) await s.sendBlocks(blocks, true);
    await s.runGuest();
  }
}

/** The stop-and-copy's disk part (guest stopped): every block not current at the destination. */
export async function drainDisk(s: Source): Promise<void> {
  const d = s.disk!;
  d.takeRestOfPass(d.next);
  d.syncDirty(d.next);
  while (await serveBlockRequests(s));
  for (;;) {
    const blocks = d.next.extract(0, d.settings.batchBlocks);
    if (blocks.length === 0) return;
    d.next.clearRange(0, blocks[blocks.length - 1]! + 1);
    await s.sendBlocks(Array.from(blocks), true);
  }
}

/**
 * After a pre-copy switch-over with dedup: the destination may have refused
 * references and asked for their blocks; serve them until it says it holds
 * every page and block.
 */
export async function serveUntilDone(s: Source): Promise<void> {
  while (!s.destinationDone) {
    if (!(await serveBlockRequests(s))) await s.nextRequestOrDone();
  }
}

/**
 * Fractional hybrid-copy's S% (settings.precopyBlocks): sends those blocks
 * once, the guest running, with the disk's dirty log started first, so that
 * pendDisk post-copies every other non-zero block and those written since.
 */
export async function precopyDiskShare(s: Source): Promise<void> {
  const d = s.disk!;
  const blocks = d.settings.precopyBlocks!;
  d.guest.dirtyLog.clearRange();
  d.precopied = new DirtyBitmap(d.settings.blockCount);
  for (let at = 0; at < blocks.length; at += d.settings.batchBlocks) {
    const batch = Array.from(blocks.subarray(at, at + d.settings.batchBlocks)).sort((a, b) => a - b);
    for (const b of batch) d.precopied.set(b);
    await s.sendBlocks(batch, true);
    await s.runGuest();
    s.samplePeriod();
  }
}

/**
 * Before a post-copy switch-over (guest stopped): the blocks the destination
 * still needs. After a mirror: its pass's rest and the dirtied blocks;
 * without one (post-copy, fractional): every non-zero block (a zero scan)
 * but those fractional pre-copied, and the dirtied ones.
 */
export async function pendDisk(s: Source): Promise<void> {
  const d = s.disk!;
  const pending = (d.pending = new DirtyBitmap(d.settings.blockCount));
  if (d.mirroring) d.takeRestOfPass(pending);
  else {
    await s.scanNonZeroBlocks(pending);
    if (d.precopied) for (const b of d.precopied.extract()) pending.clear(b);
  }
  d.syncDirty(pending);
  // Refused references not served yet: owed like the rest.
  for (const b of d.takeAsked(Infinity).blocks) pending.set(b);
}

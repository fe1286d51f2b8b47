// Disks: the VM's block device, migrated with its memory (seeds 001, 003).
// A disk is a Guest whose pages are blocks (4 KiB by default, 4–64 KiB): the
// same dirty log (one bit per block: QEMU's dirty bitmap of a block job),
// the same access hook (a post-copy destination fetches a missing block on a
// read or a partial write, and claims it on a whole-block write), the same
// engine halves and pipeline. What differs is what drives it:
//
// - a storage trace (the pagetrace format; `pagemill record --file IMAGE`
//   records a file or block device as it changes): openDiskTrace, whose
//   writes are the trace's and whose reads come from a BlockReads model, or
// - a block workload model (BlockWorkload, the models in BLOCK_MODELS):
//   sequential writer, log append, random OLTP with a hot area, read-mostly.
//
// Reads. A trace holds writes only, so the reads a post-copy destination
// must serve are modelled (BlockReadModel, seeded, in their own random
// stream so they never change the writes): reads arrive at `rate` per second
// (Poisson); each starts a sequential stream with probability
// `sequentialShare` (of geometric length, mean `streamBlocks`, from a
// uniformly drawn block: a file scanned front to back, what prefetching
// helps) and is otherwise one read of a block drawn from the hot area with
// probability `hotShare` (the blocks with the highest write rate, where the
// program works) or from the whole disk. A stream's blocks are read one per
// read event, so a stream takes streamBlocks / rate seconds on average.
//
// Per-block write rates (blocks/s; FlimCD's hot area, and the S dimension
// of seed 001's planner): a model's are exact (BlockWorkload.blockRates());
// a trace's are its profile's (src/adaptive/profile.ts: profileTrace(path)
// .memory is the disk's PageProfile, writeRates() its λ per block).

import { PagemillError, checkInteger } from "../errors.js";
import { Random } from "../random.js";
import { Guest, type AdvanceReport, type Workload } from "./guest.js";
import { MAX_BITMAP_PAGES } from "./bitmap.js";
import { checkFitsInMemory } from "./chunks.js";
import { GeneratedPages } from "./generated.js";
import { checkTrace } from "./pagetrace.js";
import { BaseWorkload, NO_READS, TraceReplay, subSeed } from "./workloads.js";

export const DEFAULT_BLOCK_SIZE = 4096;
export const MIN_BLOCK_SIZE = 4096;
export const MAX_BLOCK_SIZE = 65536;
/** Largest disk: 1 TiB (held sparse, only blocks ever written with data cost memory). */
export const MAX_DISK_BYTES = 2 ** 40;

/** A disk (trace or flags) that cannot be used: names the file when there is one, and the cause. */
export class DiskError extends PagemillError {}

/** Checks a block size: a power of two from 4 to 64 KiB. */
export function checkBlockSize(blockSize: number, name = "blockSize"): void {
  if (!Number.isInteger(blockSize) || blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    throw new RangeError(`${name} must be a power of two from ${MIN_BLOCK_SIZE} to ${MAX_BLOCK_SIZE} bytes, got ${blockSize}`);
  }
}

/** Checks a disk's shape against the limits; a RangeError names what is wrong. */
export function checkDiskShape(blockCount: number, blockSize: number): void {
  checkBlockSize(blockSize);
  const most = Math.min(MAX_BITMAP_PAGES, MAX_DISK_BYTES / blockSize);
  checkInteger("blockCount", blockCount, 1, most);
}

/** An all-zero disk of `blockCount` blocks. */
export function newDisk(blockCount: number, blockSize = DEFAULT_BLOCK_SIZE): Guest {
  checkDiskShape(blockCount, blockSize);
  return new Guest(blockCount, blockSize);
}

// ---------------------------------------------------------------------------
// Reads.

/** See the module comment. */
export interface BlockReadModel {
  /** read events per second of work time */
  readonly rate: number;
  /** share of read events that start a sequential stream */
  readonly sequentialShare: number;
  /** mean blocks of a stream (geometric) */
  readonly streamBlocks: number;
  /** share of single reads that fall in the hot area */
  readonly hotShare: number;
  /** the hot area: this share of blocks, those with the highest write rates */
  readonly hotBlocks: number;
}

export const DEFAULT_BLOCK_READS: BlockReadModel = { rate: 200, sequentialShare: 0.05, streamBlocks: 32, hotShare: 0.8, hotBlocks: 0.1 };

function checkReadModel(model: BlockReadModel): void {
  if (!(model.rate >= 0 && Number.isFinite(model.rate))) throw new RangeError(`reads.rate must be a finite number >= 0, got ${model.rate}`);
  for (const key of ["sequentialShare", "hotShare", "hotBlocks"] as const) {
    if (!(model[key] >= 0 && model[key] <= 1)) throw new RangeError(`reads.${key} must be in [0, 1], got ${model[key]}`);
  }
  if (!(model.streamBlocks >= 1 && Number.isFinite(model.streamBlocks))) throw new RangeError(`reads.streamBlocks must be >= 1, got ${model.streamBlocks}`);
}

/** The hottest `share` of blocks by `rates` (ties by block number), at least one. */
function hottest(rates: Float64Array, share: number): Uint32Array {
  const order = Uint32Array.from(rates.keys()).sort((a, b) => rates[b]! - rates[a]! || a - b);
  return order.slice(0, Math.max(1, Math.round(share * rates.length)));
}

/** The read stream of a BlockReadModel over one disk, in work time. */
class BlockReads {
  private readonly random: Random;
  private readonly hot: Uint32Array;
  private next: number;
  /** the running sequential stream: next block and blocks left */
  private streamAt = 0;
  private streamLeft = 0;

  constructor(
    private readonly disk: Guest,
    private readonly model: BlockReadModel,
    rates: Float64Array,
    seed: number,
  ) {
    checkReadModel(model);
    this.random = new Random(seed);
    this.hot = hottest(rates, model.hotBlocks);
    this.next = model.rate > 0 ? this.random.exp() / model.rate : Infinity;
  }

  /** Work time of the next read. */
  get due(): number {
    return this.next;
  }

  /** Issues the read due now. */
  read(): void {
    const { random, model, disk } = this;
    if (this.streamLeft === 0 && random.float() < model.sequentialShare) {
      this.streamAt = random.int(disk.pageCount);
      // Geometric with the given mean, at least one block.
      this.streamLeft = 1 + Math.floor(Math.log(1 - random.float()) / Math.log(1 - 1 / model.streamBlocks) || 0);
    }
    let block: number;
    if (this.streamLeft > 0) {
      block = this.streamAt;
      this.streamAt = (this.streamAt + 1) % disk.pageCount;
      this.streamLeft--;
    } else block = random.float() < model.hotShare ? this.hot[random.int(this.hot.length)]! : random.int(disk.pageCount);
    disk.read(block);
    this.next += random.exp() / model.rate;
  }
}

// ---------------------------------------------------------------------------
// Block workload models.

/** A block workload model; see BLOCK_MODELS. Rates are per second of work time. */
export interface BlockModel {
  /** block writes per second */
  readonly writeRate: number;
  /**
   * Where writes go: "sequential" sweeps the written region front to back
   * and around; "append" too, but the block at the tail is written partially
   * (a log's last block, fsynced as it fills) before it is written whole;
   * "random" picks blocks with a hot area.
   */
  readonly pattern: "sequential" | "append" | "random";
  /** share of the disk the writes fall in (from block 0) */
  readonly region: number;
  /** random: share of the region's blocks that take `hotWrites` of the writes */
  readonly hotBlocks: number;
  readonly hotWrites: number;
  /** share of random writes that replace the whole block (the rest change a 512-byte sector: read-modify-write) */
  readonly wholeShare: number;
  /** share of written blocks whose new content is a copy of another block of the disk (a copied file; what dedup finds) */
  readonly duplicateShare: number;
  readonly reads: BlockReadModel;
}

/**
 * The models (`--disk-workload NAME`). Rates are chosen against seed 001's
 * 40 Mbit/s WAN link (about 1200 blocks of 4 KiB per second): the OLTP model
 * writes a quarter of that, "moderately I/O intensive" in FlimCD's words.
 */
export const BLOCK_MODELS = {
  /** a writer streaming over half the disk (a backup restore, a large copy) */
  sequential: { writeRate: 400, pattern: "sequential", region: 0.5, hotBlocks: 0, hotWrites: 0, wholeShare: 1, duplicateShare: 0.1, reads: { ...DEFAULT_BLOCK_READS, rate: 20 } },
  /** a database's write-ahead log over a tenth of the disk, with the reads of its tables */
  "log-append": { writeRate: 150, pattern: "append", region: 0.1, hotBlocks: 0, hotWrites: 0, wholeShare: 1, duplicateShare: 0, reads: DEFAULT_BLOCK_READS },
  /** random OLTP writes: 5% of the disk takes 80% of them, most a sector's read-modify-write */
  oltp: { writeRate: 300, pattern: "random", region: 1, hotBlocks: 0.05, hotWrites: 0.8, wholeShare: 0.2, duplicateShare: 0.2, reads: { ...DEFAULT_BLOCK_READS, rate: 600 } },
  /** a file server: few writes, many reads, a fifth of them sequential scans */
  "read-mostly": { writeRate: 20, pattern: "random", region: 1, hotBlocks: 0.1, hotWrites: 0.5, wholeShare: 0.5, duplicateShare: 0.3, reads: { ...DEFAULT_BLOCK_READS, rate: 1000, sequentialShare: 0.2 } },
} as const satisfies Record<string, BlockModel>;

export type BlockModelName = keyof typeof BLOCK_MODELS;

/** Bytes of a partial write: one 512-byte sector. */
const SECTOR = 512;

/**
 * A disk driven by a BlockModel; writes and reads are each a Poisson stream
 * in work time, applied in time order (so the result does not depend on how
 * advance() slices time).
 */
export class BlockWorkload extends BaseWorkload {
  readonly name: string;
  readonly model: BlockModel;
  private readonly random: Random;
  private readonly reads: BlockReads;
  private readonly rates: Float64Array;
  /** hot blocks first, then the rest of the region (random pattern) */
  private readonly order: Uint32Array;
  private readonly regionBlocks: number;
  private readonly hotCount: number;
  private nextWrite: number;
  private cursor = 0;
  /** append: the tail block has had its partial write */
  private tailStarted = false;

  get writeRate(): number {
    return this.model.writeRate;
  }

  constructor(disk: Guest, model: BlockModel | BlockModelName, seed = 1) {
    super(disk);
    const m = typeof model === "string" ? BLOCK_MODELS[model] : model;
    if (!m) throw new RangeError(`unknown block model '${String(model)}' (known: ${Object.keys(BLOCK_MODELS).join(", ")})`);
    if (!(m.writeRate >= 0 && Number.isFinite(m.writeRate))) throw new RangeError(`writeRate must be a finite number >= 0, got ${m.writeRate}`);
    for (const key of ["region", "hotBlocks", "hotWrites", "wholeShare", "duplicateShare"] as const) {
      if (!(m[key] >= 0 && m[key] <= 1)) throw new RangeError(`${key} must be in [0, 1], got ${m[key]}`);
    }
    this.model = m;
    this.name = typeof model === "string" ? `disk model ${model}` : "disk model";
    const n = disk.pageCount;
    this.regionBlocks = Math.max(1, Math.min(n, Math.round(m.region * n)));
    this.hotCount = m.pattern === "random" && m.hotBlocks > 0 ? Math.max(1, Math.min(this.regionBlocks - 1, Math.round(m.hotBlocks * this.regionBlocks))) : 0;
    this.random = new Random(subSeed(seed, 40));
    // The hot area is scattered over the region by a seeded shuffle.
    this.order = new Random(subSeed(seed, 41)).permutation(this.regionBlocks);
    this.rates = new Float64Array(n);
    for (let k = 0; k < this.regionBlocks; k++) this.rates[this.order[k]!] = this.rateOfRank(k);
    this.reads = new BlockReads(disk, m.reads, this.rates, subSeed(seed, 42));
    this.nextWrite = m.writeRate > 0 ? this.random.exp() / m.writeRate : Infinity;
  }

  private rateOfRank(k: number): number {
    const { writeRate, pattern, hotWrites } = this.model;
    if (pattern !== "random" || this.hotCount === 0) return writeRate / this.regionBlocks;
    return k < this.hotCount ? (writeRate * hotWrites) / this.hotCount : (writeRate * (1 - hotWrites)) / (this.regionBlocks - this.hotCount);
  }

  /** The write rate of every block, blocks/s (a copy). */
  blockRates(): Float64Array {
    return this.rates.slice();
  }

  protected run(_from: number, to: number): void {
    for (;;) {
      const readAt = this.reads.due;
      if (this.nextWrite <= to && this.nextWrite <= readAt) {
        this.write();
        this.nextWrite += this.random.exp() / this.model.writeRate;
      } else if (readAt <= to) this.reads.read();
      else return;
    }
  }

  private write(): void {
    const { random, model } = this;
    const disk = this.guest;
    let block: number;
    let whole: boolean;
    switch (model.pattern) {
      case "sequential":
        block = this.cursor;
        this.cursor = (this.cursor + 1) % this.regionBlocks;
        whole = true;
        break;
      case "append":
        block = this.cursor;
        // A log's tail: first a partial write (the record that did not fill it), then the whole block.
        whole = this.tailStarted;
        if (whole) this.cursor = (this.cursor + 1) % this.regionBlocks;
        this.tailStarted = !this.tailStarted;
        break;
      default: {
        const hot = this.hotCount > 0 && random.float() < model.hotWrites;
        block = this.order[hot ? random.int(this.hotCount) : this.hotCount + random.int(this.regionBlocks - this.hotCount)]!;
        whole = random.float() < model.wholeShare;
      }
    }
    const bs = disk.pageSize;
    if (whole && random.float() < model.duplicateShare) {
      const from = random.int(disk.pageCount);
      if (from !== block) {
        disk.write(block, disk.page(from));
        return;
      }
    }
    const view = disk.beginWrite(block, whole);
    // New data: random words in half the block (file data compresses about 2:1), the rest zero.
    const [start, bytes] = whole ? [0, bs] : [SECTOR * random.int(bs / SECTOR), SECTOR];
    putWords(view, start, bytes, bytes / 2, random);
  }
}

/** The share of a model disk's blocks that hold data by default (its first quarter). */
export const MODEL_DISK_FILLED = 0.25;

/**
 * Memory a model disk needs before it runs: its tables only. Its filled
 * blocks are computed when read (GeneratedPages); a block costs its bytes
 * once the workload writes it.
 */
export function modelDiskBytes(blockCount: number): number {
  return GeneratedPages.overheadBytes(blockCount);
}

/** A disk model of `blockCount` blocks over a synthetic image whose first `filled` share (a quarter) holds data. */
export function modelDisk(name: BlockModelName | BlockModel, blockCount: number, options: { blockSize?: number; seed?: number; filled?: number } = {}): BlockWorkload {
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  const seed = options.seed ?? 1;
  checkDiskShape(blockCount, blockSize);
  // A filesystem with data in its first quarter (the rest never written): distinct, half-random blocks.
  const share = options.filled ?? MODEL_DISK_FILLED;
  if (!(share >= 0 && share <= 1)) throw new RangeError(`filled must be a share of the disk's blocks in [0, 1], got ${share}`);
  const filled = Math.floor(blockCount * share);
  checkFitsInMemory(`a ${typeof name === "string" ? name : "model"} disk of ${blockCount} blocks`, modelDiskBytes(blockCount));
  // Each filled block's data comes from its own stream, so it can be computed again whenever it is read.
  const image = subSeed(seed, 43);
  const content = new GeneratedPages(blockCount, blockSize, filled, (block, into, at) => putWords(into, at, blockSize, blockSize / 2, new Random(subSeed(image, block))));
  return new BlockWorkload(new Guest(blockCount, blockSize, content), name, seed);
}

/** Bytes [start, start + bytes) of `block` ← random little-endian words for the first `random` bytes, zeros after. */
function putWords(block: Uint8Array, start: number, bytes: number, randomBytes: number, random: Random): void {
  for (let i = start; i < start + bytes; i += 4) {
    const word = i - start < randomBytes ? random.u32() : 0;
    block[i] = word;
    block[i + 1] = word >>> 8;
    block[i + 2] = word >>> 16;
    block[i + 3] = word >>> 24;
  }
}

// ---------------------------------------------------------------------------
// Storage traces.

/**
 * A disk driven by a storage trace: the trace's writes (TraceReplay, looped)
 * and a BlockReads model's reads, each in its own stream.
 */
export class DiskTraceWorkload implements Workload {
  readonly name: string;
  private readonly reads: BlockReads;

  private constructor(
    private readonly replay: TraceReplay,
    rates: Float64Array,
    reads: BlockReadModel,
    seed: number,
  ) {
    this.name = `disk ${replay.name}`;
    this.reads = new BlockReads(replay.guest, reads, rates, subSeed(seed, 44));
  }

  get guest(): Guest {
    return this.replay.guest;
  }
  get now(): number {
    return this.replay.now;
  }
  get workTime(): number {
    return this.replay.workTime;
  }
  get writeRate(): number {
    return this.replay.writeRate;
  }
  get throttle(): number {
    return this.replay.throttle;
  }
  set throttle(value: number) {
    this.replay.throttle = value;
  }

  async advance(to: number): Promise<AdvanceReport> {
    const { replay } = this;
    const from = replay.now;
    const before = { writes: this.guest.writes, overwrites: this.guest.overwrites, reads: this.guest.reads };
    const workFrom = replay.workTime;
    const workTo = workFrom + (to - from) * replay.throttle;
    // Writes and reads interleave in work time: replay up to each read, then issue it.
    while (this.reads.due <= workTo) {
      const at = replay.now + (this.reads.due - replay.workTime) / replay.throttle;
      await replay.advance(Math.min(to, Math.max(replay.now, at)));
      this.reads.read();
    }
    await replay.advance(to);
    const g = this.guest;
    return { ran: replay.workTime - workFrom, writes: g.writes - before.writes, overwrites: g.overwrites - before.overwrites, reads: g.reads - before.reads };
  }

  close(): Promise<void> {
    return this.replay.close();
  }

  /**
   * Opens a storage trace as a disk, checked whole first: a truncated or
   * corrupt trace, a disk past the limits, or a block size or count other
   * than `expect` gives a DiskError naming the file and the cause before
   * anything runs. `rates`: the blocks' write rates (the trace's profile).
   */
  static async open(path: string, rates: Float64Array | undefined, options: { expect?: { blockSize?: number; blockCount?: number }; reads?: BlockReadModel; seed?: number } = {}): Promise<DiskTraceWorkload> {
    let header;
    try {
      header = await checkTrace(path);
    } catch (err) {
      throw new DiskError(`disk trace ${path}: ${(err as Error).message}`, { cause: err });
    }
    const { pageSize, pageCount } = header;
    const { blockSize, blockCount } = options.expect ?? {};
    if (blockSize !== undefined && pageSize !== blockSize) throw new DiskError(`disk trace ${path}: its blocks are ${pageSize} B, the flags say ${blockSize} B`);
    if (blockCount !== undefined && pageCount !== blockCount) throw new DiskError(`disk trace ${path}: it has ${pageCount} blocks, the flags say ${blockCount}`);
    try {
      checkDiskShape(pageCount, pageSize);
    } catch (err) {
      throw new DiskError(`disk trace ${path}: ${(err as Error).message}`);
    }
    if (rates && rates.length !== pageCount) throw new RangeError(`rates has ${rates.length} blocks, the trace ${pageCount}`);
    const replay = await TraceReplay.open(path, { reads: NO_READS, seed: options.seed });
    return new DiskTraceWorkload(replay, rates ?? new Float64Array(pageCount), options.reads ?? DEFAULT_BLOCK_READS, options.seed ?? 1);
  }
}

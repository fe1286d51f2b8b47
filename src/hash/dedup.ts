// Content-addressed deduplication of pages and storage blocks.
//
// A DedupIndex maps a fast 64-bit digest (XXH3-64 or XXH64) of a unit's
// content to the location where the destination already holds that content
// (a page or block index at the destination). The digest only finds a
// candidate: the index keeps its own copy of each remembered unit in linear
// memory and compares bytes before it answers, so a digest collision is
// counted and never turns into a wrong reference.
//
// Bounded memory: at most `maxEntries` contents are remembered (their copies
// take maxEntries × unitSize bytes, allocated 256 units at a time as the
// index fills). When full, the least recently used entry (remembered or hit)
// is evicted. One entry per digest: a new content whose digest equals an
// entry's replaces it. An entry is invalidated when its location receives
// other content, so every answer is a location that still holds the bytes.
//
// The PageCodec built on it is DedupCodec, in codecs/dedup.ts.

import { checkArrayLike, checkBytes, checkInstance, checkInteger, checkPageSize } from "../errors.js";
import { PageBatch } from "../wasm/arena.js";
import { wasm, type Wasm } from "../wasm/module.js";
import { xxh3Batch, xxh64Batch } from "./xxhash.js";
import { Owned } from "../wasm/owned.js";

export type FastDigest = "xxh3" | "xxh64";

export interface DedupIndexOptions {
  /** Bytes per page or block: a power of two from 512 to 65536 (default 4096). */
  unitSize?: number;
  /** Most contents remembered at once (default 16384); their copies take maxEntries × unitSize bytes. */
  maxEntries?: number;
  /** The fast digest that finds candidates (default "xxh3"). */
  digest?: FastDigest;
  /**
   * Test hook: keep only this many low bits of the fast digest (0..53,
   * default 53), so that different contents collide on purpose.
   */
  digestBits?: number;
}

/** What the index has seen, one comment per field. */
export interface DedupCounters {
  /** units looked up */
  lookups: number;
  /** units found at the destination, bytes confirmed equal */
  hits: number;
  /** units with no remembered content of the same digest */
  misses: number;
  /** units whose digest matched an entry holding other bytes (caught by the byte compare) */
  collisions: number;
  /** bytes that need not travel: unitSize for every hit */
  bytesSaved: number;
  /** entries dropped to stay within maxEntries */
  evictions: number;
  /** entries dropped because their location received other content */
  invalidations: number;
}

/** Highest location the index accepts: references come back in an Int32Array, −1 meaning "new content". */
export const MAX_LOCATION = 0x7fffffff;
const NONE = -1;
const SLAB_UNITS = 256;

function newCounters(): DedupCounters {
  return { lookups: 0, hits: 0, misses: 0, collisions: 0, bytesSaved: 0, evictions: 0, invalidations: 0 };
}

export function checkLocations(locations: ArrayLike<number>, count: number, name: string): void {
  checkArrayLike(name, locations);
  if (locations.length < count) throw new RangeError(`${name} has ${locations.length} entries for ${count} units`);
  for (let k = 0; k < count; k++) {
    const p = locations[k]!;
    if (!Number.isInteger(p) || p < 0 || p > MAX_LOCATION) {
      throw new RangeError(`${name}[${k}] = ${p} is not a location (an integer 0..${MAX_LOCATION})`);
    }
  }
}

/**
 * A map from 64-bit digests (two u32 words) to non-negative integers:
 * linear probing over typed arrays, deletion by backward shift, so that the
 * hot path makes no garbage. Digests are uniformly distributed, so their low
 * word is the probe start.
 */
class DigestTable {
  private lo = new Uint32Array(1024);
  private hi = new Uint32Array(1024);
  /** −1 marks an empty cell */
  private value = new Int32Array(1024).fill(-1);
  size = 0;

  get(lo: number, hi: number): number {
    const mask = this.value.length - 1;
    for (let i = lo & mask; ; i = (i + 1) & mask) {
      const v = this.value[i]!;
      if (v < 0 || (this.lo[i] === lo && this.hi[i] === hi)) return v;
    }
  }

  /** Sets the value for a digest; returns the value it replaced, or −1. */
  set(lo: number, hi: number, value: number): number {
    if (2 * (this.size + 1) > this.value.length) this.grow();
    const mask = this.value.length - 1;
    for (let i = lo & mask; ; i = (i + 1) & mask) {
      const v = this.value[i]!;
      if (v < 0) {
        this.lo[i] = lo;
        this.hi[i] = hi;
        this.value[i] = value;
        this.size++;
        return -1;
      }
      if (this.lo[i] === lo && this.hi[i] === hi) {
        this.value[i] = value;
        return v;
      }
    }
  }

  delete(lo: number, hi: number): void {
    const mask = this.value.length - 1;
    let i = lo & mask;
    while (true) {
      if (this.value[i]! < 0) return;
      if (this.lo[i] === lo && this.hi[i] === hi) break;
      i = (i + 1) & mask;
    }
    this.size--;
    // Backward shift: pull later cells of the probe run into the hole when
    // their home is not between the hole and themselves.
    for (let j = (i + 1) & mask; this.value[j]! >= 0; j = (j + 1) & mask) {
      const home = this.lo[j]! & mask;
      const stays = i <= j ? home > i && home <= j : home > i || home <= j;
      if (stays) continue;
      this.lo[i] = this.lo[j]!;
      this.hi[i] = this.hi[j]!;
      this.value[i] = this.value[j]!;
      i = j;
    }
    this.value[i] = -1;
  }

  clear(): void {
    this.value.fill(-1);
    this.size = 0;
  }

  private grow(): void {
    const { lo, hi, value } = this;
    this.lo = new Uint32Array(2 * value.length);
    this.hi = new Uint32Array(2 * value.length);
    this.value = new Int32Array(2 * value.length).fill(-1);
    this.size = 0;
    for (let i = 0; i < value.length; i++) if (value[i]! >= 0) this.set(lo[i]!, hi[i]!, value[i]!);
  }
}

export class DedupIndex extends Owned {
  readonly unitSize: number;
  readonly maxEntries: number;
  readonly digest: FastDigest;
  readonly counters: DedupCounters = newCounters();
  private readonly loMask: number;
  private readonly hiMask: number;
  private readonly owner: Wasm;
  /** digest → slot */
  private readonly byDigest = new DigestTable();
  /** location → slot */
  private readonly byLocation = new Map<number, number>();
  private readonly slotLo: Uint32Array;
  private readonly slotHi: Uint32Array;
  private readonly slotLocation: Uint32Array;
  // Least-recently-used order: a doubly linked list through the slots, oldest at `head`.
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private head = NONE;
  private tail = NONE;
  private readonly slabs: number[] = [];
  private readonly freeSlots: number[] = [];
  private nextSlot = 0;
  private digests = new BigUint64Array(0);
  private staging: PageBatch | undefined;

  constructor(options: DedupIndexOptions = {}) {
    super();
    this.unitSize = options.unitSize ?? 4096;
    checkPageSize(this.unitSize, "unitSize");
    this.maxEntries = options.maxEntries ?? 16384;
    checkInteger("maxEntries", this.maxEntries, 1, Math.floor(2 ** 31 / this.unitSize));
    this.digest = options.digest ?? "xxh3";
    if (this.digest !== "xxh3" && this.digest !== "xxh64") throw new RangeError(`digest must be "xxh3" or "xxh64", got ${String(this.digest)}`);
    const bits = options.digestBits ?? 53;
    checkInteger("digestBits", bits, 0, 53);
    this.loMask = bits >= 32 ? 0xffffffff : 2 ** bits - 1;
    this.hiMask = bits <= 32 ? 0 : 2 ** (bits - 32) - 1;
    this.owner = wasm();
    this.slotLo = new Uint32Array(this.maxEntries);
    this.slotHi = new Uint32Array(this.maxEntries);
    this.slotLocation = new Uint32Array(this.maxEntries);
    this.prev = new Int32Array(this.maxEntries);
    this.next = new Int32Array(this.maxEntries);
  }

  /** Contents remembered now. */
  get size(): number {
    return this.byDigest.size;
  }

  /**
   * Deduplicates the loaded units of `batch`, unit k being written to
   * `locations[k]` at the destination. refs[k] is the location to copy unit k
   * from, or −1 when its content is new there (it is then remembered at
   * locations[k]). Later units may refer to earlier ones of the same batch.
   */
  dedupe(batch: PageBatch, locations: ArrayLike<number>, refs?: Int32Array): Int32Array {
    this.live();
    this.checkBatch(batch);
    const n = batch.count;
    checkLocations(locations, n, "locations");
    refs ??= new Int32Array(n);
    if (refs.length < n) throw new RangeError(`refs has ${refs.length} entries for ${n} units`);
    const words = this.digestWords(batch);
    const { kernels } = this.owner;
    const c = this.counters;
    for (let k = 0; k < n; k++) {
      const lo = (words[2 * k]! & this.loMask) >>> 0;
      const hi = (words[2 * k + 1]! & this.hiMask) >>> 0;
      const at = locations[k]!;
      const unit = batch.ptr + k * this.unitSize;
      c.lookups++;
      const slot = this.byDigest.get(lo, hi);
      if (slot >= 0 && kernels.pagesEqual(this.slotPtr(slot), unit, this.unitSize)) {
        c.hits++;
        c.bytesSaved += this.unitSize;
        this.unlink(slot);
        this.append(slot);
        const from = this.slotLocation[slot]!;
        refs[k] = from;
        // `at` now holds this content too: whatever was remembered there is gone.
        if (at !== from) this.invalidate(at);
        continue;
      }
      if (slot < 0) c.misses++;
      else c.collisions++;
      refs[k] = NONE;
      this.store(lo, hi, unit, at);
    }
    return refs;
  }

  /**
   * `dedupe` for units held in JavaScript memory (storage blocks, FlimCD's
   * dirty blocks): `blocks` holds whole units back to back, unit k going to
   * `locations[k]`. Staged through a batch of 256 units at a time.
   */
  dedupeBlocks(blocks: Uint8Array, locations: ArrayLike<number>): Int32Array {
    this.live();
    checkBytes("blocks", blocks);
    blocks = this.owner.heap.outside(blocks);
    if (blocks.length % this.unitSize !== 0) throw new RangeError(`blocks has ${blocks.length} bytes, not a multiple of unitSize ${this.unitSize}`);
    const count = blocks.length / this.unitSize;
    checkLocations(locations, count, "locations");
    this.staging ??= new PageBatch(256, this.unitSize);
    const refs = new Int32Array(count);
    for (let at = 0; at < count; at += 256) {
      const n = Math.min(256, count - at);
      this.staging.set(blocks.subarray(at * this.unitSize, (at + n) * this.unitSize));
      this.dedupe(this.staging, Array.prototype.slice.call(locations, at, at + n) as number[], refs.subarray(at, at + n));
    }
    return refs;
  }

  /** Records that the destination holds the loaded units of `batch` at `locations` (e.g. a base image it already has). */
  remember(batch: PageBatch, locations: ArrayLike<number>): void {
    this.live();
    this.checkBatch(batch);
    checkLocations(locations, batch.count, "locations");
    const words = this.digestWords(batch);
    for (let k = 0; k < batch.count; k++) {
      const lo = (words[2 * k]! & this.loMask) >>> 0;
      const hi = (words[2 * k + 1]! & this.hiMask) >>> 0;
      this.store(lo, hi, batch.ptr + k * this.unitSize, locations[k]!);
    }
  }

  /** Forgets the content at `location` (the destination's copy changed outside this index). */
  forget(location: number): void {
    this.live();
    checkLocations([location], 1, "location");
    this.invalidate(location);
  }

  /** Forgets everything (the counters stay). */
  clear(): void {
    this.live();
    this.forgetAll();
  }

  private forgetAll(): void {
    this.byDigest.clear();
    this.byLocation.clear();
    this.freeSlots.length = 0;
    this.nextSlot = 0;
    this.head = this.tail = NONE;
  }

  /** Gives the copies' memory back; the index is unusable afterwards. */
  protected release(): void {
    this.forgetAll();
    for (const ptr of this.slabs) this.owner.heap.release(ptr);
    this.staging?.dispose();
    this.slabs.length = 0;
  }

  private checkBatch(batch: PageBatch): void {
    this.live();
    checkInstance("batch", batch, PageBatch);
    if (batch.pageSize !== this.unitSize) throw new RangeError(`batch.pageSize ${batch.pageSize} != the index's unitSize ${this.unitSize}`);
  }

  /** The batch's fast digests as (low, high) 32-bit word pairs. */
  private digestWords(batch: PageBatch): Uint32Array {
    if (this.digests.length < batch.count) this.digests = new BigUint64Array(Math.max(batch.count, 2 * this.digests.length));
    const out = this.digests;
    if (this.digest === "xxh3") xxh3Batch(batch, { out });
    else xxh64Batch(batch, { out });
    return new Uint32Array(out.buffer, out.byteOffset, 2 * batch.count);
  }

  private slotPtr(slot: number): number {
    return this.slabs[Math.floor(slot / SLAB_UNITS)]! + (slot % SLAB_UNITS) * this.unitSize;
  }

  /** Remembers the unit at `unit` (linear memory) as held at `at`, under its digest. */
  private store(lo: number, hi: number, unit: number, at: number): void {
    this.invalidate(at);
    const replaced = this.byDigest.get(lo, hi);
    if (replaced >= 0) this.drop(replaced);
    const slot = this.takeSlot();
    this.owner.heap.bytes().copyWithin(this.slotPtr(slot), unit, unit + this.unitSize);
    this.slotLo[slot] = lo;
    this.slotHi[slot] = hi;
    this.slotLocation[slot] = at;
    this.byDigest.set(lo, hi, slot);
    this.byLocation.set(at, slot);
    this.append(slot);
  }

  private invalidate(at: number): void {
    const slot = this.byLocation.get(at);
    if (slot === undefined) return;
    this.counters.invalidations++;
    this.drop(slot);
  }

  private drop(slot: number): void {
    this.byDigest.delete(this.slotLo[slot]!, this.slotHi[slot]!);
    this.byLocation.delete(this.slotLocation[slot]!);
    this.unlink(slot);
    this.freeSlots.push(slot);
  }

  private append(slot: number): void {
    this.prev[slot] = this.tail;
    this.next[slot] = NONE;
    if (this.tail >= 0) this.next[this.tail] = slot;
    else this.head = slot;
    this.tail = slot;
  }

  private unlink(slot: number): void {
    const before = this.prev[slot]!;
    const after = this.next[slot]!;
    if (before >= 0) this.next[before] = after;
    else this.head = after;
    if (after >= 0) this.prev[after] = before;
    else this.tail = before;
  }

  private takeSlot(): number {
    const free = this.freeSlots.pop();
    if (free !== undefined) return free;
    if (this.nextSlot < this.maxEntries) {
      const slot = this.nextSlot++;
      if (slot % SLAB_UNITS === 0 && this.slabs.length === slot / SLAB_UNITS) {
        // Allocation may grow memory: nothing holds a view across it.
        this.slabs.push(this.owner.heap.alloc(Math.min(SLAB_UNITS, this.maxEntries - slot) * this.unitSize));
      }
      return slot;
    }
    // Full: evict the least recently used entry.
    this.counters.evictions++;
    this.drop(this.head);
    return this.freeSlots.pop()!;
  }
}

/**
 * Counts duplicate units by their XXH3-64 digest, for reports (`pagemill
 * scan`): exact up to 64-bit digest collisions, which are vanishingly rare
 * at image sizes (n²/2^65). Takes at most 24 bytes per distinct unit.
 */
export class DuplicateCounter {
  /** units counted */
  units = 0;
  /** units whose content appeared before */
  duplicates = 0;
  private readonly seen = new DigestTable();
  private digests = new BigUint64Array(0);

  /** Counts the loaded units of `batch`, skipping slot k when skip[k] is non-zero (e.g. zero pages). Returns the duplicates found. */
  add(batch: PageBatch, skip?: Uint8Array): number {
    checkInstance("batch", batch, PageBatch);
    if (skip !== undefined) checkBytes("skip", skip);
    if (this.digests.length < batch.count) this.digests = new BigUint64Array(batch.count);
    const words = new Uint32Array(this.digests.buffer, 0, 2 * batch.count);
    xxh3Batch(batch, { out: this.digests });
    let found = 0;
    for (let k = 0; k < batch.count; k++) {
      if (skip?.[k]) continue;
      this.units++;
      if (this.seen.set(words[2 * k]!, words[2 * k + 1]!, 0) >= 0) found++;
    }
    this.duplicates += found;
    return found;
  }
}

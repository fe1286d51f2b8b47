// Workloads: what runs in a guest while an engine migrates it (the contract
// is in ./guest.ts). Every workload here is a stream of accesses in its own
// work time, generated from a seed in time order, so the memory it produces
// does not depend on how an engine slices time into advance() calls.
//
// - PoissonWorkload: each page is written at its own Poisson rate λᵢ (the
//   per-page model of fractional hybrid-copy); popularity uniform, hot/cold
//   (e.g. 10% of pages take 90% of the writes) or Zipf.
// - SweepWorkload: a program streaming through a buffer at a set byte rate,
//   overwriting every page in turn (the worst case for pre-copy).
// - IdleWorkload: no accesses.
// - TraceReplay: a recorded pagetrace, epochs applied at their recorded times.
//
// What a write does to a page is a ContentModel (a few words changed, the
// whole page rewritten, or zeroed), calibrated from the shared traces; the
// initial memory of a model guest is a synthetic image with the traces' zero
// share, duplicate share and per-page compressibility (syntheticImage).
//
// Reads. Traces hold only writes, so the pages a post-copy destination must
// have are defined here as: every page written partially (a write that
// changes part of a page reads the rest: kind "write"), plus the reads of a
// ReadModel: after each write, Poisson(perWrite) reads, each of a page drawn
// uniformly from the last `window` writes (the working set the program is
// busy with; a page written often is read often) or, with probability
// `uniformShare`, of any page of the guest. Whole-page overwrites need no
// read. Defaults (DEFAULT_READS): one read per write, a window of 4096
// writes, 5% of reads anywhere; sweeps read nothing by default. Reads come
// from their own random stream, so changing the read model never changes the
// writes.

import { isZeroPage } from "../codecs/zero.js";
import { PagemillError, checkInteger } from "../errors.js";
import { Guest, type AdvanceReport, type Workload } from "./guest.js";
import { FlatPages, type PageMemory } from "./pages.js";
import { ChunkedPages } from "./chunks.js";
import { TraceReader, xorWords, type TraceEpoch, type TraceHeader } from "./pagetrace.js";
import { Random } from "../random.js";

/** Derives an independent seed for a sub-stream (writes, reads, content...). */
export function subSeed(seed: number, stream: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x27d4eb2d) + Math.imul(stream + 1, 0x165667b1)) >>> 0;
}

// ---------------------------------------------------------------------------
// Content: what a write does to a page.

/**
 * What one write does to a page. A write zeroes the page with probability
 * `zeroed`, rewrites all of it with `whole`, and otherwise changes
 * `partialRuns` runs of 64-bit words (on average; `partialWords` words in
 * all, `partialBytes` bytes of them changed).
 */
export interface ContentModel {
  readonly zeroed: number;
  readonly whole: number;
  readonly partialBytes: number;
  readonly partialWords: number;
  readonly partialRuns: number;
}

/**
 * Content models measured on the shared traces (../shared/traces, 4 KiB
 * pages) by scripts/calibrate-workloads.js, and checked against them by
 * test/pagetrace.test.ts: every dirty page of every epoch, its XOR delta
 * classified as zeroed (new content all zero), whole (every 64-bit word
 * changed) or partial; for partial pages the mean changed bytes, changed
 * words and runs of changed words. Mean changed bytes per dirty page over
 * all kinds: redis 415, node-gc 849, memstream 4048.
 */
export const CONTENT_MODELS = {
  redis: { zeroed: 0.0419, whole: 0.026, partialBytes: 151.6, partialWords: 29.37, partialRuns: 14.2 },
  "node-gc": { zeroed: 0.0247, whole: 0.0282, partialBytes: 746.7, partialWords: 139.2, partialRuns: 15.0 },
  memstream: { zeroed: 0, whole: 1, partialBytes: 0, partialWords: 0, partialRuns: 0 },
} as const satisfies Record<string, ContentModel>;

/** Mean changed bytes per dirty page the traces show (the figure the models reproduce). */
export const TRACE_CHANGED_BYTES = { redis: 415, "node-gc": 849, memstream: 4048 } as const;

export type ProfileName = keyof typeof CONTENT_MODELS;

function checkContentModel(m: ContentModel): void {
  for (const key of ["zeroed", "whole"] as const) {
    if (!(m[key] >= 0 && m[key] <= 1)) throw new RangeError(`content.${key} must be in [0, 1], got ${m[key]}`);
  }
  if (m.zeroed + m.whole > 1) throw new RangeError(`content.zeroed + content.whole must be at most 1`);
  if (m.zeroed + m.whole < 1 && !(m.partialRuns >= 1 && m.partialWords >= m.partialRuns && m.partialBytes >= m.partialWords)) {
    throw new RangeError("content needs partialWords >= partialRuns >= 1 and partialBytes >= partialWords for partial writes");
  }
}

/**
 * Applies writes to a guest's pages according to a ContentModel, with its own
 * random stream; whole-page rewrites take their new content from a bank of
 * synthetic pages (so rewritten pages compress like the image).
 */
export class ContentWriter {
  private readonly random: Random;
  private readonly bank: PageBank;
  private readonly wordsPerRun: number;
  private readonly byteChance: number;

  constructor(
    readonly model: ContentModel,
    seed: number,
    pageSize: number,
    profile: ImageProfile = IMAGE_PROFILES.redis,
  ) {
    checkContentModel(model);
    this.random = new Random(seed);
    this.bank = new PageBank(profile, pageSize, subSeed(seed, 7), 64);
    this.wordsPerRun = model.partialRuns > 0 ? model.partialWords / model.partialRuns : 1;
    this.byteChance = model.partialWords > 0 ? Math.min(1, model.partialBytes / model.partialWords / 8) : 1;
  }

  /** Writes page `page` of `guest` once (hook, dirty log, new content). */
  write(guest: Guest, page: number): void {
    const r = this.random.float();
    const ps = guest.pageSize;
    // Zeroing a page that is already zero changes nothing; the traces' zeroed
    // share counts pages that changed, so such a write reuses the page instead.
    if (r < this.model.zeroed && !guest.memory.isZero(page) && !isZeroPage(guest.page(page))) {
      guest.clear(page);
    } else if (r < this.model.zeroed + this.model.whole) {
      const view = guest.beginWrite(page, true);
      this.bank.copy(this.random.int(this.bank.size), view, 0);
      stampWord(view, 8 * this.random.int(ps / 8), this.random);
    } else {
      this.partial(guest.beginWrite(page, false), ps);
    }
  }

  private partial(mem: Uint8Array, ps: number): void {
    const random = this.random;
    const wordsInPage = ps / 8;
    const runs = 1 + random.poisson(this.model.partialRuns - 1);
    for (let r = 0; r < runs; r++) {
      // Run lengths are geometric with the measured mean (at least one word).
      const length = Math.min(wordsInPage, 1 + Math.floor(random.exp() * (this.wordsPerRun - 0.5)));
      const first = random.int(wordsInPage - length + 1);
      for (let w = first; w < first + length; w++) {
        const base = 8 * w;
        let changed = false;
        for (let b = 0; b < 8; b++) {
          if (random.float() < this.byteChance) {
            mem[base + b]! ^= 1 + random.int(255);
            changed = true;
          }
        }
        if (!changed) mem[base]! ^= 1 + random.int(255);
      }
    }
  }
}

/** XORs a random non-zero 64-bit value into the word at `at` (makes a page unique). */
function stampWord(mem: Uint8Array, at: number, random: Random): void {
  const lo = random.u32() | 1;
  const hi = random.u32();
  for (let b = 0; b < 4; b++) {
    mem[at + b]! ^= (lo >>> (8 * b)) & 0xff;
    mem[at + 4 + b]! ^= (hi >>> (8 * b)) & 0xff;
  }
}

/**
 * Measures what writes did to pages, the way CONTENT_MODELS were calibrated:
 * feed it each dirty page's content before the change and its XOR delta.
 */
export class ContentStats {
  dirtyPages = 0;
  changedBytes = 0;
  zeroed = 0;
  whole = 0;
  partial = 0;
  partialBytes = 0;
  partialWords = 0;
  partialRuns = 0;

  /** `old` and `delta` are one page each (pageSize bytes, pageSize a multiple of 8). */
  add(old: Uint8Array, delta: Uint8Array): void {
    this.dirtyPages++;
    let bytes = 0;
    let words = 0;
    let runs = 0;
    let inRun = false;
    let newIsZero = true;
    for (let w = 0; w < delta.length; w += 8) {
      let changed = false;
      for (let i = w; i < w + 8; i++) {
        const d = delta[i]!;
        if (d !== 0) {
          bytes++;
          changed = true;
        }
        if ((old[i]! ^ d) !== 0) newIsZero = false;
      }
      if (changed) {
        words++;
        if (!inRun) runs++;
      }
      inRun = changed;
    }
    this.changedBytes += bytes;
    if (newIsZero) this.zeroed++;
    else if (words === delta.length / 8) this.whole++;
    else {
      this.partial++;
      this.partialBytes += bytes;
      this.partialWords += words;
      this.partialRuns += runs;
    }
  }

  /** Mean changed bytes per dirty page. */
  get meanChangedBytes(): number {
    return this.dirtyPages ? this.changedBytes / this.dirtyPages : 0;
  }

  /** The content model these pages fit. */
  model(): ContentModel {
    const n = this.dirtyPages || 1;
    const p = this.partial || 1;
    return {
      zeroed: this.zeroed / n,
      whole: this.whole / n,
      partialBytes: this.partialBytes / p,
      partialWords: this.partialWords / p,
      partialRuns: this.partialRuns / p,
    };
  }
}

// ---------------------------------------------------------------------------
// Synthetic images.

/**
 * What a guest image looks like: the share of zero pages, the share of
 * non-zero pages that duplicate another page, and the deciles (0%, 10%, ...
 * 100%) of a non-zero page's deflate size (level 1) as a fraction of the page.
 */
export interface ImageProfile {
  readonly zeroShare: number;
  readonly duplicateShare: number;
  readonly deflateDeciles: readonly number[];
}

/**
 * Image profiles measured on the shared traces' time-0 images by
 * scripts/calibrate-workloads.js (deflate deciles over every third non-zero
 * page, zlib level 1, raw deflate; duplicates by SHA-1 over all non-zero
 * pages).
 */
export const IMAGE_PROFILES = {
  redis: {
    zeroShare: 0.452,
    duplicateShare: 0.7795,
    deflateDeciles: [0.011, 0.067, 0.067, 0.067, 0.067, 0.067, 0.068, 0.068, 0.072, 0.273, 1.001],
  },
  "node-gc": {
    zeroShare: 0.7908,
    duplicateShare: 0.0128,
    deflateDeciles: [0.01, 0.156, 0.178, 0.196, 0.217, 0.235, 0.246, 0.278, 0.323, 0.399, 0.808],
  },
  memstream: {
    zeroShare: 0.0021,
    duplicateShare: 0.9993,
    deflateDeciles: [0.011, 0.168, 0.18, 0.18, 0.18, 0.18, 0.18, 0.18, 0.18, 0.18, 0.259],
  },
} as const satisfies Record<ProfileName, ImageProfile>;

/** Share of a page's bytes that must be random for deflate to reach `fraction` (random bytes cost ~1.03 B each). */
function randomShareFor(fraction: number): number {
  return Math.max(0, Math.min(1, (fraction - 0.025) / 1.03));
}

/**
 * A bank of template pages with a profile's compressibility: each page is a
 * repeated 16-byte motif (low entropy, like tables and text) with 64-byte
 * blocks of random bytes (like pointers and payloads) covering the share of
 * the page that makes deflate reach a size drawn from the profile's deciles.
 */
class PageBank {
  readonly size: number;
  private readonly pages: Uint8Array;

  constructor(
    profile: ImageProfile,
    private readonly pageSize: number,
    seed: number,
    size: number,
  ) {
    this.size = size;
    this.pages = new Uint8Array(size * pageSize);
    const random = new Random(seed);
    const d = profile.deflateDeciles;
    for (let k = 0; k < size; k++) {
      // A deflate fraction drawn from the deciles, interpolated linearly.
      const u = ((k + random.float()) / size) * (d.length - 1);
      const i = Math.min(d.length - 2, Math.floor(u));
      const fraction = d[i]! + (d[i + 1]! - d[i]!) * (u - i);
      this.fill(this.pages.subarray(k * pageSize, (k + 1) * pageSize), randomShareFor(fraction), random);
    }
  }

  private fill(page: Uint8Array, randomShare: number, random: Random): void {
    const motif = new Uint8Array(16);
    for (let i = 0; i < 16; i++) motif[i] = random.int(16) === 0 ? 0 : 32 + random.int(95);
    for (let i = 0; i < page.length; i += 16) page.set(motif, i);
    const blocks = page.length / 64;
    let left = Math.round(randomShare * blocks);
    // Choose `left` distinct blocks (selection sampling keeps them spread out).
    for (let b = 0; b < blocks && left > 0; b++) {
      if (random.float() * (blocks - b) < left) {
        for (let i = b * 64; i < b * 64 + 64; i += 4) {
          const v = random.u32();
          page[i] = v;
          page[i + 1] = v >>> 8;
          page[i + 2] = v >>> 16;
          page[i + 3] = v >>> 24;
        }
        left--;
      }
    }
    if (page.every((x) => x === 0)) page[0] = 1;
  }

  copy(k: number, into: Uint8Array, at: number): void {
    into.set(this.pages.subarray(k * this.pageSize, (k + 1) * this.pageSize), at);
  }
}

export interface SyntheticImageOptions {
  /** A named trace profile or an ImageProfile (redis by default). */
  profile?: ProfileName | ImageProfile;
  seed?: number;
  pageSize?: number;
  /**
   * Pages that hold data, about (default: the profile's share of all). The
   * rest stay zero and cost nothing in a sparse memory: the guest touches
   * whole regions of POPULATED_REGION_PAGES, as its allocations do, each
   * with the probability that gives `populated` non-zero pages; inside a
   * touched region the profile holds (its zero share included).
   */
  populated?: number;
}

/** Pages per region a synthetic guest touches or leaves (1 MiB of 4 KiB pages: one sparse chunk). */
export const POPULATED_REGION_PAGES = 256;

/**
 * A synthetic guest image of `pageCount` pages with a trace's zero share,
 * duplicate share and compressibility, as flat bytes; see fillSynthetic.
 */
export function syntheticImage(pageCount: number, options: SyntheticImageOptions = {}): Uint8Array {
  const pageSize = options.pageSize ?? 4096;
  checkInteger("pageCount", pageCount, 0, Math.floor(2 ** 32 / pageSize));
  const memory = new FlatPages(new Uint8Array(pageCount * pageSize), pageSize);
  fillSynthetic(memory, options);
  return memory.bytes;
}

/**
 * Fills an all-zero `memory` with a synthetic image. Fast enough for
 * multi-GiB guests: zero pages are never touched, other pages are copies of
 * a bank of 256 templates; unless drawn as a duplicate (a copy of one of 16
 * templates), each copy gets one random 64-bit word so that it is unique
 * (dedup sees the profile's duplicate share).
 */
export function fillSynthetic(memory: PageMemory, options: SyntheticImageOptions = {}): void {
  const { pageSize, pageCount } = memory;
  const profile = resolveProfile(options.profile);
  const seed = options.seed ?? 1;
  const touched = options.populated === undefined ? 1 : options.populated / (pageCount * (1 - profile.zeroShare));
  if (options.populated !== undefined) checkInteger("populated", options.populated, 0, pageCount);
  const bank = new PageBank(profile, pageSize, subSeed(seed, 1), 256);
  const random = new Random(subSeed(seed, 2));
  const regions = new Random(subSeed(seed, 3));
  const words = pageSize / 8;
  for (let p = 0; p < pageCount; p++) {
    if (touched < 1 && p % POPULATED_REGION_PAGES === 0 && !(regions.float() < touched)) {
      p += POPULATED_REGION_PAGES - 1;
      continue;
    }
    if (random.float() < profile.zeroShare) continue;
    const page = memory.writable(p);
    if (random.float() < profile.duplicateShare) {
      // Duplicates come from a few templates (spread over the bank's range of
      // compressibility), as redis's pages of equal values do.
      bank.copy(random.int(DUPLICATE_TEMPLATES) * (bank.size / DUPLICATE_TEMPLATES), page, 0);
    } else {
      bank.copy(random.int(bank.size), page, 0);
      stampWord(page, 8 * random.int(words), random);
    }
  }
}

/** Templates the duplicate pages of a synthetic image are copies of. */
const DUPLICATE_TEMPLATES = 16;

/** A Guest holding a synthetic image (see fillSynthetic) in sparse memory. */
export function syntheticGuest(pageCount: number, options: SyntheticImageOptions = {}): Guest {
  const guest = new Guest(pageCount, options.pageSize ?? 4096);
  try {
    fillSynthetic(guest.memory, options);
  } catch (error) {
    guest.dispose();
    throw error;
  }
  return guest;
}

function resolveProfile(profile: ProfileName | ImageProfile | undefined): ImageProfile {
  if (profile === undefined) return IMAGE_PROFILES.redis;
  if (typeof profile === "string") {
    const known = IMAGE_PROFILES[profile];
    if (!known) throw new RangeError(`unknown profile '${profile}' (known: ${Object.keys(IMAGE_PROFILES).join(", ")})`);
    return known;
  }
  return profile;
}

function resolveContent(content: ProfileName | ContentModel | undefined, fallback: ContentModel): ContentModel {
  if (content === undefined) return fallback;
  if (typeof content === "string") {
    const known = CONTENT_MODELS[content];
    if (!known) throw new RangeError(`unknown content model '${content}' (known: ${Object.keys(CONTENT_MODELS).join(", ")})`);
    return known;
  }
  return content;
}

// ---------------------------------------------------------------------------
// Reads.

/** See the module comment: the reads a post-copy destination must serve. */
export interface ReadModel {
  /** Mean reads after each write (Poisson); 0 leaves only the partial writes' reads. */
  readonly perWrite: number;
  /** Reads are of one of the last `window` pages written... */
  readonly window: number;
  /** ...or, with this probability, of any page of the guest. */
  readonly uniformShare: number;
}

export const DEFAULT_READS: ReadModel = { perWrite: 1, window: 4096, uniformShare: 0.05 };
export const NO_READS: ReadModel = { perWrite: 0, window: 1, uniformShare: 0 };

class ReadGenerator {
  private readonly random: Random;
  private readonly recent: Uint32Array;
  private filled = 0;
  private next = 0;

  constructor(
    readonly model: ReadModel,
    seed: number,
  ) {
    if (!(model.perWrite >= 0)) throw new RangeError(`reads.perWrite must be >= 0, got ${model.perWrite}`);
    checkInteger("reads.window", model.window, 1, 2 ** 24);
    if (!(model.uniformShare >= 0 && model.uniformShare <= 1)) throw new RangeError(`reads.uniformShare must be in [0, 1], got ${model.uniformShare}`);
    this.random = new Random(seed);
    this.recent = new Uint32Array(model.window);
  }

  /** Called after each write of `page`: issues that write's reads. */
  afterWrite(guest: Guest, page: number): void {
    this.recent[this.next] = page;
    this.next = (this.next + 1) % this.recent.length;
    if (this.filled < this.recent.length) this.filled++;
    if (this.model.perWrite === 0) return;
    for (let n = this.random.poisson(this.model.perWrite); n > 0; n--) {
      const read = this.random.float() < this.model.uniformShare ? this.random.int(guest.pageCount) : this.recent[this.random.int(this.filled)]!;
      guest.read(read);
    }
  }
}

// ---------------------------------------------------------------------------
// The common part: time, throttle, reports.

export abstract class BaseWorkload implements Workload {
  abstract readonly name: string;
  now = 0;
  /** Time not run because of the throttle (kept apart so that throttle 1 adds exactly 0). */
  private paused = 0;
  private share = 1;
  private advancing = false;

  constructor(readonly guest: Guest) {}

  get workTime(): number {
    return this.now - this.paused;
  }

  get throttle(): number {
    return this.share;
  }

  set throttle(value: number) {
    if (!(value >= 0 && value <= 1)) throw new RangeError(`throttle must be in [0, 1], got ${value}`);
    this.share = value;
  }

  async advance(to: number): Promise<AdvanceReport> {
    if (!(to >= this.now) || !Number.isFinite(to)) throw new RangeError(`advance(to): to must be finite and >= now (${this.now}), got ${to}`);
    if (this.advancing) throw new PagemillError(`${this.name}: advance() called again before the previous one finished`);
    this.advancing = true;
    try {
      return await this.step(to);
    } finally {
      this.advancing = false;
    }
  }

  private async step(to: number): Promise<AdvanceReport> {
    const from = this.now;
    const before = { w: this.guest.writes, o: this.guest.overwrites, r: this.guest.reads };
    const workFrom = this.workTime;
    this.paused += (to - from) * (1 - this.share);
    this.now = to;
    const workTo = this.workTime;
    if (workTo > workFrom) await this.run(workFrom, workTo);
    return {
      ran: workTo - workFrom,
      writes: this.guest.writes - before.w,
      overwrites: this.guest.overwrites - before.o,
      reads: this.guest.reads - before.r,
    };
  }

  /** Applies the accesses due in work time (from, to]. */
  protected abstract run(from: number, to: number): void | Promise<void>;

  async close(): Promise<void> {}
}

// ---------------------------------------------------------------------------
// Models.

/** How writes spread over pages. */
export type Popularity =
  | { readonly kind: "uniform" }
  /** `hotPages` of the pages (a fraction) take `hotWrites` of the writes. */
  | { readonly kind: "hot-cold"; readonly hotPages: number; readonly hotWrites: number }
  /** The page of rank r (1-based) is written in proportion to 1 / r^exponent. */
  | { readonly kind: "zipf"; readonly exponent: number };

export interface PoissonOptions {
  /** λ: mean writes per second per page (the total rate is λ · pageCount). */
  rate: number;
  popularity?: Popularity;
  /** What a write does (redis by default). */
  content?: ProfileName | ContentModel;
  /** Profile of the pages a whole-page rewrite writes (redis by default). */
  image?: ProfileName | ImageProfile;
  reads?: ReadModel;
  seed?: number;
}

/**
 * Per-page Poisson writes: page i is written at rate λᵢ, the λᵢ averaging
 * `rate` and spread by `popularity`. Hot pages (hot-cold) and ranks (Zipf)
 * are scattered over the guest by a seeded permutation.
 */
export class PoissonWorkload extends BaseWorkload {
  readonly name: string;
  /** Total writes per second of work time. */
  readonly totalRate: number;
  private readonly random: Random;

  get writeRate(): number {
    return this.totalRate;
  }
  private readonly content: ContentWriter;
  private readonly reads: ReadGenerator;
  private readonly pick: () => number;
  private readonly rankOf: (page: number) => number;
  private readonly rankShare: (rank: number) => number;
  private nextEvent: number;

  constructor(guest: Guest, options: PoissonOptions) {
    super(guest);
    const n = guest.pageCount;
    if (!(options.rate >= 0) || !Number.isFinite(options.rate)) throw new RangeError(`rate must be a finite number >= 0, got ${options.rate}`);
    const popularity = options.popularity ?? { kind: "uniform" };
    const seed = options.seed ?? 1;
    this.name = `poisson(${options.rate}/s/page, ${popularity.kind})`;
    this.totalRate = options.rate * n;
    this.random = new Random(subSeed(seed, 10));
    this.content = new ContentWriter(resolveContent(options.content, CONTENT_MODELS.redis), subSeed(seed, 11), guest.pageSize, resolveProfile(options.image));
    this.reads = new ReadGenerator(options.reads ?? DEFAULT_READS, subSeed(seed, 12));
    // rank → page: a seeded shuffle (Fisher–Yates), built only when ranks matter.
    let pageOfRank: Uint32Array | undefined;
    let rankOfPage: Uint32Array | undefined;
    if (popularity.kind !== "uniform") {
      pageOfRank = new Random(subSeed(seed, 13)).permutation(n);
      rankOfPage = new Uint32Array(n);
      for (let r = 0; r < n; r++) rankOfPage[pageOfRank[r]!] = r;
    }
    const toPage = (rank: number): number => pageOfRank![rank]!;
    this.rankOf = (page) => (rankOfPage ? rankOfPage[page]! : page);
    const random = this.random;
    switch (popularity.kind) {
      case "uniform":
        this.pick = () => random.int(n);
        this.rankShare = () => 1 / n;
        break;
      case "hot-cold": {
        const { hotPages, hotWrites } = popularity;
        if (!(hotPages > 0 && hotPages < 1) || !(hotWrites >= 0 && hotWrites <= 1)) {
          throw new RangeError(`hot-cold needs hotPages in (0, 1) and hotWrites in [0, 1], got ${hotPages}, ${hotWrites}`);
        }
        if (n < 2) throw new RangeError(`hot-cold needs a guest of at least 2 pages, got ${n}`);
        const hot = Math.max(1, Math.min(n - 1, Math.round(hotPages * n)));
        this.pick = () => toPage(random.float() < hotWrites ? random.int(hot) : hot + random.int(n - hot));
        this.rankShare = (r) => (r < hot ? hotWrites / hot : (1 - hotWrites) / (n - hot));
        break;
      }
      case "zipf": {
        const s = popularity.exponent;
        if (!(s >= 0) || !Number.isFinite(s)) throw new RangeError(`zipf exponent must be >= 0, got ${s}`);
        const cdf = new Float64Array(n);
        let total = 0;
        for (let r = 0; r < n; r++) cdf[r] = total += 1 / Math.pow(r + 1, s);
        for (let r = 0; r < n; r++) cdf[r]! /= total;
        this.pick = () => {
          const u = random.float();
          let lo = 0;
          let hi = n - 1;
          while (lo < hi) {
            const mid = (lo + hi) >>> 1;
            if (cdf[mid]! > u) hi = mid;
            else lo = mid + 1;
          }
          return toPage(lo);
        };
        this.rankShare = (r) => 1 / Math.pow(r + 1, s) / total;
        break;
      }
      default:
        throw new RangeError(`unknown popularity ${(popularity as { kind: string }).kind}`);
    }
    this.nextEvent = this.totalRate > 0 && n > 0 ? this.random.exp() / this.totalRate : Infinity;
  }

  /** λᵢ: the write rate (per second of work time) of page `page`. */
  pageRate(page: number): number {
    checkInteger("page", page, 0, this.guest.pageCount - 1);
    return this.totalRate * this.rankShare(this.rankOf(page));
  }

  protected run(_from: number, to: number): void {
    while (this.nextEvent <= to) {
      const page = this.pick();
      this.content.write(this.guest, page);
      this.reads.afterWrite(this.guest, page);
      this.nextEvent += this.random.exp() / this.totalRate;
    }
  }
}

export interface SweepOptions {
  /** Bytes per second the program writes. */
  rate: number;
  /** First page of the buffer (0 by default). */
  first?: number;
  /** Pages in the buffer (the rest of the guest by default). */
  pages?: number;
  reads?: ReadModel;
  seed?: number;
}

/**
 * A program streaming through a buffer, front to back and around again, at
 * `rate` bytes/s: the k-th page write (k = 0, 1, ...) completes at work time
 * (k + 1) · pageSize / rate and overwrites page first + k mod pages. Like the
 * memstream trace, each pass XORs every word of the page with the pass's own
 * 64-bit mask, so a page's delta is one word repeated.
 */
export class SweepWorkload extends BaseWorkload {
  readonly name: string;
  readonly first: number;
  readonly pages: number;
  readonly rate: number;

  get writeRate(): number {
    return this.rate / this.guest.pageSize;
  }
  private readonly seed: number;
  private readonly reads: ReadGenerator;
  /** Page writes done so far. */
  private done = 0;
  private mask = new Uint8Array(8);
  private maskPass = -1;

  constructor(guest: Guest, options: SweepOptions) {
    super(guest);
    if (!(options.rate > 0) || !Number.isFinite(options.rate)) throw new RangeError(`rate must be a finite number > 0, got ${options.rate}`);
    this.first = options.first ?? 0;
    checkInteger("first", this.first, 0, Math.max(0, guest.pageCount - 1));
    this.pages = options.pages ?? guest.pageCount - this.first;
    checkInteger("pages", this.pages, 1, guest.pageCount - this.first);
    this.rate = options.rate;
    this.seed = options.seed ?? 1;
    this.reads = new ReadGenerator(options.reads ?? NO_READS, subSeed(this.seed, 20));
    this.name = `sweep(${options.rate} B/s over ${this.pages} pages)`;
  }

  protected run(_from: number, to: number): void {
    const ps = this.guest.pageSize;
    const target = Math.floor((to * this.rate) / ps);
    for (; this.done < target; this.done++) {
      const pass = Math.floor(this.done / this.pages);
      if (pass !== this.maskPass) this.newMask(pass);
      const page = this.first + (this.done % this.pages);
      const view = this.guest.beginWrite(page, true);
      const m = this.mask;
      for (let i = 0; i < ps; i++) view[i]! ^= m[i & 7]!;
      this.reads.afterWrite(this.guest, page);
    }
  }

  private newMask(pass: number): void {
    const random = new Random(subSeed(this.seed, 1000 + pass));
    for (let i = 0; i < 8; i++) this.mask[i] = 1 + random.int(255);
    this.maskPass = pass;
  }
}

/** A guest whose program does nothing. */
export class IdleWorkload extends BaseWorkload {
  readonly name = "idle";
  readonly writeRate = 0;
  protected run(): void {}
}

// ---------------------------------------------------------------------------
// Trace replay.

export interface TraceReplayOptions {
  /** Start again after the last epoch (true by default); otherwise the guest goes idle. */
  loop?: boolean;
  /**
   * Apply an epoch's pages one by one, evenly over the time since the epoch
   * before, in a seeded random order (false: all at the epoch's time). The
   * trace says a page changed between two snapshots, not when; when a
   * snapshot came late, all at its time makes a quiet gap the program did
   * not have.
   */
  spread?: boolean;
  reads?: ReadModel;
  seed?: number;
}

/**
 * Replays a pagetrace: the guest starts as the trace's image and epoch e is
 * applied at work time elapsedMicros(e) (plus the start of the current pass).
 * Each dirty page is one access: "overwrite" when every 64-bit word of its
 * delta is non-zero (every word was stored to), "write" otherwise.
 *
 * Looping: pass k + 1 starts one interval after the last epoch of pass k and
 * applies the same XOR deltas again, streamed from the file anew. XOR with a
 * non-zero delta always changes a page, so every pass has exactly the
 * recorded dirty sets, times and delta bytes. The contents alternate: odd
 * passes go through the recorded states exactly; even passes through each
 * recorded state XOR the trace's net change (final image XOR image), and end
 * on the time-0 image, so pass 3 is pass 1 again.
 */
export class TraceReplay extends BaseWorkload {
  readonly name: string;
  /** Pass of the last epoch applied (1 during the first). */
  pass = 1;
  private pendingPass = 1;
  /** Epochs applied, over all passes. */
  epochsApplied = 0;
  private passStart = 0;
  private lastElapsed = 0;
  private epochs: AsyncGenerator<TraceEpoch> | undefined;
  private pending: TraceEpoch | undefined;
  /** spread: the pending epoch's pages (indices into it) in the order they are applied, and how many were. */
  private order: Uint32Array | undefined;
  private applied = 0;
  /** Work time of the last epoch applied whole (spread: where the pending one's span starts). */
  private appliedAt = 0;
  private readonly reads: ReadGenerator;
  private readonly loop: boolean;
  private readonly shuffle: Random | undefined;

  /** At most: every page in every epoch (the header does not say how many an epoch dirties); none without epochs. */
  get writeRate(): number {
    return this.header.epochCount === 0 ? 0 : (this.header.pageCount * 1e6) / this.header.intervalMicros;
  }

  private constructor(
    guest: Guest,
    readonly path: string,
    readonly header: TraceHeader,
    reader: TraceReader,
    options: TraceReplayOptions,
  ) {
    super(guest);
    this.name = `trace(${path})`;
    this.loop = options.loop ?? true;
    this.reads = new ReadGenerator(options.reads ?? DEFAULT_READS, subSeed(options.seed ?? 1, 30));
    if (options.spread) this.shuffle = new Random(subSeed(options.seed ?? 1, 31));
    this.epochs = reader.epochs();
  }

  /** Opens `path`; the guest (trace.guest) holds the trace's image. `init()` must have completed. */
  static async open(path: string, options: TraceReplayOptions = {}): Promise<TraceReplay> {
    const reader = await TraceReader.open(path, { into: ({ pageCount, pageSize }) => new ChunkedPages(pageCount, pageSize) });
    const { pageCount, pageSize } = reader.header;
    const guest = new Guest(pageCount, pageSize, reader.memory!);
    return new TraceReplay(guest, path, reader.header, reader, options);
  }

  /** Work time at which the epoch waiting to be applied is due, or Infinity. */
  private async due(): Promise<number> {
    while (!this.pending) {
      if (!this.epochs) return Infinity;
      const next = await this.epochs.next();
      if (!next.done) {
        this.pending = next.value;
        break;
      }
      if (!this.loop || this.epochsApplied === 0) {
        this.epochs = undefined;
        return Infinity;
      }
      this.passStart += (this.lastElapsed + this.header.intervalMicros) / 1e6;
      this.pendingPass++;
      const reader = await TraceReader.open(this.path, { skipImage: true });
      this.epochs = reader.epochs();
    }
    return this.passStart + this.pending.elapsedMicros / 1e6;
  }

  protected async run(_from: number, to: number): Promise<void> {
    for (;;) {
      const due = await this.due();
      if (this.shuffle && this.pending) {
        // Page j of n is due at the j-th n-th of the span since the last epoch.
        const n = this.pending.pages.length;
        if (!this.order) this.order = this.shuffle.permutation(n);
        const span = due - this.appliedAt;
        while (this.applied < n && this.appliedAt + ((this.applied + 1) / n) * span <= to) this.apply(this.pending, this.order[this.applied++]!);
        if (this.applied < n) return;
      } else if (due <= to) {
        for (let k = 0; k < this.pending!.pages.length; k++) this.apply(this.pending!, k);
      }
      if (due > to) return;
      this.lastElapsed = this.pending!.elapsedMicros;
      this.pending = this.order = undefined;
      this.applied = 0;
      this.appliedAt = due;
      this.pass = this.pendingPass;
      this.epochsApplied++;
    }
  }

  /** Applies page k of `epoch`: one access, "overwrite" when every 64-bit word of its delta is non-zero. */
  private apply(epoch: TraceEpoch, k: number): void {
    const ps = this.guest.pageSize;
    const { pages, deltas } = epoch;
    const dw = new Int32Array(deltas.buffer, deltas.byteOffset, deltas.byteLength >>> 2);
    const d = (k * ps) >>> 2;
    let whole = true;
    for (let i = d, end = d + (ps >>> 2); i < end; i += 2) {
      if ((dw[i]! | dw[i + 1]!) === 0) {
        whole = false;
        break;
      }
    }
    const view = this.guest.beginWrite(pages[k]!, whole);
    xorWords(new Int32Array(view.buffer, view.byteOffset, ps >>> 2), 0, dw, d, ps >>> 2);
    this.reads.afterWrite(this.guest, pages[k]!);
  }

  override async close(): Promise<void> {
    await this.epochs?.return(undefined);
    this.epochs = undefined;
  }
}

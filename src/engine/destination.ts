// The destination end of a migration: it receives frames on its Channel,
// charges the decode, decodes pages into its own memory (zero at the start,
// as a fresh VM's) and resumes the program at the switch-over. When the
// switch-over leaves pages pending (post-copy), it runs the program from
// then on: an access to a page it does not hold is a fault, requested from
// the source while the program stalls; a write that replaces a whole page
// claims it without a fetch. Every page-state change of post-copy is here.
//
// In this process the program is simulated over the one guest memory both
// ends see (SharedGuest): its accesses at the destination go through
// `guest.hook`, and its writes are mirrored into the destination's memory. A
// page the program changes before the source has sent it is first preserved
// at the source (copy-on-write), so the source still sends, and the
// destination still checks, the content the page had at switch-over.

import { PagemillError, VerificationError } from "../errors.js";
import type { AccessKind, Workload } from "../guest/guest.js";
import type { Channel } from "../net/channel.js";
import type { Clock } from "../clock.js";
import { MAX_REQUEST_PAGES, readPageEncodings, decodeSwitchover, type SwitchoverRecord } from "../wire/frame.js";
import { FrameDecoder } from "../wire/decoder.js";
import { FrameEncoder } from "../wire/pipeline.js";
import { ENCODING_NAMES, type Encoding } from "../codecs/codec.js";
import { countTraffic, newDestinationCounters, newTrafficCounters, type DestinationCounters, type TrafficCounters } from "./metrics.js";
import type { EndParts, EngineSettings } from "./options.js";
import type { Tasks } from "./tasks.js";

/** The per-page state the destination keeps. */
export const PageState = {
  /** the destination holds the page */
  PRESENT: 1,
  /** a page request for it is outstanding */
  REQUESTED: 2,
  /** the destination's program replaced it whole before it arrived: an arrival is checked, not used */
  OWNED: 4,
  /** checked against the source's copy before the destination's program first changed it */
  CHECKED: 8,
} as const;

/**
 * What the destination sees of the source when both ends run in one process
 * over one guest: the program itself, and the source's switch-over content
 * to check every arrival against.
 */
export interface SharedGuest {
  /** The program; it runs here after a post-copy switch-over (absent: only pre-copy can end here). */
  readonly workload?: Workload;
  /** The CPU and device state the source sends, to check it (absent: taken as it comes). */
  readonly state?: Uint8Array;
  /**
   * Before the program resumes here after a post-copy switch-over: bring it
   * to where the source stopped it (a destination in another process replays
   * the program to the stop). Frames wait until it is done.
   */
  prepare?(record: SwitchoverRecord): Promise<void>;
  /** The source's page `p` as at switch-over. */
  original(p: number): Uint8Array;
  /** The program is about to change page `p`, which the source has not sent yet. */
  preserve(p: number): void;
  /** Page `p` arrived as the source had it. */
  release(p: number): void;
}

export interface DestinationParts extends EndParts {
  readonly shared: SharedGuest;
}

export class Destination {
  readonly settings: EngineSettings;
  readonly clock: Clock;
  readonly channel: Channel;
  readonly counters: DestinationCounters = newDestinationCounters();
  readonly traffic: TrafficCounters = newTrafficCounters();
  /** The destination's memory (zero at the start, as a fresh VM's). */
  readonly memory: Uint8Array;
  /** Resolves when the program resumes here. */
  readonly resumed: Promise<void>;
  /** Resolves when this end holds every page. */
  readonly completed: Promise<void>;

  private readonly tasks: Tasks;
  private readonly shared: SharedGuest;
  private readonly report: () => void;
  private readonly decoder = new FrameDecoder();
  /** page requests and "done" out */
  private readonly encoder = new FrameEncoder();
  /** PageState flags per page */
  private readonly pageState: Uint8Array;
  private present = 0;
  private resumedAt = -1;
  private completedAt = -1;
  /** A post-copy switch-over left pages pending: the source expects "done" at the end. */
  private postcopy = false;
  private resumedWake!: () => void;
  private completeWake!: () => void;
  private waitingPages: Set<number> | undefined;
  /** Where the source stopped the guest, when it said (a source in another process). */
  stop: SwitchoverRecord["stop"];
  /** The digest of its memory the source sent in its last "done", if any. */
  sourceDigest: { readonly name: string; readonly digest: Uint8Array } | undefined;
  private waitingWake: (() => void) | undefined;

  constructor(parts: DestinationParts) {
    this.settings = parts.settings;
    this.clock = parts.clock;
    this.channel = parts.channel;
    this.tasks = parts.tasks;
    this.shared = parts.shared;
    this.report = parts.report ?? (() => {});
    this.memory = new Uint8Array(this.settings.pageCount * this.settings.pageSize);
    this.pageState = new Uint8Array(this.settings.pageCount);
    this.resumed = new Promise((wake) => (this.resumedWake = wake));
    this.completed = new Promise((wake) => (this.completeWake = wake));
  }

  /** When the program resumed here (-1: not yet). */
  get resumeAt(): number {
    return this.resumedAt;
  }
  /** When the last page arrived (-1: not yet). */
  get completeAt(): number {
    return this.completedAt;
  }
  get complete(): boolean {
    return this.completedAt >= 0;
  }
  /** Pages this end does not hold yet (all of them until the switch-over says otherwise). */
  get missingPages(): number {
    return this.settings.pageCount - this.present;
  }

  /** Lets `seconds` of modelled CPU time pass (on a virtual clock; a real clock has spent them already). */
  private charge(seconds: number): Promise<void> | void {
    if (this.clock.virtual) return this.clock.sleep(seconds);
  }

  /** Starts receiving on the side. */
  listen(): void {
    this.tasks.spawn(this.receive());
  }

  /** Receives, charges and decodes every frame until the source closes. */
  async receive(): Promise<void> {
    const { cost, pageSize } = this.settings;
    for (;;) {
      const bytes = await this.channel.receive();
      if (!bytes) return;
      // The decode's CPU time passes before its pages land. Writing them into
      // memory and updating their page states is then one step, with no wait
      // between: otherwise the program could run, or the migration end, while
      // memory holds the source's copy of a page the program has replaced.
      const encodings = readPageEncodings(bytes);
      if (encodings) {
        let cpu = 0;
        for (const id of encodings) cpu += cost.decodeSeconds(ENCODING_NAMES[id as Encoding] ?? "raw", pageSize);
        this.counters.destinationCpu += cpu;
        await this.charge(cpu);
      }
      const frame = this.decoder.decode(bytes, this.memory);
      if (frame.type === "switch-over") {
        const record = decodeSwitchover(frame.state, this.settings.pageCount);
        this.channel.survive?.();
        // (No await without a prepare step: the simulation's event order stays as it was.)
        if (record.pending && this.shared.prepare) await this.shared.prepare(record);
        this.resume(record);
        continue;
      }
      switch (frame.type) {
        case "pages":
          this.arrived(frame.indices);
          break;
        case "round-start":
        case "round-end":
          break;
        case "done":
          if (frame.digestName !== "none") this.sourceDigest = { name: frame.digestName, digest: frame.digest };
          // The source has sent every page it had: any still missing is lost.
          if (!this.complete) {
            const missing: number[] = [];
            for (let p = 0; p < this.settings.pageCount; p++) if (!(this.pageState[p]! & PageState.PRESENT)) missing.push(p);
            throw new VerificationError(`the source finished, but ${missing.length} page(s) never arrived: ${missing.slice(0, 16).join(", ")}`, missing);
          }
          break;
        default:
          throw new PagemillError(`destination got an unexpected ${frame.type} frame`);
      }
    }
  }

  private resume(record: SwitchoverRecord): void {
    const { state } = this.shared;
    if (state && (record.state.byteLength !== state.byteLength || !Buffer.from(record.state).equals(Buffer.from(state)))) {
      throw new VerificationError("the CPU/device state arrived different from the state sent", []);
    }
    const n = this.settings.pageCount;
    this.stop = record.stop;
    if (record.pending) {
      // Post-copy follows: everything not pending is in place.
      if (!this.shared.workload) throw new PagemillError("a post-copy switch-over came, but this destination has no program to run");
      this.postcopy = true;
      const bits = new Uint32Array(record.pending.buffer, record.pending.byteOffset, record.pending.length * 2);
      this.present = 0;
      for (let p = 0; p < n; p++) {
        if ((bits[p >>> 5]! >>> (p & 31)) & 1) this.pageState[p] = 0;
        else {
          this.pageState[p] = PageState.PRESENT;
          this.present++;
        }
      }
      this.tasks.spawn(this.runProgram());
    } else {
      this.pageState.fill(PageState.PRESENT);
      this.present = n;
    }
    this.resumedAt = this.clock.now();
    this.resumedWake();
    if (this.present === n) this.finish();
  }

  /** Bookkeeping for pages just decoded into memory. */
  private arrived(indices: Uint32Array): void {
    if (this.resumedAt < 0) return; // pre-copy: the final state is checked at the end
    const ps = this.settings.pageSize;
    for (const p of indices) {
      const state = this.pageState[p]!;
      const expected = this.shared.original(p);
      const got = this.memory.subarray(p * ps, (p + 1) * ps);
      if (!Buffer.from(got.buffer, got.byteOffset, ps).equals(Buffer.from(expected.buffer, expected.byteOffset, ps))) {
        throw new VerificationError(`page ${p} arrived different from the source's copy at switch-over`, [p]);
      }
      this.shared.release(p);
      if (state & PageState.PRESENT) {
        // This end already holds the page (the program replaced it whole
        // while the source's copy was on the wire): the program's content wins.
        got.set(this.shared.workload!.guest.page(p));
        this.pageState[p] = state & ~PageState.OWNED;
        continue;
      }
      this.pageState[p] = state | PageState.PRESENT;
      this.present++;
      if (this.waitingPages?.delete(p) && this.waitingPages.size === 0) this.waitingWake?.();
    }
    this.report();
    if (this.present === this.settings.pageCount) this.finish();
  }

  /**
   * Marks a page present without a transfer (whole-page overwrite). Until the
   * source's copy arrives, memory keeps the old version there (what an
   * XBZRLE delta in flight applies to); the program's content goes in on
   * arrival or at completion.
   */
  private claim(p: number): void {
    this.pageState[p] = this.pageState[p]! | PageState.PRESENT | PageState.OWNED | PageState.CHECKED;
    this.present++;
    this.waitingPages?.delete(p);
  }

  /** Resolves once every page of `pages` is present. */
  private waitForPages(pages: Set<number>): Promise<void> {
    for (const p of pages) if (this.pageState[p]! & PageState.PRESENT) pages.delete(p);
    if (pages.size === 0) return Promise.resolve();
    this.waitingPages = pages;
    return new Promise((wake) => (this.waitingWake = wake));
  }

  /** Sends page requests to the source. */
  private async requestPages(pages: number[]): Promise<void> {
    for (let i = 0; i < pages.length; i += MAX_REQUEST_PAGES) {
      const chunk = pages.slice(i, i + MAX_REQUEST_PAGES);
      this.counters.postcopyRequests += chunk.length;
      const frame = this.encoder.control({ type: "page-request", pages: chunk });
      countTraffic(this.traffic, "postcopy", frame.byteLength);
      await this.channel.send(frame);
    }
  }

  /**
   * The program here, from resume until every page is here. It runs in
   * quanta of `faultQuantum` guest seconds: the accesses of a quantum that
   * fault are requested together and the quantum ends when they have all
   * arrived (a trace gives accesses per epoch, not their order within it, so
   * the faults of one quantum are taken as concurrent, as with several vCPUs
   * or asynchronous page faults).
   */
  private async runProgram(): Promise<void> {
    await this.resumed;
    const { clock, shared } = this;
    const workload = shared.workload!;
    const guest = workload.guest;
    const { pageSize: ps, faultQuantum } = this.settings;
    const c = this.counters;
    const faults: number[] = [];
    const waiting = new Set<number>();
    const touched: number[] = [];
    workload.throttle = 1;
    guest.hook = (p: number, kind: AccessKind): void => {
      const state = this.pageState[p]!;
      if (state & PageState.PRESENT) {
        if (kind === "read") return;
        if (!(state & PageState.CHECKED)) {
          // Before the program first changes a page it holds, the page must be the source's.
          const mine = this.memory.subarray(p * ps, (p + 1) * ps);
          if (!Buffer.from(mine.buffer, mine.byteOffset, ps).equals(Buffer.from(guest.memory.buffer, guest.memory.byteOffset + p * ps, ps))) {
            throw new VerificationError(`page ${p} at the destination differs from the source's at switch-over`, [p]);
          }
          this.pageState[p] = state | PageState.CHECKED;
        }
        touched.push(p);
        return;
      }
      // Missing: the source must still send what the page held at switch-over.
      if (kind !== "read") shared.preserve(p);
      if (kind === "overwrite") {
        c.wholePageOverwrites++;
        this.claim(p);
        touched.push(p);
        return;
      }
      c.faults++;
      if (kind === "write") touched.push(p);
      if (!(state & PageState.REQUESTED)) {
        this.pageState[p] = state | PageState.REQUESTED;
        faults.push(p);
      }
      waiting.add(p);
    };
    try {
      while (!this.complete) {
        await clock.sleep(faultQuantum);
        if (this.complete) break;
        await clock.settle(workload.advance(workload.now + faultQuantum));
        if (faults.length) await this.requestPages(faults.splice(0));
        if (waiting.size) {
          const stalled = clock.now();
          await this.waitForPages(waiting);
          c.faultStall += clock.now() - stalled;
        }
        for (const p of touched) if (!(this.pageState[p]! & PageState.OWNED)) this.memory.set(guest.page(p), p * ps);
        touched.length = 0;
        if (this.present === this.settings.pageCount) this.finish();
      }
    } finally {
      guest.hook = undefined;
    }
  }

  /**
   * This end holds every page: the migration is complete. After post-copy
   * the source hears so in a "done" frame (no digest: memory keeps changing
   * under the running program; the end check compares pages).
   */
  private finish(): void {
    if (this.complete) return;
    if (this.postcopy) {
      const frame = this.encoder.control({ type: "done", memoryBytes: this.memory.byteLength, digestName: "none", digest: new Uint8Array(0) });
      countTraffic(this.traffic, "postcopy", frame.byteLength);
      this.tasks.spawn(this.channel.send(frame));
    }
    const ps = this.settings.pageSize;
    for (let p = 0; p < this.settings.pageCount; p++) {
      if (this.pageState[p]! & PageState.OWNED) this.memory.set(this.shared.workload!.guest.page(p), p * ps);
    }
    this.completedAt = this.clock.now();
    this.report();
    this.completeWake();
  }

  /** Sends an INFO frame to the source (a destination in another process reports how it ended). */
  async sendInfo(json: string): Promise<void> {
    const frame = this.encoder.control({ type: "info", json });
    countTraffic(this.traffic, "postcopy", frame.byteLength);
    await this.channel.send(frame);
  }

  /**
   * The program's slowdown here (post-copy): time from resume until `end`,
   * over the part of it the program was not stalled on faults.
   */
  slowdown(end: number): number {
    const span = end - this.resumedAt;
    return span > this.counters.faultStall ? span / (span - this.counters.faultStall) : 1;
  }

  /** Releases WebAssembly memory and the access hook. */
  dispose(): void {
    if (this.shared.workload) this.shared.workload.guest.hook = undefined;
    this.decoder.dispose();
  }
}

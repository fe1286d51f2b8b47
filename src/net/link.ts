// A simulated network link on a Clock: two directions, each a serial line of
// `bitsPerSecond` (optionally changing over time) followed by a fixed one-way
// latency. A frame occupies its direction's line for bytes·8/rate seconds,
// starting when the line is free, and arrives `latency` seconds after its
// last bit left. send() resolves when the frame starts serializing, so the
// sender can prepare the next frame while this one is on the wire (one frame
// of buffering, like a socket buffer that holds one batch).

import type { Clock } from "../clock.js";
import { ChannelClosedError, Inbox, type Channel } from "./channel.js";
import { FramePool } from "./pool.js";

/** From `at` seconds on, the link runs at `bitsPerSecond`. */
export interface RateStep {
  readonly at: number;
  readonly bitsPerSecond: number;
}

export interface LinkOptions {
  /** Line rate in bit/s, both directions (used from t = 0 when no schedule is given). */
  readonly bitsPerSecond: number;
  /** Round-trip time in seconds; each direction adds half of it. */
  readonly rtt: number;
  /**
   * Rate changes over time, both directions: steps in ascending `at`; before
   * the first step the link runs at `bitsPerSecond`.
   */
  readonly schedule?: readonly RateStep[];
}

function checkRate(name: string, value: number): void {
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} must be a positive finite bit rate, got ${value}`);
}

/** Piecewise-constant bandwidth over time. */
export class RateSchedule {
  private readonly steps: RateStep[];

  constructor(bitsPerSecond: number, schedule: readonly RateStep[] = []) {
    checkRate("bitsPerSecond", bitsPerSecond);
    this.steps = [{ at: 0, bitsPerSecond }];
    for (const [i, step] of schedule.entries()) {
      checkRate(`schedule[${i}].bitsPerSecond`, step.bitsPerSecond);
      const prev = this.steps[this.steps.length - 1]!;
      if (!Number.isFinite(step.at) || step.at < prev.at) {
        throw new RangeError(`schedule[${i}].at must be ≥ ${prev.at} and finite, got ${step.at}`);
      }
      if (step.at === prev.at) this.steps[this.steps.length - 1] = step;
      else this.steps.push(step);
    }
  }

  /** The rate at time t. */
  rateAt(t: number): number {
    let rate = this.steps[0]!.bitsPerSecond;
    for (const step of this.steps) {
      if (step.at > t) break;
      rate = step.bitsPerSecond;
    }
    return rate;
  }

  /** When `bits` sent from `start` at the scheduled rates have all left. */
  finish(start: number, bits: number): number {
    if (this.steps.length === 1) return start + bits / this.steps[0]!.bitsPerSecond;
    let t = start;
    let left = bits;
    let i = 0;
    while (i + 1 < this.steps.length && this.steps[i + 1]!.at <= t) i++;
    for (;;) {
      const rate = this.steps[i]!.bitsPerSecond;
      const until = i + 1 < this.steps.length ? this.steps[i + 1]!.at : Infinity;
      const need = left / rate;
      if (t + need <= until) return t + need;
      left -= (until - t) * rate;
      t = until;
      i++;
    }
  }
}

/** One direction of a SimulatedLink: the end that sends on it. */
class LinkEnd implements Channel {
  sentBytes = 0;
  private lineFreeAt = 0;
  private lastArrival = 0;
  private closed = false;

  constructor(
    private readonly clock: Clock,
    private readonly rate: RateSchedule,
    private readonly latency: number,
    private readonly peerInbox: Inbox,
    readonly inbox: Inbox,
    readonly rtt: number,
    private readonly pool: FramePool,
  ) {}

  frameBuffer(bytes: number): Uint8Array {
    return this.pool.take(bytes);
  }

  release(frame: Uint8Array): void {
    this.pool.give(frame);
  }

  get bitsPerSecond(): number {
    return this.rate.rateAt(this.clock.now());
  }

  lineFreeIn(): number {
    return Math.max(0, this.lineFreeAt - this.clock.now());
  }

  send(frame: Uint8Array): Promise<void> {
    if (this.closed) throw new ChannelClosedError("send on a closed link");
    const now = this.clock.now();
    const start = Math.max(now, this.lineFreeAt);
    this.lineFreeAt = this.rate.finish(start, frame.byteLength * 8);
    this.lastArrival = this.lineFreeAt + this.latency;
    this.sentBytes += frame.byteLength;
    void this.clock.waitUntil(this.lastArrival).then(() => this.peerInbox.deliver(frame));
    return start > now ? this.clock.waitUntil(start) : Promise.resolve();
  }

  receive(): Promise<Uint8Array | undefined> {
    return this.inbox.receive();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // The end-of-stream travels behind the last frame.
    void this.clock.waitUntil(this.lastArrival).then(() => this.peerInbox.end());
  }
}

/**
 * A point-to-point link: `a` and `b` are its two ends (conventionally the
 * source and the destination). Deterministic on a VirtualClock.
 */
export class SimulatedLink {
  readonly a: Channel;
  readonly b: Channel;
  readonly rate: RateSchedule;

  constructor(clock: Clock, options: LinkOptions) {
    if (!Number.isFinite(options.rtt) || options.rtt < 0) throw new RangeError(`rtt must be a finite number ≥ 0, got ${options.rtt}`);
    this.rate = new RateSchedule(options.bitsPerSecond, options.schedule);
    const toA = new Inbox();
    const toB = new Inbox();
    const latency = options.rtt / 2;
    // One pool for both directions: a frame one end writes, the other releases.
    const pool = new FramePool();
    this.a = new LinkEnd(clock, this.rate, latency, toB, toA, options.rtt, pool);
    this.b = new LinkEnd(clock, this.rate, latency, toA, toB, options.rtt, pool);
  }
}

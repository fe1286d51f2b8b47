// An in-process channel pair built differently from SimulatedLink: each
// direction is a bounded queue drained by a pump task that holds the line for
// a frame's serialization time, then hands the frame to a delivery task that
// waits out the latency. It exists to show that strategies depend only on the
// Channel contract (tests run the same migration over both), and as the
// shape a queue between two workers or two sockets takes.

import type { Clock } from "../clock.js";
import { ChannelClosedError, Inbox, type Channel } from "./channel.js";

export interface LoopbackOptions {
  /** Line rate in bit/s; Infinity for an instant line. */
  readonly bitsPerSecond: number;
  /** Round-trip time in seconds. */
  readonly rtt: number;
}

class Pump {
  private readonly queue: { frame: Uint8Array; taken: () => void }[] = [];
  private wake: (() => void) | undefined;
  private ended = false;

  constructor(
    private readonly clock: Clock,
    private readonly bitsPerSecond: number,
    private readonly latency: number,
    private readonly out: Inbox,
  ) {
    void this.drain();
  }

  push(frame: Uint8Array): Promise<void> {
    return new Promise((taken) => {
      this.queue.push({ frame, taken });
      this.wake?.();
    });
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  private async drain(): Promise<void> {
    for (;;) {
      const next = this.queue.shift();
      if (!next) {
        if (this.ended) break;
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      // Taking the frame frees the sender, as a socket buffer would.
      next.taken();
      await this.clock.sleep((next.frame.byteLength * 8) / this.bitsPerSecond);
      const { frame } = next;
      void this.clock.sleep(this.latency).then(() => this.out.deliver(frame));
    }
    await this.clock.sleep(this.latency);
    this.out.end();
  }
}

class LoopbackEnd implements Channel {
  sentBytes = 0;
  private closed = false;
  constructor(
    private readonly pump: Pump,
    private readonly inbox: Inbox,
    readonly rtt: number,
    readonly bitsPerSecond: number,
  ) {}
  send(frame: Uint8Array): Promise<void> {
    if (this.closed) throw new ChannelClosedError("send on a closed loopback channel");
    this.sentBytes += frame.byteLength;
    return this.pump.push(frame);
  }
  receive(): Promise<Uint8Array | undefined> {
    return this.inbox.receive();
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pump.end();
  }
}

/** Two connected ends, `a` and `b`. */
export class LoopbackPair {
  readonly a: Channel;
  readonly b: Channel;
  constructor(clock: Clock, options: LoopbackOptions) {
    if (!(options.bitsPerSecond > 0)) throw new RangeError(`bitsPerSecond must be > 0, got ${options.bitsPerSecond}`);
    if (!Number.isFinite(options.rtt) || options.rtt < 0) throw new RangeError(`rtt must be a finite number ≥ 0, got ${options.rtt}`);
    const toA = new Inbox();
    const toB = new Inbox();
    this.a = new LoopbackEnd(new Pump(clock, options.bitsPerSecond, options.rtt / 2, toB), toA, options.rtt, options.bitsPerSecond);
    this.b = new LoopbackEnd(new Pump(clock, options.bitsPerSecond, options.rtt / 2, toA), toB, options.rtt, options.bitsPerSecond);
  }
}

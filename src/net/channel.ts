// A Channel moves frames (opaque byte strings) between the two ends of a
// migration, in order, and nothing else. Strategies talk to one end through
// this interface only, so a simulated link, an in-process queue or a TCP
// socket are interchangeable.

import { PagemillError } from "../errors.js";

export interface Channel {
  /**
   * Queues `frame` for the peer. Resolves when the channel can take the next
   * frame (backpressure): a sender that awaits every send never runs further
   * ahead than the channel's buffer.
   */
  send(frame: Uint8Array): Promise<void>;
  /**
   * A priority lane, where the channel has one: sends `frame` ahead of
   * frames still waiting for the link (a page a post-copy fault waits on).
   * Engines serve requests through it the moment they arrive; without it
   * they serve them between the frames of the background push.
   */
  sendUrgent?(frame: Uint8Array): Promise<void>;
  /**
   * Memory for a frame of `bytes` bytes that this end will send, where the
   * channel reuses memory: the channel takes it back once the peer has the
   * frame, so the caller fills it, sends it once and keeps no view of it.
   */
  frameBuffer?(bytes: number): Uint8Array;
  /**
   * The receiver is done with `frame` (from receive()) and keeps no view of
   * it: a channel that reuses memory (an in-process peer's frameBuffer, a
   * TCP channel's gathered records) may hand it out again.
   */
  release?(frame: Uint8Array): void;
  /**
   * Every frame receive() returns arrived under a cryptographic tag over
   * exactly its bytes (a TCP channel's record tag): the receiver need not
   * compute the frame check again, the tag having caught any damage first.
   */
  readonly authenticatesFrames?: boolean;
  /** The next frame from the peer, in order; undefined once the peer closed. */
  receive(): Promise<Uint8Array | undefined>;
  /** Round-trip time in seconds (configured or last measured). */
  readonly rtt: number;
  /** The line rate now in bit/s, when the channel knows it (a simulated link); else undefined. */
  readonly bitsPerSecond?: number;
  /** Bytes this end has handed to send(). */
  readonly sentBytes: number;
  /**
   * Seconds until the line is free for the next frame send() takes, where
   * the channel carries its frames on a line of its own rate (a cap, a
   * simulated link): the frames ahead, urgent ones too, have left. 0 when
   * it is free now.
   */
  lineFreeIn?(): number;
  /** No more frames from this end; the peer's receive() returns undefined after the last. */
  close(): void;
  /**
   * From now on a cut link must not lose the migration: the guest has
   * switched over and exists only across both ends. A channel that can
   * reconnect pauses and resumes instead of failing; one that cannot
   * ignores this (an in-process link is never cut).
   */
  survive?(): void;
}

/**
 * `channel` without its priority lane: engines then serve page requests
 * between the frames of the background push (to measure what the lane buys).
 */
export function withoutPriorityLane(channel: Channel): Channel {
  return {
    send: (frame) => channel.send(frame),
    receive: () => channel.receive(),
    ...(channel.frameBuffer && { frameBuffer: (bytes: number) => channel.frameBuffer!(bytes) }),
    ...(channel.release && { release: (frame: Uint8Array) => channel.release!(frame) }),
    close: () => channel.close(),
    survive: () => channel.survive?.(),
    get rtt() {
      return channel.rtt;
    },
    get bitsPerSecond() {
      return channel.bitsPerSecond;
    },
    get sentBytes() {
      return channel.sentBytes;
    },
    get authenticatesFrames() {
      return channel.authenticatesFrames;
    },
  };
}

/** A send on a closed channel. */
export class ChannelClosedError extends PagemillError {}

/**
 * The receiving half every in-process channel shares: frames that have
 * arrived wait in order; receivers wait for the next one.
 */
export class Inbox {
  private readonly frames: Uint8Array[] = [];
  private head = 0;
  private readonly waiting: ((frame: Uint8Array | undefined) => void)[] = [];
  private closed = false;

  deliver(frame: Uint8Array): void {
    const waiter = this.waiting.shift();
    if (waiter) waiter(frame);
    else this.frames.push(frame);
  }

  end(): void {
    this.closed = true;
    for (const waiter of this.waiting.splice(0)) waiter(undefined);
  }

  receive(): Promise<Uint8Array | undefined> {
    if (this.head < this.frames.length) {
      const frame = this.frames[this.head]!;
      this.frames[this.head++] = undefined as unknown as Uint8Array;
      if (this.head > 1024 && this.head * 2 > this.frames.length) {
        this.frames.splice(0, this.head);
        this.head = 0;
      }
      return Promise.resolve(frame);
    }
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiting.push(resolve));
  }
}

// Parallel channels (QEMU's multifd): frames encoded on N worker threads at
// once, each with its own WebAssembly instance and codecs (src/wire/worker.ts),
// through a piscina pool. Frames are numbered when submitted, so a stream
// stays one sequence whichever thread encodes a frame; with `ordered` (the
// default) they are delivered in that order.
//
//   const pool = new ParallelEncoder({ channels: 2, codec: "lz4" });
//   const frame = await pool.encode(pages, indices, { transfer: true });
//   const next = await pool.encodeFromMemory(sharedGuestMemory, indices);
//   const done = await pool.control({ type: "done", ... });
//   await pool.close();
//
// Only stateless codecs run here: a delta or dedup codec remembers the pages
// it has seen, which one thread cannot know of another's (QEMU does not run
// XBZRLE over multifd either).

import { Piscina } from "piscina";
import { codecEntry, codecNamesFor } from "../codecs/registry.js";
import { checkInteger, checkPageSize } from "../errors.js";
import { encodeControl, maxFramePages, type ControlMessage } from "./frame.js";
import { addWireStats, newWireStats, type WireStats } from "./pipeline.js";
import { compiledBeside } from "./threads.js";
import type { EncodeResult, EncodeTask } from "./worker.js";
import { locatedIn, type PageLocations } from "../guest/pages.js";

export const MAX_CHANNELS = 64;

export interface ChannelOptions {
  /** worker threads, 1..64 */
  channels: number;
  /** "raw" (zero and raw only) or a compress codec of the registry; "raw" by default */
  codec?: string;
  /** bytes per page, 4096 by default */
  pageSize?: number;
  /** deliver frames in sequence order (true by default); false: as each completes */
  ordered?: boolean;
  /** bytes/s of the link the frames will cross, for an adaptive codec (auto); absent: not known */
  bandwidth?: number;
}

export class ParallelEncoder {
  readonly channels: number;
  readonly codec: string;
  readonly pageSize: number;
  readonly ordered: boolean;
  readonly bandwidth: number;
  /** counters over every frame delivered */
  readonly stats: WireStats = newWireStats();
  private readonly pool: Piscina;
  private sequence = 0;
  private pending = 0;
  /** settles when the last frame submitted has been delivered (ordered mode) */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(options: ChannelOptions) {
    checkInteger("channels", options.channels, 1, MAX_CHANNELS);
    this.channels = options.channels;
    this.codec = options.codec ?? "raw";
    if (this.codec !== "raw" && codecEntry(this.codec)?.role !== "compress") {
      throw new RangeError(`codec '${this.codec}' cannot run on parallel channels (have: raw, ${codecNamesFor("compress").join(", ")})`);
    }
    this.pageSize = options.pageSize ?? 4096;
    checkPageSize(this.pageSize);
    this.ordered = options.ordered ?? true;
    this.bandwidth = options.bandwidth ?? 0;
    if (!(this.bandwidth >= 0 && Number.isFinite(this.bandwidth))) throw new RangeError(`bandwidth must be a finite number of bytes/s >= 0, got ${this.bandwidth}`);
    this.pool = new Piscina({
      filename: compiledBeside("worker.js").href,
      minThreads: this.channels,
      maxThreads: this.channels,
      // A second task waits in the worker's queue, so it starts the moment
      // the first ends instead of after a round trip through this thread.
      concurrentTasksPerWorker: 2,
      idleTimeout: Infinity,
    });
  }

  /** Frames submitted and not yet delivered. */
  get inFlight(): number {
    return this.pending;
  }

  /**
   * Encodes `pages` (indices.length whole pages) as the next PAGES frame on
   * whichever channel is free. Pages in a SharedArrayBuffer are read where
   * they lie (keep them unchanged until the frame comes back); with
   * `transfer`, the pages' buffer moves to the worker without a copy (it
   * must be the view's whole ArrayBuffer, and is detached here afterwards);
   * otherwise the pages are copied.
   */
  encode(pages: Uint8Array, indices: ArrayLike<number>, options: { transfer?: boolean } = {}): Promise<Uint8Array> {
    return this.encodeWithWork(pages, indices, options).then((encoded) => encoded.frame);
  }

  /**
   * encode(), with what the frame's encoding took (its zero pages and the
   * codecs that worked: what an engine charges CPU time for). `bandwidth`:
   * the link's bytes/s now, for an adaptive codec (default: the pool's).
   */
  encodeWithWork(pages: Uint8Array, indices: ArrayLike<number>, options: { transfer?: boolean; bandwidth?: number } = {}): Promise<EncodeResult> {
    const count = indices.length;
    checkInteger("indices.length", count, 0, maxFramePages(this.pageSize));
    if (!(pages instanceof Uint8Array) || pages.byteLength !== count * this.pageSize) {
      throw new RangeError(`pages must be a Uint8Array of indices.length × ${this.pageSize} = ${count * this.pageSize} B`);
    }
    let moved = pages;
    if (pages.buffer instanceof SharedArrayBuffer) {
      // Read where they lie by the channel's thread: nothing copied or moved (a transfer of fresh memory cost 0.18 ms a frame).
      return this.encodeLocated(locatedIn(pages, count, (k) => k * this.pageSize), indices, options);
    }
    if (options.transfer) {
      if (pages.byteOffset !== 0 || pages.byteLength !== pages.buffer.byteLength) {
        throw new RangeError("pages to transfer must span their whole ArrayBuffer");
      }
    } else {
      moved = pages.slice();
    }
    return this.submit({ pages: moved }, indices, [moved.buffer as ArrayBuffer], options.bandwidth);
  }

  /**
   * Encodes pages `indices` of `memory` (guest memory, page i at byte
   * i·pageSize) as the next PAGES frame. `memory` must live in a
   * SharedArrayBuffer: the channel's thread reads the pages itself, so this
   * thread copies nothing. The pages should not change until the frame is
   * delivered (a page written meanwhile may go out old or new, as in any
   * live migration: the dirty log sends it again).
   */
  encodeFromMemory(memory: Uint8Array, indices: ArrayLike<number>): Promise<Uint8Array> {
    checkInteger("indices.length", indices.length, 0, maxFramePages(this.pageSize));
    if (!(memory instanceof Uint8Array) || !(memory.buffer instanceof SharedArrayBuffer)) {
      throw new TypeError("memory must be a Uint8Array over a SharedArrayBuffer (use encode() for other memory)");
    }
    const limit = Math.floor(memory.byteLength / this.pageSize);
    for (let k = 0; k < indices.length; k++) {
      const p = indices[k]!;
      if (!Number.isInteger(p) || p < 0 || p >= limit) throw new RangeError(`indices[${k}] = ${p} is not a page of memory (${limit} pages)`);
    }
    return this.encodeLocated(locatedIn(memory, indices.length, (k) => indices[k]! * this.pageSize), indices).then((encoded) => encoded.frame);
  }

  /**
   * encodeWithWork() for pages read where they lie in shared memory (a
   * PageMemory's locate()): nothing is copied here. The pages should not
   * change until the frame is delivered.
   */
  encodeLocated(located: PageLocations, indices: ArrayLike<number>, options: { bandwidth?: number } = {}): Promise<EncodeResult> {
    const count = indices.length;
    checkInteger("indices.length", count, 0, maxFramePages(this.pageSize));
    if (located.buffer.length !== count || located.offset.length !== count) throw new RangeError(`located must place indices.length = ${count} pages`);
    return this.submit({ located }, indices, [], options.bandwidth);
  }

  private submit(pages: Pick<EncodeTask, "pages" | "located">, indices: ArrayLike<number>, transfer: ArrayBuffer[], bandwidth = this.bandwidth): Promise<EncodeResult> {
    const task: EncodeTask = {
      ...pages,
      indices: Uint32Array.from(indices),
      pageSize: this.pageSize,
      codec: this.codec,
      bandwidth,
      sequence: this.sequence++,
    };
    const run = (this.pool.run(task, { transferList: [...transfer, task.indices.buffer as ArrayBuffer] }) as Promise<EncodeResult>).then((result) => {
      addWireStats(this.stats, result.stats);
      return result;
    });
    return this.deliver(run);
  }

  /** Encodes a control frame as the next in the sequence (here, at once), delivered in order with the pages. */
  control(message: ControlMessage): Promise<Uint8Array> {
    const frame = encodeControl(message, this.sequence++);
    this.stats.frames++;
    this.stats.controlFrames++;
    this.stats.frameBytes += frame.byteLength;
    return this.deliver(Promise.resolve(frame));
  }

  private deliver<T>(frame: Promise<T>): Promise<T> {
    this.pending++;
    let delivered = frame;
    if (this.ordered) {
      // After every earlier frame (the tail never rejects), settle as this one did.
      delivered = this.tail.then(() => frame);
      this.tail = delivered.catch(() => undefined);
    } else {
      this.tail = Promise.all([this.tail, frame.catch(() => undefined)]);
    }
    return delivered.finally(() => {
      this.pending--;
    });
  }

  /** Waits for the frames in flight and stops the threads. */
  async close(): Promise<void> {
    await this.tail;
    await this.pool.destroy();
  }
}

// The two ends of a migration share nothing but frames: a Destination fed
// only the frames a Source sent rebuilds the guest, and the options are
// checked once, before either end exists.
import { describe, expect, it } from "vitest";
import { VirtualClock } from "../src/clock.js";
import { Destination } from "../src/engine/destination.js";
import type { PageMemory } from "../src/guest/pages.js";
import { migrate, simulate } from "../src/engine/migrate.js";
import { normaliseOptions } from "../src/engine/options.js";
import { stateBlob } from "../src/engine/source.js";
import { Tasks } from "../src/engine/tasks.js";
import { verifyMemory } from "../src/engine/verify.js";
import type { Workload } from "../src/guest/guest.js";
import { PoissonWorkload, syntheticGuest } from "../src/guest/workloads.js";
import type { Channel } from "../src/net/channel.js";
import { SimulatedLink } from "../src/net/link.js";
import { tapped } from "./helpers/simulate.js";
import type { ProgramThread } from "../src/engine/destination.js";
import { FlatPages } from "../src/guest/pages.js";
import { Random } from "../src/random.js";
import { PageBatch } from "../src/wasm/arena.js";
import { decodeFrame } from "../src/wire/decoder.js";
import { encodeControl, encodeSwitchover, FrameType, readFrameHeader } from "../src/wire/frame.js";
import { encodeFrame, newWireStats } from "../src/wire/pipeline.js";

/** A channel end that yields `frames` and then ends; what is sent on it is dropped. */
function replaying(frames: readonly Uint8Array[]): Channel {
  let next = 0;
  return {
    send: () => Promise.resolve(),
    receive: () => Promise.resolve(frames[next++]),
    rtt: 0,
    sentBytes: 0,
    close: () => {},
  };
}

/**
 * A fresh Destination, built from the settings and `frames` only, run until
 * the frames end; returns its memory.
 */
async function replayInto(frames: readonly Uint8Array[], w: Workload, codec: string): Promise<{ memory: PageMemory; complete: boolean; pageSize: number }> {
  const settings = normaliseOptions({ codec }, w.guest);
  const tasks = new Tasks();
  const clock = new VirtualClock();
  const destination = new Destination({
    settings,
    clock,
    channel: replaying(frames),
    tasks,
    shared: {
      workload: w,
      state: stateBlob(settings.stateBytes),
      original: () => {
        throw new Error("pre-copy never checks single pages");
      },
      preserve: () => {},
      release: () => {},
    },
  });
  try {
    await clock.run(() => Promise.race([destination.receive(), tasks.failed]));
    return { memory: destination.memory, complete: destination.complete, pageSize: settings.pageSize };
  } finally {
    destination.dispose();
  }
}

function workload(pages: number, seed: number): Workload {
  return new PoissonWorkload(syntheticGuest(pages, { seed }), { rate: 300, seed });
}

describe("Source and Destination", () => {
  for (const codec of ["raw", "dedup+xbzrle+mecom"]) {
    it(`a Destination rebuilds a pre-copied guest from the Source's frames alone (${codec})`, async () => {
      const w = workload(1024, 7);
      const clock = new VirtualClock();
      const link = new SimulatedLink(clock, { bitsPerSecond: 100e6, rtt: 0.002 });
      const frames: Uint8Array[] = [];
      try {
        const stats = await migrate("precopy", { workload: w, clock, source: tapped(link.a, (frame) => void frames.push(frame.slice())), destination: link.b, codec });
        expect(stats.rounds.length).toBeGreaterThan(1);
        expect(frames.reduce((n, f) => n + f.byteLength, 0)).toBe(stats.transferred);

        // A second destination, built from the settings and the frames only.
        const replayed = await replayInto(frames, w, codec);
        expect(replayed.complete).toBe(true);
        expect(verifyMemory(w.guest.memory, replayed.memory, replayed.pageSize)).toBe(1024);
      } finally {
        await w.close();
        w.guest.dispose();
      }
    });
  }

  /** A raw pre-copy of a 1024-page model over a simulated link, with every frame the source sent; then `check` on them. */
  async function recordedPrecopy(seed: number, check: (w: Workload, frames: Uint8Array[]) => Promise<void>): Promise<void> {
    const w = workload(1024, seed);
    const clock = new VirtualClock();
    const link = new SimulatedLink(clock, { bitsPerSecond: 100e6, rtt: 0.002 });
    const frames: Uint8Array[] = [];
    try {
      await migrate("precopy", { workload: w, clock, source: tapped(link.a, (frame) => void frames.push(frame.slice())), destination: link.b, codec: "raw" });
      await check(w, frames);
    } finally {
      await w.close();
      w.guest.dispose();
    }
  }
  /** The last frame with page content. */
  const lastPagesFrame = (frames: Uint8Array[]) => frames.findLastIndex((f) => f.byteLength > 4096 && f[5] === 1);

  it("a frame lost on the way is caught: the destination does not rebuild the guest", () =>
    recordedPrecopy(3, async (w, frames) => {
      // Drop the last frame with page content: nothing is sent after it to make up for it.
      const lost = lastPagesFrame(frames);
      const replayed = await replayInto(frames.filter((_, i) => i !== lost), w, "raw");
      expect(() => verifyMemory(w.guest.memory, replayed.memory, replayed.pageSize)).toThrow(/differ/);
    }));

  it("pages after a pre-copy switch-over are refused before they touch the memory", () =>
    recordedPrecopy(5, async (w, frames) => {
      // A page frame replayed after the switch-over record: the memory there is final (and hashed, between processes).
      const late = frames[lastPagesFrame(frames)]!;
      await expect(replayInto([...frames, late], w, "raw")).rejects.toThrow(/pages frame after the switch-over of a pre-copy migration/);
    }));

  it("options are checked once, naming the option, before either end exists", async () => {
    const guest = { pageSize: 4096, pageCount: 16 };
    expect(() => normaliseOptions({ batchPages: 0 }, guest)).toThrow(/batchPages/);
    expect(() => normaliseOptions({ downtimeLimit: -1 }, guest)).toThrow(/downtimeLimit/);
    expect(() => normaliseOptions({ throttleMax: 10, throttleInitial: 20 }, guest)).toThrow(/throttleMax/);
    expect(() => normaliseOptions({ codec: "lz4+mecom" }, guest)).toThrow(/two compress stages/);
    expect(() => normaliseOptions({}, { pageSize: 4096, pageCount: 0 })).toThrow(/no pages/);
    const settings = normaliseOptions({ batchPages: 1000 }, guest);
    expect(settings.batchPages).toBe(16);
    expect(settings.codec).toBe("raw");
    const w = workload(64, 1);
    try {
      await expect(simulate("precopy", w, { bitsPerSecond: 1e9, rtt: 0.001 }, { prepageWindow: 65 })).rejects.toThrow(/prepageWindow/);
      expect(w.now).toBe(0);
    } finally {
      await w.close();
      w.guest.dispose();
    }
  });
});

/**
 * A source end with a priority lane over two simulated lines, one for the
 * push (send) and one for the lane (sendUrgent), so a lane frame passes the
 * push's frames; the destination end receives from both in arrival order.
 * `onArrival` sees each frame as the destination takes it; `onSend` is
 * given the time until the push's line frees as each frame is sent. With
 * `line`, the source end says that time too (lineFreeIn).
 */
function laned(
  clock: VirtualClock,
  bitsPerSecond: number,
  onSend: (frame: Uint8Array, urgent: boolean, lineFreeIn: number) => void,
  onArrival: (frame: Uint8Array) => void,
  line = false,
): { source: Channel; destination: Channel } {
  const push = new SimulatedLink(clock, { bitsPerSecond, rtt: 0.002 });
  const lane = new SimulatedLink(clock, { bitsPerSecond, rtt: 0.002 });
  const next = (end: Channel, from: number) => end.receive().then((frame) => ({ frame, from }));
  const waiting: (Promise<{ frame: Uint8Array | undefined; from: number }> | undefined)[] = [next(push.b, 0), next(lane.b, 1)];
  const ends = [push.b, lane.b];
  const receive = async (): Promise<Uint8Array | undefined> => {
    while (waiting.some((w) => w !== undefined)) {
      const { frame, from } = await Promise.race(waiting.filter((w) => w !== undefined));
      waiting[from] = frame === undefined ? undefined : next(ends[from]!, from);
      if (frame) {
        onArrival(frame);
        return frame;
      }
    }
    return undefined;
  };
  const common = { rtt: 0.002, sentBytes: 0, bitsPerSecond };
  return {
    source: {
      ...common,
      send: (frame) => (onSend(frame, false, push.a.lineFreeIn!()), push.a.send(frame)),
      ...(line && { lineFreeIn: () => push.a.lineFreeIn!() }),
      sendUrgent: (frame) => (onSend(frame, true, push.a.lineFreeIn!()), lane.a.send(frame)),
      receive: () => push.a.receive(),
      close: () => (push.a.close(), lane.a.close()),
    },
    destination: { ...common, send: (frame) => push.b.send(frame), receive, close: () => (push.b.close(), lane.b.close()) },
  };
}

/** The pages of a PAGES frame (undefined for any other frame), and their content. */
function pagesOf(frame: Uint8Array): { indices: Uint32Array; pages: Uint8Array } | undefined {
  if (readFrameHeader(frame).type !== FrameType.PAGES) return undefined;
  const decoded = decodeFrame(frame);
  return decoded.type === "pages" ? { indices: decoded.indices, pages: decoded.pages! } : undefined;
}

describe("post-copy with a priority lane: a page asked for while its push frame waits for the line", () => {
  it("goes on the lane at once as well; the destination keeps the copy that came first, and the program's changes after it", async () => {
    const w = new PoissonWorkload(syntheticGuest(1024, { seed: 3 }), { rate: 20, seed: 3 });
    const clock = new VirtualClock();
    const pushed = new Set<number>();
    const onLane = new Set<number>();
    const came = new Set<number>();
    let changedBeforeSecond = 0;
    let resumed = false;
    const { source, destination } = laned(
      clock,
      20e6,
      (frame, urgent) => {
        for (const p of pagesOf(frame)?.indices ?? []) (urgent ? onLane : pushed).add(p);
      },
      (frame) => {
        if (readFrameHeader(frame).type === FrameType.SWITCHOVER) resumed = true;
        const got = pagesOf(frame);
        if (!got || !resumed) return;
        got.indices.forEach((p, k) => {
          // A second copy of a page the program here has changed since the first came.
          if (came.has(p) && !Buffer.from(w.guest.page(p)).equals(Buffer.from(got.pages.subarray(k * 4096, (k + 1) * 4096)))) changedBeforeSecond++;
          came.add(p);
        });
      },
    );
    try {
      const stats = await migrate("postcopy", { workload: w, clock, source, destination, codec: "raw" });
      const twice = [...onLane].filter((p) => pushed.has(p));
      // Asked for while in a push frame not yet delivered: before, the fault waited for that frame.
      expect(twice.length).toBeGreaterThan(0);
      expect(changedBeforeSecond).toBeGreaterThan(0);
      expect(stats.verifiedPages).toBe(1024);
    } finally {
      await w.close();
      w.guest.dispose();
    }
  });

  it("with a channel that says when its line frees, the push chooses a frame's pages just before: a page is not asked for while its frame waits", async () => {
    const run = async (line: boolean) => {
      const w = new PoissonWorkload(syntheticGuest(1024, { seed: 3 }), { rate: 20, seed: 3 });
      const clock = new VirtualClock();
      // When each page's push frame was handed over and when it started on the line; a page's lane copy.
      const pushed = new Map<number, { at: number; start: number }>();
      const onLane = new Map<number, number>();
      let stopped = false;
      const ahead: number[] = [];
      const { source, destination } = laned(
        clock,
        20e6,
        (frame, urgent, lineFreeIn) => {
          const type = readFrameHeader(frame).type;
          if (type === FrameType.SWITCHOVER) stopped = true;
          if (!stopped || type !== FrameType.PAGES) return;
          if (!urgent) ahead.push(lineFreeIn);
          for (const p of pagesOf(frame)!.indices) {
            if (urgent) onLane.set(p, clock.now());
            else pushed.set(p, { at: clock.now(), start: clock.now() + lineFreeIn });
          }
        },
        () => {},
        line,
      );
      try {
        const stats = await migrate("postcopy", { workload: w, clock, source, destination, codec: "raw" });
        expect(stats.verifiedPages).toBe(1024);
        // Pages sent on the lane while their push frame waited for the line.
        const whileWaiting = [...onLane].filter(([p, t]) => pushed.has(p) && t >= pushed.get(p)!.at && t < pushed.get(p)!.start).length;
        return { whileWaiting, ahead };
      } finally {
        await w.close();
        w.guest.dispose();
      }
    };
    const early = await run(false);
    const late = await run(true);
    // Each push frame at 20 Mbit/s is 53 ms on the line; chosen as the one before went on it, it waited about that long.
    expect(Math.min(...early.ahead.slice(1))).toBeGreaterThan(0.03);
    expect(early.whileWaiting).toBeGreaterThan(10);
    expect(late.ahead.length).toBeGreaterThan(10);
    expect(Math.max(...late.ahead)).toBeLessThanOrEqual(0.005 + 1e-9);
    // (Requests the lane has not served yet when the frame is chosen still go twice.)
    expect(late.whileWaiting).toBeLessThan(early.whileWaiting / 3);
  });

  it("with a delta stage (XBZRLE) goes once: a second copy could be a delta against a first the destination does not hold yet", async () => {
    const w = new PoissonWorkload(syntheticGuest(1024, { seed: 3 }), { rate: 20, seed: 3 });
    const clock = new VirtualClock();
    const sent = new Set<number>();
    let twice = 0;
    let stopped = false;
    const scratch = new FlatPages(new Uint8Array(1024 * 4096), 4096);
    const { source, destination } = laned(
      clock,
      20e6,
      (frame) => {
        if (readFrameHeader(frame).type === FrameType.SWITCHOVER) stopped = true;
        // After the switch-over: pre-copy's rounds send a page again when it was dirtied.
        if (!stopped || readFrameHeader(frame).type !== FrameType.PAGES) return;
        // (Decoded onto memory of its own, for the pages' indices: a delta needs a page to apply to.)
        const decoded = decodeFrame(frame, scratch);
        for (const p of decoded.type === "pages" ? decoded.indices : []) sent.has(p) ? twice++ : sent.add(p);
      },
      () => {},
    );
    try {
      const stats = await migrate("hybrid", { workload: w, clock, source, destination, codec: "xbzrle", precopyRounds: 2 });
      expect(stats.postcopyRequests).toBeGreaterThan(0);
      expect(sent.size).toBeGreaterThan(0);
      expect(twice).toBe(0);
      expect(stats.verifiedPages).toBe(1024);
    } finally {
      await w.close();
      w.guest.dispose();
    }
  });

  it("a program thread's page: the later copy is not written, nor held against what the program changed since", async () => {
    const ps = 4096;
    const n = 8;
    const settings = normaliseOptions({ codec: "raw" }, { pageSize: ps, pageCount: n });
    const atStop = new Random(7).bytes(n * ps);
    // The thread's memory, as it runs on.
    const program = atStop.slice();
    const thread: ProgramThread = {
      received: new Uint8Array(new SharedArrayBuffer(n * ps)),
      pageState: new Uint8Array(new SharedArrayBuffer(n)),
      resume: () => {},
      arrived: () => {},
      finish: () => Promise.resolve({ faultStall: 0 }),
    };
    const frameOf = (pages: number[], sequence: number): Uint8Array => {
      const batch = new PageBatch(pages.length, ps).load(new FlatPages(atStop, ps), pages);
      try {
        return encodeFrame(batch, pages, {}, newWireStats(), sequence);
      } finally {
        batch.dispose();
      }
    };
    const state = stateBlob(settings.stateBytes);
    const frames = [
      encodeControl({ type: "switch-over", state: encodeSwitchover({ state, pending: new BigUint64Array([0xffn]) }, n) }, 0),
      // Page 3 on the lane, then the push's frame that held it.
      frameOf([3], 1),
      frameOf([0, 1, 2, 3, 4, 5, 6, 7], 2),
    ];
    let next = 0;
    const channel: Channel = {
      send: () => Promise.resolve(),
      receive: () => {
        // The program changes page 3 once it holds it.
        if (next === 2) program[3 * ps + 10] ^= 0xff;
        return Promise.resolve(frames[next++]);
      },
      rtt: 0,
      sentBytes: 0,
      close: () => {},
    };
    const tasks = new Tasks();
    const clock = new VirtualClock();
    const destination = new Destination({
      settings,
      clock,
      channel,
      tasks,
      shared: { thread, state, original: (p) => program.subarray(p * ps, (p + 1) * ps), preserve: () => {}, release: () => {} },
    });
    try {
      await clock.run(() => Promise.race([destination.receive(), tasks.failed]));
      expect(destination.complete).toBe(true);
      expect(Buffer.from(thread.received).equals(Buffer.from(atStop))).toBe(true);
    } finally {
      destination.dispose();
    }
  });
});

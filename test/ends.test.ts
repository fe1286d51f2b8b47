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

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { DeadlockError, RealClock, VirtualClock, wallTime } from "../src/clock.js";
import { SimulatedLink, RateSchedule } from "../src/net/link.js";
import { LoopbackPair } from "../src/net/loopback.js";
import { ChannelClosedError, type Channel } from "../src/net/channel.js";

const RUNS = process.env.PAGEMILL_FUZZ ? 500 : 40;

describe("VirtualClock", () => {
  it("jumps from event to event, waking ties in scheduling order", async () => {
    const clock = new VirtualClock();
    const log: string[] = [];
    const result = await clock.run(async () => {
      const a = (async () => {
        await clock.sleep(2);
        log.push(`a@${clock.now()}`);
      })();
      const b = (async () => {
        await clock.sleep(1);
        log.push(`b@${clock.now()}`);
        await clock.waitUntil(2);
        log.push(`b2@${clock.now()}`);
      })();
      const c = (async () => {
        await clock.waitUntil(2);
        log.push(`c@${clock.now()}`);
      })();
      await Promise.all([a, b, c]);
      return clock.now();
    });
    expect(result).toBe(2);
    // a and c were scheduled for t=2 before b2 was.
    expect(log).toEqual(["b@1", "a@2", "c@2", "b2@2"]);
  });

  it("a wait in the past resolves at the current time", async () => {
    const clock = new VirtualClock();
    await clock.run(async () => {
      await clock.sleep(5);
      await clock.waitUntil(1);
      expect(clock.now()).toBe(5);
    });
  });

  it("reports a stall instead of hanging", async () => {
    const clock = new VirtualClock();
    await expect(clock.run(() => new Promise<void>(() => {}))).rejects.toThrow(DeadlockError);
  });

  it("passes a failure of the main task through", async () => {
    const clock = new VirtualClock();
    await expect(
      clock.run(async () => {
        await clock.sleep(1);
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
  });

  it("does not move while settled outside work is pending", async () => {
    const clock = new VirtualClock();
    const seen: number[] = [];
    await clock.run(async () => {
      const ticker = (async () => {
        await clock.sleep(0.001);
        seen.push(clock.now());
      })();
      // Real time passes (a timer of the event loop) while the ticker waits on virtual time.
      await clock.settle(new Promise((resolve) => setTimeout(resolve, 20)));
      seen.push(clock.now());
      await ticker;
    });
    expect(seen).toEqual([0, 0.001]);
  });

  it("rejects negative and non-finite sleeps, naming the argument", () => {
    const clock = new VirtualClock();
    expect(() => clock.sleep(-1)).toThrow(/seconds/);
    expect(() => clock.sleep(Number.NaN)).toThrow(/seconds/);
    expect(() => clock.waitUntil(Number.NaN)).toThrow(/t must/);
  });

  it("wallTime: the epoch in seconds finer than a millisecond, the same in another process", async () => {
    const ms = Array.from({ length: 50 }, () => wallTime() * 1000);
    expect(ms.some((t) => t !== Math.round(t))).toBe(true);
    expect(Math.abs(ms[0]! - Date.now())).toBeLessThan(5);
    const before = wallTime();
    const theirs = Number(execFileSync(process.execPath, ["-e", "console.log((performance.timeOrigin + performance.now()) / 1000)"], { encoding: "utf8" }));
    const after = wallTime();
    // Taken between our two readings (a margin for clocks read a microsecond apart).
    expect(theirs).toBeGreaterThanOrEqual(before - 1e-4);
    expect(theirs).toBeLessThanOrEqual(after + 1e-4);
  });

  it("RealClock runs on wall time", async () => {
    const clock = new RealClock();
    const t = await clock.run(async () => {
      await clock.sleep(0.01);
      return clock.now();
    });
    expect(t).toBeGreaterThanOrEqual(0.009);
  });
});

describe("RateSchedule", () => {
  it("integrates the rate over its steps", () => {
    const r = new RateSchedule(8e6, [
      { at: 1, bitsPerSecond: 16e6 },
      { at: 2, bitsPerSecond: 4e6 },
    ]);
    expect(r.finish(0, 8e6)).toBe(1);
    expect(r.finish(0.5, 8e6)).toBeCloseTo(1.25, 12); // 4 Mbit at 8, then 4 Mbit at 16
    expect(r.finish(1.5, 16e6)).toBeCloseTo(4, 12); // 8 Mbit at 16 Mbit/s (0.5 s), then 8 Mbit at 4 Mbit/s (2 s)
    expect(r.rateAt(0.99)).toBe(8e6);
    expect(r.rateAt(1)).toBe(16e6);
    expect(r.rateAt(10)).toBe(4e6);
  });

  it("finish agrees with sending in pieces (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.double({ min: 0.01, max: 5, noNaN: true }), fc.double({ min: 1e3, max: 1e9, noNaN: true })), { maxLength: 5 }),
        fc.double({ min: 0, max: 10, noNaN: true }),
        fc.double({ min: 1, max: 1e9, noNaN: true }),
        fc.double({ min: 0.01, max: 0.99, noNaN: true }),
        (steps, start, bits, split) => {
          let at = 0;
          const schedule = steps.map(([gap, rate]) => ({ at: (at += gap), bitsPerSecond: rate }));
          const r = new RateSchedule(1e6, schedule);
          const whole = r.finish(start, bits);
          const pieces = r.finish(r.finish(start, bits * split), bits * (1 - split));
          expect(pieces).toBeCloseTo(whole, 6);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("rejects bad steps, naming them", () => {
    expect(() => new RateSchedule(0)).toThrow(/bitsPerSecond/);
    expect(() => new RateSchedule(1e6, [{ at: 2, bitsPerSecond: 1 }, { at: 1, bitsPerSecond: 1 }])).toThrow(/schedule\[1\]\.at/);
    expect(() => new RateSchedule(1e6, [{ at: 1, bitsPerSecond: -5 }])).toThrow(/schedule\[0\]\.bitsPerSecond/);
  });
});

/** Sends `sizes` frames a→b back to back, returns [send resolved at, arrived at] per frame. */
async function timeline(make: (clock: VirtualClock) => { a: Channel; b: Channel }, sizes: number[]): Promise<[number, number][]> {
  const clock = new VirtualClock();
  const { a, b } = make(clock);
  return clock.run(async () => {
    const sent: number[] = [];
    const arrived: number[] = [];
    const receiving = (async () => {
      for (;;) {
        const frame = await b.receive();
        if (!frame) return;
        expect(frame[0]).toBe(arrived.length & 0xff);
        arrived.push(clock.now());
      }
    })();
    for (const [i, size] of sizes.entries()) {
      const frame = new Uint8Array(size);
      frame[0] = i & 0xff;
      await a.send(frame);
      sent.push(clock.now());
    }
    a.close();
    await receiving;
    return sizes.map((_, i) => [sent[i]!, arrived[i]!] as [number, number]);
  });
}

describe("SimulatedLink", () => {
  it("serializes at the line rate, adds half the RTT, and buffers one frame", async () => {
    // 1 Mbit/s: 125 000 bytes take 1 s. RTT 10 ms: 5 ms one way.
    const t = await timeline((clock) => new SimulatedLink(clock, { bitsPerSecond: 1e6, rtt: 0.01 }), [125000, 125000, 12500]);
    expect(t[0]![0]).toBe(0); // the line was free: taken at once
    expect(t[0]![1]).toBeCloseTo(1.005, 12);
    expect(t[1]![0]).toBeCloseTo(1, 12); // waits until the first has left
    expect(t[1]![1]).toBeCloseTo(2.005, 12);
    expect(t[2]![1]).toBeCloseTo(2.105, 12);
  });

  it("follows a rate schedule", async () => {
    const t = await timeline(
      (clock) => new SimulatedLink(clock, { bitsPerSecond: 1e6, rtt: 0, schedule: [{ at: 0.5, bitsPerSecond: 2e6 }] }),
      [125000],
    );
    // 0.5 Mbit at 1 Mbit/s, then 0.5 Mbit at 2 Mbit/s.
    expect(t[0]![1]).toBeCloseTo(0.75, 12);
  });

  it("the loopback channel keeps the same timing with its own machinery", async () => {
    const sizes = [4096, 70000, 1, 125000, 300];
    const link = await timeline((clock) => new SimulatedLink(clock, { bitsPerSecond: 8e6, rtt: 0.004 }), sizes);
    const loop = await timeline((clock) => new LoopbackPair(clock, { bitsPerSecond: 8e6, rtt: 0.004 }), sizes);
    for (let i = 0; i < sizes.length; i++) {
      expect(loop[i]![0]).toBeCloseTo(link[i]![0], 12);
      expect(loop[i]![1]).toBeCloseTo(link[i]![1], 12);
    }
  });

  it("carries both directions at once, and refuses sends after close", async () => {
    const clock = new VirtualClock();
    const link = new SimulatedLink(clock, { bitsPerSecond: 1e6, rtt: 0.002 });
    await clock.run(async () => {
      await Promise.all([link.a.send(new Uint8Array(125000)), link.b.send(new Uint8Array(125000))]);
      const [x, y] = await Promise.all([link.b.receive(), link.a.receive()]);
      expect(x!.byteLength).toBe(125000);
      expect(y!.byteLength).toBe(125000);
      expect(clock.now()).toBeCloseTo(1.001, 12);
      expect(link.a.sentBytes).toBe(125000);
      link.a.close();
      expect(() => link.a.send(new Uint8Array(1))).toThrow(ChannelClosedError);
      expect(await link.b.receive()).toBeUndefined();
    });
  });
});

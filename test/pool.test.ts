// FramePool: a buffer handed back goes out again; one still out, one handed
// back twice or one from elsewhere never does; free memory stays bounded.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FramePool, MIN_POOLED_BYTES, sizeClass } from "../src/net/pool.js";
import { SimulatedLink } from "../src/net/link.js";
import { VirtualClock } from "../src/clock.js";

describe("FramePool", () => {
  it("hands a buffer given back out again, and never one still out", () => {
    const pool = new FramePool();
    const a = pool.take(100_000);
    const b = pool.take(100_000);
    expect(a.byteLength).toBe(100_000);
    expect(a.buffer).not.toBe(b.buffer);
    pool.give(a);
    const c = pool.take(99_000);
    expect(c.buffer).toBe(a.buffer);
    expect(c.byteLength).toBe(99_000);
    // b is still out; the pool is empty again: a fresh buffer.
    expect(pool.take(100_000).buffer).not.toBe(b.buffer);
  });

  it("ignores a buffer given back twice or not its own, and small ones", () => {
    const pool = new FramePool();
    const a = pool.take(200_000);
    pool.give(a);
    pool.give(a);
    expect(pool.idleBytes).toBe(sizeClass(200_000));
    const first = pool.take(200_000);
    const second = pool.take(200_000);
    expect(first.buffer).toBe(a.buffer);
    expect(second.buffer).not.toBe(a.buffer);
    pool.give(new Uint8Array(200_000));
    expect(pool.idleBytes).toBe(0);
    const small = pool.take(MIN_POOLED_BYTES - 1);
    pool.give(small);
    expect(pool.idleBytes).toBe(0);
  });

  it("a smaller frame takes a free buffer of a larger class, up to twice its size, before fresh memory", () => {
    const pool = new FramePool();
    const big = pool.take(2 ** 20);
    pool.give(big);
    // 600 kB falls in a smaller class than 1 MiB's; the free megabyte serves it.
    const mid = pool.take(600_000);
    expect(mid.buffer).toBe(big.buffer);
    expect(mid.byteLength).toBe(600_000);
    expect(pool.idleBytes).toBe(0);
    pool.give(mid);
    expect(pool.idleBytes).toBe(2 ** 20);
    // Beyond twice the size the pool leaves the megabyte for a frame it fits.
    expect(pool.take(400_000).buffer).not.toBe(big.buffer);
    expect(pool.idleBytes).toBe(2 ** 20);
    // The smallest that fits goes first.
    const larger = pool.take(1_900_000);
    const smaller = pool.take(1_100_000);
    pool.give(larger);
    pool.give(smaller);
    expect(pool.take(1_000_000).buffer).toBe(big.buffer);
    expect(pool.take(1_000_000).buffer).toBe(smaller.buffer);
  });

  it("keeps at most its bound of free memory", () => {
    const pool = new FramePool(3 * 2 ** 20);
    const out = Array.from({ length: 8 }, () => pool.take(2 ** 20));
    for (const view of out) pool.give(view);
    expect(pool.idleBytes).toBe(3 * 2 ** 20);
  });

  it("refuses a size that is not a byte count", () => {
    const pool = new FramePool();
    expect(() => pool.take(-1)).toThrow(RangeError);
    expect(() => pool.take(1.5)).toThrow(/frame buffer of 1.5 bytes/);
  });

  it("size classes: enough room, at most a quarter more, ordered", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 27 }), fc.integer({ min: 1, max: 2 ** 27 }), (x, y) => {
        const c = sizeClass(x);
        expect(c).toBeGreaterThanOrEqual(x);
        expect(c).toBeLessThanOrEqual(Math.max(x * 1.25, 1));
        if (x <= y) expect(c).toBeLessThanOrEqual(sizeClass(y));
      }),
    );
  });

  it("an in-process link reuses a frame's memory once the receiver releases it, and not before", async () => {
    const clock = new VirtualClock();
    const link = new SimulatedLink(clock, { bitsPerSecond: 1e9, rtt: 0.001 });
    const frame = link.a.frameBuffer!(300_000).fill(5);
    const got = (await clock.run(async () => {
      await link.a.send(frame);
      return link.b.receive();
    }))!;
    expect(got).toBe(frame);
    // Not released yet: a new frame gets other memory, and the one received keeps its bytes.
    link.a.frameBuffer!(300_000).fill(6);
    expect(got.every((b) => b === 5)).toBe(true);
    link.b.release!(got);
    expect(link.a.frameBuffer!(300_000).buffer).toBe(frame.buffer);
  });
});

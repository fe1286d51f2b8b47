import { describe, expect, it } from "vitest";
import { DirtyBitmap, FlatPages } from "../src/index.js";
import { Guest, type AccessKind } from "../src/guest/guest.js";

describe("Guest", () => {
  it("starts zero, clean, with page views into one memory", () => {
    const guest = new Guest(10, 1024);
    expect(guest.memory.byteLength).toBe(10 * 1024);
    expect(guest.bytes).toBe(10 * 1024);
    expect(guest.dirtyLog.count()).toBe(0);
    guest.memory.writable(3).fill(7);
    expect(guest.page(3)[0]).toBe(7);
    expect(guest.page(4)[0]).toBe(0);
    guest.dispose();
    const large = new Guest(4096, 1024);
    large.write(1000, new Uint8Array(1024).fill(1));
    large.write(1001, new Uint8Array(1024)); // zero content holds nothing
    expect(large.memory.heldBytes).toBe(1024); // the one non-zero page: the rest is never allocated
    large.dispose();
  });

  it("a fresh FlatPages zeroes a page never written without looking at it (no page fault), and one written by writing it", () => {
    const pages = 16384;
    const fresh = new FlatPages(new Uint8Array(new SharedArrayBuffer(pages * 4096)), 4096, true);
    fresh.write(5, new Uint8Array(4096).fill(1));
    fresh.writable(6).fill(2);
    const before = process.resourceUsage().minorPageFault;
    for (let p = 7; p < pages; p++) fresh.zero(p);
    // Looking at every page faulted each in (16377 faults before); the test's own allocations fault a few.
    expect(process.resourceUsage().minorPageFault - before).toBeLessThan(1000);
    fresh.zero(5);
    fresh.zero(6);
    expect(fresh.bytes.every((b) => b === 0)).toBe(true);
    // Not fresh: its bytes may hold anything, so zero() looks.
    const given = new FlatPages(new Uint8Array(4 * 4096).fill(3), 4096);
    given.zero(2);
    expect(given.page(2).every((b) => b === 0) && given.page(1)[0] === 3).toBe(true);
  });

  it("adopts given memory without copying, and checks its size", () => {
    const memory = new Uint8Array(4 * 4096).fill(9);
    const guest = new Guest(4, 4096, memory);
    expect((guest.memory as FlatPages).bytes).toBe(memory);
    guest.page(1)[0] = 3;
    expect(memory[4096]).toBe(3);
    guest.dispose();
    expect(() => new Guest(5, 4096, memory)).toThrow(/memory has 16384 bytes/);
    expect(() => new Guest(4, 3000)).toThrow(/pageSize/);
    expect(() => new Guest(-1)).toThrow(/pageCount/);
    expect(() => new Guest(2 ** 28 + 1)).toThrow(/pageCount/);
  });

  it("marks written pages in the dirty log, which an engine syncs and clears each round", () => {
    const guest = new Guest(200);
    const engine = new DirtyBitmap(200);
    const content = new Uint8Array(4096).fill(0xab);
    guest.write(5, content);
    guest.beginWrite(130, false);
    guest.read(7);
    expect(guest.page(5)[100]).toBe(0xab);
    expect(Array.from(guest.dirtyLog.extract())).toEqual([5, 130]);
    expect(engine.syncFrom(guest.dirtyLog)).toBe(2);
    expect(guest.dirtyLog.count()).toBe(0);
    guest.beginWrite(5, true);
    guest.beginWrite(6, false);
    expect(engine.syncFrom(guest.dirtyLog)).toBe(1);
    expect(Array.from(engine.extract())).toEqual([5, 6, 130]);
    expect({ writes: guest.writes, overwrites: guest.overwrites, reads: guest.reads }).toEqual({ writes: 2, overwrites: 2, reads: 1 });
    guest.dispose();
    engine.dispose();
  });

  it("calls the hook before an access takes effect, with its kind", () => {
    const guest = new Guest(4, 512);
    const seen: [number, AccessKind, number][] = [];
    // The hook sees the old content: what a post-copy destination fetches.
    guest.hook = (page, kind) => seen.push([page, kind, guest.page(page)[0]!]);
    guest.write(1, new Uint8Array(512).fill(3));
    guest.write(1, new Uint8Array(512).fill(4));
    guest.beginWrite(2, false)[0] = 1;
    guest.read(2);
    expect(seen).toEqual([
      [1, "overwrite", 0],
      [1, "overwrite", 3],
      [2, "write", 0],
      [2, "read", 1],
    ]);
    guest.dispose();
  });

  it("names a bad page or content size", () => {
    const guest = new Guest(4, 512);
    expect(() => guest.beginWrite(4, false)).toThrow(/page 4 is outside the guest/);
    expect(() => guest.read(-1)).toThrow(RangeError);
    expect(() => guest.page(1.5)).toThrow(RangeError);
    expect(() => guest.write(0, new Uint8Array(100))).toThrow(/content has 100 bytes/);
    expect(guest.dirtyLog.count()).toBe(0);
    guest.dispose();
  });
});

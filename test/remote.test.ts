// Migrations between two ends over real TCP on loopback: every strategy
// ends verified, in one process through the API and between two processes
// through `pagemill send` / `pagemill receive`; a destination whose replayed
// program differs from the source's, or a wrong key, ends in a clear failure
// with nothing written.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it, vi } from "vitest";
import { STRATEGY_NAMES, simulate } from "../src/engine/migrate.js";
import { StopDigest, memoryDigest, receiveMigration, sendMigration, type ReceiveOptions } from "../src/engine/remote.js";
import { modelDisk } from "../src/guest/disk.js";
import type { Workload } from "../src/guest/guest.js";
import { CuttingProxy } from "../src/net/faults.js";
import { Random } from "../src/random.js";
import { init } from "../src/wasm/module.js";
import { VerificationError } from "../src/errors.js";
import { reseal } from "./helpers/frames.js";
import { IdleWorkload, PoissonWorkload, syntheticGuest } from "../src/guest/workloads.js";
import { connectChannel, listenChannel, type TcpChannel, type TcpListener } from "../src/net/tcp.js";
import { FrameDecoder, decodeFrame } from "../src/wire/decoder.js";
import { listening, runNode } from "./helpers/processes.js";
import { FrameType, MAX_INFO_BYTES, SwitchoverFrame, decodeSwitchover, encodeControl, encodeSwitchover, readControl, readFrameHeader } from "../src/wire/frame.js";
import { PageState, pendingStates } from "../src/engine/destination.js";
import fc from "fast-check";
import { flatBytes } from "../src/index.js";
import { ChunkedPages } from "../src/guest/chunks.js";
import { RealClock } from "../src/clock.js";
import { LoopbackPair } from "../src/net/loopback.js";
import { Source } from "../src/engine/source.js";
import { normaliseOptions } from "../src/engine/options.js";
import { Tasks } from "../src/engine/tasks.js";
import type { Channel } from "../src/net/channel.js";

const KEY = new Uint8Array(32).fill(3);
const BIN = fileURLToPath(new URL("../dist/cli/bin.js", import.meta.url));
const DISK_TRACE = fileURLToPath(new URL("../data/sqlite-disk.ptrace.gz", import.meta.url));

function model(seed: number): PoissonWorkload {
  return new PoissonWorkload(syntheticGuest(1024, { seed: 5 }), { rate: 5, seed });
}

/** Passes each frame `channel` sends to `through` with its control record (undefined for a page frame) and the channel's own send, to note, delay or replace it. */
function throughSend(channel: Channel, through: (frame: Uint8Array, control: ReturnType<typeof readControl> | undefined, send: (frame: Uint8Array) => Promise<void>) => Promise<void>): void {
  const send = channel.send.bind(channel);
  channel.send = (frame) => {
    const header = readFrameHeader(frame);
    return through(frame, header.type === FrameType.PAGES ? undefined : readControl(frame, header), send);
  };
}

const diskModel = (seed: number) => modelDisk("oltp", 2048, { seed });

interface Ends {
  /** the destination's program's seed (the source's is 1) */
  readonly destinationSeed?: number;
  /** migrate a disk too (the destination's program disk with this seed) */
  readonly diskSeed?: number;
  readonly receive?: Pick<ReceiveOptions, "maxDiskBytes" | "prealloc">;
}

/** Listeners connected() opened, closed after each test. */
const listeners: TcpListener[] = [];
afterEach(() => {
  for (const listener of listeners.splice(0)) listener.close();
});

/** A TCP channel over loopback capped at `bitsPerSecond`: its source end and its destination end. */
async function connected(bitsPerSecond: number): Promise<{ toDestination: TcpChannel; toSource: TcpChannel }> {
  const listener = await listenChannel("127.0.0.1", 0, { key: KEY });
  listeners.push(listener);
  const [toDestination, toSource] = await Promise.all([connectChannel("127.0.0.1", listener.port, { key: KEY, bitsPerSecond }), listener.accept()]);
  return { toDestination, toSource };
}

/** Runs a source and a destination over loopback TCP in this process. */
async function both(strategy: (typeof STRATEGY_NAMES)[number], ends: Ends = {}) {
  const { destinationSeed = 1, diskSeed } = ends;
  const source = model(1);
  const disk = diskSeed === undefined ? undefined : diskModel(1);
  const replicas: Workload[] = [];
  const started = <W extends Workload>(w: W): W => (replicas.push(w), w);
  try {
    const { toDestination, toSource } = await connected(200e6);
    const receiving = receiveMigration(toSource, {
      startProgram: async () => started(model(destinationSeed)),
      startDisk: async () => started(diskModel(diskSeed!)),
      ...ends.receive,
    });
    const sending = sendMigration(strategy, source, toDestination, { codec: "lz4", batchPages: 64, disk });
    const [sent, received] = await Promise.allSettled([sending, receiving]);
    return { sent, received, source, sourceMemory: flatBytes(source.guest.memory).slice(), disk: disk && flatBytes(disk.guest.memory).slice(), replica: replicas[0] };
  } finally {
    source.guest.dispose();
    disk?.guest.dispose();
    for (const r of replicas) r.guest.dispose();
  }
}

describe("what two processes add to the wire", () => {
  it("INFO frames carry UTF-8 JSON up to 64 KiB; other bytes and sizes are refused", () => {
    const json = JSON.stringify({ protocol: 1, note: "grüße ✓" });
    const frame = decodeFrame(encodeControl({ type: "info", json }, 3));
    expect(frame).toEqual({ type: "info", sequence: 3, json });
    expect(() => encodeControl({ type: "info", json: "x".repeat(MAX_INFO_BYTES + 1) }, 0)).toThrow(/UTF-8 length/);
    const bad = encodeControl({ type: "info", json: "ab" }, 0);
    bad[28] = 0xff;
    // Re-seal the frame check so only the text is wrong.
    expect(() => decodeFrame(reseal(bad))).toThrow(/not UTF-8/);
  });

  it("a version-2 switch-over record carries where the guest stopped; version 1 does not", () => {
    const pending = new BigUint64Array([5n, 0n]);
    const state = new Uint8Array([1, 2, 3]);
    const v2 = decodeSwitchover(encodeSwitchover({ state, pending, stop: { guestTime: 12.5, wallTime: 1.7e9 } }, 100), 100);
    expect(v2.stop).toEqual({ guestTime: 12.5, wallTime: 1.7e9 });
    expect([...v2.pending!]).toEqual([5n, 0n]);
    expect([...v2.state]).toEqual([1, 2, 3]);
    const v1 = encodeSwitchover({ state, pending: undefined }, 100);
    expect(new DataView(v1.buffer).getUint32(0, true)).toBe(1);
    expect(decodeSwitchover(v1, 100).stop).toBeUndefined();
    const broken = encodeSwitchover({ state, pending: undefined, stop: { guestTime: 1, wallTime: 1 } }, 100);
    new DataView(broken.buffer).setFloat64(12, NaN, true);
    expect(() => decodeSwitchover(broken, 100)).toThrow(/not finite/);
    expect(() => decodeSwitchover(broken.subarray(0, 20), 100)).toThrow(/shorter than its 28-byte head/);
  });

  it("a switch-over frame made ready before the stop is byte for byte the one encoded at the stop, sent once (fast-check)", async () => {
    await init();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 5000 }), fc.integer({ min: 1, max: 300 }), fc.boolean(), fc.boolean(), fc.nat(1000), (state, pageCount, withMap, withStop, sequence) => {
        const pending = withMap ? BigUint64Array.from({ length: Math.ceil(pageCount / 64) }, (_, k) => BigInt(k * 0x9e3779b97f4a7c15) & (2n ** 64n - 1n)) : undefined;
        const stop = withStop ? { guestTime: sequence / 7, wallTime: 1.7e9 + sequence } : undefined;
        const ready = new SwitchoverFrame(state, pageCount, withStop);
        const frame = ready.frame(sequence, { pending, stop });
        const encoded = encodeControl({ type: "switch-over", state: encodeSwitchover({ state, pending, stop }, pageCount) }, sequence);
        expect(Buffer.compare(frame, encoded)).toBe(0);
        expect(() => ready.frame(sequence, { pending, stop })).toThrow(/disposed/i);
      }),
      { numRuns: 200 },
    );
    const ready = new SwitchoverFrame(new Uint8Array(8), 100, true);
    expect(() => ready.frame(0, { pending: undefined })).toThrow(/with the stop's times/);
    expect(() => ready.frame(0, { pending: new BigUint64Array(1), stop: { guestTime: 0, wallTime: 0 } })).toThrow(/1 words for 100 pages/);
    ready.dispose();
  });

  it("a switch-over frame's state is read where it lies, not copied (inside the downtime)", () => {
    const state = new Uint8Array(64 * 1024).map((_, i) => i);
    const pending = new BigUint64Array(2).fill(3n);
    const frame = encodeControl({ type: "switch-over", state: encodeSwitchover({ state, pending, stop: { guestTime: 1, wallTime: 2 } }, 100) }, 4);
    const message = decodeFrame(frame);
    if (message.type !== "switch-over") throw new Error(message.type);
    expect(message.state.buffer).toBe(frame.buffer);
    const record = decodeSwitchover(message.state, 100);
    expect(record.state.buffer).toBe(frame.buffer);
    expect(Buffer.compare(record.state, state)).toBe(0);
    expect([...record.pending!]).toEqual([3n, 3n]);
  });

  it("page states after a switch-over: pending missing, asked-for requested, the rest present, as a page-by-page reading of the map says (fast-check)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 400 }), fc.array(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })), fc.boolean(), fc.array(fc.nat(399)), (pageCount, words, withMap, asked) => {
        const pending = withMap ? BigUint64Array.from({ length: Math.ceil(pageCount / 64) }, (_, k) => words[k] ?? (k % 2 ? 2n ** 64n - 1n : 0n)) : undefined;
        const missing = new Set(asked.filter((p) => p < pageCount));
        const states = new Uint8Array(pageCount).fill(0xee);
        const present = pendingStates(states, pending, missing);
        const expected = Array.from({ length: pageCount }, (_, p) =>
          missing.has(p) ? PageState.REQUESTED : pending && (pending[p >> 6]! >> BigInt(p & 63)) & 1n ? 0 : PageState.PRESENT,
        );
        expect([...states]).toEqual(expected);
        expect(present).toBe(expected.filter((s) => s === PageState.PRESENT).length);
      }),
      { numRuns: 300 },
    );
  });
});

describe("the end check's digest", () => {
  it("is the same for the same memory and seed, and changes with one byte or another seed", async () => {
    await init();
    const memory = new Random(4).bytes(300 * 4096);
    const digest = memoryDigest(memory, 4096, 77n);
    expect(digest.byteLength).toBe(32);
    expect(Buffer.from(memoryDigest(memory.slice(), 4096, 77n)).equals(Buffer.from(digest))).toBe(true);
    expect(Buffer.from(memoryDigest(memory, 4096, 78n)).equals(Buffer.from(digest))).toBe(false);
    const changed = memory.slice();
    changed[299 * 4096 + 4095]! ^= 1;
    expect(Buffer.from(memoryDigest(changed, 4096, 77n)).equals(Buffer.from(digest))).toBe(false);
  });

  it("of a sparse memory (zero pages not hashed) equals that of its flat copy, across chunks held and not, all-zero pages in held chunks too", async () => {
    await init();
    const random = new Random(6);
    const sparse = new ChunkedPages(3000, 4096, 64);
    for (let i = 0; i < 200; i++) sparse.write(random.int(3000), random.bytes(4096));
    // Zero by content in a held chunk, its zero bit clear: it is hashed, and hashes as the zero page.
    const held = [...Array(3000).keys()].find((p) => !sparse.isZero(p))!;
    sparse.writable(held).fill(0);
    expect(sparse.isZero(held)).toBe(false);
    const flat = flatBytes(sparse).slice();
    for (const seed of [0n, 77n, 2n ** 64n - 1n]) expect(Buffer.from(memoryDigest(sparse, 4096, seed)).equals(Buffer.from(memoryDigest(flat, 4096, seed)))).toBe(true);
    sparse.writable(3000 - 1)[7] = 1;
    expect(Buffer.from(memoryDigest(sparse, 4096, 77n)).equals(Buffer.from(memoryDigest(flat, 4096, 77n)))).toBe(false);
  });
});

describe("a guest whose program runs by itself", () => {
  it("has what it wrote taken into the dirty log each time the engine lets it run, its clock ahead of the engine's or not", async () => {
    await init();
    const clock = new RealClock();
    const guest = syntheticGuest(64, { seed: 2 });
    let advances = 0;
    // A thread's program keeps its own clock: here it runs a second ahead of the engine's once the migration started.
    let ahead = 0;
    const program: Workload = {
      name: "ahead",
      guest,
      get now() {
        return clock.now() + ahead;
      },
      get workTime() {
        return clock.now() + ahead;
      },
      throttle: 1,
      advance: async (to) => {
        advances++;
        guest.dirtyLog.set(advances);
        return { from: to, to, ran: 0, writes: 1, overwrites: 0, reads: 0 };
      },
      stop: async () => {},
      close: async () => {},
    };
    const link = new LoopbackPair(clock, { bitsPerSecond: 1e9, rtt: 0 });
    const source = new Source({ settings: normaliseOptions({}, guest), workload: program, clock, channel: link.a, tasks: new Tasks(), remote: true });
    ahead = 1;
    try {
      for (let k = 0; k < 5; k++) await source.runGuest();
      expect(advances).toBe(5);
      expect(guest.dirtyLog.count()).toBe(5);
    } finally {
      source.dispose();
      guest.dispose();
    }
  });

  it("what it wrote before the migration is not taken as dirtied in round 1: the log starts with the migration", async () => {
    await init();
    /** An idle program that runs by itself and held 100 pages' writes from before the migration until it is first let run. */
    class Held extends IdleWorkload {
      private held = true;
      override async advance(to: number): ReturnType<IdleWorkload["advance"]> {
        const report = await super.advance(to);
        if (this.held) for (let p = 600; p < 700; p++) this.guest.dirtyLog.set(p);
        this.held = false;
        return report;
      }
      async stop(): Promise<void> {}
    }
    const program = new Held(syntheticGuest(1024, { seed: 5 }));
    try {
      const stats = await simulate("precopy", program, { bitsPerSecond: 100e6, rtt: 0 }, { codec: "raw", batchPages: 64 });
      // Taken after round 1's first frame, they were skipped there and sent again in round 2.
      expect(stats.rounds[0]!.skipped).toBe(0);
      expect(stats.rounds.length).toBe(1);
    } finally {
      program.guest.dispose();
    }
  });
});

describe("the digest of a replica at the stop, taken while its program runs on", () => {
  it("equals the digest of the memory at the stop when every change is announced first", async () => {
    await init();
    const guest = syntheticGuest(200, { seed: 9 });
    try {
      const atStop = memoryDigest(flatBytes(guest.memory).slice(), 4096, 5n);
      const digest = new StopDigest(guest, 5n);
      const random = new Random(2);
      for (let i = 0; i < 500; i++) {
        const p = random.int(200);
        digest.take(p);
        guest.memory.writable(p)[random.int(4096)] ^= 0xff;
      }
      expect(Buffer.from(digest.finish()).equals(Buffer.from(atStop))).toBe(true);
      expect(Buffer.from(memoryDigest(guest.memory, 4096, 5n)).equals(Buffer.from(atStop))).toBe(false);
    } finally {
      guest.dispose();
    }
  });
});

describe("remote migration over TCP", () => {
  for (const strategy of STRATEGY_NAMES) {
    it(`${strategy} ends verified at both ends`, async () => {
      const { sent, received, sourceMemory } = await both(strategy);
      expect(sent.status, String((sent as PromiseRejectedResult).reason)).toBe("fulfilled");
      expect(received.status, String((received as PromiseRejectedResult).reason)).toBe("fulfilled");
      if (sent.status !== "fulfilled" || received.status !== "fulfilled") return;
      expect(sent.value.verifiedPages).toBe(1024);
      expect(received.value.report.verified).toBe(true);
      // The received pages, and the same flat, are the source's memory (pre-copy) or the program's at the end.
      expect(received.value.pages.pageCount).toBe(1024);
      expect(Buffer.from(received.value.memory).equals(Buffer.from(flatBytes(received.value.pages)))).toBe(true);
      if (strategy === "precopy") expect(Buffer.from(received.value.memory).equals(Buffer.from(sourceMemory))).toBe(true);
      expect(sent.value.downtime).toBeGreaterThan(0);
      expect(sent.value.transferred).toBeGreaterThan(0);
      if (strategy !== "precopy") expect(sent.value.remoteUptime).toBeGreaterThan(0);
    }, 30_000);
  }

  for (const strategy of ["precopy", "hybrid"] as const) {
    it(`${strategy} with prealloc: the whole guest mapped before the answer, and the migration as without`, async () => {
      const { sent, received, sourceMemory } = await both(strategy, { receive: { prealloc: 10 } });
      expect(sent.status, String((sent as PromiseRejectedResult).reason)).toBe("fulfilled");
      expect(received.status, String((received as PromiseRejectedResult).reason)).toBe("fulfilled");
      if (received.status !== "fulfilled") return;
      expect(received.value.prealloc!.bytes).toBe(1024 * 4096);
      expect(received.value.prealloc!.seconds).toBeGreaterThan(0);
      // Its CPU too: on a busy machine its wall time is no measure of what it spent.
      expect(received.value.prealloc!.cpuSeconds).toBeGreaterThan(0);
      if (strategy === "precopy") expect(Buffer.from(received.value.memory).equals(Buffer.from(sourceMemory))).toBe(true);
    }, 30_000);
  }

  it("the destination takes the record tag for the frame check: no PAGES frame is hashed again, and the memory is the source's", async () => {
    // (FrameDecoder's private check(), seen through its prototype.)
    const check = vi.spyOn(FrameDecoder.prototype as unknown as { check(bytes: Uint8Array): void }, "check");
    try {
      const { sent, received, sourceMemory } = await both("precopy");
      expect(sent.status).toBe("fulfilled");
      expect(received.status).toBe("fulfilled");
      if (received.status !== "fulfilled") return;
      expect(Buffer.from(received.value.memory).equals(Buffer.from(sourceMemory))).toBe(true);
      const hashed = check.mock.calls.map(([bytes]) => readFrameHeader(bytes).type);
      // (The source's decoder still hashes what it reads: the spy sees those.)
      expect(hashed.length).toBeGreaterThan(0);
      expect(hashed).not.toContain(FrameType.PAGES);
    } finally {
      check.mockRestore();
    }
  });

  for (const strategy of STRATEGY_NAMES) {
    it(`${strategy} with a disk ends verified at both ends, the disk as the source's at the stop`, async () => {
      const { sent, received, disk } = await both(strategy, { diskSeed: 1 });
      expect(sent.status, String((sent as PromiseRejectedResult).reason)).toBe("fulfilled");
      expect(received.status, String((received as PromiseRejectedResult).reason)).toBe("fulfilled");
      if (sent.status !== "fulfilled" || received.status !== "fulfilled") return;
      expect(sent.value.disk).toMatchObject({ blockCount: 2048, verifiedBlocks: 2048 });
      expect(sent.value.disk!.blocksSent).toBeGreaterThan(0);
      expect(received.value.report.diskCounters).toBeDefined();
      // Pre-copy: nothing ran here, so the disk is the source's as it stopped.
      if (strategy === "precopy") expect(Buffer.from(received.value.disk!).equals(Buffer.from(disk!))).toBe(true);
      else expect(received.value.disk!.byteLength).toBe(2048 * 4096);
    }, 30_000);
  }

  it("the destination hears the guest's time every period while pre-copy runs, so its replay stays out of the downtime", async () => {
    // Few writes, so round 1 sends most pages (the synthetic guest's 560 non-zero ones: 2.3 MB).
    const quiet = (): PoissonWorkload => new PoissonWorkload(syntheticGuest(1024, { seed: 5 }), { rate: 0.05, seed: 1 });
    const source = quiet();
    const replicas: Workload[] = [];
    try {
      // At 40 Mbit/s: a round of about 0.45 s.
      const { toDestination, toSource } = await connected(40e6);
      // What the destination gets, in order: round starts and ends, and the guest times INFO frames carry.
      const heard: (string | number)[] = [];
      const spy: Channel = {
        send: (frame) => toSource.send(frame),
        receive: async () => {
          const frame = await toSource.receive();
          const header = frame && readFrameHeader(frame);
          if (header && header.type !== FrameType.PAGES) {
            const control = readControl(frame!, header);
            if (control.type === "round-start" || control.type === "round-end") heard.push(control.type);
            else if (control.type === "info" && control.json.includes("guestTime")) heard.push((JSON.parse(control.json) as { guestTime: number }).guestTime);
          }
          return frame;
        },
        release: (frame) => toSource.release(frame),
        close: () => toSource.close(),
        survive: () => toSource.survive(),
        get rtt() {
          return toSource.rtt;
        },
        get sentBytes() {
          return toSource.sentBytes;
        },
      };
      const receiving = receiveMigration(spy, { startProgram: async () => (replicas.push(quiet()), replicas.at(-1)!) });
      const sent = await sendMigration("hybrid", source, toDestination, { codec: "raw", batchPages: 64 });
      await receiving;
      const round = heard.slice(heard.indexOf("round-start") + 1, heard.indexOf("round-end"));
      const duration = sent.rounds[0]!.duration;
      expect(duration).toBeGreaterThan(0.3);
      // At most one a period (0.1 s), checked after each frame (52 ms each here, longer on a busy machine); before, none until the round's end.
      expect(round.length).toBeGreaterThanOrEqual(Math.max(2, Math.floor(duration / 0.25)));
      expect(round.every((t) => typeof t === "number")).toBe(true);
      // The guest's time before the migration started came first.
      expect(typeof heard[0]).toBe("number");
    } finally {
      source.guest.dispose();
      for (const r of replicas) r.guest.dispose();
    }
  }, 30_000);

  it("the stats give the guest's time when the migration started, where its emulation starts (migrate --start-at)", async () => {
    const source = model(1);
    const replica = model(1);
    try {
      // The guest ran 1.25 s before the migration.
      await source.advance(1.25);
      const { toDestination, toSource } = await connected(200e6);
      const receiving = receiveMigration(toSource, { startProgram: async () => replica });
      const sent = await sendMigration("postcopy", source, toDestination, { codec: "raw", batchPages: 64 });
      await receiving;
      expect(sent.guestStartTime).toBe(1.25);
    } finally {
      source.guest.dispose();
      replica.guest.dispose();
    }
  }, 30_000);

  it("the total time ends when the source has sent everything and the destination holds every page, not when the end check's report is back", async () => {
    const source = model(1);
    const replica = model(1);
    try {
      const { toDestination, toSource } = await connected(200e6);
      // A destination slow to check the memory: its report leaves 500 ms late.
      throughSend(toSource, async (frame, control, send) => {
        if (control?.type === "info" && control.json.includes("verified")) await new Promise((resolve) => setTimeout(resolve, 500));
        return send(frame);
      });
      const receiving = receiveMigration(toSource, { startProgram: async () => replica });
      const started = performance.now();
      const sent = await sendMigration("postcopy", source, toDestination, { codec: "raw", batchPages: 64 });
      const wall = (performance.now() - started) / 1000;
      const { report } = await receiving;
      expect(wall).toBeGreaterThan(0.5);
      // (Before, the 500 ms were in it: it was the call's time less the handshake.)
      expect(sent.totalTime).toBeLessThan(wall - 0.45);
      expect(sent.totalTime).toBeGreaterThan(0);
      expect(report.verified).toBe(true);
    } finally {
      source.guest.dispose();
      replica.guest.dispose();
    }
  }, 30_000);

  it("the guest's time every period does not hold the source back: the next frame is handed over before that INFO frame reaches the line", async () => {
    const quiet = (): PoissonWorkload => new PoissonWorkload(syntheticGuest(1024, { seed: 5 }), { rate: 0.05, seed: 1 });
    const source = quiet();
    try {
      // At 40 Mbit/s a frame of 64 pages is 52 ms on the line: several periods in round 1.
      const { toDestination, toSource } = await connected(40e6);
      const events: string[] = [];
      throughSend(toDestination, (frame, control, send) => {
        const type = control?.type ?? "pages";
        const n = events.push(type) - 1;
        const sending = send(frame);
        // (send() resolves when the frame starts on the capped line.)
        if (type === "info") void sending.then(() => events.push(`info ${n} on the line`), () => {});
        return sending;
      });
      const receiving = receiveMigration(toSource);
      await sendMigration("precopy", source, toDestination, { codec: "raw", batchPages: 64 });
      await receiving;
      // Round 1's progress INFO frames, each followed by a page frame.
      const [start, end] = [events.indexOf("round-start"), events.indexOf("round-end")];
      const infos = events.flatMap((e, k) => (e === "info" && k > start && events.indexOf("pages", k) < end ? [k] : []));
      expect(infos.length).toBeGreaterThanOrEqual(2);
      // The emulation sends no such frame: waiting for it to start, i.e. for the frame before it to leave, put the stop rule's checks a frame later.
      for (const k of infos) expect(events.indexOf(`info ${k} on the line`), `INFO ${k}`).toBeGreaterThan(events.indexOf("pages", k));
    } finally {
      source.guest.dispose();
    }
  }, 30_000);

  /** A 1024-page model with a stop step, noted in `events` where it falls among the frames sent. */
  const notedStop = (events: string[]): PoissonWorkload =>
    new (class extends PoissonWorkload {
      async stop(): Promise<void> {
        events.push("stop");
      }
    })(syntheticGuest(1024, { seed: 5 }), { rate: 5, seed: 1 });

  for (const strategy of ["postcopy", "hybrid"] as const) {
    it(`${strategy}: the guest's time goes to the destination before the stop; after the stop the switch-over record is the first frame`, async () => {
      const events: string[] = [];
      const source = notedStop(events);
      const replica = model(1);
      try {
        const { toDestination, toSource } = await connected(200e6);
        throughSend(toDestination, (frame, control, send) => {
          const type = control?.type ?? "pages";
          events.push(type);
          const sending = send(frame);
          // (send() resolves when the frame starts on the capped line.)
          if (type === "info") void sending.then(() => events.push("info on the line"), () => {});
          return sending;
        });
        const receiving = receiveMigration(toSource, { startProgram: async () => replica });
        const sent = await sendMigration(strategy, source, toDestination, { codec: "raw", batchPages: 64 });
        expect((await receiving).report.verified).toBe(true);
        const stop = events.indexOf("stop");
        const frames = (from: number, to: number): string[] => events.slice(from, to).filter((e) => e !== "info on the line");
        expect(frames(0, stop).at(-1)).toBe("info");
        // Post-copy's line is free at the stop: the frame was on it (its record written) before the pause, out of the downtime.
        if (strategy === "postcopy") expect(events.indexOf("info on the line", events.lastIndexOf("info", stop))).toBeLessThan(stop);
        // (Hybrid's last round sends its pages after the stop; nothing else comes before the record.)
        expect(frames(stop + 1, events.indexOf("switch-over")).every((e) => e === "pages")).toBe(true);
        expect(sent.downtime).toBeGreaterThan(0);
      } finally {
        source.guest.dispose();
        replica.guest.dispose();
      }
    }, 30_000);
  }

  it("the stop does not wait for the guest's-time INFO frame to reach the line (a frame on the line ahead of it): a stop-and-copy queues behind that frame inside the downtime, as in the emulation", async () => {
    const events: string[] = [];
    const source = notedStop(events);
    const replica = model(1);
    try {
      const { toDestination, toSource } = await connected(200e6);
      throughSend(toDestination, async (frame, control, send) => {
        // The INFO frame with the guest's time just before the stop (the catch-up's asks for an answer): 100 ms behind a frame on the line.
        if (control?.type === "info" && control.json.includes("guestTime") && !control.json.includes("answer")) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          await send(frame);
          events.push("info on the line");
          return;
        }
        return send(frame);
      });
      const receiving = receiveMigration(toSource, { startProgram: async () => replica });
      await sendMigration("postcopy", source, toDestination, { codec: "raw", batchPages: 64 });
      expect((await receiving).report.verified).toBe(true);
      expect(events).toEqual(["stop", "info on the line"]);
    } finally {
      source.guest.dispose();
      replica.guest.dispose();
    }
  }, 30_000);

  it("before the migration's time starts, the destination's program has replayed as far as the guest ran (protocol 3)", async () => {
    const events: string[] = [];
    /** The model, each replay step 150 ms late (a busy destination), noting where each got to. */
    class SlowReplay extends PoissonWorkload {
      override async advance(to: number): ReturnType<PoissonWorkload["advance"]> {
        await new Promise((resolve) => setTimeout(resolve, 150));
        const report = await super.advance(to);
        events.push(`replayed ${to}`);
        return report;
      }
    }
    const source = model(1);
    const replica = new SlowReplay(syntheticGuest(1024, { seed: 5 }), { rate: 5, seed: 1 });
    try {
      // The guest ran 2 s before the migration.
      await source.advance(2);
      const { toDestination, toSource } = await connected(200e6);
      const receive = toSource.receive.bind(toSource);
      toSource.receive = async () => {
        const frame = await receive();
        const header = frame && readFrameHeader(frame);
        if (header && header.type !== FrameType.PAGES && readControl(frame!, header).type === "switch-over") events.push("switch-over");
        return frame;
      };
      const receiving = receiveMigration(toSource, { startProgram: async () => replica });
      await sendMigration("postcopy", source, toDestination, { codec: "raw", batchPages: 64 });
      await receiving;
      // (Before, the source sent the guest's time and started at once: the record came while the replay ran.)
      expect(events.indexOf("replayed 2")).toBeGreaterThanOrEqual(0);
      expect(events.indexOf("replayed 2")).toBeLessThan(events.indexOf("switch-over"));
    } finally {
      source.guest.dispose();
      replica.guest.dispose();
    }
  }, 30_000);

  it("a receiver of another protocol version refuses the migration, naming both", async () => {
    const source = model(1);
    try {
      const { toDestination, toSource } = await connected(200e6);
      // The source's description as a version-3 source wrote it.
      let first = true;
      throughSend(toDestination, (frame, control, send) => {
        if (!first) return send(frame);
        first = false;
        if (control?.type !== "info") throw new Error(`the first frame is a ${control?.type ?? "pages"} frame`);
        return send(encodeControl({ type: "info", json: JSON.stringify({ ...JSON.parse(control.json), protocol: 3 }) }, 0));
      });
      const receiving = receiveMigration(toSource, { startProgram: async () => model(1) }).catch((error: Error) => error);
      await expect(sendMigration("postcopy", source, toDestination, { codec: "raw", batchPages: 64 })).rejects.toThrow(/protocol 3 is not 4/);
      expect(String(await receiving)).toMatch(/protocol 3 is not 4/);
    } finally {
      source.guest.dispose();
    }
  }, 30_000);

  it("the downtime starts where the program says it stopped (a thread pauses before the source sees it), not when stop() returned", async () => {
    /** The model, saying it stopped 2 s before its stop() returned. */
    class StoppedEarlier extends PoissonWorkload {
      async stop(): Promise<number> {
        return performance.timeOrigin / 1000 + performance.now() / 1000 - 2;
      }
    }
    const source = new StoppedEarlier(syntheticGuest(1024, { seed: 5 }), { rate: 5, seed: 1 });
    const replica = model(1);
    try {
      const { toDestination, toSource } = await connected(200e6);
      const receiving = receiveMigration(toSource, { startProgram: async () => replica });
      const sent = await sendMigration("postcopy", source, toDestination, { codec: "raw", batchPages: 64 });
      const { report } = await receiving;
      expect(report.verified).toBe(true);
      expect(sent.downtime).toBeGreaterThan(2);
      expect(sent.downtime).toBeLessThan(3);
    } finally {
      source.guest.dispose();
      replica.guest.dispose();
    }
  }, 30_000);

  it("a replay that lags at the switch-over is reported apart, not counted in the downtime", async () => {
    /** The model, each replay step 300 ms late (a busy destination). */
    class SlowReplay extends PoissonWorkload {
      override async advance(to: number): ReturnType<PoissonWorkload["advance"]> {
        await new Promise((resolve) => setTimeout(resolve, 300));
        return super.advance(to);
      }
    }
    const source = model(1);
    const replica = new SlowReplay(syntheticGuest(1024, { seed: 5 }), { rate: 5, seed: 1 });
    try {
      const { toDestination, toSource } = await connected(200e6);
      const receiving = receiveMigration(toSource, { startProgram: async () => replica });
      const sent = await sendMigration("postcopy", source, toDestination, { codec: "raw", batchPages: 64 });
      const { report } = await receiving;
      expect(report.verified).toBe(true);
      expect(report.replayWait).toBeGreaterThanOrEqual(0.1);
      // From the stop to the resume less that wait: the switch-over record's time on the line and what it takes here.
      expect(sent.downtime).toBeCloseTo(report.resumeWallTime - report.stopWallTime - report.replayWait, 9);
      expect(sent.downtime).toBeLessThan(report.replayWait);
    } finally {
      source.guest.dispose();
      replica.guest.dispose();
    }
  }, 30_000);

  it("a destination whose disk program differs from the source's refuses the migration, naming the disk", async () => {
    const { sent, received } = await both("postcopy", { diskSeed: 2 });
    expect(received.status).toBe("rejected");
    expect(String((received as PromiseRejectedResult).reason)).toMatch(/disk/);
    expect(String((sent as PromiseRejectedResult).reason)).toMatch(/did not verify.*disk/);
  }, 30_000);

  it("a receiver refuses a disk larger than it takes before anything moves", async () => {
    const { sent, received } = await both("precopy", { diskSeed: 1, receive: { maxDiskBytes: 2 ** 20 } });
    expect(String((received as PromiseRejectedResult).reason)).toMatch(/disk of 8388608 bytes is larger than this receiver takes \(1048576\)/);
    expect(String((sent as PromiseRejectedResult).reason)).toMatch(/larger than this receiver takes/);
  }, 30_000);

  it("a destination whose program differs from the source's refuses the migration", async () => {
    const { sent, received } = await both("postcopy", { destinationSeed: 2 });
    expect(received.status).toBe("rejected");
    expect((received as PromiseRejectedResult).reason).toBeInstanceOf(VerificationError);
    expect(sent.status).toBe("rejected");
    expect(String((sent as PromiseRejectedResult).reason)).toMatch(/did not verify/);
  }, 30_000);
});

/** Runs the CLI; resolves with its exit code and output. */
const cli = (args: string[]) => runNode(BIN, args);

/** `pagemill receive` on a free port; resolves once it listens. */
const receiver = (args: string[]) => listening(BIN, ["receive", "--listen", "127.0.0.1:0", ...args]);

describe.skipIf(!existsSync(BIN))("pagemill send / receive between two processes", () => {
  it("send and receive compile their code (and WebAssembly kernels) as it loads, not at its first call (inside the downtime); other commands lazily", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pagemill-remote-"));
    try {
      // The switch-over's decoding and the dirty log's sync run first inside the downtime: compiled (Ignition's bytecode, Liftoff's code) before any call?
      const probe = join(dir, "probe.mjs");
      const frame = new URL("../dist/wire/frame.js", import.meta.url).href;
      const wasmModule = new URL("../dist/wasm/module.js", import.meta.url).href;
      writeFileSync(probe, `process.argv = [process.execPath, "bin", process.env.COMMAND, "--help"];
await import(${JSON.stringify(new URL(`file://${BIN}`).href)});
const { decodeSwitchover } = await import(${JSON.stringify(frame)});
const { init, wasm } = await import(${JSON.stringify(wasmModule)});
await init();
console.log(%ActiveTierIsIgnition(decodeSwitchover), !%IsUncompiledWasmFunction(wasm().kernels.bitmapSync));`);
      const probed = (command: string) =>
        new Promise<string>((resolve) => {
          const child = spawn(process.execPath, ["--allow-natives-syntax", probe], { env: { ...process.env, COMMAND: command } });
          let out = "";
          child.stdout.on("data", (d) => (out += d));
          child.on("close", () => resolve(out.trim().split("\n").at(-1)!));
        });
      expect(await probed("send")).toBe("true true");
      expect(await probed("receive")).toBe("true true");
      expect(await probed("migrate")).toBe("false false");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  for (const strategy of STRATEGY_NAMES) {
    it(`${strategy} of the bundled trace, encrypted at the receiver's asking, --prealloc: both exit 0, the memory is written`, async () => {
      const dir = mkdtempSync(join(tmpdir(), "pagemill-remote-"));
      try {
        const key = join(dir, "key");
        writeFileSync(key, KEY);
        const { port, done } = await receiver(["--key-file", key, "--encrypt", "--prealloc", "-o", join(dir, "out"), "--json"]);
        const sent = await cli(["send", "--to", `127.0.0.1:${port}`, "--key-file", key, "--strategy", strategy, "--bandwidth", "200mbit", "--json"]);
        const received = await done;
        expect(sent.code, sent.stderr).toBe(0);
        expect(received.code, received.stderr).toBe(0);
        expect(JSON.parse(sent.stdout).verifiedPages).toBe(3072);
        expect(JSON.parse(received.stdout)).toMatchObject({ verified: true, strategy });
        // Each process's CPU over the migration, counted (a figure the benchmark reports).
        for (const out of [sent.stdout, received.stdout]) expect(JSON.parse(out).cpuSeconds).toBeGreaterThan(0);
        // The whole guest mapped before the answer; with a program thread its memory is the thread's (nothing to map).
        expect(JSON.parse(received.stdout).prealloc?.bytes).toBe(strategy === "precopy" ? 3072 * 4096 : undefined);
        expect(statSync(join(dir, "out", "memory.bin")).size).toBe(3072 * 4096);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }, 60_000);
  }

  it("post-copy with the bundled disk trace: both exit 0, the disk is written beside the memory", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pagemill-remote-"));
    try {
      const { port, done } = await receiver(["-o", join(dir, "out"), "--json"]);
      const sent = await cli(["send", "--to", `127.0.0.1:${port}`, "--strategy", "postcopy", "--bandwidth", "200mbit", "--disk", DISK_TRACE, "--json"]);
      const received = await done;
      expect(sent.code, sent.stderr).toBe(0);
      expect(received.code, received.stderr).toBe(0);
      expect(JSON.parse(sent.stdout).disk).toMatchObject({ blockCount: 881, verifiedBlocks: 881 });
      expect(JSON.parse(received.stdout).diskCounters.blockMisses).toBeGreaterThanOrEqual(0);
      expect(statSync(join(dir, "out", "disk.bin")).size).toBe(881 * 4096);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("a link cut during post-copy: both processes resume on a new connection, exit 0 and list the recovery", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pagemill-remote-"));
    const key = join(dir, "key");
    writeFileSync(key, KEY);
    const { port, done } = await receiver(["--key-file", key, "--json"]);
    // Post-copy of the bundled trace moves about 13 MB: cut 2 MB in, past the 256 KiB switch-over record, mid push.
    const proxy = await CuttingProxy.start(port, 2_000_000);
    try {
      const sent = await cli(["send", "--to", `127.0.0.1:${proxy.port}`, "--key-file", key, "--strategy", "postcopy", "--bandwidth", "200mbit", "--recover-timeout", "10s", "--json"]);
      const received = await done;
      expect(sent.code, sent.stderr).toBe(0);
      expect(received.code, received.stderr).toBe(0);
      expect(proxy.cuts).toBe(1);
      const atSource = JSON.parse(sent.stdout);
      const atDestination = JSON.parse(received.stdout);
      expect(atSource.verifiedPages).toBe(3072);
      expect(atDestination.verified).toBe(true);
      expect(atSource.recoveries).toHaveLength(1);
      expect(atDestination.recoveries).toHaveLength(1);
    } finally {
      await proxy.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("a wrong key: both exit 1 naming the cause, nothing written", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pagemill-remote-"));
    try {
      writeFileSync(join(dir, "a"), KEY);
      writeFileSync(join(dir, "b"), new Uint8Array(32).fill(4));
      const { port, done } = await receiver(["--key-file", join(dir, "a"), "-o", join(dir, "out")]);
      const sent = await cli(["send", "--to", `127.0.0.1:${port}`, "--key-file", join(dir, "b")]);
      const received = await done;
      expect(sent.code).toBe(1);
      expect(sent.stderr).toMatch(/does not hold the key/);
      expect(received.code).toBe(1);
      expect(received.stderr).toMatch(/does not hold the key|closed the connection/);
      expect(existsSync(join(dir, "out", "memory.bin"))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("bad command lines are refused with the usage", async () => {
    expect((await cli(["send", "--to", "nowhere"])).stderr).toMatch(/--to must be HOST:PORT/);
    expect((await cli(["send", "--to", "127.0.0.1:1", "--strategy", "teleport"])).stderr).toMatch(/--strategy must be one of/);
    expect((await cli(["receive", "--listen", "0.0.0.0:0"])).stderr).toMatch(/needs a key/);
    expect((await cli(["send", "--to", "127.0.0.1:1", "--encrypt"])).stderr).toMatch(/--encrypt needs --key-file/);
    const short = join(mkdtempSync(join(tmpdir(), "pagemill-key-")), "k");
    writeFileSync(short, "short");
    expect((await cli(["receive", "--listen", "127.0.0.1:0", "--key-file", short])).stderr).toMatch(/at least 16/);
    const refused = await cli(["send", "--to", "127.0.0.1:1", "--timeout", "2s"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/nothing listens there/);
  }, 60_000);
});

// Link faults between the two ends of a real migration: a proxy on loopback
// cuts the connection at a random point, 100 times across the strategies.
// A cut before the switch-over fails both ends cleanly, the source's guest
// intact and the destination holding nothing; a cut after it pauses both
// ends until the source dials again, and the migration ends verified.
// Nothing is ever lost: no case ends with one end verified and the other not.
import { describe, expect, it } from "vitest";
import type { StrategyName } from "../src/engine/metrics.js";
import { receiveMigration, sendMigration } from "../src/engine/remote.js";
import { PagemillError } from "../src/errors.js";
import { PoissonWorkload, syntheticGuest } from "../src/guest/workloads.js";
import { Random } from "../src/random.js";
import { CuttingProxy } from "../src/net/faults.js";
import { NetworkError, connectChannel, listenChannel, type TcpChannel } from "../src/net/tcp.js";
import { flatBytes } from "../src/index.js";

const KEY = new Uint8Array(32).fill(11);
const PAGES = 1024;

function model(): PoissonWorkload {
  return new PoissonWorkload(syntheticGuest(PAGES, { seed: 5 }), { rate: 5, seed: 1 });
}

interface Outcome {
  readonly strategy: StrategyName;
  readonly sent: PromiseSettledResult<unknown>;
  readonly received: PromiseSettledResult<{ memory: Uint8Array }>;
  readonly recoveries: number;
  readonly bytes: number;
  readonly cut: boolean;
}

/** One migration through a proxy that cuts at `cutAfter` bytes; checks the source's guest is intact when it failed. */
async function migrateThrough(strategy: StrategyName, cutAfter: number): Promise<Outcome> {
  const options = { key: KEY, timeout: 2, recoverTimeout: 3 };
  const listener = await listenChannel("127.0.0.1", 0, options);
  const proxy = await CuttingProxy.start(listener.port, cutAfter);
  const source = model();
  const replicas: PoissonWorkload[] = [];
  let toDestination: TcpChannel | undefined;
  let toSource: TcpChannel | undefined;
  try {
    const receiving = (async () => {
      toSource = await listener.accept();
      listener.refuseNew();
      return receiveMigration(toSource, {
        startProgram: async () => {
          const replica = model();
          replicas.push(replica);
          return replica;
        },
      });
    })();
    const sending = (async () => {
      toDestination = await connectChannel("127.0.0.1", proxy.port, { ...options, bitsPerSecond: 400e6 });
      const stats = await sendMigration(strategy, source, toDestination, { codec: "lz4", batchPages: 32, stateBytes: 16384 });
      await toDestination.finished;
      return stats;
    })();
    const [sent, received] = await Promise.allSettled([sending, receiving]);
    if (sent.status === "rejected") {
      // A failed migration leaves the source's guest as its program made it: nothing was written into it.
      const replica = model();
      try {
        await replica.advance(replica.now + (source.workTime - replica.workTime));
        expect(Buffer.from(flatBytes(source.guest.memory)).equals(Buffer.from(flatBytes(replica.guest.memory))), "the source's guest after a failed migration").toBe(true);
      } finally {
        replica.guest.dispose();
      }
    } else if (received.status === "fulfilled" && strategy === "precopy") {
      expect(Buffer.from(received.value.memory).equals(Buffer.from(flatBytes(source.guest.memory)))).toBe(true);
    }
    return { strategy, sent, received, recoveries: toDestination?.recoveries.length ?? 0, bytes: proxy.bytes, cut: proxy.cuts > 0 };
  } finally {
    toDestination?.destroy();
    toSource?.destroy();
    listener.close();
    await proxy.close();
    source.guest.dispose();
    for (const r of replicas) r.guest.dispose();
  }
}

function frame(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 131 + seed * 7) & 0xff;
  return out;
}

/** A channel pair through a proxy that cuts after `cutAfter` bytes; `survive` is called on both ends first when asked. */
async function cutPair(cutAfter: number, survive: boolean) {
  const options = { key: KEY, timeout: 2, recoverTimeout: 2 };
  const listener = await listenChannel("127.0.0.1", 0, options);
  const proxy = await CuttingProxy.start(listener.port, cutAfter);
  const [client, server] = await Promise.all([connectChannel("127.0.0.1", proxy.port, options), listener.accept()]);
  if (survive) {
    client.survive();
    server.survive();
  }
  /** Sends `count` frames each way (client→server 20 KB each, server→client 3 KB), then closes; resolves with what each end received. */
  const exchange = async (count: number) => {
    const collect = async (channel: TcpChannel) => {
      const got: Uint8Array[] = [];
      for (let f = await channel.receive(); f; f = await channel.receive()) got.push(f);
      return got;
    };
    const send = async (channel: TcpChannel, size: number) => {
      for (let i = 0; i < count; i++) await channel.send(frame(size, i));
      channel.close();
    };
    const [, , atServer, atClient] = await Promise.all([send(client, 20_000), send(server, 3_000), collect(server), collect(client)]);
    await Promise.all([client.finished, server.finished]);
    return { atServer, atClient };
  };
  const close = async () => {
    client.destroy();
    server.destroy();
    listener.close();
    await proxy.close();
  };
  return { client, server, proxy, exchange, close };
}

describe("a TCP session across a cut", () => {
  it("once both ends survive, resumes on a new connection: every frame once, in order, both ways", async () => {
    for (const cutAfter of [500, 150_000, 1_700_000]) {
      const pair = await cutPair(cutAfter, true);
      try {
        const { atServer, atClient } = await pair.exchange(100);
        expect(pair.proxy.cuts).toBe(1);
        expect(atServer.length).toBe(100);
        expect(atClient.length).toBe(100);
        atServer.forEach((f, i) => expect(Buffer.from(f).equals(Buffer.from(frame(20_000, i))), `client frame ${i}`).toBe(true));
        atClient.forEach((f, i) => expect(Buffer.from(f).equals(Buffer.from(frame(3_000, i))), `server frame ${i}`).toBe(true));
        for (const end of [pair.client, pair.server]) {
          expect(end.recoveries.length).toBe(1);
          const [r] = end.recoveries;
          expect(r!.reconnectedAt).toBeGreaterThanOrEqual(r!.cutAt);
          expect(r!.resumedAt).toBeGreaterThanOrEqual(r!.reconnectedAt);
        }
      } finally {
        await pair.close();
      }
    }
  });

  it("before survive(), a cut fails both ends with a NetworkError", async () => {
    const pair = await cutPair(150_000, false);
    try {
      await expect(pair.exchange(100)).rejects.toThrow(NetworkError);
      await expect(pair.client.finished).rejects.toThrow(/cut|closed|failed/);
      await expect(pair.server.finished).rejects.toThrow(/cut|closed|failed/);
    } finally {
      await pair.close();
    }
  });

  it("a paused end gives up after its recovery timeout, naming it", async () => {
    const pair = await cutPair(150_000, true);
    // The client is gone for good: the server waits its 2 s, no more.
    pair.client.destroy();
    const started = performance.now();
    await expect(pair.server.finished).rejects.toThrow(/did not connect again within 2 s/);
    expect(performance.now() - started).toBeLessThan(4000);
    await pair.close();
  });
});

const STRATEGIES: StrategyName[] = ["precopy", "postcopy", "hybrid"];
const CUTS = 100;

describe("link faults", () => {
  it(`${CUTS} cuts at random points across the strategies: each ends verified or cleanly failed, nothing lost`, async () => {
    // How many bytes an uncut migration moves, per strategy: the cuts fall within that.
    const span = new Map<StrategyName, number>();
    for (const strategy of STRATEGIES) {
      const clean = await migrateThrough(strategy, Infinity);
      expect(clean.sent.status, String((clean.sent as PromiseRejectedResult).reason)).toBe("fulfilled");
      span.set(strategy, clean.bytes);
    }
    const random = new Random(17);
    const tally = { cuts: 0, verified: 0, resumed: 0, failed: 0 };
    for (let i = 0; tally.cuts < CUTS; i++) {
      const strategy = STRATEGIES[i % STRATEGIES.length]!;
      // (A migration on the real clock moves a few more or fewer bytes each time: a cut near the end may not come.)
      const at = random.int(span.get(strategy)!);
      const outcome = await migrateThrough(strategy, at);
      const what = `${strategy} cut at byte ${at} of ${span.get(strategy)}`;
      // Both ends agree: verified at both, or failed at both.
      expect(outcome.received.status, `${what}: ${String((outcome.sent as PromiseRejectedResult).reason ?? "")}`).toBe(outcome.sent.status);
      if (!outcome.cut) {
        expect(outcome.sent.status, what).toBe("fulfilled");
        continue;
      }
      tally.cuts++;
      if (outcome.sent.status === "fulfilled") {
        tally.verified++;
        if (outcome.recoveries > 0) tally.resumed++;
      } else {
        tally.failed++;
        const reason = outcome.sent.reason as Error;
        expect(reason, what).toBeInstanceOf(PagemillError);
        expect(reason.message, what).toMatch(/cut|closed|connect|handshake|session/);
      }
    }
    // Both paths were taken: cuts before the switch-over fail, cuts after it resume.
    expect(tally.failed).toBeGreaterThan(0);
    expect(tally.resumed).toBeGreaterThan(0);
    expect(tally.verified + tally.failed).toBe(CUTS);
  }, 240_000);
});

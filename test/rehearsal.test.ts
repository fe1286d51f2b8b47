// The destination decodes a switch-over record and sets page states from
// it once before it answers that it is ready: inside the downtime that
// code would otherwise run for the first time in the process, which is
// slow (remote.ts, rehearseSwitchover).
import { afterEach, describe, expect, it, vi } from "vitest";
import type { TcpListener } from "../src/net/tcp.js";

/** How many switch-over records this process decoded. */
const decoded = { count: 0 };
const KEY = new Uint8Array(32).fill(5);
const listeners: TcpListener[] = [];
afterEach(() => {
  for (const listener of listeners.splice(0)) listener.close();
});

/** The modules again (the setup loaded them before any mock), with decodeSwitchover counted. */
async function counted() {
  vi.resetModules();
  vi.doMock("../src/wire/frame.js", async (original) => {
    const frame = await original<typeof import("../src/wire/frame.js")>();
    return {
      ...frame,
      decodeSwitchover: (...args: Parameters<typeof frame.decodeSwitchover>) => {
        decoded.count++;
        return frame.decodeSwitchover(...args);
      },
    };
  });
  await (await import("../src/wasm/module.js")).init();
  return { ...(await import("../src/engine/remote.js")), ...(await import("../src/net/tcp.js")), ...(await import("../src/guest/workloads.js")) };
}

describe("the destination's switch-over code before the migration's time starts", () => {
  it.each(["precopy", "postcopy"] as const)("%s: a switch-over record was decoded before the destination answered that it is ready, and the migration's own after it", async (strategy) => {
    const { receiveMigration, sendMigration, connectChannel, listenChannel, PoissonWorkload, syntheticGuest } = await counted();
    const listener = await listenChannel("127.0.0.1", 0, { key: KEY });
    listeners.push(listener);
    const [toDestination, toSource] = await Promise.all([connectChannel("127.0.0.1", listener.port, { key: KEY }), listener.accept()]);
    const model = () => new PoissonWorkload(syntheticGuest(256, { seed: 5 }), { rate: 5, seed: 1 });
    const source = model();
    const replica = model();
    // The source's first frame from the destination is its answer (ready).
    const receive = toDestination.receive.bind(toDestination);
    let atAnswer: number | undefined;
    toDestination.receive = async () => {
      const frame = await receive();
      atAnswer ??= decoded.count;
      return frame;
    };
    decoded.count = 0;
    try {
      const [sent, received] = await Promise.all([sendMigration(strategy, source, toDestination, { batchPages: 64 }), receiveMigration(toSource, { startProgram: async () => replica })]);
      expect(sent.verifiedPages).toBe(256);
      expect(received.report.verified).toBe(true);
      expect(atAnswer).toBe(1);
      expect(decoded.count).toBe(2);
    } finally {
      source.guest.dispose();
      replica.guest.dispose();
    }
  });
});

// A TCP channel's receiver checks (and decrypts) each record as its bytes
// arrive, not all once the record is whole: what is left after its last
// byte is the last read's share, however long the record (tcp.ts, Link).
import { afterEach, describe, expect, it, vi } from "vitest";

/** Body bytes each record's check was given at a time, in the order its deciphers were made. */
const pieces: number[][] = [];
vi.mock("node:crypto", async (original) => {
  const crypto = await original<typeof import("node:crypto")>();
  return {
    ...crypto,
    createDecipheriv: (...args: Parameters<typeof crypto.createDecipheriv>) => {
      const decipher = crypto.createDecipheriv(...args) as import("node:crypto").DecipherGCM;
      const fed: number[] = [];
      pieces.push(fed);
      const setAAD = decipher.setAAD.bind(decipher);
      const update = decipher.update.bind(decipher) as (data: Uint8Array) => Buffer;
      decipher.setAAD = (data, options) => (fed.push(data.byteLength), setAAD(data, options));
      (decipher as unknown as { update(data: Uint8Array): Buffer }).update = (data) => (fed.push(data.byteLength), update(data));
      return decipher;
    },
  };
});

const KEY = new Uint8Array(32).fill(5);
const open: { close(): unknown }[] = [];
afterEach(async () => {
  for (const thing of open.splice(0).reverse()) await thing.close();
});

// The setup file loaded the channel with the real node:crypto: this file's copy is loaded anew, with the mock.
vi.resetModules();
const { connectChannel, listenChannel } = await import("../src/net/tcp.js");

describe("a record's check", () => {
  for (const encrypt of [false, true]) {
    it(`takes a 1 MiB record's bytes as they arrive${encrypt ? ", decrypting them" : ""}: no piece is larger than one read (256 KiB)`, async () => {
      const listener = await listenChannel("127.0.0.1", 0, { key: KEY, encrypt });
      open.push(listener);
      const [client, server] = await Promise.all([connectChannel("127.0.0.1", listener.port, { key: KEY }), listener.accept()]);
      open.push(client, server);
      const frame = new Uint8Array(2 ** 20).map((_, i) => (i * 7) & 0xff);
      pieces.length = 0;
      await client.send(frame);
      expect(Buffer.from((await server.receive())!).equals(Buffer.from(frame))).toBe(true);
      // The record's decipher: the one given the frame's bytes (after its 1-byte kind).
      const record = pieces.find((fed) => fed.slice(1).reduce((a, b) => a + b, 0) === frame.byteLength);
      expect(record).toBeDefined();
      expect(Math.max(...record!.slice(1))).toBeLessThanOrEqual(256 * 1024);
    });
  }
});

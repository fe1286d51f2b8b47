import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { CodecError } from "../src/index.js";
import { codecNamesFor, createCodec } from "../src/codecs/registry.js";
import { encodeControl, type Frame } from "../src/wire/frame.js";
import type { PipelineCodecs } from "../src/wire/pipeline.js";
import {
  FrameDecoderStream,
  FrameEncoderStream,
  FrameSplitter,
  createDecodeStream,
  createEncodeStream,
  type EncodeInput,
} from "../src/wire/stream.js";
import { sharedTraceImagePages } from "./helpers/traces.js";

/** Node 20's ReadableStream.from, which the DOM library's type of ReadableStream lacks. */
const streamOf = <T>(chunks: Iterable<T>): ReadableStream<T> => (ReadableStream as unknown as { from(chunks: Iterable<T>): ReadableStream<T> }).from(chunks);

const FUZZ = Boolean(process.env.PAGEMILL_FUZZ);
const CHOICES = ["raw", ...codecNamesFor("compress")];

function codecsFor(choice: string): PipelineCodecs {
  return choice === "raw" ? {} : { compress: createCodec(choice) };
}

/** Cuts `bytes` at the given points (sorted, deduplicated, inside the buffer). */
function cut(bytes: Uint8Array, points: number[]): Uint8Array[] {
  const at = [...new Set(points.map((p) => p % (bytes.byteLength + 1)))].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const p of [...at, bytes.byteLength]) {
    pieces.push(bytes.subarray(from, p));
    from = p;
  }
  return pieces;
}

/** Inputs for an encoder: the image in uneven chunks, a round around it, and a done frame. */
function inputsFor(pages: Uint8Array, pageSize: number, count: number): EncodeInput[] {
  const inputs: EncodeInput[] = [{ type: "round-start", round: 1, pages: count }];
  for (let first = 0, size = 1; first < count; first += size, size = (size * 7) % 300 || 1) {
    const end = Math.min(count, first + size);
    inputs.push({ pages: pages.subarray(first * pageSize, end * pageSize), indices: Array.from({ length: end - first }, (_, i) => first + i) });
  }
  inputs.push({ type: "round-end", round: 1, pages: count });
  inputs.push({ type: "done", memoryBytes: count * pageSize, digestName: "none", digest: new Uint8Array(0) });
  return inputs;
}

async function collect<T>(readable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of readable) out.push(item);
  return out;
}

describe("frame streams", () => {
  it("Node streams: image → frames → bytes cut anywhere → the same image", async () => {
    const { pageSize, count, pages } = await sharedTraceImagePages("redis", 1200);
    for (const choice of CHOICES) {
      const bytes = Buffer.concat(await collect<Buffer>(Readable.from(inputsFor(pages, pageSize, count)).pipe(createEncodeStream({ codecs: codecsFor(choice), batchPages: 128 }))));
      const memory = new Uint8Array(count * pageSize);
      const points = Array.from({ length: 400 }, (_, i) => (i * 7919 * 104729) % bytes.byteLength);
      const frames = await collect<Frame>(Readable.from(cut(bytes, points)).pipe(createDecodeStream({ destination: memory })));
      expect(Buffer.compare(memory, pages), choice).toBe(0);
      expect(frames[0]!.type).toBe("round-start");
      expect(frames.at(-1)!.type).toBe("done");
      expect(frames.map((f) => f.sequence)).toEqual(frames.map((_, i) => i));
    }
  });

  it("WHATWG streams: the same bytes as the Node streams, decoded from pieces of 1..61 bytes", async () => {
    const { pageSize, pages } = await sharedTraceImagePages("node-gc", 300);
    const count = 300;
    const inputs = inputsFor(pages, pageSize, count);
    const viaNode = Buffer.concat(await collect<Buffer>(Readable.from(inputs).pipe(createEncodeStream({ batchPages: 64 }))));
    const viaWeb = Buffer.concat(await collect(streamOf(inputs).pipeThrough(new FrameEncoderStream({ batchPages: 64 }))));
    expect(Buffer.compare(viaNode, viaWeb)).toBe(0);
    const memory = new Uint8Array(count * pageSize);
    const pieces: Uint8Array[] = [];
    for (let at = 0, size = 1; at < viaWeb.byteLength; at += size, size = (size % 61) + 1) pieces.push(viaWeb.subarray(at, at + size));
    const frames = await collect(streamOf(pieces).pipeThrough(new FrameDecoderStream({ destination: memory })));
    expect(Buffer.compare(memory, pages)).toBe(0);
    expect(frames.length).toBeGreaterThan(3);
  });

  it("splits at every random set of byte boundaries into the same frames (fast-check)", () => {
    const frames = [
      encodeControl({ type: "round-start", round: 0, pages: 9 }, 0),
      encodeControl({ type: "switch-over", state: new Uint8Array(300).map((_, i) => i) }, 1),
      encodeControl({ type: "page-request", pages: [1, 5, 9] }, 2),
      encodeControl({ type: "done", memoryBytes: 4096, digestName: "xxh64", digest: new Uint8Array(8) }, 3),
    ];
    const stream = Buffer.concat(frames);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 60 }), (points) => {
        const splitter = new FrameSplitter();
        const got = cut(stream, points).flatMap((piece) => splitter.push(piece));
        splitter.finish();
        expect(got.map((f) => Buffer.from(f).toString("hex"))).toEqual(frames.map((f) => Buffer.from(f).toString("hex")));
      }),
      { numRuns: FUZZ ? 20000 : 500 },
    );
  });

  it("rejects a stream cut inside a frame, a gap in the sequence, and a corrupt header at once", async () => {
    const a = encodeControl({ type: "round-start", round: 0, pages: 1 }, 0);
    const b = encodeControl({ type: "round-end", round: 0, pages: 1 }, 1);
    const c = encodeControl({ type: "round-end", round: 0, pages: 1 }, 2);
    for (let length = 1; length < b.byteLength; length++) {
      const splitter = new FrameSplitter();
      splitter.push(a);
      splitter.push(b.subarray(0, length));
      expect(() => splitter.finish(), `cut at ${length}`).toThrow(CodecError);
    }
    expect(() => new FrameSplitter().push(Buffer.concat([a, c]))).toThrow(/sequence 2 where 1 was due/);
    expect(new FrameSplitter(false).push(Buffer.concat([a, c]))).toHaveLength(2);
    // A flipped length bit is caught from the header alone: no waiting for a body that never comes.
    const bad = b.slice();
    bad[21]! ^= 0x40;
    expect(() => new FrameSplitter().push(Buffer.concat([a, bad.subarray(0, 28)]))).toThrow(/header check/);
    // Node and WHATWG decoders report it as a stream error.
    await expect(pipeline(Readable.from([a, b.subarray(0, 10)]), createDecodeStream(), new Writable({ objectMode: true, write: (_f, _e, done) => done() }))).rejects.toThrow(CodecError);
    await expect(collect(streamOf([a, bad]).pipeThrough(new FrameDecoderStream()))).rejects.toThrow(CodecError);
  });

  it("takes ArrayBuffers as bytes and refuses anything else, naming what it got", async () => {
    const a = encodeControl({ type: "round-start", round: 0, pages: 1 }, 0);
    const whole = a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength) as ArrayBuffer;
    expect(await collect<Frame>(streamOf([whole]).pipeThrough(new FrameDecoderStream()))).toHaveLength(1);
    await expect(collect(streamOf(["frames" as unknown as Uint8Array]).pipeThrough(new FrameDecoderStream()))).rejects.toThrow(/a frame stream's chunk must be a Uint8Array or ArrayBuffer, got/);
  });
});

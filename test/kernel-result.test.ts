// The one reader of the batch kernels' results (src/codecs/kernel-result.ts):
// every reason a kernel can give becomes a typed CodecError naming the codec
// and the reason; every batch codec's tables come out of the same layout;
// truncated tables and payloads are refused, naming the first page they cut.

import { describe, expect, it, vi } from "vitest";
import fc from "fast-check";
import {
  CodecError,
  DedupCodec,
  Lz4Codec,
  MecomCodec,
  PageBatch,
  WkdmCodec,
  buildPipeline,
  disposePipeline,
  encodeFrame,
  newWireStats,
  XbzrleCodec,
  lz4CompressBlock,
  lz4CompressBound,
  lz4DecompressBlock,
  wkdmDecompress,
  xbzrleDecode,
  type EncodedBatch,
  type PageCodec,
  type PipelineCodecs,
} from "../src/index.js";
import { Encoding } from "../src/codecs/codec.js";
import { rejection } from "../src/codecs/kernel-result.js";
import { AutoCodec } from "../src/codecs/auto.js";
import { CostModel } from "../src/codecs/cost.js";
import { sharedTraceImagePages } from "./helpers/traces.js";

const PAGE = 4096;
const costs = new CostModel();

/** The error `fn` throws (a failure when it throws none). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected an error, none was thrown");
}

/** Asserts a CodecError from `codec`'s kernel: the reason, the code, the page, and both named in the message. */
function expectRejection(err: unknown, codec: string, reason: string, code: string, page?: number): CodecError {
  expect(err).toBeInstanceOf(CodecError);
  const e = err as CodecError;
  expect({ codec: e.codec, reason: e.reason, code: e.code, page: e.page }).toEqual({ codec, reason, code, page });
  expect(e.message).toContain(`(${codec}: ${reason})`);
  return e;
}

/** Every reason assembly/table.ts numbers, with its name and CodecError code. */
const REASONS: [number, string, string][] = [
  [1, "extent", "length"],
  [2, "encoding", "malformed"],
  [3, "raw-length", "length"],
  [4, "zero-length", "length"],
  [5, "same-value-length", "length"],
  [6, "wkdm-short-stream", "truncated"],
  [7, "wkdm-sparse-length", "length"],
  [8, "wkdm-sparse-offset", "malformed"],
  [9, "wkdm-short-header", "truncated"],
  [10, "wkdm-header-order", "malformed"],
  [11, "wkdm-header-past-end", "truncated"],
  [12, "wkdm-header-short-of-end", "length"],
  [13, "wkdm-tag-counts", "malformed"],
  [14, "lz4-overrun", "overrun"],
  [15, "lz4-offset", "malformed"],
  [16, "lz4-truncated", "truncated"],
  [17, "lz4-short", "length"],
  [18, "xbzrle-truncated", "truncated"],
  [19, "xbzrle-overrun", "overrun"],
  [20, "xbzrle-malformed", "malformed"],
];

/** Real pages of the shared traces, zero pages included. */
async function tracePages(count: number): Promise<Uint8Array> {
  const parts = await Promise.all((["redis", "node-gc", "memstream"] as const).map((name) => sharedTraceImagePages(name, count / 4)));
  const pages = new Uint8Array(count * PAGE);
  parts.forEach((p, i) => pages.set(p.pages.subarray(0, (count / 4) * PAGE), i * (count / 4) * PAGE));
  // The last quarter: repeated words, so WKdm and MECOM send ZERO and SAME_VALUE too.
  const words = new Uint32Array(pages.buffer, 3 * (count / 4) * PAGE);
  for (let k = 0; k < count / 4; k++) words.fill(k % 3 === 0 ? 0 : 0x01020304 * k, (k * PAGE) / 4, ((k + 1) * PAGE) / 4);
  return pages;
}

interface Subject {
  codec: () => PageCodec;
  /** xbzrle: encode older versions first (so pages hit the cache) and preload the destination with them */
  delta?: boolean;
}

/** Older versions of `pages`: a few bytes of each page changed. */
function olderVersions(pages: Uint8Array): Uint8Array {
  const old = pages.slice();
  for (let at = 0; at < old.length; at += 997) old[at] ^= 0x5a;
  return old;
}

const SUBJECTS: Record<string, Subject> = {
  lz4: { codec: () => new Lz4Codec() },
  wkdm: { codec: () => new WkdmCodec() },
  mecom: { codec: () => new MecomCodec({ threshold: 0.3 }) },
  xbzrle: { codec: () => new XbzrleCodec({ cacheSize: 1 << 20 }), delta: true },
  dedup: { codec: () => new DedupCodec() },
};

/**
 * `name`'s codec and its encoding of `pages` (loaded in `batch`), and how to
 * give `back` the destination's pages before decoding (xbzrle: the older
 * versions its deltas apply to).
 */
function encodeWith(name: string, batch: PageBatch, back: PageBatch, pages: Uint8Array, indices: number[]) {
  const subject = SUBJECTS[name]!;
  const codec = subject.codec();
  const old = olderVersions(pages);
  if (subject.delta) codec.encodeBatch(back.set(old), indices);
  const notFitBefore = codec.stats.notFit;
  const encoded = codec.encodeBatch(batch, indices);
  const preload = (): void => void (subject.delta && back.set(old));
  return { codec, encoded, notFit: codec.stats.notFit - notFitBefore, preload };
}

/** Runs `body` on `count` trace pages, loaded in a batch, with a second batch to decode into. */
async function onTracePages(count: number, body: (pages: Uint8Array, batch: PageBatch, back: PageBatch) => void): Promise<void> {
  const pages = await tracePages(count);
  const batch = new PageBatch(count, PAGE).set(pages);
  const back = new PageBatch(count, PAGE);
  try {
    body(pages, batch, back);
  } finally {
    batch.dispose();
    back.dispose();
  }
}

describe("kernel result reader", () => {
  it("turns every kernel reason into a typed CodecError naming the codec and the reason", () => {
    for (const [reason, name, code] of REASONS) {
      const err = rejection("lz4", reason, 7, 3, { encoding: Encoding.WKDM, offset: 10, length: 20, dataLength: 25, capacity: PAGE, accepts: [Encoding.LZ4, Encoding.RAW] });
      expectRejection(err, "lz4", name, code, 3);
      expect(err.message).toMatch(/^page 3: /);
    }
    const extent = rejection("mecom", 1, 0, 5, { offset: 10, length: 20, dataLength: 25, capacity: PAGE });
    expect(extent.message).toBe("page 5: payload [10, 30) lies outside the 25 data bytes (mecom: extent)");
    const wrongId = rejection("wkdm", 2, 0, 0, { encoding: 4, capacity: PAGE, accepts: [Encoding.RAW, Encoding.ZERO, Encoding.SAME_VALUE, Encoding.WKDM] });
    expect(wrongId.message).toContain("wire id 4 is not raw, zero, same-value or wkdm");
    expect(rejection("lz4", 17, 4000, 1, { capacity: PAGE }).message).toContain("decodes to 4000 bytes, not 4096");
    expect(rejection("xbzrle", 18, 12, 1, { capacity: PAGE }).message).toContain("delta byte 12");
  });

  it("refuses a reason no kernel gives as malformed, naming the codec and the number", () => {
    for (const reason of [0, 21, -2, 1000]) {
      const err = rejection("wkdm", reason, 0, 9, { capacity: PAGE });
      expectRejection(err, "wkdm", `unknown-${reason}`, "malformed", 9);
      expect(err.message).toBe(`page 9: unknown kernel reason ${reason} (wkdm: unknown-${reason})`);
    }
  });

  it("reads every batch codec's table in one layout: payloads back to back, lengths and wire ids as sent", () =>
    onTracePages(64, (pages, batch, back) => {
      for (const name of Object.keys(SUBJECTS)) {
        const indices = Array.from({ length: 64 }, (_, k) => k);
        const { codec, encoded, notFit, preload } = encodeWith(name, batch, back, pages, indices);
        let at = 0;
        for (let k = 0; k < encoded.count; k++) {
          expect(encoded.offsets[k], `${name} page ${k}`).toBe(at);
          at += encoded.lengths[k]!;
          if (encoded.encodings[k] === Encoding.RAW) expect(encoded.lengths[k]).toBe(PAGE);
        }
        expect(encoded.data.length, name).toBe(at);
        expect(notFit, name).toBe(encoded.encodings.filter((e) => e === Encoding.RAW).length);
        preload();
        codec.decodeBatch(encoded, back, indices);
        expect(Buffer.compare(back.bytes(), pages), name).toBe(0);
        codec.dispose();
      }
    }));

  it("refuses a payload cut short at any byte, naming the first page it cuts (every kernel codec)", () =>
    onTracePages(16, (pages, batch, back) => {
      const indices = Array.from({ length: 16 }, (_, k) => 100 + k);
      for (const name of ["lz4", "wkdm", "mecom", "xbzrle"]) {
        const { codec, encoded, preload } = encodeWith(name, batch, back, pages, indices);
        expect(encoded.data.length, name).toBeGreaterThan(0);
        fc.assert(
          fc.property(fc.integer({ min: 0, max: encoded.data.length - 1 }), (cut) => {
            const first = encoded.offsets.findIndex((offset, k) => offset + encoded.lengths[k]! > cut);
            preload();
            const err = thrown(() => codec.decodeBatch({ ...encoded, data: encoded.data.subarray(0, cut) }, back, indices));
            expectRejection(err, name, "extent", "length", 100 + first);
          }),
          { numRuns: 200 },
        );
        codec.dispose();
      }
    }));

  it("refuses tables shorter than the count before any kernel runs", async () => {
    const pages = await tracePages(8);
    const batch = new PageBatch(8, PAGE).set(pages);
    for (const [name, subject] of Object.entries(SUBJECTS)) {
      const codec = subject.codec();
      const indices = Array.from({ length: 8 }, (_, k) => k);
      const encoded = codec.encodeBatch(batch, indices);
      for (const table of ["encodings", "offsets", "lengths"] as const) {
        const short = { ...encoded, [table]: encoded[table].subarray(0, 7) } as EncodedBatch;
        const err = thrown(() => codec.decodeBatch(short, batch, indices));
        expect(err, `${name} ${table}`).toBeInstanceOf(CodecError);
        expect((err as CodecError).code, `${name} ${table}`).toBe("length");
      }
      codec.dispose();
    }
    batch.dispose();
  });

  it("names each codec's own reasons: wire ids it does not take, bad lengths, bad streams", async () => {
    const pages = await tracePages(8);
    const batch = new PageBatch(8, PAGE).set(pages);
    const lz4 = new Lz4Codec();
    const encoded = lz4.encodeBatch(batch);
    const k = encoded.encodings.findIndex((e) => e === Encoding.LZ4);
    const edit = (field: "encodings" | "lengths", value: number): EncodedBatch => {
      const copy = { ...encoded, [field]: encoded[field].slice() } as EncodedBatch;
      copy[field][k] = value;
      return copy;
    };
    expectRejection(thrown(() => lz4.decodeBatch(edit("encodings", Encoding.ZERO), batch)), "lz4", "encoding", "malformed", k);
    expectRejection(thrown(() => lz4.decodeBatch(edit("encodings", Encoding.RAW), batch)), "lz4", "raw-length", "length", k);
    expectRejection(thrown(() => lz4.decodeBatch(edit("lengths", encoded.lengths[k]! - 1), batch)), "lz4", "lz4-truncated", "truncated", k);
    lz4.dispose();

    // MECOM decodes an LZ4 block with the LZ4 kernel's reasons, and refuses WKdm for pages other than 4096 bytes.
    const mecom = new MecomCodec();
    const small = new PageBatch(2, 8192);
    const block = new Uint8Array(lz4CompressBound(100));
    const n = lz4CompressBlock(new Uint8Array(100).fill(7), block);
    const shortBlock: EncodedBatch = { pageSize: 8192, count: 1, encodings: Uint8Array.of(Encoding.LZ4), offsets: Uint32Array.of(0), lengths: Uint32Array.of(n), data: block.subarray(0, n) };
    const err = expectRejection(thrown(() => mecom.decodeBatch(shortBlock, small, [42])), "mecom", "lz4-short", "length", 42);
    expect(err.message).toContain("decodes to 100 bytes, not 8192");
    const wkdmThere = { ...shortBlock, encodings: Uint8Array.of(Encoding.WKDM) };
    expect(expectRejection(thrown(() => mecom.decodeBatch(wkdmThere, small)), "mecom", "encoding", "malformed", 0).message).toContain("not zero, same-value, lz4 or raw");
    mecom.dispose();
    small.dispose();

    // WKdm's stream reasons, through its batch and single-page decoders alike.
    const wkdm = new WkdmCodec();
    const stream = new Uint8Array(300);
    new Uint32Array(stream.buffer).set([67, 66, 66]);
    const one: EncodedBatch = { pageSize: PAGE, count: 1, encodings: Uint8Array.of(Encoding.WKDM), offsets: Uint32Array.of(0), lengths: Uint32Array.of(300), data: stream };
    expectRejection(thrown(() => wkdm.decodeBatch(one, batch)), "wkdm", "wkdm-header-order", "malformed", 0);
    expectRejection(thrown(() => wkdmDecompress(stream.subarray(0, 3), new Uint8Array(PAGE))), "wkdm", "wkdm-short-stream", "truncated");
    wkdm.dispose();
    batch.dispose();

    // The single-block functions: the same reader.
    expectRejection(thrown(() => lz4DecompressBlock(Uint8Array.of(0xf0, 0xff, 0xff), new Uint8Array(100))), "lz4", "lz4-truncated", "truncated");
    expectRejection(thrown(() => lz4DecompressBlock(block.subarray(0, n), new Uint8Array(99))), "lz4", "lz4-overrun", "overrun");
    const delta = expectRejection(thrown(() => xbzrleDecode(Uint8Array.of(0x05, 0x00, 0xaa), new Uint8Array(PAGE))), "xbzrle", "xbzrle-malformed", "malformed");
    expect(delta.message).toContain("delta byte 1");
  });

  it("hands the pipeline its payloads in WebAssembly memory: the frames of the copying path, and no copy", () =>
    onTracePages(64, (pages, batch) => {
      const indices = Array.from({ length: 64 }, (_, k) => 3 * k);
      for (const spec of ["lz4", "wkdm", "mecom", "auto", "dedup+xbzrle+lz4", "dedup+mecom"]) {
        const inPlace = buildPipeline(spec);
        const copying = buildPipeline(spec);
        const stages = (codecs: PipelineCodecs): PageCodec[] => [codecs.dedup, codecs.delta, codecs.compress].filter((c): c is PageCodec => c !== undefined);
        // The copying pipeline sees its codecs without encodeInPlace, so it takes encodeBatch's copies.
        const withoutInPlace = (codec: PageCodec | undefined): PageCodec | undefined =>
          codec &&
          new Proxy(codec, {
            get: (target, key) => {
              const value: unknown = Reflect.get(target, key);
              if (key === "encodeInPlace") return undefined;
              return typeof value === "function" ? value.bind(target) : value;
            },
          });
        const viaCopies = { dedup: withoutInPlace(copying.dedup), delta: withoutInPlace(copying.delta), compress: withoutInPlace(copying.compress) };
        const copies = stages(inPlace).map((codec) => vi.spyOn(codec, "encodeBatch"));
        const [statsA, statsB] = [newWireStats(), newWireStats()];
        const version = pages.slice();
        const choices: string[] = [];
        for (let round = 0; round < 3; round++) {
          // Each round changes some pages, so that dedup and XBZRLE see repeats and deltas.
          for (let at = round * 101; at < version.length; at += 4096 * 3 + 17) version[at] ^= 0xff;
          batch.set(version);
          // auto: LZ4 with no link known, then raw on a fast link, then LZ4 and MECOM both ways on a slow one.
          const bandwidth = [0, 100e9 / 8, 10e6 / 8][round]!;
          if (bandwidth) for (const codecs of [inPlace, copying]) codecs.compress?.setLink?.({ bandwidth, costs });
          const a = encodeFrame(batch, indices, inPlace, statsA);
          const b = encodeFrame(batch, indices, viaCopies, statsB);
          expect(Buffer.compare(a, b), `${spec} round ${round}`).toBe(0);
          if (inPlace.compress instanceof AutoCodec) choices.push(inPlace.compress.work);
        }
        if (spec === "auto") expect(choices).toEqual(["lz4", "raw", "lz4+mecom"]);
        expect(statsA, spec).toEqual(statsB);
        for (const copy of copies) expect(copy, spec).not.toHaveBeenCalled();
        disposePipeline(inPlace);
        disposePipeline(copying);
      }
    }));
});

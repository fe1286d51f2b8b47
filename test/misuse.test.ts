// API misuse: objects used after dispose(), and single-buffer functions given
// arguments of the wrong kind. A disposed object's memory goes back to the
// heap and to the next allocation, so every method must refuse instead of
// writing there; a bad argument must be refused before any shared scratch
// changes, so the next valid call still works.

import { describe, expect, it } from "vitest";
import {
  AutoCodec,
  CostModel,
  DedupCodec,
  DedupIndex,
  DuplicateCounter,
  decodeFrame,
  encodeControl,
  encodeFrame,
  newWireStats,
  readFrameHeader,
  toHex,
  hex32,
  hex64,
  verifyMemory,
  maxFramePages,
  DirtyBitmap,
  FrameDecoder,
  Lz4Codec,
  MecomCodec,
  PageBatch,
  WkdmCodec,
  XbzrleCache,
  XbzrleCodec,
  Xxh32Hasher,
  Xxh3Hasher,
  Xxh64Hasher,
  isZeroPage,
  lz4CompressBlock,
  lz4CompressBound,
  lz4DecompressBlock,
  md5,
  md5Batch,
  scanZeroPages,
  syntheticGuest,
  wkdmCompress,
  wkdmCompressBound,
  wkdmDecompress,
  wkdmHitRates,
  xbzrleDecode,
  xbzrleEncode,
  xxh3,
  xxh32,
  xxh3Batch,
  xxh64,
  DisposedError,
} from "../src/index.js";
import { randomBytes } from "./helpers/random.js";

/** A page WKdm and LZ4 both shrink: a few distinct words, repeated. */
function regularPage(): Uint8Array {
  const page = new Uint8Array(4096);
  const words = new Uint32Array(page.buffer);
  for (let i = 0; i < words.length; i++) words[i] = [0, 7, 0x1234, 7][i & 3]!;
  return page;
}

/** Each method of a disposed object, called with arguments that would be valid before. */
function disposedCalls(): [string, () => { dispose(): void }, ((o: never) => unknown)[]][] {
  const page = regularPage();
  const batch = () => new PageBatch(2).set(new Uint8Array(8192));
  const encodedBy = (codec: { encodeBatch(b: PageBatch): unknown; dispose(): void }) => {
    const b = batch();
    const encoded = codec.encodeBatch(b);
    b.dispose();
    return encoded;
  };
  const lz4Encoded = (() => {
    const c = new Lz4Codec();
    const e = encodedBy(c);
    c.dispose();
    return e;
  })();
  return [
    ["PageBatch", () => new PageBatch(2), [
      (b: PageBatch) => b.load(new Uint8Array(8192), [0, 1]),
      (b: PageBatch) => b.set(new Uint8Array(4096)),
      (b: PageBatch) => b.store(new Uint8Array(8192), []),
      (b: PageBatch) => b.page(0),
      (b: PageBatch) => b.bytes(),
      (b: PageBatch) => b.ptr,
    ]],
    ["DirtyBitmap", () => new DirtyBitmap(4096), [
      (b: DirtyBitmap) => b.set(1),
      (b: DirtyBitmap) => b.clear(1),
      (b: DirtyBitmap) => b.test(1),
      (b: DirtyBitmap) => b.setRange(0, 4096),
      (b: DirtyBitmap) => b.clearRange(0, 4096),
      (b: DirtyBitmap) => b.count(),
      (b: DirtyBitmap) => b.nextSet(0),
      (b: DirtyBitmap) => b.extract(0, 10),
      (b: DirtyBitmap) => b.or(new DirtyBitmap(4096)),
      (b: DirtyBitmap) => b.andNot(new DirtyBitmap(4096)),
      (b: DirtyBitmap) => b.syncFrom(new DirtyBitmap(4096)),
      (b: DirtyBitmap) => b.toWords(),
    ]],
    ["WkdmCodec", () => new WkdmCodec(), [(c: WkdmCodec) => c.encodeBatch(batch()), (c: WkdmCodec) => c.decodeBatch(lz4Encoded as never, batch())]],
    ["Lz4Codec", () => new Lz4Codec(), [(c: Lz4Codec) => c.encodeBatch(batch()), (c: Lz4Codec) => c.decodeBatch(lz4Encoded as never, batch())]],
    ["MecomCodec", () => new MecomCodec(), [(c: MecomCodec) => c.encodeBatch(batch()), (c: MecomCodec) => c.decodeBatch(lz4Encoded as never, batch())]],
    ["AutoCodec", () => new AutoCodec(), [
      (c: AutoCodec) => c.encodeBatch(batch()),
      (c: AutoCodec) => c.decodeBatch(lz4Encoded as never, batch()),
      (c: AutoCodec) => c.setLink({ bandwidth: 1e6, costs: new CostModel() }),
    ]],
    ["XbzrleCodec", () => new XbzrleCodec(), [
      (c: XbzrleCodec) => c.encodeBatch(batch(), [0, 1]),
      (c: XbzrleCodec) => c.sentElsewhere(batch(), [0], [0]),
      (c: XbzrleCodec) => c.decodeBatch(lz4Encoded as never, batch(), [0, 1]),
    ]],
    ["XbzrleCache", () => new XbzrleCache({ cacheSize: 1 << 16 }), [
      (c: XbzrleCache) => c.put(1, page),
      (c: XbzrleCache) => c.get(1),
      (c: XbzrleCache) => c.has(1),
      (c: XbzrleCache) => c.clear(),
    ]],
    ["DedupIndex", () => new DedupIndex(), [
      (d: DedupIndex) => d.dedupe(batch(), [0, 1]),
      (d: DedupIndex) => d.dedupeBlocks(new Uint8Array(4096), [0]),
      (d: DedupIndex) => d.remember(batch(), [0, 1]),
      (d: DedupIndex) => d.forget(0),
      (d: DedupIndex) => d.clear(),
    ]],
    ["DedupCodec", () => new DedupCodec(), [(c: DedupCodec) => c.encodeBatch(batch(), [0, 1]), (c: DedupCodec) => c.decodeBatch(lz4Encoded as never, batch(), [0, 1])]],
    ["Xxh32Hasher", () => new Xxh32Hasher(), [(h: Xxh32Hasher) => h.update(page), (h: Xxh32Hasher) => h.digest(), (h: Xxh32Hasher) => h.reset()]],
    ["Xxh64Hasher", () => new Xxh64Hasher(), [(h: Xxh64Hasher) => h.update(page), (h: Xxh64Hasher) => h.digest(), (h: Xxh64Hasher) => h.reset()]],
    ["Xxh3Hasher", () => new Xxh3Hasher(), [(h: Xxh3Hasher) => h.update(page), (h: Xxh3Hasher) => h.digest(), (h: Xxh3Hasher) => h.reset()]],
    ["FrameDecoder", () => new FrameDecoder(), [(d: FrameDecoder) => d.decode(new Uint8Array(64))]],
    ["Guest", () => syntheticGuest(16, { seed: 1 }), [
      (g: ReturnType<typeof syntheticGuest>) => g.page(0),
      (g: ReturnType<typeof syntheticGuest>) => g.write(0, page),
      (g: ReturnType<typeof syntheticGuest>) => g.read(0),
      (g: ReturnType<typeof syntheticGuest>) => g.beginWrite(0, true),
    ]],
  ];
}

describe("objects used after dispose()", () => {
  for (const [name, make, calls] of disposedCalls()) {
    it(`${name}: every method throws DisposedError naming the class; dispose() twice is harmless`, () => {
      const object = make();
      object.dispose();
      object.dispose();
      // Memory the object gave back, now another object's: must stay as written.
      const neighbour = new PageBatch(8);
      neighbour.page(0).fill(0x5a);
      try {
        for (const call of calls) {
          expect(() => call(object as never), `${name}: ${call.toString()}`).toThrow(DisposedError);
          expect(() => call(object as never)).toThrow(`${name} used after dispose()`);
        }
        expect(neighbour.page(0).every((b) => b === 0x5a)).toBe(true);
      } finally {
        neighbour.dispose();
      }
    });
  }

  it("a disposed batch given to a live codec or kernel wrapper is refused, not read", () => {
    const batch = new PageBatch(2).set(new Uint8Array(8192));
    batch.dispose();
    const lz4 = new Lz4Codec();
    try {
      expect(() => lz4.encodeBatch(batch)).toThrow(DisposedError);
      expect(() => scanZeroPages(batch)).toThrow(DisposedError);
      expect(() => xxh3Batch(batch)).toThrow(DisposedError);
      expect(() => md5Batch(batch)).toThrow(DisposedError);
    } finally {
      lz4.dispose();
    }
  });
});

describe("single-buffer functions refuse bad arguments, then still work", () => {
  const page = regularPage();
  const bad: [string, unknown][] = [
    ["null", null],
    ["undefined", undefined],
    ["a string", "abc"],
    ["a number", 42],
    ["a plain object", { byteLength: 4096 }],
    ["an array", [1, 2, 3]],
    ["a Uint16Array", new Uint16Array(2048)],
    ["an ArrayBuffer", new ArrayBuffer(4096)],
  ];
  const wkdmStream = (() => {
    const out = new Uint8Array(4096);
    return out.subarray(0, wkdmCompress(page, out));
  })();
  const lz4Block = (() => {
    const out = new Uint8Array(lz4CompressBound(4096));
    return out.subarray(0, lz4CompressBlock(page, out));
  })();
  const changed = page.slice();
  changed[100] ^= 1;
  const delta = (() => {
    const out = new Uint8Array(4096);
    return out.subarray(0, xbzrleEncode(page, changed, out));
  })();
  // name, argument names, valid arguments, a check of the valid call's result
  const functions: [string, string[], () => unknown[], (f: (...a: unknown[]) => unknown, args: unknown[]) => void][] = [
    ["wkdmCompress", ["page", "out"], () => [page, new Uint8Array(4096)], (f, a) => expect(f(...a)).toBe(wkdmStream.length)],
    ["wkdmDecompress", ["src", "out"], () => [wkdmStream, new Uint8Array(4096)], (f, a) => {
      f(...a);
      expect(Buffer.compare(a[1] as Uint8Array, page)).toBe(0);
    }],
    ["lz4CompressBlock", ["src", "out"], () => [page, new Uint8Array(lz4CompressBound(4096))], (f, a) => expect(f(...a)).toBe(lz4Block.length)],
    ["lz4DecompressBlock", ["src", "out"], () => [lz4Block, new Uint8Array(4096)], (f, a) => expect(f(...a)).toBe(4096)],
    ["xbzrleEncode", ["oldPage", "newPage", "out"], () => [page, changed, new Uint8Array(4096)], (f, a) => expect(f(...a)).toBe(delta.length)],
    ["xbzrleDecode", ["delta", "page"], () => [delta, page.slice()], (f, a) => {
      f(...a);
      expect(Buffer.compare(a[1] as Uint8Array, changed)).toBe(0);
    }],
    ["md5", ["data"], () => [page], (f, a) => expect(f(...a)).toEqual(md5(page))],
    ["xxh32", ["data"], () => [page], (f, a) => expect(f(...a)).toBe(xxh32(page))],
    ["xxh64", ["data"], () => [page], (f, a) => expect(f(...a)).toBe(xxh64(page))],
    ["xxh3", ["data"], () => [page], (f, a) => expect(f(...a)).toBe(xxh3(page))],
    ["isZeroPage", ["page"], () => [page], (f, a) => expect(f(...a)).toBe(false)],
  ];
  const byName: Record<string, (...a: unknown[]) => unknown> = {
    wkdmCompress, wkdmDecompress, lz4CompressBlock, lz4DecompressBlock, xbzrleEncode, xbzrleDecode, md5, xxh32, xxh64, xxh3, isZeroPage,
  } as never;

  for (const [name, argNames, valid, check] of functions) {
    it(`${name}`, () => {
      const f = byName[name]!;
      for (let i = 0; i < argNames.length; i++) {
        for (const [kind, value] of bad) {
          const args = valid();
          args[i] = value;
          let error: unknown;
          try {
            f(...args);
          } catch (err) {
            error = err;
          }
          expect(error, `${name} with ${argNames[i]} = ${kind}`).toBeInstanceOf(TypeError);
          expect((error as Error).message, `${name} with ${argNames[i]} = ${kind}`).toMatch(new RegExp(`^${argNames[i]} must be`));
          // The next valid call is unaffected.
          check(f, valid());
        }
      }
    });
  }

  it("batch functions refuse what is not a PageBatch, naming the argument", () => {
    for (const f of [scanZeroPages, xxh3Batch, md5Batch, wkdmHitRates] as ((b: unknown) => unknown)[]) {
      for (const [, value] of bad) expect(() => f(value)).toThrow(/^batch must be a PageBatch, got /);
    }
  });

  it("size helpers refuse what is not a count", () => {
    for (const value of [null, "4", -1, 1.5, NaN, Infinity]) {
      expect(() => wkdmCompressBound(value as number)).toThrow(RangeError);
      expect(() => lz4CompressBound(value as number)).toThrow(RangeError);
    }
  });

  it("random bytes of every length never poison the WKdm and LZ4 decoders", () => {
    for (let n = 0; n < 300; n += 7) {
      const junk = randomBytes(n, n + 1);
      try {
        wkdmDecompress(junk, new Uint8Array(4096));
      } catch {
        // a CodecError or RangeError for junk is fine
      }
      try {
        lz4DecompressBlock(junk, new Uint8Array(4096));
      } catch {
        // likewise
      }
    }
    const out = new Uint8Array(4096);
    wkdmDecompress(wkdmStream, out);
    expect(Buffer.compare(out, page)).toBe(0);
  });
});

// Found by the API fuzzer (test/fuzz/api.test.ts): arguments that reached
// code before any check, giving an engine error, or worse.
describe("arguments the API fuzzer found unchecked", () => {
  it("a bitmap operation with a disposed other bitmap refuses instead of clearing memory that is now another object's", () => {
    const bitmap = new DirtyBitmap(4096);
    const log = new DirtyBitmap(4096);
    log.dispose();
    // First fit: the 512 bytes the log gave back go to the next allocation of that size.
    const neighbour = new PageBatch(1, 512);
    neighbour.page(0).fill(0xff);
    try {
      expect(() => bitmap.syncFrom(log)).toThrow(DisposedError);
      expect(() => bitmap.or(log)).toThrow(DisposedError);
      expect(() => bitmap.andNot(log)).toThrow(DisposedError);
      expect(neighbour.page(0).every((b) => b === 0xff)).toBe(true);
      expect(bitmap.count()).toBe(0);
      for (const other of [null, undefined, new PageBatch(1)]) expect(() => bitmap.or(other as never)).toThrow(/^other must be a DirtyBitmap, got /);
    } finally {
      neighbour.dispose();
      bitmap.dispose();
    }
  });

  it("codec batch methods, frames, guests, batches and indexes name the argument that is wrong", () => {
    const batch = new PageBatch(2).set(new Uint8Array(8192));
    const wide = new PageBatch(3);
    const codecs = [new WkdmCodec(), new Lz4Codec(), new MecomCodec(), new XbzrleCodec({ cacheSize: 1 << 16 }), new DedupCodec(), new AutoCodec()];
    const guest = syntheticGuest(4, { seed: 1 });
    const index = new DedupIndex();
    try {
      const encoded = codecs[1]!.encodeBatch(batch);
      for (const codec of codecs) {
        expect(() => codec.encodeBatch(null as never, [0, 1])).toThrow(/^batch must be a PageBatch, got null/);
        expect(() => codec.decodeBatch(encoded, undefined as never, [0, 1])).toThrow(/^batch must be a PageBatch, got undefined/);
        expect(() => codec.decodeBatch(null as never, batch, [0, 1])).toThrow(/^encoded must be an EncodedBatch, got null/);
        expect(() => codec.decodeBatch(batch as never, batch, [0, 1])).toThrow(/^encoded.encodings must be a Uint8Array, got undefined/);
        expect(() => codec.decodeBatch({ ...encoded, offsets: [0, 0] } as never, batch, [0, 1])).toThrow(/^encoded.offsets must be a Uint32Array, got Array/);
        expect(() => codec.decodeBatch({ ...encoded, count: 3 }, wide, [0, 1, 2])).toThrow(/^(page \d+: )?tables of 2\/2\/2 entries for 3 pages/);
      }
      const auto = codecs[5] as AutoCodec;
      expect(() => auto.setLink(null as never)).toThrow(/^link must be a LinkConditions, got null/);
      expect(() => auto.setLink({ bandwidth: Number.NaN, costs: new CostModel() })).toThrow(/^link.bandwidth must be a finite number/);
      expect(() => auto.setLink({ bandwidth: 1e6 } as never)).toThrow(/^link.costs must be a CodecCosts, got undefined/);
      expect(() => (codecs[3] as XbzrleCodec).sentElsewhere(batch, [0, 1], undefined as never)).toThrow(/^slots must be an array of numbers, got undefined/);
      expect(() => guest.write(0, null as never)).toThrow(/^content must be a Uint8Array, got null/);
      expect(() => batch.store(null as never, [0, 1])).toThrow(/^destination must be a Uint8Array/);
      expect(() => batch.load(new Uint8Array(8192), null as never)).toThrow(/^indices must be an array of numbers/);
      expect(() => index.dedupe(null as never, [])).toThrow(/^batch must be a PageBatch/);
      expect(() => index.dedupe(batch, null as never)).toThrow(/^locations must be an array of numbers/);
      expect(() => encodeFrame(null as never, [], {}, newWireStats())).toThrow(/^batch must be a PageBatch/);
      expect(() => encodeFrame(batch, null as never, {}, newWireStats())).toThrow(/^pageIndices must be an array of numbers/);
      expect(() => encodeFrame(batch, [0, 1], null as never, newWireStats())).toThrow(/^codecs must be PipelineCodecs/);
      expect(() => encodeFrame(batch, [0, 1], { compress: index as never }, newWireStats())).toThrow(/^codecs.compress must be a PageCodec/);
      expect(() => encodeControl(undefined as never, 0)).toThrow(/^message must be a ControlMessage/);
      expect(() => encodeControl({ type: "page-request", pages: null as never }, 0)).toThrow(/^pages must be an array of numbers/);
      expect(() => encodeControl({ type: "done", memoryBytes: 0, digestName: "md5", digest: undefined as never }, 0)).toThrow(/^digest must be a Uint8Array/);
      expect(() => readFrameHeader(null as never)).toThrow(/^bytes must be a Uint8Array/);
      expect(() => decodeFrame(undefined as never)).toThrow(/^bytes must be a Uint8Array/);
      expect(() => toHex(null as never)).toThrow(/^bytes must be a Uint8Array/);
      expect(() => hex32(10n as never)).toThrow(/^value must be an integer/);
      expect(() => hex64(10 as never)).toThrow(/^value must be a bigint, got number/);
      expect(() => new DuplicateCounter().add(null as never)).toThrow(/^batch must be a PageBatch/);
      expect(() => verifyMemory(null as never, new Uint8Array(4096), 4096)).toThrow(/^expected must be a Uint8Array/);
      expect(() => verifyMemory(new Uint8Array(4096), new Uint8Array(4096), 10n as never)).toThrow(/^pageSize must be a power of two/);
      expect(() => maxFramePages("4096" as never)).toThrow(/^pageSize must be a power of two/);
    } finally {
      for (const object of [batch, wide, guest, index, ...codecs]) object.dispose();
    }
  });

  it("views of pagemill's memory: read as inputs (a copy, as an allocation could detach them), refused as outputs", () => {
    const batch = new PageBatch(2).set(new Uint8Array(8192));
    try {
      const page = regularPage();
      batch.page(0).set(page);
      const out = new Uint8Array(4096);
      expect(wkdmCompress(batch.page(0), out)).toBe(wkdmCompress(page, new Uint8Array(4096)));
      expect(xxh3(batch.page(0))).toBe(xxh3(page));
      expect(isZeroPage(batch.page(0))).toBe(false);
      const cache = new XbzrleCache({ cacheSize: 1 << 16 });
      cache.put(7, batch.page(0));
      expect(Buffer.compare(cache.get(7)!, page)).toBe(0);
      cache.dispose();
      const stream = out.subarray(0, wkdmCompress(page, out));
      const refused = /must not be a view of pagemill's WebAssembly memory/;
      expect(() => wkdmCompress(page, batch.page(1))).toThrow(refused);
      expect(() => wkdmDecompress(stream, batch.page(1))).toThrow(refused);
      expect(() => lz4CompressBlock(page, batch.page(1))).toThrow(refused);
      expect(() => lz4DecompressBlock(new Uint8Array(4), batch.page(1))).toThrow(refused);
      expect(() => xbzrleEncode(page, page, batch.page(1))).toThrow(refused);
      expect(() => xbzrleDecode(new Uint8Array(0), batch.page(1))).toThrow(refused);
    } finally {
      batch.dispose();
    }
  });
});

import { describe, expect, it, beforeAll, afterAll } from "vitest";
import fc from "fast-check";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import xxhashWasm from "xxhash-wasm";
import { createXXHash3, createXXHash32, createXXHash64 } from "hash-wasm";
import {
  PageBatch,
  Xxh32Hasher,
  Xxh3Hasher,
  Xxh64Hasher,
  hex32,
  hex64,
  xxh3,
  xxh32,
  xxh32Batch,
  xxh3Batch,
  xxh64,
  xxh64Batch,
} from "../src/index.js";
import { SHARED, sharedTraceImagePages } from "./helpers/traces.js";
import { randomBytes } from "./helpers/random.js";
import { withoutTools } from "./helpers/tools.js";

const FUZZ = process.env.PAGEMILL_FUZZ ? 20 : 1;

// xxHash's tests/sanity_test.c buffer: byte i is the top byte of
// PRIME32 · PRIME64^i (mod 2^64).
const PRIME32 = 2654435761n;
const PRIME64 = 11400714785074694797n;
const SANITY_SIZE = 4096 + 64 + 1;
function sanityBuffer(): Uint8Array {
  const out = new Uint8Array(SANITY_SIZE);
  let gen = PRIME32;
  for (let i = 0; i < SANITY_SIZE; i++) {
    out[i] = Number(gen >> 56n);
    gen = (gen * PRIME64) & 0xffffffffffffffffn;
  }
  return out;
}
const SANITY = sanityBuffer();

// Expected values from xxHash's tests/sanity_test_vectors.h (xxHash 0.8).
// The sanity test seeds XXH32 and XXH64 with PRIME32 and XXH3 with PRIME64.
const XXH32_VECTORS: [number, number, number][] = [
  // [length, seed 0, seed PRIME32]
  [0, 0x02cc5d05, 0x36b78ae7],
  [1, 0xcf65b03e, 0xb4545aa4],
  [4, 0xa9de7ce9, 0x2baafe83],
  [14, 0x1208e7e2, 0x6af1d1fe],
  [15, 0x6b859e14, 0xad53090d],
  [16, 0x93ba3759, 0xa94fc1e1],
  [17, 0x89fdc23e, 0xc9910739],
  [31, 0x5f40e562, 0x5c0c3350],
  [32, 0xd89829ec, 0xa5c44467],
  [47, 0xd5e9364e, 0xa463c5a4],
  [64, 0x02e95dbb, 0xcf82f830],
  [86, 0xe59b177e, 0x24624edc],
];
const XXH64_VECTORS: [number, bigint, bigint][] = [
  // [length, seed 0, seed PRIME32]
  [0, 0xef46db3751d8e999n, 0xac75fda2929b17efn],
  [1, 0xe934a84adb052768n, 0x5014607643a9b4c3n],
  [3, 0xff7e1959cb50794an, 0xaa8584e83660f7d1n],
  [4, 0x9136a0dca57457een, 0xcaab286bd8e9fdb5n],
  [8, 0xcdbcf538e71d1348n, 0xfe0c047a5353cdacn],
  [14, 0x8282dcc4994e35c8n, 0xc3bd6bf63deb6df0n],
  [31, 0x299b39a290e6d783n, 0xda673d5feb5c1d79n],
  [32, 0x18b216492bb44b70n, 0xb3f33bdf93ade409n],
  [63, 0xa9efbe0fa0f3f4e7n, 0x6c911fadb05b6fc2n],
  [64, 0xef558f8acac2b5cdn, 0xb5eeba99264cc44fn],
  [86, 0xf3214750c1a6455en, 0x56c1a7fb96de0e82n],
];
const XXH3_VECTORS: [number, bigint, bigint][] = [
  // [length, seed 0, seed PRIME64]: every short path, the 240/241 edge, blocks
  [0, 0x2d06800538d394c2n, 0xa8a6b918b2f0364an],
  [1, 0xc44bdff4074eecdbn, 0x032be332dd766ef8n],
  [3, 0x54247382a8d6b94dn, 0x634b8990b4976373n],
  [4, 0xe5dc74bc51848a51n, 0xaa2e7eccb0c8f747n],
  [8, 0x24ccc9acaa9f65e4n, 0x8f973410999b8f6bn],
  [9, 0x14d5001c15dd3f2bn, 0xb3ae7333d9013f60n],
  [16, 0x981b17d36c7498c9n, 0x663f29333b4db6b1n],
  [17, 0x796f5acd3a60f862n, 0xf3ec5067f4306db3n],
  [32, 0x9feaddbdbf57eed3n, 0x2199fab1534893d9n],
  [33, 0xabfb2d081b400a10n, 0xad56348da574bb6dn],
  [64, 0x9cb48487720ec49dn, 0x4fe8895db9b8c077n],
  [65, 0xfd81aac4bebc3883n, 0xad80aeec1fc9e0a7n],
  [128, 0xfcff24126754d861n, 0x73fde75280646649n],
  [129, 0x98f1b0a679a2ca29n, 0x21fffdbca099c844n],
  [144, 0xc440d47e5f03fe58n, 0x858d16b71f4dd859n],
  [192, 0xaf9f58e78b8d3587n, 0x69e006aa2156c999n],
  [210, 0x1f69d7786b302b2cn, 0x6132710e50e40a5cn],
  [240, 0x81c3c2b67f568ccfn, 0xcc0f58c27ef3d8een],
  [241, 0xc5a639ecd2030e5en, 0xdda9b0a161d4829an],
  [256, 0x55de574ad89d0ac5n, 0x4d30234b7a3aa61cn],
  [257, 0xb17fd5a8ae75bb0bn, 0x802a6fbf3cacd97cn],
  [300, 0x7f371220466c4a1an, 0x1c886c664c4d81c4n],
  [4095, 0x3044187222ab0efbn, 0x9f7ddf29c377a8ecn],
  [4096, 0xe91206429d1f48f9n, 0x2a3bbb20a5439dcdn],
  [4097, 0xdac80d543e339451n, 0xa78887a19a340214n],
  [4128, 0x58f87c03a5109698n, 0x099f06ba6d0aea6en],
  [4156, 0xf813fd5b27829876n, 0xf7111f8114507dd9n],
];


/** Feeds `data` to `update` in pieces cut at `cuts` (sorted offsets). */
function splitFeed(data: Uint8Array, cuts: number[], update: (piece: Uint8Array) => void): void {
  let at = 0;
  for (const cut of [...cuts, data.length]) {
    update(data.subarray(at, Math.max(at, cut)));
    at = Math.max(at, cut);
  }
}

describe("xxHash sanity vectors (tests/sanity_test.c buffer)", () => {
  /** Interface of the three streaming hashers, as this test drives them. */
  interface Streaming<Seed, Digest> {
    reset(seed: Seed): Streaming<Seed, Digest>;
    update(data: Uint8Array): Streaming<Seed, Digest>;
    digest(): Digest;
    dispose(): void;
  }

  /** One-shot, streaming whole, byte by byte and cut at `cuts`, for both seeds of every vector. */
  function checkVectors<Seed, Digest>(
    h: Streaming<Seed, Digest>,
    oneShot: (data: Uint8Array, seed: Seed) => Digest,
    vectors: [number, Digest, Digest][],
    seeds: [Seed, Seed],
    cuts: number[],
  ): void {
    for (const [len, plain, seeded] of vectors) {
      const data = SANITY.subarray(0, len);
      for (const [seed, want] of [[seeds[0], plain], [seeds[1], seeded]] as const) {
        expect(oneShot(data, seed), `len ${len} seed ${seed}`).toBe(want);
        expect(h.reset(seed).update(data).digest()).toBe(want);
        h.reset(seed);
        for (let i = 0; i < len; i++) h.update(data.subarray(i, i + 1));
        expect(h.digest(), `bytewise len ${len}`).toBe(want);
        h.reset(seed);
        splitFeed(data, cuts, (p) => h.update(p));
        expect(h.digest(), `split len ${len}`).toBe(want);
      }
    }
    h.dispose();
  }

  // Cuts at every stripe/buffer edge each streaming state has (16-byte stripes, 32-byte stripes, XXH3's 64-byte stripes, 256-byte buffer and 1024-byte blocks).
  it("XXH32 one-shot, streaming whole, byte by byte and split, with seeds 0 and PRIME32", () => {
    checkVectors(new Xxh32Hasher(), xxh32, XXH32_VECTORS, [0, Number(PRIME32)], [3, 15, 16, 17, 31, 32, 33, 47, 48, 70]);
  });

  it("XXH64 one-shot, streaming whole, byte by byte and split, with seeds 0 and PRIME32", () => {
    checkVectors(new Xxh64Hasher(), xxh64, XXH64_VECTORS, [0n, PRIME32], [3, 31, 32, 33, 63, 64, 65, 70]);
  });

  it("XXH3-64 one-shot, streaming whole, byte by byte and split, with seeds 0 and PRIME64", () => {
    checkVectors(new Xxh3Hasher(), xxh3, XXH3_VECTORS, [0n, PRIME64], [63, 64, 65, 255, 256, 257, 1023, 1024, 1025, 1100]);
  });

  it("prints digests in canonical big-endian hex", () => {
    expect(hex32(xxh32(SANITY.subarray(0, 0)))).toBe("02cc5d05");
    expect(hex64(xxh64(SANITY.subarray(0, 1)))).toBe("e934a84adb052768");
    expect(hex64(xxh3(SANITY.subarray(0, 1), PRIME64))).toBe("032be332dd766ef8");
  });
});

describe("golden vectors: ../shared/vectors/hashes.json over pages.bin", () => {
  const json = JSON.parse(readFileSync(`${SHARED}vectors/hashes.json`, "utf8")) as {
    pageSize: number;
    vectors: { page: number; kind: string; xxh32: string; xxh64: string; xxh3_64: string }[];
  };
  const pages = new Uint8Array(readFileSync(`${SHARED}vectors/pages.bin`));

  it("batch digests of every page equal the reference", () => {
    const count = pages.length / json.pageSize;
    expect(json.vectors.length).toBe(count);
    const batch = new PageBatch(count, json.pageSize).set(pages);
    const d32 = xxh32Batch(batch);
    const d64 = xxh64Batch(batch);
    const d3 = xxh3Batch(batch);
    for (const v of json.vectors) {
      expect(hex32(d32[v.page]!), `xxh32 page ${v.page} (${v.kind})`).toBe(v.xxh32);
      expect(hex64(d64[v.page]!), `xxh64 page ${v.page} (${v.kind})`).toBe(v.xxh64);
      expect(hex64(d3[v.page]!), `xxh3 page ${v.page} (${v.kind})`).toBe(v.xxh3_64);
    }
    batch.dispose();
  });

  it("one-shot digests of every page equal the reference", () => {
    for (const v of json.vectors) {
      const page = pages.subarray(v.page * json.pageSize, (v.page + 1) * json.pageSize);
      expect(hex32(xxh32(page))).toBe(v.xxh32);
      expect(hex64(xxh64(page))).toBe(v.xxh64);
      expect(hex64(xxh3(page))).toBe(v.xxh3_64);
    }
  });
});

describe("agreement with xxhash-wasm and hash-wasm", () => {
  let api: Awaited<ReturnType<typeof xxhashWasm>>;
  let peer32: Awaited<ReturnType<typeof createXXHash32>>;
  let peer64: Awaited<ReturnType<typeof createXXHash64>>;
  let peer3: Awaited<ReturnType<typeof createXXHash3>>;
  beforeAll(async () => {
    api = await xxhashWasm();
    peer32 = await createXXHash32();
    peer64 = await createXXHash64();
    peer3 = await createXXHash3();
  });

  it("on random inputs of every length 0..300, seed 0 and random seeds", () => {
    for (let len = 0; len <= 300; len++) {
      const data = randomBytes(len, len + 1);
      const s32 = (len * 2654435761) >>> 0;
      const s64 = BigInt(s32) * 0x100000001n + BigInt(len);
      expect(xxh32(data), `xxh32 len ${len}`).toBe(api.h32Raw(data, 0));
      expect(xxh32(data, s32)).toBe(api.h32Raw(data, s32));
      expect(xxh64(data), `xxh64 len ${len}`).toBe(api.h64Raw(data, 0n));
      expect(xxh64(data, s64)).toBe(api.h64Raw(data, s64));
      peer32.init();
      expect(hex32(xxh32(data))).toBe(peer32.update(data).digest());
      peer64.init();
      expect(hex64(xxh64(data))).toBe(peer64.update(data).digest());
      peer3.init();
      expect(hex64(xxh3(data)), `xxh3 len ${len}`).toBe(peer3.update(data).digest());
    }
  });

  it("XXH3 with random 64-bit seeds at every length 0..300 and long inputs", async () => {
    for (const len of [...Array.from({ length: 301 }, (_, i) => i), 1024, 1025, 4096, 5000, 70001]) {
      const data = randomBytes(len, 7 * len + 3);
      const lo = (len * 0x9e3779b1) >>> 0;
      const hi = (len * 0x85ebca77 + 1) >>> 0;
      const seeded = await createXXHash3(lo, hi);
      seeded.init();
      expect(hex64(xxh3(data, (BigInt(hi) << 32n) | BigInt(lo))), `len ${len}`).toBe(seeded.update(data).digest());
    }
  });

  it("on real pages of every trace, batch and per page", async () => {
    for (const name of ["redis", "node-gc", "memstream"] as const) {
      const { pageSize, pages, count } = await sharedTraceImagePages(name, 300);
      const batch = new PageBatch(count, pageSize).set(pages);
      const d64 = xxh64Batch(batch);
      const d3 = xxh3Batch(batch);
      const d32 = xxh32Batch(batch);
      for (let k = 0; k < count; k++) {
        const page = pages.subarray(k * pageSize, (k + 1) * pageSize);
        expect(d64[k], `${name} page ${k}`).toBe(api.h64Raw(page, 0n));
        expect(d32[k]).toBe(api.h32Raw(page, 0));
        peer3.init();
        expect(hex64(d3[k]!), `${name} page ${k}`).toBe(peer3.update(page).digest());
      }
      batch.dispose();
    }
  });

  it("on inputs longer than one staging chunk (streamed internally)", () => {
    const data = randomBytes((1 << 20) * 3 + 12345, 99);
    expect(xxh64(data)).toBe(api.h64Raw(data, 0n));
    expect(xxh32(data, 5)).toBe(api.h32Raw(data, 5));
    peer3.init();
    expect(hex64(xxh3(data))).toBe(peer3.update(data).digest());
  });
});

describe.skipIf(withoutTools("xxhsum"))("agreement with xxhsum (Debian package xxhash) on files", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "pagemill-xxhsum-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function xxhsum(algo: "0" | "1" | "3", files: string[]): Map<string, string> {
    const out = execFileSync("xxhsum", [`-H${algo}`, ...files], { encoding: "utf8" });
    const result = new Map<string, string>();
    for (const line of out.trim().split("\n")) {
      // "HEX  FILE", or the tagged "XXH3 (FILE) = HEX" that -H3 prints.
      const tagged = /^\S+ \((.*)\) = ([0-9a-f]+)$/.exec(line);
      const plain = /^([0-9a-f]+) {2}(.*)$/.exec(line);
      if (tagged) result.set(tagged[1]!, tagged[2]!);
      else if (plain) result.set(plain[2]!, plain[1]!);
    }
    return result;
  }

  it("-H0, -H1 and -H3 print the same digests for files of many lengths and a trace image", async () => {
    const files: [string, Uint8Array][] = [];
    for (const len of [0, 1, 3, 4, 8, 9, 16, 17, 100, 128, 129, 240, 241, 1000, 1024, 1025, 4096, 65537]) {
      const data = randomBytes(len, len * 31 + 5);
      files.push([join(dir, `r${len}.bin`), data]);
    }
    const { pages } = await sharedTraceImagePages("redis", 700);
    files.push([join(dir, "redis-head.bin"), pages]);
    for (const [path, data] of files) writeFileSync(path, data);
    const paths = files.map(([p]) => p);
    const h0 = xxhsum("0", paths);
    const h1 = xxhsum("1", paths);
    const h3 = xxhsum("3", paths);
    for (const [path, data] of files) {
      expect(hex32(xxh32(data)), path).toBe(h0.get(path));
      expect(hex64(xxh64(data)), path).toBe(h1.get(path));
      expect(hex64(xxh3(data)), path).toBe(h3.get(path));
      const streamed = new Xxh3Hasher();
      splitFeed(data, [1, 100, 5000, 70000], (p) => streamed.update(p));
      expect(hex64(streamed.digest()), `streamed ${path}`).toBe(h3.get(path));
      streamed.dispose();
    }
  });
});

describe("batch and streaming forms agree with one-shot", () => {
  it("any batch size and page size gives each page its one-shot digest", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(512, 1024, 2048, 4096, 8192),
        fc.integer({ min: 1, max: 24 }),
        fc.integer({ min: 1, max: 2 ** 31 }),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        (pageSize, count, salt, seed) => {
          const pages = randomBytes(pageSize * count, salt);
          // A few repeated and zero pages among random ones.
          if (count > 2) pages.copyWithin(pageSize, 0, pageSize);
          if (count > 3) pages.fill(0, 3 * pageSize, 4 * pageSize);
          const batch = new PageBatch(count + 3, pageSize).set(pages);
          try {
            const seed32 = Number(seed & 0xffffffffn);
            const d32 = xxh32Batch(batch, { seed: seed32 });
            const d64 = xxh64Batch(batch, { seed });
            const d3 = xxh3Batch(batch, { seed, out: new BigUint64Array(count + 5) });
            expect(d3.length).toBe(count + 5);
            for (let k = 0; k < count; k++) {
              const page = pages.subarray(k * pageSize, (k + 1) * pageSize);
              expect(d32[k]).toBe(xxh32(page, seed32));
              expect(d64[k]).toBe(xxh64(page, seed));
              expect(d3[k]).toBe(xxh3(page, seed));
            }
            expect(d3[count]).toBe(0n);
          } finally {
            batch.dispose();
          }
        },
      ),
      { numRuns: 60 * FUZZ },
    );
  });

  it("streaming over random splits gives the one-shot digest, and digest() can be read mid-stream", () => {
    const h32 = new Xxh32Hasher();
    const h64 = new Xxh64Hasher();
    const h3 = new Xxh3Hasher();
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 5000 }),
        fc.array(fc.integer({ min: 0, max: 5000 }), { maxLength: 12 }),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        (len, rawCuts, seed) => {
          const data = randomBytes(len, len + 17);
          const cuts = rawCuts.map((c) => c % (len + 1)).sort((a, b) => a - b);
          const seed32 = Number(seed >> 32n);
          h32.reset(seed32);
          h64.reset(seed);
          h3.reset(seed);
          let fed = 0;
          splitFeed(data, cuts, (p) => {
            h32.update(p);
            h64.update(p);
            h3.update(p);
            fed += p.length;
            expect(h3.digest()).toBe(xxh3(data.subarray(0, fed), seed));
          });
          expect(h32.digest()).toBe(xxh32(data, seed32));
          expect(h64.digest()).toBe(xxh64(data, seed));
          expect(h3.digest()).toBe(xxh3(data, seed));
        },
      ),
      { numRuns: 150 * FUZZ },
    );
    h32.dispose();
    h64.dispose();
    h3.dispose();
  });
});

describe("bad arguments", () => {
  it("rejects seeds out of range, naming the seed", () => {
    const data = new Uint8Array(8);
    expect(() => xxh32(data, -1)).toThrow(/seed/);
    expect(() => xxh32(data, 2 ** 32)).toThrow(RangeError);
    expect(() => xxh64(data, -1n)).toThrow(/seed/);
    expect(() => xxh3(data, 1n << 64n)).toThrow(RangeError);
    expect(() => xxh3(data, 1.5)).toThrow(/seed/);
    expect(() => new Xxh3Hasher(-2n)).toThrow(/seed/);
  });

  it("rejects a non-byte input and a short digest array", () => {
    expect(() => xxh64("abc" as unknown as Uint8Array)).toThrow(TypeError);
    const batch = new PageBatch(4, 4096).set(new Uint8Array(4 * 4096));
    expect(() => xxh3Batch(batch, { out: new BigUint64Array(3) })).toThrow(/out has 3 entries/);
    expect(() => xxh32Batch(batch, { out: new Uint32Array(2) })).toThrow(RangeError);
    batch.dispose();
  });

  it("a disposed hasher refuses further use", () => {
    const h = new Xxh64Hasher(3n);
    h.dispose();
    expect(() => h.update(new Uint8Array(1))).toThrow(/disposed/);
    expect(() => h.digest()).toThrow(/disposed/);
    h.dispose();
  });
});

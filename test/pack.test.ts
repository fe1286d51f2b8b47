import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync, execSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { CodecError, PagemillError } from "../src/index.js";
import { packCodecs, packImage } from "../src/cli/pack.js";
import { unpackFile } from "../src/cli/unpack.js";
import { pagemill } from "./helpers/migrate.js";
import { sharedTraceImagePages, TRACE_NAMES } from "./helpers/traces.js";
import { withoutTools } from "./helpers/tools.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
let dir: string;
const images: Record<string, string> = {};

beforeAll(async () => {
  // --channels > 1 runs workers from dist/ (see src/wire/channels.ts).
  if (!existsSync(`${ROOT}dist/wire/worker.js`)) execSync("npx tsc -p tsconfig.json", { cwd: ROOT, stdio: "ignore" });
  dir = mkdtempSync(join(tmpdir(), "pagemill-pack-"));
  for (const name of TRACE_NAMES) {
    const { pages } = await sharedTraceImagePages(name, 1000);
    // A short last page, as a real file may have.
    const path = join(dir, `${name}.img`);
    writeFileSync(path, pages.subarray(0, pages.byteLength - 1000));
    images[name] = path;
  }
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("pagemill pack / unpack", () => {
  it("restores every trace image exactly, with every codec, on 1 and 2 channels", async () => {
    // The done frame's digest against the reference tool, where it is installed.
    const xxhsum: Record<string, string> = {};
    if (!withoutTools("xxhsum")) for (const name of TRACE_NAMES) xxhsum[name] = execFileSync("xxhsum", ["-H1", images[name]!], { encoding: "utf8" }).split(/\s+/)[0]!;
    for (const name of TRACE_NAMES) {
      const image = readFileSync(images[name]!);
      let packedBytes: number | undefined;
      let rawBytes = Infinity;
      for (const codec of packCodecs()) {
        for (const channels of [1, 2]) {
          const out = join(dir, `${name}.${codec}.${channels}.pmf`);
          const packed = await packImage(images[name]!, out, { codec, channels, pageSize: 4096, batchPages: 200, bandwidth: 100e6 / 8 });
          expect(packed.imageBytes).toBe(image.byteLength);
          // The digest in the done frame is the reference XXH64 of the image file.
          if (xxhsum[name]) expect(packed.digest).toBe(xxhsum[name]);
          expect(packed.pages).toBe(Math.ceil(image.byteLength / 4096));
          expect(Object.values(packed.pagesByEncoding).reduce((a, b) => a + b, 0)).toBe(packed.pages);
          expect(readFileSync(out).byteLength).toBe(packed.packedBytes);
          // The same frames whatever the channel count (codecs that learn
          // from earlier pages, MECOM and auto, learn per thread).
          if (channels === 1) packedBytes = packed.packedBytes;
          else if (codec !== "mecom" && codec !== "auto") expect(packed.packedBytes).toBe(packedBytes);
          const restored = join(dir, `${name}.${codec}.${channels}.out`);
          const unpacked = await unpackFile(out, restored);
          expect(unpacked.digest).toBe(packed.digest);
          expect(Buffer.compare(readFileSync(restored), image), `${name} ${codec} ${channels}`).toBe(0);
          // A codec never makes a pack bigger than raw: pages it cannot shrink go raw.
          if (codec === "raw") rawBytes = packed.packedBytes;
          else expect(packed.packedBytes).toBeLessThanOrEqual(rawBytes);
        }
      }
    }
  });

  it("reads gzip images, and the CLI prints a summary", async () => {
    const gz = join(dir, "redis.img.gz");
    writeFileSync(gz, gzipSync(readFileSync(images.redis!), { level: 1 }));
    const packed = await pagemill(["pack", gz, "-o", join(dir, "gz.pmf"), "--codec", "lz4", "--channels", "2"]);
    expect(packed.code, packed.err).toBe(0);
    expect(packed.out).toMatch(/zero\s+\d+ \(/);
    expect(packed.out).toMatch(/packed .*% of the image/);
    expect(packed.out).toMatch(/MB\/s/);
    const unpacked = await pagemill(["unpack", join(dir, "gz.pmf"), "-o", join(dir, "gz.out")]);
    expect(unpacked.code, unpacked.err).toBe(0);
    expect(unpacked.out).toMatch(/MB\/s/);
    expect(Buffer.compare(readFileSync(join(dir, "gz.out")), readFileSync(images.redis!))).toBe(0);
  });

  it("refuses damaged packs, naming the cause", async () => {
    const good = join(dir, "redis.lz4.1.pmf");
    if (!existsSync(good)) await packImage(images.redis!, good, { codec: "lz4", channels: 1, pageSize: 4096, batchPages: 200 });
    const bytes = readFileSync(good);
    const flipped = join(dir, "flipped.pmf");
    const copy = Buffer.from(bytes);
    copy[Math.floor(copy.byteLength / 2)]! ^= 4;
    writeFileSync(flipped, copy);
    await expect(unpackFile(flipped, join(dir, "x.out"))).rejects.toThrow(CodecError);
    const cut = join(dir, "cut.pmf");
    writeFileSync(cut, bytes.subarray(0, bytes.byteLength - 7));
    await expect(unpackFile(cut, join(dir, "x.out"))).rejects.toThrow(/truncated|ends/);
    // Whole frames, but the done frame missing.
    const headless = join(dir, "nodone.pmf");
    writeFileSync(headless, bytes.subarray(0, bytes.byteLength - (28 + 10 + 5 + 8 + 4)));
    await expect(unpackFile(headless, join(dir, "x.out"))).rejects.toThrow(PagemillError);
  });

  it("reports bad command lines as usage errors, each naming what is wrong", async () => {
    for (const [args, code, says] of [
      [["pack", images.redis!, "-o", join(dir, "x.pmf"), "--codec", "gzip"], 2, /^pagemill pack: --codec must be one of raw, .*got 'gzip'/],
      [["pack", images.redis!], 2, /^pagemill pack: missing -o OUT\.pmf/],
      [["pack", images.redis!, "-o", join(dir, "x.pmf"), "--channels", "0"], 2, /^pagemill pack: --channels must be an integer from 1 to 64, got '0'/],
      [["unpack", join(dir, "missing.pmf"), "-o", join(dir, "x.out")], 1, /^pagemill unpack: .*no such file.*missing\.pmf/],
    ] as const) {
      const { code: exit, err } = await pagemill([...args]);
      expect(exit, args.join(" ")).toBe(code);
      expect(err).toMatch(says);
    }
  });
});

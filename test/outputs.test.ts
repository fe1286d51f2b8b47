// Files a command writes are whole or absent, and never an input: every
// command that writes (pack, unpack, record, bench --out) goes through a
// temporary file and a rename, and refuses an output that is one of its
// inputs (compared by device and inode, so a symlink or another name counts).
// Streams are trusted only as far as what they carried.

import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { chmodSync, existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PageBatch, PagemillError } from "../src/index.js";
import { writeCostTable } from "../src/cli/bench.js";
import { loadCostTable } from "../src/codecs/cost.js";
import { packImage } from "../src/cli/pack.js";
import { unpackFile } from "../src/cli/unpack.js";
import { checkDistinct, writeAtomically } from "../src/files.js";
import { recordFile } from "../src/guest/recorder.js";
import { FrameEncoder } from "../src/wire/pipeline.js";
import { pagemill } from "./helpers/migrate.js";
import { randomBytes } from "./helpers/random.js";

let dir: string;
let image: string;
const OLD = "old content, must survive\n";

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "pagemill-outputs-"));
  image = join(dir, "image.img");
  const pages = new Uint8Array(40 * 4096);
  pages.set(randomBytes(20 * 4096, 3), 4096);
  writeFileSync(image, pages);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** No temporary files left beside the outputs. */
function noLeftovers(): void {
  expect(readdirSync(dir).filter((name) => name.endsWith(".partial"))).toEqual([]);
}

describe("writeAtomically", () => {
  it("the target appears only when the write resolves; a failed write leaves the old content and no temporary", async () => {
    const target = join(dir, "atomic.txt");
    writeFileSync(target, OLD);
    await expect(
      writeAtomically(target, async (temporary) => {
        writeFileSync(temporary, "half of the new");
        expect(readFileSync(target, "utf8")).toBe(OLD);
        throw new Error("injected failure");
      }),
    ).rejects.toThrow("injected failure");
    expect(readFileSync(target, "utf8")).toBe(OLD);
    noLeftovers();
    await writeAtomically(target, async (temporary) => writeFileSync(temporary, "new"));
    expect(readFileSync(target, "utf8")).toBe("new");
    noLeftovers();
  });
});

describe("writeAtomically's target", () => {
  it("a device, a directory or a link to a device is refused, before anything is written", async () => {
    const nullLink = join(dir, "null-link");
    symlinkSync("/dev/null", nullLink);
    const write = vi.fn(async (temporary: string) => writeFileSync(temporary, "x"));
    await expect(writeAtomically(nullLink, write)).rejects.toThrow(/output .*null-link is a device/);
    await expect(writeAtomically(dir, write)).rejects.toThrow(/is a directory/);
    expect(write).not.toHaveBeenCalled();
    expect(readlinkSync(nullLink)).toBe("/dev/null");
    // Through the CLI: bench --out to a link to /dev/null used to replace the link with a file.
    expect((await pagemill(["bench", "--calibrate", "--time", "1ms", "--out", nullLink])).err).toMatch(/is a device/);
    expect(lstatSync(nullLink).isSymbolicLink()).toBe(true);
    noLeftovers();
  });

  it("through a symlink, the file it names is replaced (the link stays), keeping its permissions", async () => {
    const real = join(dir, "real.txt");
    const link = join(dir, "real-link.txt");
    writeFileSync(real, OLD);
    chmodSync(real, 0o640);
    symlinkSync(real, link);
    await writeAtomically(link, async (temporary) => writeFileSync(temporary, "new"));
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readFileSync(real, "utf8")).toBe("new");
    expect(statSync(real).mode & 0o777).toBe(0o640);
    noLeftovers();
  });

  it("an error about the temporary file names the target instead", async () => {
    await expect(writeAtomically(join(dir, "no", "such", "out"), async (temporary) => writeFileSync(temporary, "x"))).rejects.toThrow(
      /^cannot write .*no\/such\/out: no such directory$/,
    );
    const long = join(dir, "n".repeat(250));
    const { code, err } = await pagemill(["bench", "--calibrate", "--time", "1ms", "--out", long]);
    expect(code).toBe(0); // a 250-byte name is a name: the temporary beside it is kept short enough
    expect(err).toBe("");
    expect(readFileSync(long, "utf8")).toMatch(/"codecs"/);
    const tooLong = join(dir, "n".repeat(300));
    const failed = await pagemill(["bench", "--calibrate", "--time", "1ms", "--out", tooLong]);
    expect(failed.err.split("\n")[0]).toMatch(/^pagemill bench: cannot write .*: name too long$/);
    noLeftovers();
  });
});

describe("an interrupted write", () => {
  it("Ctrl-C or kill removes the temporary file and leaves the target as it was", async () => {
    const files = new URL("../dist/files.js", import.meta.url).href;
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      const target = join(dir, `interrupted-${signal}.img`);
      writeFileSync(target, OLD);
      // A write that never finishes (an interval keeps the process alive) until the signal.
      const script = `
        import { writeFileSync } from "node:fs";
        const { writeAtomically } = await import(${JSON.stringify(files)});
        setInterval(() => {}, 1000);
        await writeAtomically(${JSON.stringify(target)}, async (temporary) => {
          writeFileSync(temporary, "half of the new");
          console.log("ready");
          await new Promise(() => {});
        });`;
      const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
      await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
      expect(readdirSync(dir).filter((name) => name.endsWith(".partial"))).toHaveLength(1);
      child.kill(signal);
      const [code, by] = (await once(child, "close")) as [number | null, NodeJS.Signals | null];
      expect({ code, by }, signal).toEqual({ code: null, by: signal });
      expect(readFileSync(target, "utf8")).toBe(OLD);
      noLeftovers();
    }
  });
});

describe("an output that is an input is refused before anything is written", () => {
  it("pack IMG -o IMG, directly and through a symlink", async () => {
    const before = readFileSync(image);
    const link = join(dir, "link.img");
    symlinkSync(image, link);
    for (const out of [image, link]) {
      const { code, err } = await pagemill(["pack", image, "-o", out]);
      expect(code).toBe(1);
      expect(err).toMatch(/is the input .* refusing to overwrite an input/);
      expect(Buffer.compare(readFileSync(image), before)).toBe(0);
    }
    noLeftovers();
  });

  it("unpack X.pmf -o X.pmf", async () => {
    const packed = join(dir, "same.pmf");
    await packImage(image, packed, { codec: "lz4", channels: 1, pageSize: 4096, batchPages: 16 });
    const before = readFileSync(packed);
    await expect(unpackFile(packed, packed)).rejects.toThrow(PagemillError);
    const { code } = await pagemill(["unpack", packed, "-o", packed]);
    expect(code).toBe(1);
    expect(Buffer.compare(readFileSync(packed), before)).toBe(0);
  });

  it("record --file F -o F", async () => {
    const file = join(dir, "recorded.bin");
    writeFileSync(file, new Uint8Array(8192).fill(7));
    await expect(recordFile(file, { out: file, interval: 0.01, duration: 0.02 })).rejects.toThrow(/refusing to overwrite an input/);
    expect(readFileSync(file).every((b) => b === 7)).toBe(true);
  });

  it("checkDistinct compares files, not names", async () => {
    await expect(checkDistinct(join(dir, "absent"), [image])).resolves.toBeUndefined();
    await expect(checkDistinct(join(dir, ".", "image.img"), [image])).rejects.toThrow(PagemillError);
  });
});

describe("a failed command leaves its output as it was", () => {
  it("unpack of a truncated stream: no partial image, an existing target keeps its content", async () => {
    const packed = join(dir, "whole.pmf");
    await packImage(image, packed, { codec: "raw", channels: 1, pageSize: 4096, batchPages: 8 });
    const cut = join(dir, "cut.pmf");
    const bytes = readFileSync(packed);
    writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    const fresh = join(dir, "fresh.img");
    expect((await pagemill(["unpack", cut, "-o", fresh])).code).toBe(1);
    expect(existsSync(fresh)).toBe(false);
    const existing = join(dir, "existing.img");
    writeFileSync(existing, OLD);
    expect((await pagemill(["unpack", cut, "-o", existing])).code).toBe(1);
    expect(readFileSync(existing, "utf8")).toBe(OLD);
    noLeftovers();
  });

  it("pack of an image that fails midway (a corrupt gzip): no output", async () => {
    const gz = join(dir, "bad.img.gz");
    const { gzipSync } = await import("node:zlib");
    const whole = gzipSync(readFileSync(image));
    writeFileSync(gz, Buffer.concat([whole.subarray(0, whole.length >> 1), Buffer.alloc(64, 0xff)]));
    const out = join(dir, "bad.pmf");
    writeFileSync(out, OLD);
    expect((await pagemill(["pack", gz, "-o", out])).code).toBe(1);
    expect(readFileSync(out, "utf8")).toBe(OLD);
    noLeftovers();
  });

  it("record that fails (its spool directory is missing): the old trace stays", async () => {
    const file = join(dir, "recorded-ok.bin");
    writeFileSync(file, new Uint8Array(8192).fill(1));
    const out = join(dir, "kept.ptrace.gz");
    writeFileSync(out, OLD);
    await expect(recordFile(file, { out, interval: 0.01, duration: 0.05, spoolDir: join(dir, "no", "such", "dir") })).rejects.toThrow();
    expect(readFileSync(out, "utf8")).toBe(OLD);
    noLeftovers();
    // The same recording with a usable spool replaces it whole.
    await recordFile(file, { out, interval: 0.01, duration: 0.05 });
    expect(readFileSync(out).subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    noLeftovers();
  });

  it("bench --calibrate --out writes the whole table or nothing", async () => {
    const out = join(dir, "cost.json");
    expect((await pagemill(["bench", "--calibrate", "--time", "10ms", "--out", out])).code).toBe(0);
    expect(Object.keys(JSON.parse(readFileSync(out, "utf8")))).toContain("codecs");
    noLeftovers();
    // A table that does not read back as one (a rate lost as null in JSON) replaces nothing.
    const before = readFileSync(out, "utf8");
    const table = loadCostTable(out);
    await expect(writeCostTable(out, { ...table, hash: Number.NaN })).rejects.toThrow(/cost\.json: hash must be a positive number/);
    expect(readFileSync(out, "utf8")).toBe(before);
    noLeftovers();
  });
});

describe("unpack trusts a stream only as far as what it carried", () => {
  /** A .pmf stream of `pages` zero-filled pages at `indices`, closed by a done frame declaring `memoryBytes`. */
  function stream(indices: number[], memoryBytes: number): Uint8Array {
    const encoder = new FrameEncoder();
    const batch = new PageBatch(Math.max(1, indices.length));
    try {
      batch.set(new Uint8Array(indices.length * 4096).fill(9));
      const frame = encoder.pages(batch, indices);
      const done = encoder.control({ type: "done", memoryBytes, digestName: "xxh64", digest: new Uint8Array(8) });
      return Buffer.concat([frame, done]);
    } finally {
      batch.dispose();
    }
  }

  it("a done frame declaring 4 TiB after 2 pages is refused, and nothing is written", async () => {
    const path = join(dir, "huge.pmf");
    writeFileSync(path, stream([0, 1], 2 ** 42));
    const out = join(dir, "huge.img");
    await expect(unpackFile(path, out)).rejects.toThrow(/declares 4398046511104 B, but the stream carried 2 page\(s\) of 4096 B/);
    expect(existsSync(out)).toBe(false);
    noLeftovers();
  });

  it("a declared length short of the pages carried is refused too", async () => {
    const path = join(dir, "short.pmf");
    writeFileSync(path, stream([0, 1, 2], 4096));
    await expect(unpackFile(path, join(dir, "short.img"))).rejects.toThrow(/declares 4096 B/);
  });

  it("a page far past the pages before it (a sparse write of terabytes) is refused", async () => {
    const path = join(dir, "sparse.pmf");
    writeFileSync(path, stream([0, 2 ** 31], 8192));
    const out = join(dir, "sparse.img");
    await expect(unpackFile(path, out)).rejects.toThrow(/carries page 2147483648 where page 1 comes next/);
    expect(existsSync(out)).toBe(false);
  });
});

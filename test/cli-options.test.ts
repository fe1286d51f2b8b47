// Option values the CLI fuzzer (test/fuzz/cli.test.ts) found accepted or
// crashing: each is now a usage error naming its option.

import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsageError, intOption } from "../src/cli/args.js";
import { run as bench } from "../src/cli/bench.js";
import { run as migrate } from "../src/cli/migrate.js";
import { run as pack } from "../src/cli/pack.js";
import { run as record } from "../src/cli/record.js";
import { run as unpack } from "../src/cli/unpack.js";

const dir = mkdtempSync(join(tmpdir(), "pagemill-cli-options-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, "file.bin");
writeFileSync(file, new Uint8Array(4 * 4096).fill(3));

describe("numbers are written in decimal, and an empty value is not 0", () => {
  it("intOption", () => {
    for (const text of ["", " ", "0x10", "1e3", "1.0", "+5", "5 "]) {
      expect(() => intOption("seed", text, 1, 0, 100), `'${text}'`).toThrow(/--seed must be an integer from 0 to 100/);
    }
    expect(intOption("seed", "42", 1, 0, 100)).toBe(42);
    expect(() => intOption("seed", "-1", 1, 0, 100)).toThrow(/got '-1'/);
  });

  it("migrate --seed, --pages and --rate", async () => {
    const model = ["--workload", "poisson", "--pages", "16", "--strategy", "precopy"];
    await expect(migrate([...model, "--seed", ""])).rejects.toThrow(/--seed must be an integer/);
    await expect(migrate([...model, "--seed", " "])).rejects.toThrow(/--seed must be an integer/);
    await expect(migrate(["--workload", "idle", "--pages", "0x10"])).rejects.toThrow(/--pages must be an integer/);
    await expect(migrate([...model, "--rate", ""])).rejects.toThrow(/--rate: must be a number ≥ 0/);
    await expect(migrate([...model, "--rate", "0x10"])).rejects.toThrow(/--rate: must be a number ≥ 0/);
  });
});

describe("migrate", () => {
  it("--profile is one of the profiles, not a property every object has", async () => {
    for (const profile of ["toString", "constructor", "__proto__", "hasOwnProperty"]) {
      await expect(migrate(["--workload", "idle", "--pages", "16", "--profile", profile]), profile).rejects.toThrow(/--profile: must be one of redis/);
    }
  });

  it("a model's options with a trace are refused, not ignored unchecked", async () => {
    for (const [name, value] of [["pages", "99999999999999999999"], ["seed", "7"], ["profile", "redis"], ["rate", "1"]] as const) {
      await expect(migrate([`--${name}`, value, "--strategy", "precopy"]), name).rejects.toThrow(new RegExp(`--${name}: applies to --workload models only`));
    }
  });

  it("a missing trace names --trace", async () => {
    await expect(migrate(["--trace", join(dir, "absent.ptrace.gz")])).rejects.toThrow(/^--trace: .*absent\.ptrace\.gz does not exist/);
  });
});

describe("record", () => {
  it("--interval under the 1 ms a trace may have is a usage error, before anything is recorded", async () => {
    const out = join(dir, "fast.ptrace.gz");
    for (const interval of ["200us", "999us", "0ms"]) {
      await expect(record(["--file", file, "--interval", interval, "--duration", "2ms", "-o", out]), interval).rejects.toThrow(
        /--interval must be at least 1ms .*got/,
      );
    }
    expect(readdirSync(dir).filter((name) => name.includes("fast"))).toEqual([]);
  });

  it("--spool and -o must name something", async () => {
    await expect(record(["--file", file, "--duration", "0s", "--spool", "", "-o", join(dir, "s.ptrace.gz")])).rejects.toThrow(/--spool must name a directory/);
    await expect(record(["--file", file, "--duration", "0s", "-o", ""])).rejects.toThrow(/-o must name a file/);
  });
});

describe("pack", () => {
  it("--bandwidth without --codec auto is refused, not ignored", async () => {
    await expect(pack([file, "-o", join(dir, "b.pmf"), "--codec", "lz4", "--bandwidth", "1gbit"])).rejects.toThrow(/--bandwidth applies to --codec auto only/);
    expect(readdirSync(dir).filter((name) => name.startsWith("b.pmf"))).toEqual([]);
  });
});

describe("an empty output path is a usage error in every command that writes", () => {
  it("pack, unpack, bench", async () => {
    await expect(pack([file, "-o", ""])).rejects.toThrow(UsageError);
    await expect(pack([file, "-o", " "])).rejects.toThrow(/-o must name a file/);
    await expect(unpack([file, "-o", ""])).rejects.toThrow(/-o must name a file/);
    await expect(bench(["--calibrate", "--time", "1ms", "--out", ""])).rejects.toThrow(/--out must name a file/);
  });
});

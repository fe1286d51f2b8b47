// Option values the CLI fuzzer (test/fuzz/cli.test.ts) found accepted or
// crashing: each is now a usage error naming its option.

import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
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

  it("--guest-size and --populated: a guest larger than this machine runs sparse; one that cannot fit is refused before it starts", async () => {
    await expect(migrate(["--workload", "idle", "--guest-size", "64g", "--pages", "3"])).rejects.toThrow(/give --pages or --guest-size, not both/);
    await expect(migrate(["--workload", "idle", "--guest-size", "5000"])).rejects.toThrow(/^--guest-size: must be a whole number of 4 KiB pages from 4k to 1\.0 TiB, got '5000'/);
    await expect(migrate(["--workload", "idle", "--guest-size", "2048g"])).rejects.toThrow(/^--guest-size: must be a whole number.*got '2048g'/);
    await expect(migrate(["--workload", "idle", "--guest-size", "1g", "--populated", "2g"])).rejects.toThrow(/^--populated: must be a whole number of 4 KiB pages, at most the guest's size \(1\.0 GiB\)/);
    const limit = process.env.PAGEMILL_MEMORY_LIMIT;
    process.env.PAGEMILL_MEMORY_LIMIT = String(2 ** 30);
    try {
      await expect(migrate(["--workload", "idle", "--guest-size", "64g", "--populated", "2g"])).rejects.toThrow(
        /^--populated: a guest of 64\.0 GiB with 2\.0 GiB populated needs an estimated 2\.\d\d GiB of memory, more than the limit of 1\.00 GiB on this machine/,
      );
    } finally {
      if (limit === undefined) delete process.env.PAGEMILL_MEMORY_LIMIT;
      else process.env.PAGEMILL_MEMORY_LIMIT = limit;
    }
    for (const name of ["guest-size", "populated"]) {
      await expect(migrate([`--${name}`, "1g", "--strategy", "precopy"]), name).rejects.toThrow(new RegExp(`--${name}: applies to --workload models only`));
    }
  });

  it("--trace-timing is end or spread, for a trace only", async () => {
    await expect(migrate(["--trace-timing", "sometimes", "--strategy", "precopy"])).rejects.toThrow(/^--trace-timing: must be end or spread, got 'sometimes'/);
    await expect(migrate(["--workload", "idle", "--pages", "16", "--trace-timing", "spread"])).rejects.toThrow(/^--trace-timing: applies to --trace only/);
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

describe("a time that cannot be 0 is refused by every command naming the option and the value", () => {
  it("bench --time, profile --window, plan --delta-t, send --timeout and --recover-timeout, migrate --deadline", async () => {
    const trace = fileURLToPath(new URL("../data/redis-sample.ptrace.gz", import.meta.url));
    const refused = (option: string): RegExp => new RegExp(`^--${option} must be a duration above 0 like 300ms or 5s, got '0s'$`);
    await expect(bench(["--calibrate", "--time", "0s"])).rejects.toThrow(refused("time"));
    await expect((await import("../src/cli/profile.js")).run([trace, "--window", "0s"])).rejects.toThrow(refused("window"));
    await expect((await import("../src/cli/plan.js")).run([trace, "--delta-t", "0s"])).rejects.toThrow(refused("delta-t"));
    const send = (await import("../src/cli/send.js")).run;
    await expect(send(["--to", "127.0.0.1:9", "--timeout", "0s"])).rejects.toThrow(refused("timeout"));
    await expect(send(["--to", "127.0.0.1:9", "--recover-timeout", "0s"])).rejects.toThrow(refused("recover-timeout"));
    await expect(migrate(["--strategy", "precopy", "--deadline", "0s"])).rejects.toThrow(refused("deadline"));
  });

  it("a rate of 0 is refused by rateOption itself: migrate --bandwidth and --max-bandwidth, inspect and send --bandwidth", async () => {
    const trace = fileURLToPath(new URL("../data/redis-sample.ptrace.gz", import.meta.url));
    const refused = (option: string): RegExp => new RegExp(`^--${option} must be a rate above 0 like 40mbit or 1gbit, got '0mbit'$`);
    await expect(migrate(["--workload", "idle", "--pages", "16", "--bandwidth", "0mbit"])).rejects.toThrow(refused("bandwidth"));
    await expect(migrate(["--workload", "idle", "--pages", "16", "--flavor", "qemu", "--max-bandwidth", "0mbit"])).rejects.toThrow(refused("max-bandwidth"));
    await expect((await import("../src/cli/inspect.js")).run([trace, "--bandwidth", "0mbit"])).rejects.toThrow(refused("bandwidth"));
    await expect((await import("../src/cli/send.js")).run(["--to", "127.0.0.1:9", "--bandwidth", "0mbit"])).rejects.toThrow(refused("bandwidth"));
  });

  it("bench checks --out before it measures anything", async () => {
    const started = performance.now();
    await expect(bench(["--calibrate", "--time", "1s", "--out", ""])).rejects.toThrow(/--out must name a file/);
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe("positional arguments are counted the same way by every command", () => {
  type Loader = () => Promise<{ run(args: string[]): Promise<number> }>;
  const oneOf: [string, string, Loader][] = [
    ["hash", "FILE", () => import("../src/cli/hash.js")],
    ["inspect", "TRACE", () => import("../src/cli/inspect.js")],
    ["pack", "IMAGE", () => import("../src/cli/pack.js")],
    ["plan", "TRACE", () => import("../src/cli/plan.js")],
    ["profile", "TRACE", () => import("../src/cli/profile.js")],
    ["scan", "FILE", () => import("../src/cli/scan.js")],
    ["serve", "DIR", () => import("../src/cli/serve.js")],
    ["unpack", "IN.pmf", () => import("../src/cli/unpack.js")],
  ];
  const none: [string, Loader][] = [
    ["bench", () => import("../src/cli/bench.js")],
    ["compare", () => import("../src/cli/compare.js")],
    ["migrate", () => import("../src/cli/migrate.js")],
    ["receive", () => import("../src/cli/receive.js")],
    ["record", () => import("../src/cli/record.js")],
    ["send", () => import("../src/cli/send.js")],
  ];

  it("a command taking one names it when it is missing or given twice", async () => {
    for (const [name, what, load] of oneOf) {
      const { run } = await load();
      await expect(run([]), name).rejects.toThrow(new UsageError(`missing ${what}`));
      await expect(run([file, file]), name).rejects.toThrow(new UsageError(`expected one ${what}`));
    }
  });

  it("a command taking only options names the first argument it was given", async () => {
    for (const [name, load] of none) {
      const { run } = await load();
      await expect(run(["stray", "other"]), name).rejects.toThrow(new UsageError("unexpected argument 'stray'"));
    }
  });
});

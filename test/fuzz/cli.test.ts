// The command line under random option values and combinations. Each case
// runs `dist/cli/bin.js` as a new process (so a hang is a timeout, not a stuck
// test) in a directory of its own, and must end with exit code 0, 1 (error) or
// 2 (usage); a failure prints one line `pagemill CMD: ...` naming the option or
// file at fault, never a stack trace or a JavaScript internal ("Cannot read
// properties of undefined", NaN); and a failed command leaves every file as it
// was (no output, no temporary, an existing output with its old content).
// `npm test` runs a seeded sample; `npm run fuzz` (PAGEMILL_FUZZ=1) runs
// PAGEMILL_CLI_CASES cases (default 600) from PAGEMILL_CLI_SEED.

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packImage } from "../../src/cli/pack.js";
import { TraceWriter } from "../../src/guest/pagetrace.js";
import { randomBytes, u32Stream } from "../helpers/random.js";

const FUZZ = Boolean(process.env.PAGEMILL_FUZZ);
const CASES = Number(process.env.PAGEMILL_CLI_CASES ?? (FUZZ ? 600 : 40));
const SEED = Number(process.env.PAGEMILL_CLI_SEED ?? 1);
const TIMEOUT_MS = 60_000;
const BIN = new URL("../../dist/cli/bin.js", import.meta.url).pathname;
const BUNDLED = new URL("../../data/redis-sample.ptrace.gz", import.meta.url).pathname;
const OLD = "old content, must survive\n";

/** Values no option that takes a number, size, rate, duration or name accepts. */
const ALWAYS_BAD = ["", " ", "-1", "-0.5", "NaN", "Infinity", "9".repeat(400), "toString", "__proto__", "constructor"];
/** Other odd values: some are valid for some options. */
const ODD = ["0", "1", "1.5", "0x10", "1e3", "abc", "ß", "x".repeat(3000), "--json", "-", "4k", "1gbit", "300ms", "1:2", "1bit", "0s:1gbit", "65536", "2147483648"];

let root: string;
let fixtures: string;
/** Fixture files by role (absolute paths). */
const F: Record<string, string> = {};

type Rng = () => number;
const pick = <T>(rng: Rng, items: readonly T[]): T => items[rng() % items.length]!;

interface Option {
  readonly name: string;
  /** a flag: no value */
  readonly flag?: boolean;
  /** valid values (paths are resolved in the case's directory) */
  readonly valid?: readonly string[];
  /** values naming files the command reads */
  readonly input?: boolean;
  /** the command writes to this option's value */
  readonly output?: boolean;
}

interface CommandSpec {
  readonly name: string;
  /** valid positionals */
  readonly positionals: () => string[][];
  readonly options: readonly Option[];
  /** options every valid command line has */
  readonly required?: readonly string[];
}

const PAGE_SIZES = ["512", "4096", "4k", "64k"];
const COMMANDS: readonly CommandSpec[] = [
  {
    name: "migrate",
    positionals: () => [[]],
    options: [
      { name: "trace", valid: ["@trace", "@bundled"], input: true },
      { name: "workload", valid: ["idle", "poisson", "hot-cold", "zipf", "sweep"] },
      { name: "pages", valid: ["16", "64", "300"] },
      { name: "profile", valid: ["redis", "node-gc", "memstream"] },
      { name: "rate", valid: ["1"] },
      { name: "seed", valid: ["0", "7", "4294967295"] },
      { name: "strategy", valid: ["precopy", "postcopy", "hybrid", "all"] },
      { name: "bandwidth", valid: ["40mbit", "733mbit", "1gbit", "10Gbps"] },
      { name: "rtt", valid: ["0ms", "5ms", "1ms"] },
      { name: "downtime-limit", valid: ["300ms", "30ms", "1s"] },
      { name: "codec", valid: ["raw", "lz4", "mecom", "wkdm", "xbzrle", "xbzrle+lz4", "dedup+mecom", "auto"] },
      { name: "json", flag: true },
      { name: "auto-converge", flag: true },
      { name: "max-iterations", valid: ["1", "5", "30"] },
      { name: "max-time", valid: ["24h", "10s", "1m"] },
      { name: "rounds", valid: ["1", "2"] },
      { name: "budget", valid: ["1MiB", "64k"] },
      { name: "state", valid: ["0", "256k", "1MiB"] },
      { name: "batch", valid: ["1", "16", "256", "1024"] },
      { name: "cost", valid: ["@cost"], input: true },
      { name: "channel", valid: ["link", "loopback"] },
      { name: "schedule", valid: ["1s:10mbit,2s:40mbit", "0s:1gbit"] },
    ],
  },
  {
    name: "scan",
    positionals: () => [[F.image!], [F.imageGz!]],
    options: [{ name: "page-size", valid: PAGE_SIZES }, { name: "json", flag: true }],
  },
  {
    name: "hash",
    positionals: () => [[F.image!], [F.imageGz!]],
    required: ["algo"],
    options: [
      { name: "algo", valid: ["md5", "xxh32", "xxh64", "xxh3"] },
      { name: "page-size", valid: PAGE_SIZES },
      { name: "json", flag: true },
      { name: "whole", flag: true },
    ],
  },
  {
    name: "inspect",
    positionals: () => [[F.trace!], [BUNDLED]],
    options: [
      { name: "json", flag: true },
      { name: "bandwidth", valid: ["40mbit", "1gbit"] },
      { name: "window", valid: ["1", "4", "1000000"] },
      { name: "downtime", valid: ["300ms", "1s", "0ms"] },
    ],
  },
  {
    name: "record",
    positionals: () => [[]],
    required: ["file", "out", "duration"],
    options: [
      { name: "file", valid: ["@small"], input: true },
      { name: "pid", valid: [] },
      { name: "interval", valid: ["10ms", "20ms", "1ms"] },
      { name: "duration", valid: ["30ms", "0s", "50ms"] },
      { name: "out", valid: ["out.ptrace.gz", "existing.out"], output: true },
      { name: "page-size", valid: PAGE_SIZES },
      { name: "level", valid: ["1", "6", "9"] },
      { name: "spool", valid: ["."] },
    ],
  },
  {
    name: "pack",
    positionals: () => [[F.image!], [F.imageGz!]],
    required: ["output"],
    options: [
      { name: "output", valid: ["out.pmf", "existing.out"], output: true },
      { name: "codec", valid: ["raw", "lz4", "mecom", "wkdm", "auto"] },
      { name: "bandwidth", valid: ["10mbit", "1gbit", "10gbit"] },
      { name: "channels", valid: ["1", "2"] },
      { name: "batch", valid: ["1", "16", "256"] },
      { name: "page-size", valid: PAGE_SIZES },
      { name: "json", flag: true },
    ],
  },
  {
    name: "unpack",
    positionals: () => [[F.packed!]],
    required: ["output"],
    options: [
      { name: "output", valid: ["out.img", "existing.out"], output: true },
      { name: "json", flag: true },
    ],
  },
  {
    name: "bench",
    positionals: () => [[]],
    required: ["calibrate", "time"],
    options: [
      { name: "calibrate", flag: true },
      { name: "out", valid: ["cost.json", "existing.out"], output: true },
      { name: "time", valid: ["1ms", "2ms"] },
      { name: "json", flag: true },
    ],
  },
];

/** Files an input may be pointed at instead of a valid one. */
function hostileInputs(): string[] {
  return ["", "no-such-file", "no/such/dir/file", ".", fixtures, F.empty!, F.random!, F.cut!, F.badTrace!, F.badCost!, F.notJson!, "/dev/null", "@same", "@symlink"];
}

/**
 * Where an output may be pointed at instead of a valid place: inside the
 * case's directory only (a command may overwrite what it is told to), and
 * never a device itself (as root, a rename over /dev/null would replace it).
 */
const HOSTILE_OUTPUTS = ["", "no/such/dir/file", ".", "sub", "@same", "@symlink", "null-link"];

/** Options naming a file to write: any name is one. */
const OUTPUTS = COMMANDS.flatMap((spec) => spec.options.filter((o) => o.output).map((o) => o.name));

interface Case {
  readonly command: string;
  readonly args: string[];
  /** what was made wrong on purpose, when anything was */
  readonly fault?: { kind: string; option?: string; value?: string; source?: string; seed?: number };
  /** the command's output path (relative to the case directory), when it has one */
  readonly output?: string;
}

/** One random command line: valid options, then at most one fault. */
function makeCase(rng: Rng, index: number): Case {
  const spec = pick(rng, COMMANDS);
  const args: string[] = [spec.name, ...pick(rng, spec.positionals())];
  const chosen = new Map<string, string | true>();
  for (const name of spec.required ?? []) chosen.set(name, "");
  for (const option of spec.options) if (rng() % 3 === 0) chosen.set(option.name, "");
  for (const name of chosen.keys()) {
    const option = spec.options.find((o) => o.name === name)!;
    if (option.flag) chosen.set(name, true);
    else if (option.valid?.length) chosen.set(name, pick(rng, option.valid));
    else chosen.delete(name);
  }
  // Options that cannot go together in a valid line.
  if (chosen.has("trace") && chosen.has("workload")) chosen.delete(rng() % 2 ? "trace" : "workload");
  if (spec.name === "migrate") {
    // A model's options go with a model (a small one: the default is 256 MiB); a trace takes none.
    if (chosen.has("workload")) chosen.set("pages", pick(rng, ["16", "64", "300"]));
    else for (const name of ["pages", "profile", "rate", "seed"]) chosen.delete(name);
    if (chosen.has("rate")) chosen.set("rate", chosen.get("workload") === "sweep" ? "1MiB" : pick(rng, ["0.05", "1"])); // bytes/s for sweep, writes/s/page for the others
  }
  if (chosen.get("channel") === "loopback") chosen.delete("schedule");
  if (spec.name === "pack" && chosen.get("codec") === "auto") chosen.set("bandwidth", pick(rng, ["10mbit", "1gbit", "10gbit"])); // auto chooses for a link
  let fault: Case["fault"];
  const kinds = ["value", "value", "value", "path", "path", "mutated", "mutated", "unknown-option", "flag-value", "missing-value", "extra-positional", "missing-positional", "none"];
  const kind = index === 0 ? "unknown-command" : pick(rng, kinds);
  const valued = spec.options.filter((o) => !o.flag);
  switch (kind) {
    case "value": {
      const option = pick(rng, valued);
      const value = rng() % 2 ? pick(rng, ALWAYS_BAD) : pick(rng, ODD);
      chosen.set(option.name, value);
      fault = { kind, option: option.name, value };
      break;
    }
    case "path": {
      const files = spec.options.filter((o) => o.input || o.output);
      if (args.length > 1 && (!files.length || rng() % 2)) {
        const value = pick(rng, hostileInputs());
        args[1] = value; // the positional input
        fault = { kind, value };
        break;
      }
      if (!files.length) break;
      const option = pick(rng, files);
      const value = pick(rng, option.output ? HOSTILE_OUTPUTS : hostileInputs());
      chosen.set(option.name, value);
      fault = { kind, option: option.name, value };
      break;
    }
    case "mutated": {
      // A damaged copy of the file the command reads (flipped bits, a cut, garbage, a header field).
      const seed = rng() || 1;
      if (args.length > 1) {
        fault = { kind, value: "@mutated", source: args[1]!, seed };
        args[1] = "@mutated";
      } else if (spec.name === "migrate") {
        const cost = rng() % 4 === 0;
        fault = { kind, option: cost ? "cost" : "trace", value: "@mutated", source: cost ? F.cost! : F.trace!, seed };
        chosen.set(cost ? "cost" : "trace", "@mutated");
        if (!cost) for (const name of ["workload", "pages", "profile", "rate", "seed"]) chosen.delete(name);
      } else if (spec.name === "record") {
        fault = { kind, option: "file", value: "@mutated", source: F.small!, seed };
        chosen.set("file", "@mutated");
      }
      break;
    }
    case "flag-value": {
      const flag = spec.options.find((o) => o.flag);
      if (!flag) break;
      chosen.delete(flag.name);
      args.push(`--${flag.name}=yes`);
      fault = { kind, option: flag.name };
      break;
    }
    default:
      fault = kind === "none" ? undefined : { kind };
  }
  for (const [name, value] of chosen) {
    if (value === true) args.push(`--${name}`);
    else if (rng() % 4 === 0) args.push(`--${name}=${value}`);
    else args.push(`--${name}`, value);
  }
  if (kind === "unknown-command") args[0] = "nonsense";
  if (kind === "unknown-option") args.push("--no-such-option", "1");
  if (kind === "missing-value" && valued.length) {
    const option = pick(rng, valued);
    args.push(`--${option.name}`);
    fault = { kind, option: option.name };
  }
  if (kind === "extra-positional") args.push("extra-argument");
  if (kind === "missing-positional" && spec.positionals()[0]!.length) args.splice(1, 1);
  const outputOption = spec.options.find((o) => o.output);
  const output = outputOption && chosen.get(outputOption.name);
  return { command: spec.name, args, fault, output: typeof output === "string" ? output : outputOption?.name === "out" && spec.name === "bench" ? "pagemill-cost.json" : undefined };
}

/** Every file under `dir` (hidden ones too) with a digest of its content. */
function snapshot(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (at: string, prefix: string): void => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) walk(path, `${prefix}${entry.name}/`);
      else if (entry.isSymbolicLink()) files.set(`${prefix}${entry.name}`, "symlink");
      else files.set(`${prefix}${entry.name}`, createHash("sha256").update(readFileSync(path)).digest("hex"));
    }
  };
  walk(dir, "");
  return files;
}

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stderr: string;
  seconds: number;
}

function runCli(args: string[], cwd: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(process.execPath, [BIN, ...args], { cwd, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    let timedOut = false;
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (text: string) => {
      if (stderr.length < 1 << 16) stderr += text;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, TIMEOUT_MS);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut, stderr, seconds: (performance.now() - started) / 1000 });
    });
  });
}

/** Words of a JavaScript internal error, which no message of pagemill's should show. */
const INTERNAL = /Cannot read propert|is not a function|is not iterable|is not defined|Maximum call stack|\bundefined\b|\bNaN\b|\bInfinity\b|\[object \w+\]/;
const STACK_LINE = /^\s+at .+:\d+:\d+\)?$/m;

/** What is wrong with a case's outcome (empty when nothing is). */
function problems(c: Case, outcome: Outcome, before: Map<string, string>, after: Map<string, string>): string[] {
  const found: string[] = [];
  if (outcome.timedOut) return [`no result in ${TIMEOUT_MS / 1000} s`];
  if (outcome.code === null || ![0, 1, 2].includes(outcome.code)) found.push(`exit code ${outcome.code ?? outcome.signal}`);
  if (STACK_LINE.test(outcome.stderr)) found.push("a stack trace on stderr");
  if (/^(\w*Error|node:internal)/m.test(outcome.stderr)) found.push("an uncaught error on stderr");
  const leftovers = [...after.keys()].filter((name) => name.includes(".partial"));
  if (leftovers.length) found.push(`temporary files left: ${leftovers.join(", ")}`);
  // What the command was told to write: the output, and what a symlink output points at.
  const written = c.output === "@same" ? ["input-copy"] : c.output === "@symlink" ? ["input-link", "input-copy"] : c.output ? [c.output] : [];
  const added = [...after.keys()].filter((name) => !before.has(name));
  if (outcome.code === 0) {
    for (const [name, digest] of before) if (after.get(name) !== digest && !written.includes(name)) found.push(`${name} changed or vanished`);
    const unexpected = added.filter((name) => !written.includes(name));
    if (unexpected.length) found.push(`wrote files it does not name: ${unexpected.join(", ")}`);
    if ((c.output === "@same" || c.output === "@symlink") && c.command !== "bench") found.push("wrote over its own input");
    if (c.output === "null-link" && after.get("null-link") !== "symlink") found.push("replaced a link to /dev/null with a file");
    const { kind, option, value } = c.fault ?? {};
    if (kind === "value" && ALWAYS_BAD.includes(value!) && !OUTPUTS.includes(option!)) found.push(`accepted --${option} '${value!.slice(0, 20)}'`);
    return found;
  }
  for (const [name, digest] of before) if (after.get(name) !== digest) found.push(`failed and changed ${name}`);
  if (added.length) found.push(`failed but wrote ${added.join(", ")}`);
  const line = outcome.stderr.split("\n")[0] ?? "";
  const name = c.args[0] === "nonsense" ? ": " : ` ${c.command}: `;
  if (!line.startsWith(`pagemill${name}`)) found.push(`first line is not 'pagemill${name}...': ${JSON.stringify(line.slice(0, 200))}`);
  // The user's own words are quoted back; what is left must not be JavaScript's.
  const unquoted = line.replace(/'[^']*'/g, "''").replaceAll(c.fault?.value ?? "", "");
  if (INTERNAL.test(unquoted)) found.push(`an internal error: ${JSON.stringify(line.slice(0, 200))}`);
  if (line.includes(".partial")) found.push(`names a temporary file: ${JSON.stringify(line.slice(0, 200))}`);
  const option = c.fault?.option;
  if (option && (c.fault!.kind === "value" || c.fault!.kind === "flag-value" || c.fault!.kind === "missing-value") && outcome.code === 2 && !new RegExp(`--${option}\\b|(^|\\W)-${option[0]}\\b`).test(line)) {
    found.push(`usage error does not name --${option}: ${JSON.stringify(line.slice(0, 200))}`);
  }
  return found;
}

/** A damaged copy of `bytes` (of their gunzipped content, re-gzipped, half the time for gzip). */
function mutate(bytes: Uint8Array, rng: Rng): Uint8Array {
  const inner = bytes[0] === 0x1f && bytes[1] === 0x8b && rng() % 2 === 0;
  let out = Buffer.from(inner ? gunzipSync(bytes) : bytes);
  switch (rng() % 4) {
    case 0:
      for (let n = 1 + (rng() % 8); n > 0; n--) out[rng() % out.length]! ^= 1 << rng() % 8;
      break;
    case 1:
      out = out.subarray(0, rng() % out.length);
      break;
    case 2:
      out = Buffer.concat([out, Buffer.from(randomBytes(1 + (rng() % 64), rng()))]);
      break;
    default: {
      // A header field (a count, a size, an interval) set to an extreme.
      const at = 4 * (rng() % Math.min(16, out.length >> 2));
      out.writeUInt32LE(pick(rng, [0, 1, 0xffffffff, 0x7fffffff, 1000, rng()]), at);
    }
  }
  return inner ? gzipSync(out) : out;
}

/** Turns the placeholders of a case into paths in its directory. */
function materialize(c: Case, dir: string): string[] {
  writeFileSync(join(dir, "existing.out"), OLD);
  mkdirSync(join(dir, "sub"));
  const input = join(dir, "input-copy");
  copyFileSync(c.command === "unpack" ? F.packed! : c.command === "record" ? F.small! : c.command === "migrate" ? F.trace! : F.image!, input);
  symlinkSync(input, join(dir, "input-link"));
  symlinkSync("/dev/null", join(dir, "null-link"));
  const args = c.args.map((arg) => {
    const [prefix, value] = arg.startsWith("--") && arg.includes("=") ? [arg.slice(0, arg.indexOf("=") + 1), arg.slice(arg.indexOf("=") + 1)] : ["", arg];
    const placeholders = new Map([["@trace", F.trace!], ["@bundled", BUNDLED], ["@cost", F.cost!], ["@small", F.small!], ["@same", input], ["@symlink", join(dir, "input-link")]]);
    if (value === "@mutated") {
      const path = join(dir, "mutated-input");
      writeFileSync(path, mutate(readFileSync(c.fault!.source!), u32Stream(c.fault!.seed!)));
      return prefix + path;
    }
    return prefix + (placeholders.get(value) ?? value);
  });
  // An output that is the input: the copy stands in as the positional input too.
  if (c.args.some((a) => a.endsWith("@same") || a.endsWith("@symlink"))) {
    const at = args.findIndex((a) => a === F.packed || a === F.image || a === F.imageGz);
    if (at > 0) args[at] = input;
    const file = args.indexOf("--file");
    if (file >= 0) args[file + 1] = input;
    else if (args.some((a) => a.startsWith("--file="))) args[args.findIndex((a) => a.startsWith("--file="))] = `--file=${input}`;
  }
  return args;
}

beforeAll(async () => {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run npm run build first`);
  root = mkdtempSync(join(tmpdir(), "pagemill-cli-fuzz-"));
  fixtures = join(root, "fixtures");
  mkdirSync(fixtures);
  const at = (name: string) => join(fixtures, name);
  const image = new Uint8Array(48 * 4096);
  image.set(randomBytes(16 * 4096, 11), 8 * 4096);
  image.fill(0x41, 30 * 4096, 34 * 4096);
  writeFileSync((F.image = at("image.img")), image);
  writeFileSync((F.imageGz = at("image.img.gz")), gzipSync(image));
  writeFileSync((F.small = at("small.bin")), image.subarray(0, 8 * 4096));
  writeFileSync((F.empty = at("empty")), "");
  writeFileSync((F.random = at("random.bin")), randomBytes(10_000, 5));
  writeFileSync((F.cost = at("cost.json")), JSON.stringify({ hash: 2e9 }));
  writeFileSync((F.badCost = at("bad-cost.json")), JSON.stringify({ not: "a cost table" }));
  writeFileSync((F.notJson = at("not.json")), "{ no");
  await packImage(F.image, (F.packed = at("image.pmf")), { codec: "lz4", channels: 1, pageSize: 4096, batchPages: 8 });
  const packed = readFileSync(F.packed);
  writeFileSync((F.cut = at("cut.pmf")), packed.subarray(0, packed.length >> 1));
  const writer = await TraceWriter.create((F.trace = at("small.ptrace.gz")), image.slice(0, 32 * 4096), { intervalMicros: 50_000, level: 1 });
  for (let e = 1; e <= 6; e++) await writer.epochDeltas(e * 50_000, [e, e + 8, 20], new Uint8Array(3 * 4096).fill(e));
  await writer.close();
  const trace = readFileSync(F.trace);
  writeFileSync((F.badTrace = at("trailing.ptrace.gz")), Buffer.concat([trace, gzipSync(Buffer.from([1, 2, 3]))]));
}, 60_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe(`pagemill under random command lines (${CASES} cases, seed ${SEED})`, () => {
  it("every case ends, with a one-line message naming what was wrong, and leaves files as they were on failure", async () => {
    const rng = u32Stream(SEED);
    const cases = Array.from({ length: CASES }, (_, i) => makeCase(rng, i));
    const fixturesBefore = snapshot(fixtures);
    const findings: string[] = [];
    const refusedValid: string[] = [];
    const codes = { 0: 0, 1: 0, 2: 0 } as Record<number, number>;
    let slowest = { seconds: 0, line: "" };
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < cases.length) {
        const index = next++;
        const c = cases[index]!;
        const dir = join(root, `case-${index}`);
        mkdirSync(dir);
        const args = materialize(c, dir);
        const before = snapshot(dir);
        const outcome = await runCli(args, dir);
        const after = snapshot(dir);
        const line = `pagemill ${args.map((a) => (a.length > 40 ? `${a.slice(0, 37)}...` : a)).join(" ")}`;
        codes[outcome.code ?? -1] = (codes[outcome.code ?? -1] ?? 0) + 1;
        if (outcome.seconds > slowest.seconds) slowest = { seconds: outcome.seconds, line };
        // A valid command line that fails is not wrong by these rules, but it is worth a look.
        if (!c.fault && outcome.code !== 0) refusedValid.push(`${line}\n    ${outcome.stderr.split("\n")[0]}`);
        for (const problem of problems(c, outcome, before, after)) findings.push(`case ${index}: ${line}\n    ${problem}\n    ${outcome.stderr.split("\n")[0]}`);
        rmSync(dir, { recursive: true, force: true });
      }
    };
    await Promise.all([worker(), worker()]);
    const fixturesAfter = snapshot(fixtures);
    for (const [name, digest] of fixturesBefore) if (fixturesAfter.get(name) !== digest) findings.push(`fixture ${name} changed`);
    for (const name of fixturesAfter.keys()) if (!fixturesBefore.has(name)) findings.push(`a file appeared among the inputs: ${name}`);
    console.log(
      `cli fuzz: ${CASES} cases from seed ${SEED}: exit 0 ×${codes[0]}, 1 ×${codes[1]}, 2 ×${codes[2]}; ` +
        `slowest ${slowest.seconds.toFixed(1)} s (${slowest.line.slice(0, 120)}); ${findings.length} finding(s); ` +
        `${refusedValid.length} command line(s) without a planted fault refused${refusedValid.length ? `:\n  ${refusedValid.join("\n  ")}` : ""}`,
    );
    expect(findings, findings.join("\n")).toEqual([]);
  }, Math.max(600_000, CASES * 2 * TIMEOUT_MS));
});

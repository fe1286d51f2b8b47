// Shared pieces of the CLI: argument parsing with named errors, unit parsing,
// and a progress bar that draws only on a terminal.

import { readFile, stat } from "node:fs/promises";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { checkPageSize } from "../errors.js";

export interface Command {
  readonly summary: string;
  readonly usage: string;
  run(args: string[]): Promise<number>;
}

/** A command line that cannot be understood; printed with the command's usage. */
export class UsageError extends Error {
  override name = "UsageError";
}

export type OptionValue = string | boolean | (string | boolean)[] | undefined;

export interface ParsedArgs {
  values: Record<string, OptionValue>;
  positionals: string[];
}

/**
 * parseArgs that reports unknown or malformed options as a UsageError. A
 * value that starts with '-' ("--rate -1") is taken as the option's value,
 * so the option's own check names what is wrong with it.
 */
export function parse(args: string[], options: NonNullable<ParseArgsConfig["options"]>): ParsedArgs {
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = /^--([^=]+)$/.exec(args[i]!)?.[1];
    const next = args[i + 1];
    if (name && options[name]?.type === "string" && next !== undefined && /^-[\d.]/.test(next)) {
      joined.push(`--${name}=${next}`);
      i++;
    } else joined.push(args[i]!);
  }
  try {
    return parseArgs({ args: joined, options, allowPositionals: true, strict: true }) as ParsedArgs;
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

/** The one positional argument a command takes (`name` as its usage shows it, e.g. "TRACE"). */
export function onePositional(positionals: readonly string[], name: string): string {
  if (positionals.length !== 1) throw new UsageError(positionals.length ? `expected one ${name}` : `missing ${name}`);
  return positionals[0]!;
}

/** Refuses positional arguments where a command takes only options. */
export function noPositionals(positionals: readonly string[]): void {
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
}

/** A path option (`flag` as usage shows it, e.g. "-o OUT.pmf"): given and not empty. */
export function pathOption(flag: string, text: OptionValue, fallback?: string, what = "a file"): string {
  if (text === undefined && fallback !== undefined) return fallback;
  if (typeof text !== "string") throw new UsageError(`missing ${flag}`);
  if (text.trim() === "") throw new UsageError(`${flag.split(" ")[0]} must name ${what}, got '${text}'`);
  return text;
}

/** Parses an integer option, naming it when it is not one in range. */
export function intOption(name: string, text: OptionValue, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback;
  if (typeof text !== "string") throw new UsageError(`--${name} takes a value`);
  // Decimal digits only: Number() would read '' and ' ' as 0 and '0x10' as 16.
  const value = /^-?\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got '${text}'`);
  }
  return value;
}

const SIZE_UNITS: Record<string, number> = { "": 1, b: 1, k: 1024, kib: 1024, m: 2 ** 20, mib: 2 ** 20, g: 2 ** 30, gib: 2 ** 30 };

/** Parses a byte size such as 4096, 4k, 64MiB. */
export function sizeOption(name: string, text: OptionValue, fallback: number): number {
  if (text === undefined) return fallback;
  if (typeof text !== "string") throw new UsageError(`--${name} takes a value`);
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  const bytes = m && unit !== undefined ? Math.round(Number(m[1]) * unit) : NaN;
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`--${name} must be a size like 4096, 4k or 64MiB, got '${text}'`);
  return bytes;
}

/** Parses --page-size (default 4 KiB) and checks it is a power of two from 512 to 65536. */
export function pageSizeOption(text: OptionValue): number {
  const pageSize = sizeOption("page-size", text, 4096);
  try {
    checkPageSize(pageSize, "--page-size");
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return pageSize;
}

const RATE_UNITS: Record<string, number> = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9, bps: 1, kbps: 1e3, mbps: 1e6, gbps: 1e9 };

/** Parses a link rate such as 40mbit, 1gbit, 10Gbps (bits per second). */
export function rateOption(name: string, text: OptionValue, fallback: number): number {
  if (text === undefined) return fallback;
  if (typeof text !== "string") throw new UsageError(`--${name} takes a value`);
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]+)$/i.exec(text.trim());
  const unit = m ? RATE_UNITS[m[2]!.toLowerCase()] : undefined;
  const rate = m && unit !== undefined ? Number(m[1]) * unit : NaN;
  if (!(Number.isFinite(rate) && rate > 0)) throw new UsageError(`--${name} must be a rate above 0 like 40mbit or 1gbit, got '${text}'`);
  return rate;
}

const TIME_UNITS: Record<string, number> = { us: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };

/** Parses a duration such as 300ms, 5s, 200us (seconds). */
export function durationOption(name: string, text: OptionValue, fallback: number): number {
  if (text === undefined) return fallback;
  if (typeof text !== "string") throw new UsageError(`--${name} takes a value`);
  const m = /^(\d+(?:\.\d+)?)\s*(us|ms|s|m|h)$/i.exec(text.trim());
  const seconds = m ? Number(m[1]) * TIME_UNITS[m[2]!.toLowerCase()]! : NaN;
  if (!Number.isFinite(seconds)) throw new UsageError(`--${name} must be a duration like 300ms or 5s, got '${text}'`);
  return seconds;
}

/** durationOption() for a time that cannot be 0 (a timeout, a window, a step). */
export function positiveDurationOption(name: string, text: OptionValue, fallback: number): number {
  const seconds = durationOption(name, text, fallback);
  if (!(seconds > 0)) throw new UsageError(`--${name} must be a duration above 0 like 300ms or 5s, got '${text}'`);
  return seconds;
}

/** A one-line progress bar on stderr, drawn only when stderr is a terminal. */
export class Progress {
  private readonly enabled: boolean;
  private last = 0;
  constructor(
    private readonly label: string,
    private readonly total: number,
  ) {
    this.enabled = Boolean(process.stderr.isTTY) && total > 0;
  }
  update(done: number, extra = ""): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.last < 100 && done < this.total) return;
    this.last = now;
    const width = 30;
    const filled = Math.round((width * Math.min(done, this.total)) / this.total);
    const pct = ((100 * done) / this.total).toFixed(0).padStart(3);
    process.stderr.write(`\r${this.label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${pct}% ${extra}\x1b[K`);
  }
  done(): void {
    if (this.enabled) process.stderr.write("\r\x1b[K");
  }
}

/** A progress bar over the bytes of the file at `path` (none when it cannot be read: the command reports that). */
export async function fileProgress(label: string, path: string): Promise<Progress> {
  const total = await stat(path).then((s) => s.size, () => 0);
  return new Progress(label, total);
}

/** Formats bytes as KiB/MiB/GiB with one decimal. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

/** HOST:PORT (an IPv6 host in brackets: [::1]:7000), naming the option when it is not one. */
export function addressOption(flag: string, text: OptionValue): { host: string; port: number } {
  if (typeof text !== "string") throw new UsageError(`missing ${flag} HOST:PORT`);
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || !(port >= 0 && port <= 65535)) throw new UsageError(`${flag} must be HOST:PORT like 127.0.0.1:7000, got '${text}'`);
  return { host: match[1] ?? match[2]!, port };
}

/** The bytes of a key file (at least 16 of them), or undefined when the option is absent. */
export async function keyFileOption(text: OptionValue): Promise<Uint8Array | undefined> {
  if (text === undefined) return undefined;
  const path = pathOption("--key-file FILE", text);
  let key: Uint8Array;
  try {
    key = await readFile(path);
  } catch (err) {
    throw new UsageError(`--key-file: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (key.byteLength < 16) throw new UsageError(`--key-file: ${path} holds ${key.byteLength} bytes; a key needs at least 16 (e.g. head -c 32 /dev/urandom > ${path})`);
  return key;
}

// Running pagemill's commands in this process, as tests read them: a
// command's run() with its printed lines, `pagemill migrate`, or main()
// with its exit code, stdout and stderr.

import { expect, vi } from "vitest";
import { main } from "../../src/cli/main.js";
import { run } from "../../src/cli/migrate.js";

/** Runs a command's `run(ARGS)`, expecting exit code `code`, and returns what it printed. */
export async function commandOutput(command: (args: string[]) => Promise<number>, args: string[], code = 0): Promise<string> {
  const lines: string[] = [];
  const log = vi.spyOn(console, "log").mockImplementation((...parts: unknown[]) => void lines.push(parts.join(" ")));
  try {
    expect(await command(args)).toBe(code);
  } finally {
    log.mockRestore();
  }
  return lines.join("\n");
}

/** Runs `pagemill migrate ARGS`, returning what it printed. */
export function migrateCli(args: string[]): Promise<string> {
  return commandOutput(run, args);
}

/**
 * Runs `pagemill ARGS` as bin.js does (main: errors printed, an exit code
 * returned); returns the code, stdout (console.log's lines and direct
 * writes, in order) and console.error's lines. Direct writes to stderr (a
 * progress bar's) are dropped.
 */
export async function pagemill(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, "log").mockImplementation((...parts: unknown[]) => void out.push(`${parts.join(" ")}\n`));
  const error = vi.spyOn(console, "error").mockImplementation((...parts: unknown[]) => void err.push(parts.join(" ")));
  const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
    out.push(String(chunk));
    return true;
  });
  const progress = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  try {
    const code = await main(args);
    return { code, out: out.join(""), err: err.join("\n") };
  } finally {
    log.mockRestore();
    error.mockRestore();
    write.mockRestore();
    progress.mockRestore();
  }
}

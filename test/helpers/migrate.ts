import { expect, vi } from "vitest";
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

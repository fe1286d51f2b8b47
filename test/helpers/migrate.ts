import { expect, vi } from "vitest";
import { run } from "../../src/cli/migrate.js";

/** Runs `pagemill migrate ARGS`, returning what it printed. */
export async function migrateCli(args: string[]): Promise<string> {
  const lines: string[] = [];
  const log = vi.spyOn(console, "log").mockImplementation((...parts: unknown[]) => void lines.push(parts.join(" ")));
  try {
    expect(await run(args)).toBe(0);
  } finally {
    log.mockRestore();
  }
  return lines.join("\n");
}

// External reference tools (the `lz4` command, `xxhsum`, `md5sum`, `chromium`). A test
// that compares against one runs when the tool is on PATH; on a machine
// without it the test is skipped with a notice naming the Debian package to
// install, so `npm ci && npm test` passes on a fresh machine. Under
// PAGEMILL_REQUIRE_TOOLS=1 (set by .ci/run, which installs them) nothing is
// skipped: a missing tool fails the test that needs it.

import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

const PACKAGES = { lz4: "lz4", xxhsum: "xxhash", md5sum: "coreutils", chromium: "chromium" } as const;
export type Tool = keyof typeof PACKAGES;

export const TOOLS_REQUIRED = process.env.PAGEMILL_REQUIRE_TOOLS === "1";

const found = new Map<Tool, boolean>();

/** Where `tool` is on PATH, or undefined. */
export function toolPath(tool: Tool): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    try {
      accessSync(join(dir, tool), constants.X_OK);
      return join(dir, tool);
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/**
 * True when tests needing `tools` should be skipped here: one is missing and
 * tools are not required. Prints the notice once per tool.
 */
export function withoutTools(...tools: Tool[]): boolean {
  let skip = false;
  for (const tool of tools) {
    if (!found.has(tool)) {
      found.set(tool, toolPath(tool) !== undefined);
      if (!found.get(tool) && !TOOLS_REQUIRED) {
        console.warn(`notice: '${tool}' is not on PATH: skipping the tests that compare with it (install the Debian package '${PACKAGES[tool]}')`);
      }
    }
    if (!found.get(tool) && !TOOLS_REQUIRED) skip = true;
  }
  return skip;
}

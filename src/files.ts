// Output files that are whole or absent. A command writes into a temporary
// file beside its target and renames it over the target only once the
// output is complete and checked, so an error (a truncated input, a full
// disk, a failed check) leaves the target as it was: absent, or with its
// old content. Outputs are also compared with inputs by device and inode
// (through links and other names) before anything is opened for writing.

import { randomBytes } from "node:crypto";
import { readFileSync, rmSync, type Stats } from "node:fs";
import { open, realpath, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { PagemillError } from "./errors.js";

/**
 * Runs `write(temporary)` on a fresh temporary path in the directory of the
 * file `target` names (through symlinks: a link stays a link); when it
 * resolves, the temporary file is flushed to disk and becomes that file (one
 * rename), with the old file's permissions. When it throws, the temporary
 * file is removed, `target` is untouched and the error is passed on. A target
 * that exists and is not a regular file (a directory, /dev/null, a FIFO) is
 * refused before `write` runs: a rename would replace the device itself.
 */
export async function writeAtomically<T>(target: string, write: (temporary: string) => Promise<T>): Promise<T> {
  const { path, existing } = await checkOutput(target);
  // Beside the target, and no longer than a name the target's directory takes.
  const temporary = join(dirname(path), `.${basename(path).slice(0, 200)}.${randomBytes(6).toString("hex")}.partial`);
  unfinished.add(temporary);
  if (unfinished.size === 1) for (const signal of SIGNALS) process.once(signal, removeUnfinished);
  try {
    const result = await write(temporary);
    const handle = await open(temporary, "r+");
    try {
      if (existing) await handle.chmod(existing.mode & 0o7777);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
    return result;
  } catch (err) {
    await rm(temporary, { force: true }).catch(() => undefined); // the error that matters is err
    // An error about the temporary file is one about the output to whoever reads it.
    if (err instanceof Error && err.message.includes(temporary)) {
      const code = (err as NodeJS.ErrnoException).code ?? "";
      throw new PagemillError(`cannot write ${target}: ${WRITE_ERRORS[code] ?? err.message.replaceAll(temporary, target)}`);
    }
    throw err;
  } finally {
    unfinished.delete(temporary);
    if (unfinished.size === 0) for (const signal of SIGNALS) process.removeListener(signal, removeUnfinished);
  }
}

/**
 * The file `target` names (through symlinks) and what is there now; refuses
 * one that exists and is not a regular file. Commands that run long call it
 * before starting, writeAtomically again when writing.
 */
export async function checkOutput(target: string): Promise<{ path: string; existing: Stats | undefined }> {
  const path = await realpath(target).catch(() => target);
  const existing = await stat(path).catch(() => undefined);
  if (existing && !existing.isFile()) {
    const kind = existing.isDirectory() ? "a directory" : existing.isCharacterDevice() || existing.isBlockDevice() ? "a device" : "not a regular file";
    throw new PagemillError(`output ${target} is ${kind}: pagemill writes whole regular files only`);
  }
  return { path, existing };
}

// Interrupted (Ctrl-C, kill): the temporaries go too, then the signal does
// what it would have done (the handlers are gone by then).
const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
const unfinished = new Set<string>();

function removeUnfinished(signal: NodeJS.Signals): void {
  for (const path of unfinished) rmSync(path, { force: true });
  for (const other of SIGNALS) process.removeListener(other, removeUnfinished);
  process.kill(process.pid, signal);
}

const WRITE_ERRORS: Record<string, string> = {
  ENOENT: "no such directory",
  ENOTDIR: "a part of the path is not a directory",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EROFS: "read-only file system",
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
  ENAMETOOLONG: "name too long",
};

/**
 * Throws when `output` is the same file as one of `inputs` (same device and
 * inode, whatever the names), which writing would destroy. A missing output
 * is always distinct.
 */
export async function checkDistinct(output: string, inputs: readonly string[]): Promise<void> {
  const target = await stat(output).catch(() => undefined);
  if (!target) return;
  for (const input of inputs) {
    const source = await stat(input).catch(() => undefined);
    if (source && source.dev === target.dev && source.ino === target.ino) {
      throw new PagemillError(`output ${output} is the input ${input} (the same file): refusing to overwrite an input`);
    }
  }
}

/** Reads and parses the JSON file `path` (a `what`, e.g. "cost file"); one that cannot be read or is not JSON throws `Failure` saying which. */
export function readJsonFile(path: string, what: string, Failure: new (message: string, options?: { cause?: unknown }) => PagemillError): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (cause) {
    throw new Failure(`cannot read ${what} ${path}`, { cause });
  }
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new Failure(`${path}: not JSON (${(cause as Error).message})`, { cause });
  }
}

// Output files that are whole or absent. A command writes into a temporary
// file beside its target and renames it over the target only once the
// output is complete and checked, so an error (a truncated input, a full
// disk, a failed check) leaves the target as it was: absent, or with its
// old content. Outputs are also compared with inputs by device and inode
// (through links and other names) before anything is opened for writing.

import { randomBytes } from "node:crypto";
import { rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { PagemillError } from "./errors.js";

/**
 * Runs `write(temporary)` on a fresh temporary path in `target`'s directory;
 * when it resolves, the temporary file becomes `target` (one rename). When it
 * throws, the temporary file is removed, `target` is untouched and the error
 * is passed on.
 */
export async function writeAtomically<T>(target: string, write: (temporary: string) => Promise<T>): Promise<T> {
  const temporary = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString("hex")}.partial`);
  try {
    const result = await write(temporary);
    await rename(temporary, target);
    return result;
  } catch (err) {
    await rm(temporary, { force: true });
    throw err;
  }
}

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

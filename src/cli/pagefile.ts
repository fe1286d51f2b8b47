// Reading a memory dump or disk image page by page, in large chunks, plain or
// gzip-compressed (detected by its magic), for the CLI commands.

import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { createGunzip } from "node:zlib";
import { PagemillError } from "../errors.js";

export interface PageChunk {
  /** whole pages, back to back (a short last page is zero-padded) */
  readonly pages: Uint8Array;
  /** index of the chunk's first page in the file */
  readonly first: number;
  readonly count: number;
}

export interface PageFile {
  readonly path: string;
  readonly gzip: boolean;
  /** bytes on disk (compressed size for gzip) */
  readonly fileBytes: number;
  /** bytes of the last page that were missing and read as zero (0 when the size is whole pages) */
  padding: number;
  /** bytes read so far from disk, for progress */
  readonly readBytes: () => number;
  chunks(): AsyncGenerator<PageChunk>;
}

/** Opens `path` for page reading; a missing or unreadable file is a PagemillError naming it. */
export async function openPageFile(path: string, pageSize: number, pagesPerChunk = 1024): Promise<PageFile> {
  let size: number;
  let gzip = false;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new PagemillError(`${path} is not a regular file`);
    size = info.size;
    const handle = await open(path, "r");
    const magic = Buffer.alloc(2);
    await handle.read(magic, 0, 2, 0);
    await handle.close();
    gzip = magic[0] === 0x1f && magic[1] === 0x8b;
  } catch (err) {
    if (err instanceof PagemillError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : String(err);
    throw new PagemillError(`cannot read ${path}: ${why}`);
  }
  const chunkBytes = pageSize * pagesPerChunk;
  const raw = createReadStream(path, { highWaterMark: Math.min(chunkBytes, 8 << 20) });
  const file: PageFile = {
    path,
    gzip,
    fileBytes: size,
    padding: 0,
    readBytes: () => raw.bytesRead,
    async *chunks() {
      const source = gzip ? raw.pipe(createGunzip()) : raw;
      let buffer = new Uint8Array(chunkBytes);
      let have = 0;
      let first = 0;
      try {
        for await (const piece of source as AsyncIterable<Buffer>) {
          let at = 0;
          while (at < piece.length) {
            const take = Math.min(piece.length - at, chunkBytes - have);
            buffer.set(piece.subarray(at, at + take), have);
            have += take;
            at += take;
            if (have === chunkBytes) {
              yield { pages: buffer, first, count: pagesPerChunk };
              first += pagesPerChunk;
              buffer = new Uint8Array(chunkBytes);
              have = 0;
            }
          }
        }
      } catch (err) {
        throw new PagemillError(`cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (have > 0) {
        const count = Math.ceil(have / pageSize);
        file.padding = count * pageSize - have;
        yield { pages: buffer.subarray(0, count * pageSize), first, count };
      }
    },
  };
  return file;
}

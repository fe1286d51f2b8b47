// Test access to ../shared/traces without depending on pagemill's own trace
// reader (so the reader itself can be checked against this).

import { createReadStream, existsSync } from "node:fs";
import { createGunzip } from "node:zlib";
import { fileURLToPath } from "node:url";

export const SHARED = fileURLToPath(new URL("../../../shared/", import.meta.url));
export const TRACE_NAMES = ["redis", "node-gc", "memstream"] as const;
export type TraceName = (typeof TRACE_NAMES)[number];

export function tracePath(name: TraceName): string {
  return `${SHARED}traces/${name}.ptrace.gz`;
}

export function sharedAvailable(): boolean {
  return existsSync(`${SHARED}traces`);
}

/** Decompressed bytes [0, length) of a gzip file, stopping the stream early. */
export async function gunzipPrefix(path: string, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let have = 0;
  const stream = createReadStream(path).pipe(createGunzip());
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    const take = Math.min(chunk.length, length - have);
    out.set(chunk.subarray(0, take), have);
    have += take;
    if (have === length) break;
  }
  stream.destroy();
  return out.subarray(0, have);
}

/** The first `maxPages` pages of a shared trace's image (time-0 memory). */
export async function sharedTraceImagePages(
  name: TraceName,
  maxPages: number,
): Promise<{ pageSize: number; count: number; pages: Uint8Array }> {
  const head = await gunzipPrefix(tracePath(name), 28);
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const pageSize = dv.getUint32(8, true);
  const pageCount = dv.getUint32(12, true);
  const metaLength = dv.getUint32(24, true);
  const count = Math.min(maxPages, pageCount);
  const start = 28 + metaLength;
  const all = await gunzipPrefix(tracePath(name), start + count * pageSize);
  return { pageSize, count, pages: all.slice(start, start + count * pageSize) };
}

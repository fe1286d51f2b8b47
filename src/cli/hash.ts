// pagemill hash FILE: one digest per page of a memory dump or disk image
// (plain or gzip), and with --whole the digest of the whole file as md5sum
// and xxhsum print it (over the decompressed bytes for gzip).

import { hex32, hex64, toHex } from "../hash/digest.js";
import { MD5_BYTES, Md5, md5Batch } from "../hash/md5.js";
import { Xxh32Hasher, Xxh3Hasher, Xxh64Hasher, xxh32Batch, xxh3Batch, xxh64Batch } from "../hash/xxhash.js";
import { PageBatch } from "../wasm/arena.js";
import { UsageError, fileProgress, onePositional, pageSizeOption, parse } from "./args.js";
import { openPageFile } from "./pagefile.js";

export const summary =
  "Prints the digest (MD5, XXH32, XXH64 or XXH3-64) of every page of a memory dump or disk image (plain or gzip), and with --whole of the whole file.";
export const usage = "usage: pagemill hash FILE --algo md5|xxh32|xxh64|xxh3 [--page-size N] [--json] [--whole]";

export type HashAlgo = "md5" | "xxh32" | "xxh64" | "xxh3";

interface WholeHasher {
  update(bytes: Uint8Array): unknown;
  digest(): string;
}

interface Algorithm {
  /** Hex digest of every loaded page of the batch. */
  pages(batch: PageBatch): string[];
  whole(): WholeHasher;
}

function streaming<D>(hasher: { update(b: Uint8Array): unknown; digest(): D; dispose(): void }, hex: (d: D) => string): WholeHasher {
  return {
    update: (bytes) => hasher.update(bytes),
    digest: () => {
      const d = hex(hasher.digest());
      hasher.dispose();
      return d;
    },
  };
}

const ALGORITHMS: Record<HashAlgo, Algorithm> = {
  md5: {
    pages: (batch) => {
      const digests = md5Batch(batch);
      return Array.from({ length: batch.count }, (_, k) => toHex(digests.subarray(k * MD5_BYTES, (k + 1) * MD5_BYTES)));
    },
    whole: () => {
      const hasher = new Md5();
      return { update: (bytes) => hasher.update(bytes), digest: () => toHex(hasher.digest()) };
    },
  },
  xxh32: { pages: (batch) => Array.from(xxh32Batch(batch), hex32), whole: () => streaming(new Xxh32Hasher(), hex32) },
  xxh64: { pages: (batch) => Array.from(xxh64Batch(batch), hex64), whole: () => streaming(new Xxh64Hasher(), hex64) },
  xxh3: { pages: (batch) => Array.from(xxh3Batch(batch), hex64), whole: () => streaming(new Xxh3Hasher(), hex64) },
};

export interface HashSummary {
  file: string;
  algo: HashAlgo;
  pageSize: number;
  pages: number;
  /** bytes of the file (decompressed for gzip) */
  bytes: number;
  /** zero bytes added to complete a short last page before hashing it */
  paddedBytes: number;
  /** digest of the file's bytes (no padding), with --whole */
  whole?: string;
}

/**
 * Hashes every page of `path` (and the whole content when `whole`), calling
 * `onPages` with each chunk's first page index and digests as they come.
 */
export async function hashFile(
  path: string,
  algo: HashAlgo,
  pageSize: number,
  options: { whole?: boolean; onPages?: (first: number, digests: string[]) => void; onProgress?: (readBytes: number) => void } = {},
): Promise<HashSummary> {
  const algorithm = ALGORITHMS[algo];
  const file = await openPageFile(path, pageSize);
  const batch = new PageBatch(1024, pageSize);
  const whole = options.whole ? algorithm.whole() : undefined;
  let pages = 0;
  try {
    for await (const chunk of file.chunks()) {
      const digests = algorithm.pages(batch.set(chunk.pages));
      // The last chunk's padding is known by the time it arrives.
      whole?.update(chunk.pages.subarray(0, chunk.pages.length - file.padding));
      options.onPages?.(chunk.first, digests);
      pages += chunk.count;
      options.onProgress?.(file.readBytes());
    }
  } finally {
    batch.dispose();
  }
  return {
    file: path,
    algo,
    pageSize,
    pages,
    bytes: pages * pageSize - file.padding,
    paddedBytes: file.padding,
    ...(whole ? { whole: whole.digest() } : {}),
  };
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    algo: { type: "string" },
    "page-size": { type: "string" },
    json: { type: "boolean" },
    whole: { type: "boolean" },
  });
  const path = onePositional(positionals, "FILE");
  const algo = values.algo;
  if (algo === undefined) throw new UsageError("missing --algo (md5, xxh32, xxh64 or xxh3)");
  if (typeof algo !== "string" || !Object.hasOwn(ALGORITHMS, algo)) {
    throw new UsageError(`--algo must be md5, xxh32, xxh64 or xxh3, got '${String(algo)}'`);
  }
  const pageSize = pageSizeOption(values["page-size"]);
  const progress = await fileProgress("hash", path);
  const json = Boolean(values.json);
  const digests: string[] = [];
  const report = await hashFile(path, algo as HashAlgo, pageSize, {
    whole: Boolean(values.whole),
    onProgress: (n) => progress.update(n),
    onPages: (first, chunk) => {
      if (json) {
        for (const d of chunk) digests.push(d);
        return;
      }
      process.stdout.write(chunk.map((d, k) => `${first + k} ${d}\n`).join(""));
    },
  });
  progress.done();
  if (json) {
    // digests[k]: page k, canonical lowercase hex
    console.log(JSON.stringify({ ...report, digests }, null, 2));
    return 0;
  }
  // The whole-file line has md5sum's and xxhsum's "DIGEST  FILE" form.
  if (report.whole !== undefined) console.log(`${report.whole}  ${path}`);
  return 0;
}

// Helpers shared by the MD5 tests: node:crypto as the reference, and
// pagemill's batch digests as hex strings.

import { createHash } from "node:crypto";
import { MD5_BYTES, PageBatch, md5Batch, toHex } from "../../src/index.js";

export function nodeMd5(data: Uint8Array): string {
  return createHash("md5").update(data).digest("hex");
}

/** Hex digests of a batch result, one per page. */
export function splitHex(digests: Uint8Array, count: number): string[] {
  return Array.from({ length: count }, (_, k) => toHex(digests.subarray(k * MD5_BYTES, (k + 1) * MD5_BYTES)));
}

/** md5Batch over the first `count` pages of `pageSize` bytes of `pages`, as hex. */
export function md5BatchHex(pages: Uint8Array, pageSize: number, count: number): string[] {
  const batch = new PageBatch(Math.max(1, count), pageSize);
  try {
    batch.set(pages.subarray(0, count * pageSize));
    return splitHex(md5Batch(batch), count);
  } finally {
    batch.dispose();
  }
}

// Small helpers shared by every digest family (MD5, xxHash): turning digests
// into the lowercase hex the reference tools print.

import { checkBytes, checkInteger } from "../errors.js";

const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

/** Lowercase hex of `bytes`, in byte order (MD5 digests as md5sum prints them). */
export function toHex(bytes: Uint8Array): string {
  checkBytes("bytes", bytes);
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += HEX[bytes[i]!]!;
  return out;
}

/** A 32-bit digest as canonical big-endian hex, 8 digits (xxhsum's XXH32 form). */
export function hex32(value: number): string {
  // Signed or unsigned: kernels hand back 32-bit digests either way.
  checkInteger("value", value, -(2 ** 31), 2 ** 32 - 1);
  return (value >>> 0).toString(16).padStart(8, "0");
}

/** A 64-bit digest as canonical big-endian hex, 16 digits (xxhsum's XXH64/XXH3 form). */
export function hex64(value: bigint): string {
  if (typeof value !== "bigint") throw new TypeError(`value must be a bigint, got ${typeof value}`);
  return BigInt.asUintN(64, value).toString(16).padStart(16, "0");
}

// The parts of lz4js (plain JavaScript, no types of its own) the LZ4 tests use.
declare module "lz4js" {
  /** Worst-case block size for n input bytes. */
  export function compressBound(n: number): number;
  /** Compresses src[sIndex, sIndex + sLength) into dst as one block; 0 when it finds no match. */
  export function compressBlock(src: Uint8Array, dst: Uint8Array, sIndex: number, sLength: number, hashTable: Uint32Array): number;
}

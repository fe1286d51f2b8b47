// Zero-page detection over a batch of pages.
//
// Layout: `count` pages of `pageSize` bytes back to back at `pagesPtr`
// (pageSize a power of two, 512..65536, so a multiple of 128). One flag byte
// per page is written at `flagsPtr`: 1 zero, 0 not. Returns the zero count.
//
// Like QEMU's util/bufferiszero.c, the first and last words are sampled
// before the scan (a non-zero page usually shows at its ends), then the page
// is read 128 bytes at a time, OR-ed into one vector, with an early exit on
// the first non-zero block.

/** True when `len` bytes at `ptr` are all zero; `len` a multiple of 128. */
// @ts-ignore: decorator
@inline
export function bytesAreZero(ptr: usize, len: usize): bool {
  if ((load<u64>(ptr) | load<u64>(ptr + len - 8)) != 0) return false;
  const end = ptr + len;
  while (ptr < end) {
    const a = v128.or(v128.load(ptr), v128.load(ptr, 16));
    const b = v128.or(v128.load(ptr, 32), v128.load(ptr, 48));
    const c = v128.or(v128.load(ptr, 64), v128.load(ptr, 80));
    const d = v128.or(v128.load(ptr, 96), v128.load(ptr, 112));
    if (v128.any_true(v128.or(v128.or(a, b), v128.or(c, d)))) return false;
    ptr += 128;
  }
  return true;
}

export function zeroScan(pagesPtr: usize, pageSize: u32, count: u32, flagsPtr: usize): u32 {
  let zeros: u32 = 0;
  for (let i: u32 = 0; i < count; i++) {
    const zero = bytesAreZero(pagesPtr + <usize>i * pageSize, pageSize);
    store<u8>(flagsPtr + i, <u8>zero);
    zeros += <u32>zero;
  }
  return zeros;
}

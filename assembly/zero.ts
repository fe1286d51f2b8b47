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

/**
 * The body of a PAGES frame of the raw codec (docs/wire-format.md) for the
 * `count` pages at `pagesPtr`: written at `bodyPtr`, the entry table (entry
 * k: the u32 at indicesPtr + 4k, then wire id 1 zero with no payload, or 0
 * raw with `pageSize` bytes, as u8 + u24 length), then the payloads of the
 * non-zero pages in slot order. Each page's wire id also goes to
 * `encodingsPtr` (u8) and its payload length to `lengthsPtr` (u32). Returns
 * the number of non-zero pages. One call per frame: the same loop in
 * JavaScript was hot enough for V8 to compile the frame writer, for 50 ms or
 * more per process.
 */
export function rawFrameBody(pagesPtr: usize, pageSize: u32, count: u32, indicesPtr: usize, bodyPtr: usize, encodingsPtr: usize, lengthsPtr: usize): u32 {
  let payload = bodyPtr + <usize>count * 8;
  let raw: u32 = 0;
  for (let k: u32 = 0; k < count; k++) {
    const page = pagesPtr + <usize>k * pageSize;
    const entry = bodyPtr + <usize>k * 8;
    store<u32>(entry, load<u32>(indicesPtr + <usize>k * 4));
    if (bytesAreZero(page, pageSize)) {
      store<u32>(entry, 1, 4);
      store<u8>(encodingsPtr + k, 1);
      store<u32>(lengthsPtr + <usize>k * 4, 0);
    } else {
      store<u32>(entry, pageSize << 8, 4);
      store<u8>(encodingsPtr + k, 0);
      store<u32>(lengthsPtr + <usize>k * 4, pageSize);
      memory.copy(payload, page, pageSize);
      payload += pageSize;
      raw++;
    }
  }
  return raw;
}

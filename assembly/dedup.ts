// Byte comparison for the dedup index: a candidate found by its fast digest
// is only used after its bytes are confirmed equal to the page's.

/** 1 when the `len` bytes at `a` and `b` are equal, else 0. Any `len`. */
export function pagesEqual(a: usize, b: usize, len: usize): u32 {
  const vectorEnd = a + (len & ~(<usize>63));
  while (a < vectorEnd) {
    const d0 = v128.xor(v128.load(a), v128.load(b));
    const d1 = v128.xor(v128.load(a, 16), v128.load(b, 16));
    const d2 = v128.xor(v128.load(a, 32), v128.load(b, 32));
    const d3 = v128.xor(v128.load(a, 48), v128.load(b, 48));
    if (v128.any_true(v128.or(v128.or(d0, d1), v128.or(d2, d3)))) return 0;
    a += 64;
    b += 64;
  }
  const end = a + (len & 63);
  while (a < end) {
    if (load<u8>(a) != load<u8>(b)) return 0;
    a++;
    b++;
  }
  return 1;
}

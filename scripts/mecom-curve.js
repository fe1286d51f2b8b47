// Measures, on the shared traces' images, how WKdm and LZ4 sizes relate to
// the sampled WKdm dictionary hit rate: the data behind MECOM's threshold.
// Usage: node scripts/mecom-curve.js [maxPages]
import { init, PageBatch, scanZeroPages, wkdmCompress, lz4CompressBlock, wkdmHitRates } from "../dist/index.js";
import { tracePages, TRACES } from "../bench/lib.js";

await init();
const maxPages = Number(process.argv[2] ?? 8192);
const out = new Uint8Array(8192);
for (const name of TRACES) {
  const trace = await tracePages(name, maxPages);
  if (!trace) continue;
  const { pages, count } = trace;
  const batch = new PageBatch(count, 4096).set(pages);
  const zero = scanZeroPages(batch).flags;
  const rates = wkdmHitRates(batch, 4);
  const rows = [];
  for (let k = 0; k < count; k++) {
    if (zero[k]) continue;
    const page = pages.subarray(k * 4096, (k + 1) * 4096);
    const w = wkdmCompress(page, out.subarray(0, 4096));
    const l = lz4CompressBlock(page, out);
    rows.push({ rate: rates[k], wkdm: w < 0 ? 4096 : w === 0 ? 4 : w, lz4: Math.min(l || 4096, 4096) });
  }
  batch.dispose();
  console.log(`\n${name}: ${count} pages, ${count - rows.length} zero, ${rows.length} non-zero`);
  console.log("  threshold  pages>=t  wkdm-bytes(>=t)  lz4-bytes(>=t)  mixed-total  lz4-total  wkdm-total");
  const lz4Total = rows.reduce((a, r) => a + r.lz4, 0);
  const wkdmTotal = rows.reduce((a, r) => a + r.wkdm, 0);
  for (let t = 0; t <= 1.0001; t += 0.05) {
    const hi = rows.filter((r) => r.rate >= t);
    const wk = hi.reduce((a, r) => a + r.wkdm, 0);
    const lz = hi.reduce((a, r) => a + r.lz4, 0);
    const mixed = lz4Total - lz + wk;
    console.log(`  ${t.toFixed(2).padStart(9)}  ${String(hi.length).padStart(8)}  ${String(wk).padStart(15)}  ${String(lz).padStart(14)}  ${String(mixed).padStart(11)}  ${String(lz4Total).padStart(9)}  ${String(wkdmTotal).padStart(10)}`);
  }
}

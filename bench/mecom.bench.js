// MECOM against LZ4 alone (and WKdm alone) on every trace: the shared ones
// and any recorded into ../traces. Per trace, the non-zero 4 KiB pages among
// the first 64 MiB of its image, encoded as one batch: bytes and MB/s side by
// side in one run. Targets (issue 10): MECOM's bytes <= 1.00x LZ4's and its
// speed >= 0.90x LZ4's, on every trace.
import { init, Lz4Codec, MecomCodec, PageBatch, scanZeroPages, WkdmCodec } from "../dist/index.js";
import { allTraces, check, interleaved, save, tracePages } from "./lib.js";

const IMAGE_PAGES = (64 * 2 ** 20) / 4096;

await init();
const results = {};
const summary = [];
for (const { name, path } of allTraces()) {
  const image = await tracePages(path, IMAGE_PAGES);
  if (!image || image.pageSize !== 4096) continue;
  const all = new PageBatch(image.count, 4096).set(image.pages);
  const zero = scanZeroPages(all).flags;
  const keep = [];
  for (let k = 0; k < image.count; k++) if (!zero[k]) keep.push(k);
  all.dispose();
  const pages = new Uint8Array(keep.length * 4096);
  keep.forEach((k, i) => pages.set(image.pages.subarray(k * 4096, (k + 1) * 4096), i * 4096));
  const batch = new PageBatch(keep.length, 4096).set(pages);
  const make = () => ({ "lz4 alone": new Lz4Codec(), mecom: new MecomCodec(), "wkdm alone": new WkdmCodec() });
  // Bytes from fresh codecs (MECOM learns as it goes: this is a stream's first pass).
  const bytes = {};
  for (const [label, codec] of Object.entries(make())) {
    const encoded = codec.encodeBatch(batch);
    const back = new PageBatch(keep.length, 4096);
    codec.decodeBatch(encoded, back);
    check(Buffer.from(back.bytes()).equals(Buffer.from(pages)), `${name} ${label} round trip`);
    back.dispose();
    bytes[label] = encoded.data.length;
    if (label === "mecom") bytes.classes = { ...codec.stats.byEncoding };
    codec.dispose();
  }
  const codecs = make();
  const rows = interleaved(
    `encode ${name}: ${keep.length} non-zero pages of the first ${image.count} (${(pages.length / 2 ** 20).toFixed(1)} MiB)`,
    Object.entries(codecs).map(([label, codec]) => ({ name: label, fn: () => codec.encodeBatch(batch) })),
    { bytesPerOp: pages.length },
  );
  for (const codec of Object.values(codecs)) codec.dispose();
  batch.dispose();
  for (const label of Object.keys(codecs)) {
    rows[label].bytes = bytes[label];
    console.log(`  ${label.padEnd(12)} ${String(bytes[label]).padStart(10)} bytes  ${((100 * bytes[label]) / pages.length).toFixed(1).padStart(5)}% of raw`);
  }
  console.log(`  mecom classes (pages): ${JSON.stringify(bytes.classes)}`);
  const byteRatio = bytes.mecom / bytes["lz4 alone"];
  const speedRatio = rows.mecom.ratio;
  const met = byteRatio <= 1 && speedRatio >= 0.9;
  console.log(`  mecom / lz4: bytes ${byteRatio.toFixed(3)}x (target <= 1.00), speed ${speedRatio.toFixed(2)}x (target >= 0.90): ${met ? "MET" : "NOT MET"}`);
  summary.push({ trace: name, pages: keep.length, bytes: byteRatio, speed: speedRatio, met });
  results[name] = { ...rows, classes: bytes.classes, nonZeroPages: keep.length, imagePages: image.count };
}
console.log("\nMECOM / LZ4 alone, non-zero pages of the first 64 MiB of each image:");
console.log("  trace                 pages   bytes   speed");
for (const r of summary) console.log(`  ${r.trace.padEnd(18)} ${String(r.pages).padStart(8)}  ${r.bytes.toFixed(3)}x  ${r.speed.toFixed(2)}x  ${r.met ? "met" : "NOT MET"}`);
save("mecom", { ...results, summary });

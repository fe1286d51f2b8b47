// MECOM vs LZ4 alone and WKdm alone on each shared trace's whole image:
// bytes and MB/s. Target: MECOM's bytes <= LZ4-alone's at >= 1.5x its throughput.
import { init, Lz4Codec, MecomCodec, PageBatch, WkdmCodec } from "../dist/index.js";
import { check, save, suite, tracePages, TRACES } from "./lib.js";

await init();
const results = {};
for (const name of TRACES) {
  const trace = await tracePages(name, Infinity);
  if (!trace) continue;
  const batch = new PageBatch(trace.count, 4096).set(trace.pages);
  const codecs = { "lz4 alone": new Lz4Codec(), "wkdm alone": new WkdmCodec(), mecom: new MecomCodec() };
  const bytes = {};
  for (const [label, codec] of Object.entries(codecs)) {
    const encoded = codec.encodeBatch(batch);
    const back = new PageBatch(trace.count, 4096);
    codec.decodeBatch(encoded, back);
    check(Buffer.from(back.bytes()).equals(Buffer.from(trace.pages)), `${name} ${label} round trip`);
    back.dispose();
    bytes[label] = encoded.data.length;
  }
  const classes = { ...codecs.mecom.stats.byEncoding };
  const rows = await suite(
    `encode ${name} image (${trace.count} pages, ${(trace.pages.length / 2 ** 20).toFixed(0)} MiB)`,
    Object.entries(codecs).map(([label, codec]) => ({ name: label, fn: () => codec.encodeBatch(batch) })),
    { bytesPerOp: trace.pages.length, minSamples: 5, maxTime: 2 },
  );
  for (const label of Object.keys(codecs)) {
    rows[label].bytes = bytes[label];
    console.log(`  ${label.padEnd(12)} ${String(bytes[label]).padStart(10)} bytes  ${((100 * bytes[label]) / trace.pages.length).toFixed(1).padStart(5)}% of raw`);
  }
  console.log(`  mecom classes (pages): ${JSON.stringify(classes)}`);
  const smaller = bytes.mecom <= bytes["lz4 alone"];
  const faster = rows.mecom.ratio;
  console.log(`  target: mecom bytes <= lz4 (${smaller ? "MET" : "NOT MET"}), throughput >= 1.5x lz4: ${faster.toFixed(2)}x ${faster >= 1.5 ? "MET" : "NOT MET"}`);
  results[name] = { ...rows, classes };
  batch.dispose();
}
save("mecom", results);

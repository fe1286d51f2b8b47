// The wire pipeline: frames per second on the traces' images, in one thread
// and on 1 vs 2 parallel channels (worker threads); then `pagemill pack`
// against `gzip -1` and the `lz4` command on the same image file.
// Targets: 2 channels ≥ 1.7× one channel; one-channel MECOM pipeline ≥ 500 MB/s.

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  init,
  PageBatch,
  FrameEncoder,
  FrameDecoder,
  ParallelEncoder,
  codecNamesFor,
  createCodec,
} from "../dist/index.js";
import { TRACES, check, save, suite, tracePages } from "./lib.js";

await init();

const PAGES = 8192; // 32 MiB of each image
const BATCH = 256;
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const compressors = codecNamesFor("compress");
const best = compressors.includes("mecom") ? "mecom" : "lz4";
const results = {};

/** Encodes a whole image in one thread, frame by frame; returns the frames. */
function encodeInThread(encoder, batch, image) {
  const { pageSize, count, pages } = image;
  const frames = [];
  for (let first = 0; first < count; first += BATCH) {
    const end = Math.min(count, first + BATCH);
    batch.set(pages.subarray(first * pageSize, end * pageSize));
    frames.push(encoder.pages(batch, Array.from({ length: end - first }, (_, i) => first + i)));
  }
  return frames;
}

/** Encodes a whole image on a pool, the workers reading pages straight from shared memory. */
function encodeShared(pool, shared, image) {
  const pending = [];
  for (let first = 0; first < image.count; first += BATCH) {
    const end = Math.min(image.count, first + BATCH);
    pending.push(pool.encodeFromMemory(shared, Array.from({ length: end - first }, (_, i) => first + i)));
  }
  return Promise.all(pending);
}

/** Encodes a whole image on a pool, batches moved to the workers; resolves when every frame is back. */
function encodeOnPool(pool, image) {
  const { pageSize, count, pages } = image;
  const pending = [];
  for (let first = 0; first < count; first += BATCH) {
    const end = Math.min(count, first + BATCH);
    // A fresh buffer per batch, as a reader hands them out: moved, not copied.
    const chunk = pages.slice(first * pageSize, end * pageSize);
    pending.push(pool.encode(chunk, Array.from({ length: end - first }, (_, i) => first + i), { transfer: true }));
  }
  return Promise.all(pending);
}

function decodesTo(frames, image) {
  const memory = new Uint8Array(image.count * image.pageSize);
  const decoder = new FrameDecoder();
  for (const frame of frames) decoder.decode(frame, memory);
  decoder.dispose();
  return Buffer.compare(memory, image.pages) === 0;
}

for (const name of TRACES) {
  const image = await tracePages(name, PAGES);
  if (!image) {
    console.log(`(no ../shared: skipping ${name})`);
    continue;
  }
  const bytes = image.count * image.pageSize;
  const batch = new PageBatch(BATCH, image.pageSize);

  // One thread, every codec choice.
  const choices = ["raw", ...compressors];
  const encoders = Object.fromEntries(choices.map((c) => [c, new FrameEncoder(c === "raw" ? {} : { compress: createCodec(c) })]));
  const sizes = {};
  for (const c of choices) {
    const frames = encodeInThread(encoders[c], batch, image);
    check(decodesTo(frames, image), `${name} ${c}: frames decode to the image`);
    sizes[c] = frames.reduce((a, f) => a + f.byteLength, 0);
  }
  const single = await suite(
    `pipeline, one thread, ${name} (${PAGES} pages, frames of ${BATCH})`,
    choices.map((c) => ({ name: `encode ${c} (${((100 * sizes[c]) / bytes).toFixed(1)}% of input)`, fn: () => encodeInThread(encoders[c], batch, image) })),
    { bytesPerOp: bytes },
  );
  const framesBest = encodeInThread(new FrameEncoder({ compress: createCodec(best) }), batch, image);
  const decoder = new FrameDecoder();
  const memory = new Uint8Array(bytes);
  const decode = await suite(`decode ${best} frames, one thread, ${name}`, [{ name: `decode ${best}`, fn: () => framesBest.forEach((f) => decoder.decode(f, memory)) }], { bytesPerOp: bytes });

  // Parallel channels: the same work on 1 and 2 worker threads.
  const pools = { 1: new ParallelEncoder({ channels: 1, codec: best }), 2: new ParallelEncoder({ channels: 2, codec: best }) };
  // Guest memory in a SharedArrayBuffer: the workers read the pages, this thread copies nothing.
  const shared = new Uint8Array(new SharedArrayBuffer(bytes));
  shared.set(image.pages);
  for (const n of [1, 2]) {
    check(decodesTo(await encodeOnPool(pools[n], image), image), `${name}: ${n} channels (transfer) decode to the image`);
    check(decodesTo(await encodeShared(pools[n], shared, image), image), `${name}: ${n} channels (shared) decode to the image`);
  }
  const channels = await suite(
    `pipeline ${best}, parallel channels, ${name}`,
    [
      { name: `${best}, 1 channel, shared memory`, fn: () => encodeShared(pools[1], shared, image) },
      { name: `${best}, 2 channels, shared memory`, fn: () => encodeShared(pools[2], shared, image) },
      { name: `${best}, 1 channel, batches transferred`, fn: () => encodeOnPool(pools[1], image) },
      { name: `${best}, 2 channels, batches transferred`, fn: () => encodeOnPool(pools[2], image) },
    ],
    { bytesPerOp: bytes },
  );
  // On a shared machine the wall-clock ratio depends on how much CPU the
  // process gets; the CPU time per image and the cores actually used tell
  // the cost of the parallel path apart from the machine's load.
  // Runs alternate between the two pools so that both see the same load; the
  // best run of each is the one least disturbed by other processes.
  const usage = { 1: { wall: 0, cpu: 0, best: Infinity }, 2: { wall: 0, cpu: 0, best: Infinity } };
  for (let run = 0; run < 8; run++) {
    for (const n of [1, 2]) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await encodeShared(pools[n], shared, image);
      const wall = performance.now() - t0;
      const c = process.cpuUsage(c0);
      usage[n].wall += wall;
      usage[n].cpu += (c.user + c.system) / 1000;
      usage[n].best = Math.min(usage[n].best, wall);
    }
  }
  for (const n of [1, 2]) Object.assign(usage[n], { cpuMsPerImage: usage[n].cpu / 8, coresUsed: usage[n].cpu / usage[n].wall });
  await pools[1].close();
  await pools[2].close();
  const speedup = channels[`${best}, 2 channels, shared memory`].ratio;
  const transferred = channels[`${best}, 2 channels, batches transferred`].medianMs / channels[`${best}, 1 channel, batches transferred`].medianMs;
  console.log(`  2 channels / 1 channel: ${speedup.toFixed(2)}x shared memory, ${(1 / transferred).toFixed(2)}x batches transferred (target ≥ 1.70x)`);
  for (const n of [1, 2]) console.log(`  ${n} channel${n > 1 ? "s" : ""}: best ${usage[n].best.toFixed(1)} ms, ${usage[n].cpuMsPerImage.toFixed(0)} ms CPU per image, ${usage[n].coresUsed.toFixed(2)} cores used on average`);
  console.log(`  best-run ratio, runs alternated: ${(usage[1].best / usage[2].best).toFixed(2)}x`);
  const bestMbps = single[Object.keys(single).find((k) => k.startsWith(`encode ${best} `))].mbps;
  console.log(`  one-thread ${best} pipeline: ${bestMbps.toFixed(0)} MB/s (target ≥ 500 MB/s${best === "mecom" ? "" : " for MECOM; MECOM not registered yet, lz4 shown"})`);
  results[name] = { single, decode, channels, speedup, usage, sizes, inputBytes: bytes };
  batch.dispose();
  decoder.dispose();
  for (const e of Object.values(encoders)) e.codecs.compress?.dispose();
}

// pagemill pack vs gzip -1 vs lz4 (default level) on the redis image, as files.
const image = await tracePages("redis", Infinity);
if (image) {
  const dir = mkdtempSync(join(tmpdir(), "pagemill-bench-"));
  const path = join(dir, "redis.img");
  writeFileSync(path, image.pages);
  const tools = [
    { name: `pagemill pack --codec ${best}`, cmd: "node", args: [join(ROOT, "dist/cli/bin.js"), "pack", path, "-o", join(dir, "out.pmf"), "--codec", best], out: join(dir, "out.pmf") },
    { name: `pagemill pack --codec ${best} --channels 2`, cmd: "node", args: [join(ROOT, "dist/cli/bin.js"), "pack", path, "-o", join(dir, "out2.pmf"), "--codec", best, "--channels", "2"], out: join(dir, "out2.pmf") },
    { name: "gzip -1", cmd: "sh", args: ["-c", `gzip -1 -c ${path} > ${join(dir, "out.gz")}`], out: join(dir, "out.gz") },
    { name: "lz4 (level 1)", cmd: "lz4", args: ["-1", "-f", "-q", path, join(dir, "out.lz4")], out: join(dir, "out.lz4") },
  ];
  const rows = {};
  console.log(`\npack vs command-line compressors, redis image (${(image.pages.byteLength / 2 ** 20).toFixed(1)} MiB), median of 3 runs`);
  for (const tool of tools) {
    const times = [];
    for (let run = 0; run < 3; run++) {
      const started = performance.now();
      const result = spawnSync(tool.cmd, tool.args, { stdio: ["ignore", "ignore", "inherit"] });
      times.push((performance.now() - started) / 1000);
      check(result.status === 0, `${tool.name} exits 0`);
    }
    times.sort((a, b) => a - b);
    const size = statSync(tool.out).size;
    rows[tool.name] = { seconds: times[1], bytes: size, ratio: size / image.pages.byteLength, mbps: image.pages.byteLength / 1e6 / times[1] };
    console.log(`  ${tool.name.padEnd(40)} ${times[1].toFixed(3).padStart(7)} s  ${(size / 2 ** 20).toFixed(1).padStart(7)} MiB (${(100 * rows[tool.name].ratio).toFixed(1)}%)  ${rows[tool.name].mbps.toFixed(0)} MB/s`);
  }
  results.packVsTools = rows;
  rmSync(dir, { recursive: true, force: true });
}

save("frame", results);

// Guests: how fast pagemill reads a pagetrace (MB/s of the .ptrace.gz file,
// and of the decompressed stream), how fast the recorder hashes a process's
// pages, and how much a recorded process slows down.

import { spawn } from "node:child_process";
import { createReadStream, existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { createHash } from "node:crypto";
import { crc32, createGunzip } from "node:zlib";
import { init, PageBatch, TraceReader, applyEpoch, recordProcess, syntheticImage, xxh3, xxh3Batch } from "../dist/index.js";
import { SHARED, check, save, suite } from "./lib.js";

await init();
const results = {};

// --- Reader throughput ------------------------------------------------------

async function readTrace(path) {
  const reader = await TraceReader.open(path);
  let dirty = 0;
  for await (const epoch of reader.epochs()) {
    applyEpoch(reader.image, reader.header.pageSize, epoch);
    dirty += epoch.pages.length;
  }
  return { dirty, bytes: reader.offset };
}

async function gunzipOnly(path) {
  let bytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }).pipe(createGunzip({ chunkSize: 1 << 18 }))) bytes += chunk.length;
  return bytes;
}

for (const name of ["node-gc", "redis"]) {
  const path = `${SHARED}traces/${name}.ptrace.gz`;
  if (!existsSync(path)) continue;
  const fileBytes = statSync(path).size;
  const { dirty, bytes } = await readTrace(path);
  check(dirty === { "node-gc": 32835, redis: 136914 }[name], `${name}: dirty pages read`);
  check(bytes === (await gunzipOnly(path)), `${name}: decompressed length`);
  const rows = await suite(
    `read ${name}.ptrace.gz (${(fileBytes / 1e6).toFixed(1)} MB file, ${(bytes / 1e6).toFixed(0)} MB decompressed); MB/s of the file`,
    [
      { name: "pagemill TraceReader + applyEpoch", fn: async () => void (await readTrace(path)) },
      { name: "node zlib gunzip alone (floor)", fn: async () => void (await gunzipOnly(path)) },
    ],
    { bytesPerOp: fileBytes, minSamples: 3, maxTime: 6 },
  );
  const reader = rows["pagemill TraceReader + applyEpoch"];
  results[`read-${name}`] = { ...rows, decompressedMBps: (reader.mbps * bytes) / fileBytes };
  console.log(`  pagemill reader: ${reader.mbps.toFixed(1)} MB/s of file = ${((reader.mbps * bytes) / fileBytes).toFixed(0)} MB/s decompressed`);
}

// --- Recorder ----------------------------------------------------------------

// What a pass costs per chunk: hashing 8 MiB of pages, with the recorder's
// batch xxh3 against per-page crc32 (what the shared traces' recorder used)
// and per-page MD5.
const chunk = syntheticImage(2048, { profile: "redis", seed: 3 });
const batch = new PageBatch(2048, 4096);
const digests = new BigUint64Array(2048);
xxh3Batch(batch.set(chunk), { out: digests });
for (const p of [0, 5, 2047]) check(digests[p] === xxh3(chunk.subarray(p * 4096, (p + 1) * 4096)), `xxh3Batch digest of page ${p}`);
results.hashChunk = await suite(
  "hash an 8 MiB chunk page by page (redis-like pages)",
  [
    { name: "pagemill xxh3Batch (copy in + one call)", fn: () => void xxh3Batch(batch.set(chunk), { out: digests }) },
    { name: "node zlib.crc32 per page", fn: () => { for (let p = 0; p < 2048; p++) crc32(chunk.subarray(p * 4096, (p + 1) * 4096)); } },
    { name: "node:crypto md5 per page", fn: () => { for (let p = 0; p < 2048; p++) createHash("md5").update(chunk.subarray(p * 4096, (p + 1) * 4096)).digest(); } },
  ],
  { bytesPerOp: chunk.byteLength },
);
batch.dispose();

// The target streams through a buffer (every page changes every pass, the
// memstream worst case). Flat out (pace 0) it prints its write rate (MiB/s)
// every 100 ms; paced to N MiB/s, like the shared memstream trace, it prints
// the share of its time spent writing (what the traces' README compares).
const TARGET = `
const [mib, pace] = process.argv.slice(1).map(Number);
const buffer = new Float64Array(mib * 131072);
let written = 0, busy = 0, last = performance.now(), pass = 0, total = 0;
const start = performance.now();
for (;;) {
  pass++;
  for (let i = 0; i < buffer.length; i += 131072) {
    const t = performance.now();
    for (let j = i; j < i + 131072; j++) buffer[j] = pass + j;
    const now = performance.now();
    busy += now - t;
    written += 1048576;
    total += 1;
    if (now - last >= 100) {
      console.log(pace ? (busy / (now - last)).toFixed(4) : (written / 1048576 / ((now - last) / 1000)).toFixed(1));
      written = 0; busy = 0; last = now;
    }
    const ahead = pace ? start + (total / pace) * 1000 - performance.now() : 0;
    await new Promise((r) => (ahead > 0 ? setTimeout(r, ahead) : setImmediate(r)));
  }
}`;

async function startTarget(mib, pace) {
  const child = spawn(process.execPath, ["--input-type=module", "-e", TARGET, String(mib), String(pace)]);
  const rates = [];
  createInterface({ input: child.stdout }).on("line", (line) => rates.push(Number(line)));
  await new Promise((r) => setTimeout(r, 1000));
  return { child, rates };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

const dir = mkdtempSync(join(tmpdir(), "pagemill-bench-"));

/**
 * Records the target for 2 s at 200 ms; `spoolDir` undefined is the default
 * (os.tmpdir()); `pace` 0 runs the target flat out.
 */
async function measureRecorder(label, spoolDir, pace) {
  const target = await startTarget(128, pace);
  try {
    await new Promise((r) => setTimeout(r, 2000));
    const before = median(target.rates.splice(0));
    const began = performance.now();
    // The target's rate during the capture (image to last epoch), not while the file is written.
    let capture = [];
    let captureSeconds = NaN;
    const result = await recordProcess(target.child.pid, {
      interval: 0.2,
      duration: 2,
      out: join(dir, "target.ptrace.gz"),
      level: 1,
      spoolDir,
      onPass: ({ epoch }) => {
        if (epoch === 0) target.rates.splice(0);
        if (epoch === 10) {
          capture = target.rates.splice(0);
          captureSeconds = (performance.now() - began) / 1000;
        }
      },
    });
    const wall = (performance.now() - began) / 1000;
    const during = median(capture);
    check(result.epochs === 10 && result.pages > 128 * 256, "recorder: epochs and pages of the target");
    const hashedPerSecond = result.pagesHashed / result.busySeconds;
    // Flat out: the write rate drops; paced: the time spent writing grows.
    const slowdown = pace ? during / before - 1 : 1 - during / before;
    const row = {
      spool: spoolDir ?? tmpdir(),
      targetMiB: 128,
      targetPaceMiBps: pace || "flat out",
      pages: result.pages,
      epochs: result.epochs,
      pagesHashedPerSecond: hashedPerSecond,
      captureSeconds,
      wallSeconds: wall,
      busyShare: result.busySeconds / captureSeconds,
      [pace ? "targetBusyShareBefore" : "targetMiBpsBefore"]: before,
      [pace ? "targetBusyShareDuring" : "targetMiBpsDuring"]: during,
      targetSlowdown: slowdown,
    };
    console.log(`\nrecorder on a 128 MiB streaming writer${pace ? ` paced to ${pace} MiB/s` : " (flat out)"}, 200 ms interval, 2 s, ${label}:`);
    console.log(`  ${result.pages} pages, ${(hashedPerSecond / 1e3).toFixed(0)}k pages read + hashed per second (${((hashedPerSecond * 4096) / 2 ** 20).toFixed(0)} MiB/s), reading and hashing ${(100 * row.busyShare).toFixed(0)}% of the ${captureSeconds.toFixed(1)} s capture (${wall.toFixed(1)} s with writing the file)`);
    console.log(
      pace
        ? `  target spent ${(100 * before).toFixed(2)}% of its time writing before, ${(100 * during).toFixed(2)}% while recorded: ${(100 * slowdown).toFixed(1)}% slower`
        : `  target wrote ${before.toFixed(0)} MiB/s before, ${during.toFixed(0)} MiB/s while recorded: ${(100 * slowdown).toFixed(1)}% slower`,
    );
    return row;
  } finally {
    target.child.kill();
  }
}

results.recorder = await measureRecorder(`spool in ${tmpdir()}`, undefined, 0);
if (existsSync("/dev/shm")) results.recorderShm = await measureRecorder("spool in /dev/shm", "/dev/shm", 0);
results.recorderPaced = await measureRecorder(`spool in ${tmpdir()}`, undefined, 512);
rmSync(dir, { recursive: true, force: true });

// --- Synthetic guest --------------------------------------------------------

const started = performance.now();
const image = syntheticImage(2 ** 18, { profile: "redis", seed: 1 });
const seconds = (performance.now() - started) / 1000;
check(image.byteLength === 2 ** 30, "synthetic image size");
results.syntheticImage = { GiB: 1, seconds, GiBps: 1 / seconds };
console.log(`\nsynthetic 1 GiB redis-like image: ${seconds.toFixed(2)} s (${(1 / seconds).toFixed(2)} GiB/s)`);

save("pagetrace", results);

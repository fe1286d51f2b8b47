// pagemill pack IMAGE -o OUT.pmf: a memory image (or disk image, plain or
// gzip) as a frame stream, the offline form of a migration stream: PAGES
// frames over every page in order, then DONE with the image's length and
// xxh64 digest (docs/wire-format.md).

import { createWriteStream, type WriteStream } from "node:fs";
import { once } from "node:events";
import { stat } from "node:fs/promises";
import { PagemillError } from "../errors.js";
import { codecNamesFor } from "../codecs/registry.js";
import { CostModel } from "../codecs/cost.js";
import { hex64 } from "../hash/digest.js";
import { Xxh64Hasher } from "../hash/xxhash.js";
import { PageBatch } from "../wasm/arena.js";
import { ParallelEncoder } from "../wire/channels.js";
import { maxFramePages, type ControlMessage } from "../wire/frame.js";
import { FrameEncoder, buildPipeline, disposePipeline, type WireStats } from "../wire/pipeline.js";
import { UsageError, fileProgress, formatBytes, intOption, onePositional, pageSizeOption, parse, pathOption, rateOption } from "./args.js";
import { openPageFile, type PageChunk } from "./pagefile.js";
import { checkDistinct, writeAtomically } from "../files.js";

export const summary = "Packs a memory or disk image into a pagemill frame stream (.pmf), page by page through the codec pipeline.";
export const usage = `usage: pagemill pack IMAGE -o OUT.pmf [--codec ${packCodecs().join("|")}] [--bandwidth RATE] [--channels N] [--batch PAGES] [--page-size N] [--json]

  --codec      how pages are compressed after the zero check (default ${defaultCodec()})
  --bandwidth  the link the stream will cross, e.g. 100mbit (needed by --codec auto, which
               picks raw, lz4 or mecom per frame, whichever crosses it soonest)
  --channels   1: encode on this thread (default); N > 1: on N worker threads
  --batch      pages per frame (default 256)`;

export interface PackOptions {
  /** "raw" or a compress codec of the registry */
  codec: string;
  /** 1: encode on this thread; more: on that many worker threads */
  channels: number;
  pageSize: number;
  /** pages per frame */
  batchPages: number;
  /** bytes/s of the link the stream will cross, for codec auto (absent: not known, auto uses LZ4) */
  bandwidth?: number;
  onProgress?: (readBytes: number) => void;
}

/** What pack and unpack both report about a frame stream and its image. */
export interface StreamSummary {
  pageSize: number;
  pages: number;
  /** image bytes (the digest covers exactly these) */
  imageBytes: number;
  /** bytes of the .pmf */
  packedBytes: number;
  /** packedBytes / imageBytes */
  ratio: number;
  frames: number;
  pagesByEncoding: Record<string, number>;
  bytesByEncoding: Record<string, number>;
  digest: string;
  seconds: number;
  /** image MB (10^6 B) per second */
  mbps: number;
}

export interface PackReport extends StreamSummary {
  image: string;
  output: string;
  codec: string;
  channels: number;
}

/** The codec choices: raw, then every compress codec registered (MECOM first when there is one). */
export function packCodecs(): string[] {
  const names = codecNamesFor("compress");
  return ["raw", ...names.sort((a, b) => Number(b === "mecom") - Number(a === "mecom"))];
}

function defaultCodec(): string {
  const names = codecNamesFor("compress");
  return names.includes("mecom") ? "mecom" : names.includes("lz4") ? "lz4" : "raw";
}

async function write(out: WriteStream, frame: Uint8Array): Promise<void> {
  if (!out.write(frame)) await once(out, "drain");
}

/**
 * Packs the image at `imagePath` into `outPath`, which appears only once the
 * whole stream is written (an error leaves it as it was); `outPath` may not
 * be the image itself.
 */
export async function packImage(imagePath: string, outPath: string, options: PackOptions): Promise<PackReport> {
  await checkDistinct(outPath, [imagePath]);
  const report = await writeAtomically(outPath, (temporary) => packInto(imagePath, temporary, options));
  return { ...report, output: outPath };
}

async function packInto(imagePath: string, outPath: string, options: PackOptions): Promise<PackReport> {
  const { codec, channels, pageSize, batchPages, bandwidth = 0 } = options;
  const file = await openPageFile(imagePath, pageSize, batchPages);
  const out = createWriteStream(outPath);
  const opened = once(out, "open");
  const failed = once(out, "error").then(([err]) => {
    throw err;
  });
  failed.catch(() => undefined); // seen by the races below; not unhandled when none is waiting
  await Promise.race([opened, failed]);
  const hasher = new Xxh64Hasher();
  const started = performance.now();
  let pages = 0;
  let imageBytes = 0;
  let stats: WireStats;
  let finish: (message: ControlMessage) => Promise<Uint8Array>;
  let digestHex = "";
  /** Counts a chunk into the image totals and digest; returns its page indices. */
  const account = (chunk: PageChunk): number[] => {
    const bytes = chunk.count * pageSize - file.padding;
    hasher.update(chunk.pages.subarray(0, bytes));
    imageBytes += bytes;
    pages += chunk.count;
    return Array.from({ length: chunk.count }, (_, i) => chunk.first + i);
  };
  try {
    if (channels === 1) {
      const encoder = new FrameEncoder(buildPipeline(codec, { bandwidth, costs: new CostModel() }));
      const batch = new PageBatch(batchPages, pageSize);
      try {
        for await (const chunk of file.chunks()) {
          const frame = encoder.pages(batch.set(chunk.pages), account(chunk));
          await Promise.race([write(out, frame), failed]);
          options.onProgress?.(file.readBytes());
        }
      } finally {
        batch.dispose();
        disposePipeline(encoder.codecs);
      }
      stats = encoder.stats;
      finish = async (message) => encoder.control(message);
    } else {
      const pool = new ParallelEncoder({ channels, codec, pageSize, bandwidth });
      // Frames in flight: enough to keep every channel busy while one is written.
      const queue: Promise<Uint8Array>[] = [];
      try {
        for await (const chunk of file.chunks()) {
          const indices = account(chunk);
          const whole = chunk.pages.byteOffset === 0 && chunk.pages.byteLength === chunk.pages.buffer.byteLength;
          queue.push(pool.encode(chunk.pages, indices, { transfer: whole }));
          while (queue.length >= 2 * channels) await Promise.race([write(out, await queue.shift()!), failed]);
          options.onProgress?.(file.readBytes());
        }
        while (queue.length) await Promise.race([write(out, await queue.shift()!), failed]);
      } catch (err) {
        await Promise.allSettled(queue);
        await pool.close();
        throw err;
      }
      stats = pool.stats;
      finish = async (message) => {
        const frame = await pool.control(message);
        await pool.close();
        return frame;
      };
    }
    const value = hasher.digest();
    digestHex = hex64(value);
    const digest = new Uint8Array(8);
    new DataView(digest.buffer).setBigUint64(0, value, false);
    await write(out, await finish({ type: "done", memoryBytes: imageBytes, digestName: "xxh64", digest }));
    out.end();
    await Promise.race([once(out, "finish"), failed]);
    // Checked before it may replace anything: every frame reached the file.
    const written = (await stat(outPath)).size;
    if (written !== stats.frameBytes) throw new PagemillError(`${outPath}: ${written} B written of the stream's ${stats.frameBytes} B`);
  } finally {
    hasher.dispose();
    out.destroy();
  }
  const seconds = (performance.now() - started) / 1000;
  const packedBytes = stats.frameBytes;
  return {
    image: imagePath,
    output: outPath,
    codec,
    channels,
    pageSize,
    pages,
    imageBytes,
    packedBytes,
    ratio: imageBytes ? packedBytes / imageBytes : 0,
    frames: stats.frames,
    pagesByEncoding: stats.byEncoding,
    bytesByEncoding: stats.bytesByEncoding,
    digest: digestHex,
    seconds,
    mbps: imageBytes / 1e6 / Math.max(seconds, 1e-9),
  };
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    output: { type: "string", short: "o" },
    codec: { type: "string" },
    channels: { type: "string" },
    batch: { type: "string" },
    "page-size": { type: "string" },
    bandwidth: { type: "string" },
    json: { type: "boolean" },
  });
  const image = onePositional(positionals, "IMAGE");
  const output = pathOption("-o OUT.pmf", values.output);
  const codec = typeof values.codec === "string" ? values.codec : defaultCodec();
  if (!packCodecs().includes(codec)) throw new UsageError(`--codec must be one of ${packCodecs().join(", ")}, got '${codec}'`);
  if (codec === "auto" && values.bandwidth === undefined) throw new UsageError("--codec auto needs --bandwidth RATE: the link the stream will cross (e.g. 100mbit)");
  if (codec !== "auto" && values.bandwidth !== undefined) throw new UsageError(`--bandwidth applies to --codec auto only (the ${codec} codec does not depend on the link)`);
  const bandwidth = rateOption("bandwidth", values.bandwidth, 0) / 8;
  const channels = intOption("channels", values.channels, 1, 1, 64);
  const pageSize = pageSizeOption(values["page-size"]);
  const batchPages = intOption("batch", values.batch, Math.min(256, maxFramePages(pageSize)), 1, maxFramePages(pageSize));
  const progress = await fileProgress("pack", image);
  const report = await packImage(image, output, { codec, channels, pageSize, batchPages, bandwidth, onProgress: (n) => progress.update(n) });
  progress.done();
  if (values.json) {
    console.log(JSON.stringify(report, null, 2));
    return 0;
  }
  printSummary(`${report.image} → ${report.output}`, report, `${report.codec} on ${report.channels} channel${report.channels === 1 ? "" : "s"}`);
  return 0;
}

/** The summary both pack and unpack print: pages and bytes by encoding, ratio, speed. */
export function printSummary(
  title: string,
  report: StreamSummary,
  codec?: string,
): void {
  console.log(title);
  if (codec) console.log(`  codec        ${codec}`);
  console.log(`  pages        ${report.pages} of ${report.pageSize} B in ${report.frames} frames`);
  for (const [name, count] of Object.entries(report.pagesByEncoding).sort((a, b) => b[1] - a[1])) {
    const share = report.pages ? ((100 * count) / report.pages).toFixed(1) : "0.0";
    console.log(`    ${name.padEnd(11)}${String(count).padStart(9)} (${share.padStart(5)}%)  ${formatBytes(report.bytesByEncoding[name] ?? 0)}`);
  }
  console.log(`  image        ${formatBytes(report.imageBytes)}`);
  console.log(`  packed       ${formatBytes(report.packedBytes)} (${(100 * report.ratio).toFixed(1)}% of the image)`);
  console.log(`  digest       xxh64 ${report.digest}`);
  console.log(`  time         ${report.seconds.toFixed(3)} s (${report.mbps.toFixed(0)} MB/s)`);
}

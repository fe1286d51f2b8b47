// pagemill unpack IN.pmf -o IMAGE: a frame stream back to the image it was
// packed from. Every frame is checked before its pages are written; the
// image is cut to DONE's length and its digest checked against DONE's.

import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { Encoding, ENCODING_NAMES } from "../codecs/codec.js";
import { PagemillError } from "../errors.js";
import { hex64 } from "../hash/digest.js";
import { Xxh64Hasher } from "../hash/xxhash.js";
import type { Frame } from "../wire/frame.js";
import { FrameDecoder } from "../wire/decoder.js";
import { FrameSplitter } from "../wire/stream.js";
import { fileProgress, onePositional, parse, pathOption } from "./args.js";
import { openPageFile } from "./pagefile.js";
import { checkDistinct, writeAtomically } from "../files.js";
import { printSummary, type StreamSummary } from "./pack.js";

export const summary = "Unpacks a pagemill frame stream (.pmf) into the image it holds, checking every frame and the image digest.";
export const usage = "usage: pagemill unpack IN.pmf -o IMAGE [--json]";

export interface UnpackReport extends StreamSummary {
  input: string;
  output: string;
}

/** xxh64 of a file's first `length` bytes, read back from disk. */
async function fileDigest(path: string, length: number, pageSize: number): Promise<bigint> {
  const file = await openPageFile(path, pageSize);
  const hasher = new Xxh64Hasher();
  try {
    let left = length;
    for await (const chunk of file.chunks()) {
      const take = Math.min(left, chunk.pages.byteLength);
      hasher.update(chunk.pages.subarray(0, take));
      left -= take;
    }
    return hasher.digest();
  } finally {
    hasher.dispose();
  }
}

/**
 * Restores the image packed in `inputPath` to `outputPath`, which appears
 * only once the whole image is written and its digest checked (an error
 * leaves it as it was); `outputPath` may not be the input itself.
 */
export async function unpackFile(inputPath: string, outputPath: string, onProgress?: (readBytes: number) => void): Promise<UnpackReport> {
  await checkDistinct(outputPath, [inputPath]);
  const report = await writeAtomically(outputPath, (temporary) => unpackInto(inputPath, temporary, onProgress));
  return { ...report, output: outputPath };
}

async function unpackInto(inputPath: string, outputPath: string, onProgress?: (readBytes: number) => void): Promise<UnpackReport> {
  const started = performance.now();
  const splitter = new FrameSplitter();
  const decoder = new FrameDecoder();
  const output = await open(outputPath, "w");
  const input = createReadStream(inputPath, { highWaterMark: 1 << 20 });
  const pagesByEncoding: Record<string, number> = {};
  const bytesByEncoding: Record<string, number> = {};
  let pageSize = 0;
  let pages = 0;
  let frames = 0;
  /** end (bytes) of the pages written so far: zero pages past it stay holes */
  let writtenEnd = 0;
  let done: Extract<Frame, { type: "done" }> | undefined;
  try {
    for await (const piece of input as AsyncIterable<Buffer>) {
      for (const bytes of splitter.push(piece)) {
        if (done) throw new PagemillError(`${inputPath}: frames follow the done frame`);
        const frame = decoder.decode(bytes);
        frames++;
        if (frame.type === "done") {
          done = frame;
          continue;
        }
        if (frame.type !== "pages") continue;
        if (pageSize && frame.pageSize !== pageSize) throw new PagemillError(`${inputPath}: page size changes from ${pageSize} to ${frame.pageSize} B`);
        pageSize = frame.pageSize;
        // A .pmf stream covers the image page by page in index order (docs/wire-format.md):
        // checking that bounds where pages are written by what was received.
        for (let k = 0; k < frame.count; k++) {
          if (frame.indices[k] !== pages + k) {
            throw new PagemillError(`${inputPath}: frame ${frame.sequence} carries page ${frame.indices[k]} where page ${pages + k} comes next (a .pmf stream has every page once, in order)`);
          }
        }
        pages += frame.count;
        for (let k = 0; k < frame.count; k++) {
          const name = ENCODING_NAMES[frame.encodings[k] as Encoding];
          pagesByEncoding[name] = (pagesByEncoding[name] ?? 0) + 1;
          bytesByEncoding[name] = (bytesByEncoding[name] ?? 0) + frame.lengths[k]!;
        }
        // Write runs of consecutive pages with one call; a zero page past
        // everything written stays a hole in the file (reads as zero).
        for (let k = 0; k < frame.count; ) {
          const first = frame.indices[k]!;
          const at = first * pageSize;
          let run = 1;
          if (frame.encodings[k] === Encoding.ZERO && at >= writtenEnd) {
            k++;
            continue;
          }
          while (k + run < frame.count && frame.indices[k + run] === first + run && frame.encodings[k + run] !== Encoding.ZERO) run++;
          await output.write(frame.pages!, k * pageSize, run * pageSize, at);
          writtenEnd = Math.max(writtenEnd, at + run * pageSize);
          k += run;
        }
        onProgress?.(input.bytesRead);
      }
    }
    splitter.finish();
    if (!done) throw new PagemillError(`${inputPath}: the stream ends without a done frame (incomplete pack)`);
    // The image's length must end inside the last page received.
    const least = pages ? (pages - 1) * pageSize + 1 : 0;
    if (done.memoryBytes < least || done.memoryBytes > pages * pageSize) {
      throw new PagemillError(`${inputPath}: the done frame declares ${done.memoryBytes} B, but the stream carried ${pages} page(s) of ${pageSize} B (${least}..${pages * pageSize} B)`);
    }
    await output.truncate(done.memoryBytes);
  } finally {
    await output.close();
    decoder.dispose();
    input.destroy();
  }
  const packedBytes = (await stat(inputPath)).size;
  if (done.digestName !== "xxh64" || done.digest.byteLength !== 8) {
    throw new PagemillError(`${inputPath}: digest ${done.digestName} of ${done.digest.byteLength} B is not the xxh64 pack writes`);
  }
  const want = new DataView(done.digest.buffer, done.digest.byteOffset, 8).getBigUint64(0, false);
  const got = await fileDigest(outputPath, done.memoryBytes, pageSize || 4096);
  if (got !== want) throw new PagemillError(`${outputPath}: xxh64 ${hex64(got)} differs from the packed image's ${hex64(want)}`);
  const seconds = (performance.now() - started) / 1000;
  return {
    input: inputPath,
    output: outputPath,
    pageSize,
    pages,
    imageBytes: done.memoryBytes,
    packedBytes,
    ratio: done.memoryBytes ? packedBytes / done.memoryBytes : 0,
    frames,
    pagesByEncoding,
    bytesByEncoding,
    digest: hex64(got),
    seconds,
    mbps: done.memoryBytes / 1e6 / Math.max(seconds, 1e-9),
  };
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    output: { type: "string", short: "o" },
    json: { type: "boolean" },
  });
  const input = onePositional(positionals, "IN.pmf");
  const output = pathOption("-o IMAGE", values.output);
  const progress = await fileProgress("unpack", input);
  const report = await unpackFile(input, output, (n) => progress.update(n));
  progress.done();
  if (values.json) {
    console.log(JSON.stringify(report, null, 2));
    return 0;
  }
  printSummary(`${report.input} → ${report.output} (digest checked)`, report);
  return 0;
}

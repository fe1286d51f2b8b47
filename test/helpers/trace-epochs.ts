// The image and first epochs of a shared trace, read straight from the
// pagetrace v1 stream (../shared/formats/pagetrace.md) without pagemill's own
// reader, for tests that need real pages changing over time.

import { createReadStream } from "node:fs";
import { createGunzip } from "node:zlib";
import { tracePath, type TraceName } from "./traces.js";

export interface TraceEpoch {
  epoch: number;
  /** dirty page indices, ascending */
  pages: Uint32Array;
  /** per dirty page, in the same order, new content XOR previous content */
  deltas: Uint8Array;
}

export interface TraceEpochs {
  pageSize: number;
  pageCount: number;
  /** every page at time 0 */
  image: Uint8Array;
  epochs: TraceEpoch[];
}

/** Exact-length reads over an async stream of chunks. */
class ChunkReader {
  private chunk: Uint8Array = new Uint8Array(0);
  private at = 0;
  constructor(private readonly source: AsyncIterator<Buffer>) {}

  /** Fills `target` completely; throws when the stream ends first. */
  async fill(target: Uint8Array): Promise<Uint8Array> {
    let have = 0;
    while (have < target.length) {
      if (this.at === this.chunk.length) {
        const next = await this.source.next();
        if (next.done) throw new Error(`trace ends early: wanted ${target.length - have} more bytes`);
        this.chunk = next.value;
        this.at = 0;
      }
      const take = Math.min(target.length - have, this.chunk.length - this.at);
      target.set(this.chunk.subarray(this.at, this.at + take), have);
      this.at += take;
      have += take;
    }
    return target;
  }
}

/** The image and epochs 1..maxEpochs of a shared trace. */
export async function readTraceEpochs(name: TraceName, maxEpochs: number): Promise<TraceEpochs> {
  const stream = createReadStream(tracePath(name)).pipe(createGunzip());
  const reader = new ChunkReader(stream[Symbol.asyncIterator]());
  try {
    const head = await reader.fill(new Uint8Array(28));
    const dv = new DataView(head.buffer);
    if (new TextDecoder().decode(head.subarray(0, 8)) !== "PTRACE1\0") throw new Error(`${name}: not a pagetrace`);
    const pageSize = dv.getUint32(8, true);
    const pageCount = dv.getUint32(12, true);
    const epochCount = dv.getUint32(16, true);
    await reader.fill(new Uint8Array(dv.getUint32(24, true)));
    const image = await reader.fill(new Uint8Array(pageCount * pageSize));
    const epochs: TraceEpoch[] = [];
    for (let e = 0; e < Math.min(maxEpochs, epochCount); e++) {
      const record = new DataView((await reader.fill(new Uint8Array(12))).buffer);
      const dirty = record.getUint32(8, true);
      const pages = new Uint32Array((await reader.fill(new Uint8Array(dirty * 4))).buffer);
      const deltas = await reader.fill(new Uint8Array(dirty * pageSize));
      epochs.push({ epoch: record.getUint32(0, true), pages, deltas });
    }
    return { pageSize, pageCount, image, epochs };
  } finally {
    stream.destroy();
  }
}

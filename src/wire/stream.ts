// Frame streams: frames back to back on a byte stream (a file, a socket, a
// fetch body). The encoders take pages and control messages and give bytes;
// the decoders take bytes cut anywhere and give decoded frames.
//
//   Node:     createEncodeStream(options) / createDecodeStream(options)  (stream.Transform)
//   WHATWG:   new FrameEncoderStream(options) / new FrameDecoderStream(options)  (TransformStream)
//   Core:     FrameSplitter (bytes → whole frames, no decoding), used by both.
//
// Encoder input: { pages, indices } (pages: indices.length whole pages back to
// back; split into frames of at most `batchPages`) or a ControlMessage.
// Decoder output: the Frame objects of decodeFrame, pages written to
// `destination` (or returned in frame.pages when there is none).

import { Transform, type TransformCallback } from "node:stream";
import { asBytes, checkInteger, checkPageSize, CodecError } from "../errors.js";
import { PageBatch } from "../wasm/arena.js";
import { HEADER_BYTES, maxFramePages, readFrameHeader, type ControlMessage, type Frame, type FrameHeader } from "./frame.js";
import { FrameDecoder, type FrameDecoders, type PageDestination } from "./decoder.js";
import { FrameEncoder, type PipelineCodecs } from "./pipeline.js";

export type EncodeInput = { readonly pages: Uint8Array; readonly indices: ArrayLike<number> } | ControlMessage;

export interface EncodeStreamOptions {
  /** stage codecs (none: zero and raw only) */
  codecs?: PipelineCodecs;
  /** bytes per page, 4096 by default */
  pageSize?: number;
  /** most pages per frame, 256 by default */
  batchPages?: number;
}

export interface DecodeStreamOptions {
  /** where pages go (see decodeFrame); none: each frame's pages come back in frame.pages */
  destination?: PageDestination;
  /** codec per wire id (default: the registry's) */
  decoders?: FrameDecoders;
  /** reject a sequence number that is not the previous + 1 (true by default) */
  ordered?: boolean;
}

/**
 * Cuts a byte stream into whole frames. Each header is checked as soon as
 * its 28 bytes are in, so a reader never waits for or buffers a length that
 * is not real; a frame is at most MAX_FRAME_BYTES.
 */
export class FrameSplitter {
  private readonly head = new Uint8Array(HEADER_BYTES);
  private headFill = 0;
  private frame: Uint8Array | undefined;
  private header: FrameHeader | undefined;
  private fill = 0;
  private expected = 0;
  constructor(private readonly ordered = true) {}

  /** Takes the next bytes; returns the frames they complete (each its own buffer). */
  push(bytes: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let at = 0;
    while (at < bytes.byteLength) {
      if (!this.frame) {
        const take = Math.min(HEADER_BYTES - this.headFill, bytes.byteLength - at);
        this.head.set(bytes.subarray(at, at + take), this.headFill);
        this.headFill += take;
        at += take;
        if (this.headFill < HEADER_BYTES) break;
        const header = readFrameHeader(this.head);
        if (this.ordered && header.sequence !== this.expected) {
          throw new CodecError("malformed", `frame sequence ${header.sequence} where ${this.expected} was due`);
        }
        this.expected = header.sequence + 1;
        this.header = header;
        this.frame = new Uint8Array(header.frameLength);
        this.frame.set(this.head);
        this.fill = HEADER_BYTES;
        this.headFill = 0;
      }
      const take = Math.min(this.frame.byteLength - this.fill, bytes.byteLength - at);
      this.frame.set(bytes.subarray(at, at + take), this.fill);
      this.fill += take;
      at += take;
      if (this.fill === this.frame.byteLength) {
        out.push(this.frame);
        this.frame = undefined;
        this.header = undefined;
      }
    }
    return out;
  }

  /** The stream ended: throws when it ended inside a frame. */
  finish(): void {
    if (this.frame) {
      throw new CodecError("truncated", `stream ends ${this.fill} B into a frame of ${this.header!.frameLength} B`);
    }
    if (this.headFill > 0) throw new CodecError("truncated", `stream ends ${this.headFill} B into a frame header`);
  }
}

/** The encoding side shared by the Node and WHATWG streams. */
class StreamEncoder {
  private readonly encoder: FrameEncoder;
  private readonly pageSize: number;
  private readonly batch: PageBatch;

  constructor(options: EncodeStreamOptions) {
    this.pageSize = options.pageSize ?? 4096;
    checkPageSize(this.pageSize);
    const batchPages = options.batchPages ?? 256;
    checkInteger("batchPages", batchPages, 1, maxFramePages(this.pageSize));
    this.encoder = new FrameEncoder(options.codecs ?? {});
    this.batch = new PageBatch(batchPages, this.pageSize);
  }

  encode(input: EncodeInput): Uint8Array[] {
    if ("type" in input) return [this.encoder.control(input)];
    const { pages, indices } = input;
    const ps = this.pageSize;
    if (!(pages instanceof Uint8Array)) throw new TypeError("pages must be a Uint8Array");
    if (pages.byteLength !== indices.length * ps) {
      throw new RangeError(`pages has ${pages.byteLength} B, not indices.length ${indices.length} × ${ps}`);
    }
    const frames: Uint8Array[] = [];
    for (let first = 0; first < indices.length; first += this.batch.capacity) {
      const end = Math.min(indices.length, first + this.batch.capacity);
      this.batch.set(pages.subarray(first * ps, end * ps));
      frames.push(this.encoder.pages(this.batch, Array.prototype.slice.call(indices, first, end) as number[]));
    }
    return frames;
  }

  dispose(): void {
    this.batch.dispose();
  }
}

/** The decoding side shared by the Node and WHATWG streams. */
class StreamDecoder {
  private readonly splitter: FrameSplitter;
  private readonly decoder: FrameDecoder;
  private readonly destination: PageDestination;

  constructor(options: DecodeStreamOptions) {
    this.splitter = new FrameSplitter(options.ordered ?? true);
    this.decoder = new FrameDecoder(options.decoders);
    this.destination = options.destination;
  }

  push(bytes: Uint8Array): Frame[] {
    return this.splitter.push(bytes).map((frame) => this.decoder.decode(frame, this.destination));
  }

  finish(): void {
    this.splitter.finish();
  }

  dispose(): void {
    this.decoder.dispose();
  }
}

/** Runs a Node Transform's step, then calls `done`, with what was thrown as the stream's error. */
function settle(done: TransformCallback, step: () => void): void {
  try {
    step();
    done();
  } catch (err) {
    done(err as Error);
  }
}

/** Node Transform: EncodeInput objects in, frame bytes out. */
export function createEncodeStream(options: EncodeStreamOptions = {}): Transform {
  const encoder = new StreamEncoder(options);
  return new Transform({
    writableObjectMode: true,
    transform(input: EncodeInput, _encoding: BufferEncoding, done: TransformCallback) {
      settle(done, () => {
        for (const frame of encoder.encode(input)) this.push(frame);
      });
    },
    destroy(err, done) {
      encoder.dispose();
      done(err);
    },
  });
}

/** Node Transform: frame bytes in (cut anywhere), Frame objects out. */
export function createDecodeStream(options: DecodeStreamOptions = {}): Transform {
  const decoder = new StreamDecoder(options);
  return new Transform({
    readableObjectMode: true,
    transform(chunk: unknown, _encoding: BufferEncoding, done: TransformCallback) {
      settle(done, () => {
        for (const frame of decoder.push(asBytes("a frame stream's chunk", chunk))) this.push(frame);
      });
    },
    flush(done: TransformCallback) {
      settle(done, () => decoder.finish());
    },
    destroy(err, done) {
      decoder.dispose();
      done(err);
    },
  });
}

/** WHATWG TransformStream: EncodeInput in, frame bytes out. */
export class FrameEncoderStream extends TransformStream<EncodeInput, Uint8Array> {
  constructor(options: EncodeStreamOptions = {}) {
    const encoder = new StreamEncoder(options);
    super({
      transform(input, controller) {
        try {
          for (const frame of encoder.encode(input)) controller.enqueue(frame);
        } catch (err) {
          encoder.dispose();
          throw err;
        }
      },
      flush() {
        encoder.dispose();
      },
    });
  }
}

/** WHATWG TransformStream: frame bytes in (cut anywhere), Frame objects out. */
export class FrameDecoderStream extends TransformStream<Uint8Array | ArrayBuffer, Frame> {
  constructor(options: DecodeStreamOptions = {}) {
    const decoder = new StreamDecoder(options);
    super({
      transform(chunk, controller) {
        try {
          for (const frame of decoder.push(asBytes("a frame stream's chunk", chunk))) controller.enqueue(frame);
        } catch (err) {
          decoder.dispose();
          throw err;
        }
      },
      flush() {
        try {
          decoder.finish();
        } finally {
          decoder.dispose();
        }
      },
    });
  }
}

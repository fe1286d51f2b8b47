// A Channel over a TCP connection (node:net), between two processes.
//
// Connection: the client sends HELLO ("PMTC", version, a 32-byte nonce); the
// server answers with its nonce and an HMAC-SHA256 of both nonces under the
// shared key; the client checks it and answers with its own HMAC. Each side
// has then shown it holds the key without sending it, and a replayed
// handshake fails (fresh nonces). Each direction gets its own session key
// (HMAC of the key over the direction and both nonces).
//
// Records: every frame travels as u32 length (LE) | frame | 16-byte tag, the
// tag an HMAC-SHA256 (truncated) under the direction's key of a record
// counter and the frame. A tag that does not match, a length past the
// largest frame, or a record out of order closes the connection at once,
// and the frame is never handed on: nothing a stranger sends is decoded.
// The frames themselves are the wire format's (docs/wire-format.md);
// docs/tcp.md has the threat model.
//
// Back-pressure: send() resolves when the socket has taken the record
// (immediately, or on 'drain'). An optional cap paces sends to a bit rate.
// Every wait on the peer is bounded: connecting, the handshake, and a
// connection with no traffic either way for `timeout` seconds fail with a
// NetworkError naming the cause.

import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { createConnection, createServer, isIP, type Server, type Socket } from "node:net";
import { PagemillError, checkBytes } from "../errors.js";
import { MAX_FRAME_BYTES } from "../wire/frame.js";
import { ChannelClosedError, type Channel } from "./channel.js";

/** The peer is unreachable, stalled, or went away. */
export class NetworkError extends PagemillError {}
/** The peer does not hold the key, or a record's tag does not match. */
export class AuthenticationError extends PagemillError {}
/** The peer speaks another protocol or another version of this one. */
export class ProtocolError extends PagemillError {}

const MAGIC = Buffer.from("PMTC", "latin1");
export const TCP_PROTOCOL_VERSION = 1;
const NONCE_BYTES = 32;
const TAG_BYTES = 16;
const HELLO_BYTES = MAGIC.length + 1 + NONCE_BYTES;
const ANSWER_BYTES = HELLO_BYTES + 32;
const PROOF_BYTES = 32;
/** The key used when none is given: records are still checked for damage, but anyone can connect (loopback only). */
const NO_KEY = new Uint8Array(32);
export const MIN_KEY_BYTES = 16;
/** Default bound on any wait for the peer, seconds. */
export const DEFAULT_TIMEOUT = 10;

export interface TcpOptions {
  /** The shared key (at least 16 bytes). Absent: no authentication, and a listener accepts loopback addresses only. */
  readonly key?: Uint8Array;
  /** Cap on this end's sending rate, bit/s (absent: as fast as the socket takes). */
  readonly bitsPerSecond?: number;
  /** Seconds any wait on the peer may last: connecting, the handshake, a connection with no traffic (default 10). */
  readonly timeout?: number;
}

function hmac(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac("sha256", key);
  for (const part of parts) h.update(part);
  return h.digest();
}

function checkOptions(options: TcpOptions): { key: Uint8Array; timeout: number; cap: number | undefined } {
  const { key, bitsPerSecond, timeout = DEFAULT_TIMEOUT } = options;
  if (key !== undefined) {
    checkBytes("key", key);
    if (key.byteLength < MIN_KEY_BYTES) throw new RangeError(`key must be at least ${MIN_KEY_BYTES} bytes, got ${key.byteLength}`);
  }
  if (!(typeof timeout === "number" && timeout > 0 && Number.isFinite(timeout))) throw new RangeError(`timeout must be a positive number of seconds, got ${timeout}`);
  if (bitsPerSecond !== undefined && !(typeof bitsPerSecond === "number" && bitsPerSecond > 0 && Number.isFinite(bitsPerSecond))) {
    throw new RangeError(`bitsPerSecond must be a positive finite number, got ${bitsPerSecond}`);
  }
  return { key: key ?? NO_KEY, timeout, cap: bitsPerSecond };
}

/** Reads exactly `n` bytes from a socket during the handshake, within `timeout` seconds. */
class HandshakeReader {
  private buffered = Buffer.alloc(0);
  private want = 0;
  private wake: ((bytes: Buffer) => void) | undefined;
  private fail: ((error: Error) => void) | undefined;
  private failure: Error | undefined;
  private readonly onData = (chunk: Buffer): void => {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    this.deliver();
  };
  private readonly onEnd = (): void => this.abort(new NetworkError("the peer closed the connection during the handshake"));
  private readonly onError = (error: Error): void => this.abort(new NetworkError(`connection failed during the handshake: ${error.message}`, { cause: error }));

  constructor(private readonly socket: Socket) {
    socket.on("data", this.onData);
    socket.on("end", this.onEnd);
    socket.on("error", this.onError);
  }

  read(n: number): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    this.want = n;
    return new Promise((resolve, reject) => {
      this.wake = resolve;
      this.fail = reject;
      this.deliver();
    });
  }

  abort(error: Error): void {
    this.failure ??= error;
    this.fail?.(error);
    this.wake = this.fail = undefined;
  }

  /** Stops reading; returns what arrived past the handshake (the first records). */
  detach(): Buffer {
    this.socket.off("data", this.onData);
    this.socket.off("end", this.onEnd);
    this.socket.off("error", this.onError);
    return this.buffered;
  }

  private deliver(): void {
    if (!this.wake || this.buffered.length < this.want) return;
    const out = this.buffered.subarray(0, this.want);
    this.buffered = this.buffered.subarray(this.want);
    const wake = this.wake;
    this.wake = this.fail = undefined;
    wake(out);
  }
}

/** Runs `step` with the handshake's time bound; the socket is destroyed on failure. */
async function bounded<T>(socket: Socket, reader: HandshakeReader, timeout: number, step: () => Promise<T>): Promise<T> {
  const timer = setTimeout(() => reader.abort(new NetworkError(`the peer did not complete the handshake within ${timeout} s`)), timeout * 1000);
  try {
    return await step();
  } catch (error) {
    socket.destroy();
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

function checkHello(bytes: Buffer, what: string): Buffer {
  if (!bytes.subarray(0, MAGIC.length).equals(MAGIC)) throw new ProtocolError(`the peer does not speak pagemill's migration protocol (its ${what} starts ${bytes.subarray(0, 4).toString("hex")})`);
  const version = bytes[MAGIC.length]!;
  if (version !== TCP_PROTOCOL_VERSION) throw new ProtocolError(`the peer speaks protocol version ${version}, this end ${TCP_PROTOCOL_VERSION}`);
  return bytes.subarray(MAGIC.length + 1, MAGIC.length + 1 + NONCE_BYTES);
}

function hello(nonce: Uint8Array): Buffer {
  return Buffer.concat([MAGIC, Buffer.of(TCP_PROTOCOL_VERSION), nonce]);
}

function sessionKeys(key: Uint8Array, client: Uint8Array, server: Uint8Array): { toServer: Buffer; toClient: Buffer } {
  return { toServer: hmac(key, Buffer.from("pagemill c2s"), client, server), toClient: hmac(key, Buffer.from("pagemill s2c"), client, server) };
}

/** One connected, authenticated end. */
export class TcpChannel implements Channel {
  readonly rtt: number;
  readonly bitsPerSecond: number | undefined;
  private sent = 0;
  private sendCounter = 0n;
  private receiveCounter = 0n;
  private readonly frames: Uint8Array[] = [];
  private waiting: { resolve: (frame: Uint8Array | undefined) => void; reject: (error: Error) => void } | undefined;
  private chunks: Buffer[] = [];
  private chunkBytes = 0;
  private ended = false;
  private failure: Error | undefined;
  private closed = false;
  private nextSend = 0;

  constructor(
    private readonly socket: Socket,
    private readonly sendKey: Uint8Array,
    private readonly receiveKey: Uint8Array,
    rtt: number,
    cap: number | undefined,
    timeout: number,
    early: Buffer,
  ) {
    this.rtt = rtt;
    this.bitsPerSecond = cap;
    socket.setNoDelay(true);
    socket.setTimeout(timeout * 1000, () => this.abort(new NetworkError(`no traffic with the peer for ${timeout} s: it stalled or the link is down`)));
    socket.on("data", (chunk: Buffer) => this.take(chunk));
    socket.on("end", () => {
      if (this.chunkBytes > 0) this.abort(new NetworkError(`the peer closed the connection inside a record (${this.chunkBytes} bytes of it arrived)`));
      this.ended = true;
      this.flush();
    });
    socket.on("error", (error) => this.abort(new NetworkError(`connection to the peer failed: ${error.message}`, { cause: error })));
    socket.on("close", () => {
      if (!this.ended) this.abort(new NetworkError("the connection to the peer was cut"));
    });
    if (early.length) this.take(early);
  }

  get sentBytes(): number {
    return this.sent;
  }

  async send(frame: Uint8Array): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.closed) throw new ChannelClosedError("send on a closed TCP channel");
    checkBytes("frame", frame);
    if (frame.byteLength > MAX_FRAME_BYTES) throw new RangeError(`frame of ${frame.byteLength} B passes the ${MAX_FRAME_BYTES} B limit`);
    if (this.bitsPerSecond !== undefined) {
      const now = performance.now();
      const start = Math.max(now, this.nextSend);
      this.nextSend = start + ((frame.byteLength + 4 + TAG_BYTES) * 8 * 1000) / this.bitsPerSecond;
      if (start > now) await new Promise((resolve) => setTimeout(resolve, start - now));
    }
    const head = Buffer.alloc(4);
    head.writeUInt32LE(frame.byteLength, 0);
    const tag = this.tag(this.sendKey, this.sendCounter++, frame);
    this.socket.write(head);
    this.socket.write(frame);
    const ready = this.socket.write(tag);
    this.sent += frame.byteLength;
    if (!ready) {
      await new Promise<void>((resolve, reject) => {
        const done = (): void => {
          this.socket.off("drain", done);
          this.socket.off("close", done);
          if (this.failure) reject(this.failure);
          else resolve();
        };
        this.socket.on("drain", done);
        this.socket.on("close", done);
      });
    }
  }

  receive(): Promise<Uint8Array | undefined> {
    const frame = this.frames.shift();
    if (frame) return Promise.resolve(frame);
    if (this.failure) return Promise.reject(this.failure);
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.end();
  }

  /** Drops the connection at once (a failed migration). */
  destroy(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private tag(key: Uint8Array, counter: bigint, frame: Uint8Array): Buffer {
    const n = Buffer.alloc(8);
    n.writeBigUInt64BE(counter);
    return hmac(key, n, frame).subarray(0, TAG_BYTES);
  }

  private take(chunk: Buffer): void {
    if (this.failure) return;
    this.chunks.push(chunk);
    this.chunkBytes += chunk.length;
    for (;;) {
      if (this.chunkBytes < 4) break;
      const head = this.peek(4);
      const length = head.readUInt32LE(0);
      if (length > MAX_FRAME_BYTES) {
        this.abort(new ProtocolError(`the peer sent a record of ${length} B, past the ${MAX_FRAME_BYTES} B a frame may take`));
        return;
      }
      const total = 4 + length + TAG_BYTES;
      if (this.chunkBytes < total) break;
      const record = this.consume(total);
      const frame = record.subarray(4, 4 + length);
      const expected = this.tag(this.receiveKey, this.receiveCounter++, frame);
      if (!timingSafeEqual(expected, record.subarray(4 + length))) {
        this.abort(new AuthenticationError(`record ${this.receiveCounter - 1n} from the peer failed authentication (wrong key, or changed on the way)`));
        return;
      }
      this.frames.push(frame);
    }
    this.flush();
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!.subarray(0, n);
  }

  /** The next `n` bytes as one buffer of their own. */
  private consume(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    const first = this.chunks[0]!;
    const out = Buffer.from(first.subarray(0, n));
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.chunkBytes -= n;
    return out;
  }

  private flush(): void {
    const waiter = this.waiting;
    if (!waiter) return;
    const frame = this.frames.shift();
    if (frame) {
      this.waiting = undefined;
      waiter.resolve(frame);
    } else if (this.failure) {
      this.waiting = undefined;
      waiter.reject(this.failure);
    } else if (this.ended) {
      this.waiting = undefined;
      waiter.resolve(undefined);
    }
  }

  private abort(error: Error): void {
    if (this.failure || (this.closed && this.ended)) return;
    // Frames that passed their check before the failure are still handed on, then the error.
    this.failure = error;
    this.socket.destroy();
    this.flush();
  }
}

/** Connects to a listening peer and runs the client's half of the handshake. */
export async function connectChannel(host: string, port: number, options: TcpOptions = {}): Promise<TcpChannel> {
  const { key, timeout, cap } = checkOptions(options);
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = createConnection({ host, port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new NetworkError(`${host}:${port} did not answer within ${timeout} s`));
    }, timeout * 1000);
    s.once("connect", () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new NetworkError(`cannot connect to ${host}:${port}: ${error.code === "ECONNREFUSED" ? "nothing listens there" : error.message}`, { cause: error }));
    });
  });
  const reader = new HandshakeReader(socket);
  return bounded(socket, reader, timeout, async () => {
    const started = performance.now();
    const mine = randomBytes(NONCE_BYTES);
    socket.write(hello(mine));
    const answer = await reader.read(ANSWER_BYTES);
    const rtt = (performance.now() - started) / 1000;
    const theirs = checkHello(answer, "answer");
    if (!timingSafeEqual(answer.subarray(HELLO_BYTES), hmac(key, Buffer.from("pagemill server"), mine, theirs))) {
      throw new AuthenticationError("the listener does not hold the key (its proof does not match)");
    }
    socket.write(hmac(key, Buffer.from("pagemill client"), theirs, mine));
    const keys = sessionKeys(key, mine, theirs);
    return new TcpChannel(socket, keys.toServer, keys.toClient, rtt, cap, timeout, reader.detach());
  });
}

/** Accepts connections; each accepted one has passed the handshake. */
export class TcpListener {
  private readonly accepted: TcpChannel[] = [];
  private readonly errors: Error[] = [];
  private waiting: { resolve: (c: TcpChannel) => void; reject: (e: Error) => void } | undefined;

  constructor(
    private readonly server: Server,
    /** the port listened on (the one chosen when 0 was asked) */
    readonly port: number,
    private readonly options: { key: Uint8Array; timeout: number; cap: number | undefined },
  ) {
    server.on("connection", (socket) => void this.handshake(socket));
  }

  /**
   * The next authenticated connection. A peer that fails the handshake is
   * dropped and reported here as the error, so a receiver waiting for its
   * source hears why the source could not get in.
   */
  accept(): Promise<TcpChannel> {
    const channel = this.accepted.shift();
    if (channel) return Promise.resolve(channel);
    const error = this.errors.shift();
    if (error) return Promise.reject(error);
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  /** Stops listening (connections already accepted stay open). */
  close(): void {
    if (this.server.listening) this.server.close();
  }

  private async handshake(socket: Socket): Promise<void> {
    const { key, timeout, cap } = this.options;
    const reader = new HandshakeReader(socket);
    try {
      const channel = await bounded(socket, reader, timeout, async () => {
        const first = await reader.read(HELLO_BYTES);
        const theirs = checkHello(first, "hello");
        const started = performance.now();
        const mine = randomBytes(NONCE_BYTES);
        socket.write(Buffer.concat([hello(mine), hmac(key, Buffer.from("pagemill server"), theirs, mine)]));
        const proof = await reader.read(PROOF_BYTES);
        const rtt = (performance.now() - started) / 1000;
        if (!timingSafeEqual(proof, hmac(key, Buffer.from("pagemill client"), mine, theirs))) {
          throw new AuthenticationError("the connecting peer does not hold the key (its proof does not match)");
        }
        const keys = sessionKeys(key, theirs, mine);
        return new TcpChannel(socket, keys.toClient, keys.toServer, rtt, cap, timeout, reader.detach());
      });
      this.deliver(channel, undefined);
    } catch (error) {
      this.deliver(undefined, error as Error);
    }
  }

  private deliver(channel: TcpChannel | undefined, error: Error | undefined): void {
    const waiter = this.waiting;
    this.waiting = undefined;
    if (waiter) {
      if (channel) waiter.resolve(channel);
      else waiter.reject(error!);
    } else if (channel) this.accepted.push(channel);
    else this.errors.push(error!);
  }
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

/** Listens on host:port (port 0: any free port). Without a key only a loopback address is allowed. */
export async function listenChannel(host: string, port: number, options: TcpOptions = {}): Promise<TcpListener> {
  const checked = checkOptions(options);
  if (options.key === undefined && !LOOPBACK.has(host)) {
    throw new RangeError(`listening on ${host} needs a key (--key-file): without one, anyone who reaches the port could send pages`);
  }
  if (host !== "localhost" && isIP(host) === 0) throw new RangeError(`listen address '${host}' is not an IP address`);
  const server = createServer({ allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(new NetworkError(`cannot listen on ${host}:${port}: ${error.code === "EADDRINUSE" ? "the port is in use" : error.message}`, { cause: error })),
    );
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  return new TcpListener(server, typeof address === "object" && address ? address.port : port, checked);
}

// A Channel over TCP (node:net), between two processes, that survives a cut
// link once told to.
//
// Connection: the client sends HELLO ("PMTC", version, a 32-byte nonce); the
// server answers with its nonce and an HMAC-SHA256 of both nonces under the
// shared key; the client checks it and answers with its own HMAC. Each side
// has then shown it holds the key without sending it, and a replayed
// handshake fails (fresh nonces). Each direction gets its own session key
// (HMAC of the key over the direction and both nonces).
//
// Records: u32 length (LE) | u8 kind | payload | 16-byte tag, the tag an
// HMAC-SHA256 (truncated) under the direction's key of a record counter, the
// kind and the payload. A tag that does not match, a length past the largest
// frame, or a record out of order closes the connection at once, and the
// payload is never handed on: nothing a stranger sends is decoded. Kinds:
// FRAME (a frame of the wire format, docs/wire-format.md), ACK (how many
// frames this end has received), SESSION (the first record each way: the
// session's id and the frames received so far), END (no more frames from
// this end), REFUSE (a listener's answer to a resumption of a session that
// ended there, with the reason). The session is over when each end has sent END and has every
// frame it sent acknowledged; only then does either end close the socket.
//
// Sessions: a channel is a session that outlives its connections. Each end
// keeps the frames it sent until the peer acknowledges them. Once survive()
// was called (the migration has switched over, so the guest exists only
// across both ends), a cut connection pauses the channel instead of failing
// it: the client connects again with backoff, the listener hands the new
// connection to the paused session named in its SESSION record, each end
// re-sends what the other did not receive, and the frames carry on in order,
// exactly once. Before survive() a cut fails the channel (the source still
// holds the whole guest). docs/tcp.md has the protocol and the threat model.
//
// Back-pressure: send() resolves when the socket has taken the record
// (immediately, or on 'drain'). An optional cap makes the channel a line of
// that bit rate holding one frame at a time, as the simulation's link: send()
// resolves when the frame starts on it, and its bytes reach the socket as they
// would leave the line, the last of them when its last bit would have.
// Every wait on the peer is bounded: connecting, the handshake, a connection
// with no traffic either way for `timeout` seconds, and a paused session
// (`recoverTimeout`) fail with a NetworkError naming the cause.

import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual, type DecipherGCM } from "node:crypto";
import { Socket, createConnection, createServer, isIP, type Server } from "node:net";
import { PagemillError, checkBytes } from "../errors.js";
import { HEADER_BYTES, MAX_FRAME_BYTES } from "../wire/frame.js";
import { ChannelClosedError, type Channel } from "./channel.js";
import { FramePool } from "./pool.js";

/** The peer is unreachable, stalled, or went away. */
export class NetworkError extends PagemillError {}
/** The peer does not hold the key, or a record's tag does not match. */
export class AuthenticationError extends PagemillError {}
/** The peer speaks another protocol or another version of this one. */
export class ProtocolError extends PagemillError {}

const MAGIC = Buffer.from("PMTC", "latin1");
/** 3: frames of wire format version 2 (docs/wire-format.md). */
export const TCP_PROTOCOL_VERSION = 3;
const NONCE_BYTES = 32;
const TAG_BYTES = 16;
const HEAD_BYTES = 5;
const HELLO_BYTES = MAGIC.length + 2 + NONCE_BYTES;
/** HELLO's flags: bit 0, this end asks for encrypted records. */
const ENCRYPT = 1;
const ANSWER_BYTES = HELLO_BYTES + 32;
const PROOF_BYTES = 32;
const SESSION_ID_BYTES = 16;
/**
 * A receiver acknowledges after this many frames or ACK_BYTES of them, whichever comes first (and when
 * it closes), so a sender's log stays short: its frames' memory goes back to the pool.
 */
const ACK_EVERY = 16;
/**
 * Every frame a sender holds unacknowledged is memory it cannot reuse. Counted in frames alone, an
 * uncapped migration's 1 MiB frames kept 16-32 MiB out, so the pool took 20-odd fresh buffers, 8k
 * page faults of memory new to the process (10-15 us each on a machine that hands freed memory back
 * to its host, more than the frames' copy).
 */
const ACK_BYTES = 2 * 2 ** 20;
/**
 * Bytes of frames an uncapped sender has out unacknowledged before it waits for an acknowledgement.
 * Without a bound the frames sitting in the two ends' socket buffers (several megabytes each) were
 * still fresh memory: 13 buffers of 1.25 MiB, 4k page faults, over an idle 256 MiB migration.
 */
const SEND_WINDOW_BYTES = 4 * ACK_BYTES;
/**
 * Memory for frames, shared by the channels in the process: frames to send
 * (taken through frameBuffer(), back once the peer acknowledged them), and
 * records gathered from the socket (back once the receiver released them).
 * Two pools, so a received frame sent on unreleased is never taken back
 * from under its receiver.
 */
const sendPool = new FramePool();
const receivePool = new FramePool();
/** The key used when none is given: records are still checked for damage, but anyone can connect (loopback only). */
const NO_KEY = new Uint8Array(32);
export const MIN_KEY_BYTES = 16;
/** Default bound on any wait for the peer, seconds. */
export const DEFAULT_TIMEOUT = 10;
/** Default time a paused session waits for a new connection, seconds. */
export const DEFAULT_RECOVER_TIMEOUT = 60;

const enum Kind {
  FRAME = 0,
  ACK = 1,
  SESSION = 2,
  END = 3,
  /** the listener's answer to a resumption of a session that is over there: why */
  REFUSE = 4,
}

export interface TcpOptions {
  /** The shared key (at least 16 bytes). Absent: no authentication, and a listener accepts loopback addresses only. */
  readonly key?: Uint8Array;
  /** Cap on this end's sending rate, bit/s (absent: as fast as the socket takes). */
  readonly bitsPerSecond?: number;
  /** Seconds any wait on the peer may last: connecting, the handshake, a connection with no traffic (default 10). */
  readonly timeout?: number;
  /** Seconds a session cut after survive() waits for a new connection before it fails (default 60). */
  readonly recoverTimeout?: number;
  /** Encrypt records (AES-256-GCM; needs a key). A connection is encrypted when either end asks. */
  readonly encrypt?: boolean;
}

interface Settings {
  readonly key: Uint8Array;
  readonly encrypt: boolean;
  readonly timeout: number;
  readonly recoverTimeout: number;
  readonly cap: number | undefined;
}

/**
 * Bytes a socket may hold before send() waits. Uncapped, several frames, so
 * encoding the next overlaps the kernel and the peer taking the last; with a
 * cap the pacing sets the rate, and a deep buffer would only delay what
 * comes after it (the stop-and-copy, a page a post-copy fault waits for).
 */
function socketBuffer(settings: Settings): number {
  return settings.cap === undefined ? 4 * 2 ** 20 : 16 * 1024;
}

function hmac(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac("sha256", key);
  for (const part of parts) h.update(part);
  return h.digest();
}

function positiveSeconds(name: string, value: number): number {
  if (!(typeof value === "number" && value > 0 && Number.isFinite(value))) throw new RangeError(`${name} must be a positive number of seconds, got ${value}`);
  return value;
}

function checkOptions(options: TcpOptions): Settings {
  const { key, bitsPerSecond } = options;
  if (key !== undefined) {
    checkBytes("key", key);
    if (key.byteLength < MIN_KEY_BYTES) throw new RangeError(`key must be at least ${MIN_KEY_BYTES} bytes, got ${key.byteLength}`);
  }
  const timeout = positiveSeconds("timeout", options.timeout ?? DEFAULT_TIMEOUT);
  const recoverTimeout = positiveSeconds("recoverTimeout", options.recoverTimeout ?? DEFAULT_RECOVER_TIMEOUT);
  if (bitsPerSecond !== undefined && !(typeof bitsPerSecond === "number" && bitsPerSecond > 0 && Number.isFinite(bitsPerSecond))) {
    throw new RangeError(`bitsPerSecond must be a positive finite number, got ${bitsPerSecond}`);
  }
  if (options.encrypt && key === undefined) throw new RangeError("encrypt needs a key: without one, anyone could derive the record keys");
  return { key: key ?? NO_KEY, encrypt: options.encrypt ?? false, timeout, recoverTimeout, cap: bitsPerSecond };
}

/**
 * Bytes a socket reads at a time. Every socket reads into one buffer of
 * ours (`onread`), the same for every connection in the process: Node's
 * own reading allocates a fresh 64 KiB buffer per read, which on an
 * uncapped migration was half the receiver's page faults (memory new to
 * the process) and most of what reading the socket cost (two bare Node
 * processes moving 148 MB: the receiver 0.22-0.32 s of CPU, 0.03-0.05 s
 * into a buffer of its own).
 */
const READ_BYTES = 256 * 1024;
let readBuffer: Buffer | undefined;

/**
 * Where a socket's bytes go. A chunk handed to `sink` lies in the shared
 * read buffer and is valid only during the call: the next read, on any
 * socket, writes over it. Whatever is kept is copied out.
 */
export class Inflow {
  sink: ((chunk: Buffer) => void) | undefined;
  readonly onread = {
    buffer: (readBuffer ??= Buffer.allocUnsafeSlow(READ_BYTES)),
    callback: (bytes: number, buffer: Uint8Array): boolean => {
      this.sink?.((buffer as Buffer).subarray(0, bytes));
      return true;
    },
  };

  /**
   * An accepted connection (the server paused it on connect) reading
   * through this inflow. Node 20 builds an accepted socket without
   * `onread` and offers no public way to give it one, so the connection's
   * handle goes into a socket that has it, as Node itself builds a socket
   * around an accepted handle (lib/net.js, onconnection). Where the handle
   * is not there to take (another runtime), the socket's 'data' events
   * feed the inflow instead: the same bytes, in Node's buffers.
   */
  adopt(accepted: Socket, writableHighWaterMark: number): Socket {
    const handle = (accepted as unknown as { _handle?: { useUserBuffer?: unknown } })._handle;
    if (typeof handle?.useUserBuffer !== "function") {
      accepted.on("data", (chunk: Buffer) => this.sink?.(chunk));
      accepted.resume();
      return accepted;
    }
    const options = { handle, allowHalfOpen: true, readable: true, writable: true, writableHighWaterMark, onread: this.onread };
    const socket = new Socket(options as ConstructorParameters<typeof Socket>[0]);
    // The server counts the accepted socket as its connection until that one closes (server.close()'s
    // callback waits for it); its handle is already closed by then, which closing again leaves alone.
    socket.once("close", () => accepted.destroy());
    return socket;
  }
}

/** Reads exactly `n` bytes from a socket during the handshake, within `timeout` seconds. */
class HandshakeReader {
  private buffered = Buffer.alloc(0);
  private want = 0;
  private wake: ((bytes: Buffer) => void) | undefined;
  private fail: ((error: Error) => void) | undefined;
  private failure: Error | undefined;
  /** (Buffer.concat copies: the chunk's memory is read into again.) */
  private readonly onData = (chunk: Buffer): void => {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    this.deliver();
  };
  private readonly onEnd = (): void => this.abort(new NetworkError("the peer closed the connection during the handshake"));
  private readonly onError = (error: Error): void => this.abort(new NetworkError(`connection failed during the handshake: ${error.message}`, { cause: error }));

  constructor(
    private readonly socket: Socket,
    private readonly inflow: Inflow,
  ) {
    inflow.sink = this.onData;
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
    this.inflow.sink = undefined;
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

function checkHello(bytes: Buffer, what: string): { nonce: Buffer; flags: number } {
  if (!bytes.subarray(0, MAGIC.length).equals(MAGIC)) throw new ProtocolError(`the peer does not speak pagemill's migration protocol (its ${what} starts ${bytes.subarray(0, 4).toString("hex")})`);
  const version = bytes[MAGIC.length]!;
  if (version !== TCP_PROTOCOL_VERSION) throw new ProtocolError(`the peer speaks protocol version ${version}, this end ${TCP_PROTOCOL_VERSION}`);
  return { flags: bytes[MAGIC.length + 1]!, nonce: bytes.subarray(MAGIC.length + 2, MAGIC.length + 2 + NONCE_BYTES) };
}

function hello(nonce: Uint8Array, settings: Settings): Buffer {
  return Buffer.concat([MAGIC, Buffer.of(TCP_PROTOCOL_VERSION, settings.encrypt ? ENCRYPT : 0), nonce]);
}

/** Each side's proof covers both nonces and both sides' flags, so nobody on the path can strip a request for encryption. */
function proof(key: Uint8Array, who: "server" | "client", client: { nonce: Uint8Array; flags: number }, server: { nonce: Uint8Array; flags: number }): Buffer {
  const [first, second] = who === "server" ? [client.nonce, server.nonce] : [server.nonce, client.nonce];
  return hmac(key, Buffer.from(`pagemill ${who}`), first, second, Buffer.of(client.flags, server.flags));
}

/** Whether a connection encrypts: either side asked. Without a key there is nothing secret to encrypt with. */
function encrypted(key: Uint8Array, flags: number): boolean {
  if (!(flags & ENCRYPT)) return false;
  if (key === NO_KEY) throw new ProtocolError("the peer asks for encryption, and this end has no key");
  return true;
}

/**
 * A record's GCM nonce: its counter. Keys are fresh per connection and
 * direction, so no nonce repeats under a key. (AES-256-GCM tags several
 * times faster than HMAC-SHA256 where the CPU has AES and carry-less
 * multiply.)
 */
function nonce(counter: bigint): Buffer {
  const out = Buffer.alloc(12);
  out.writeBigUInt64BE(counter, 4);
  return out;
}

function sessionKeys(key: Uint8Array, client: Uint8Array, server: Uint8Array): { toServer: Buffer; toClient: Buffer } {
  return { toServer: hmac(key, Buffer.from("pagemill c2s"), client, server), toClient: hmac(key, Buffer.from("pagemill s2c"), client, server) };
}

function u64(n: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(n));
  return out;
}

interface Session {
  readonly id: Buffer;
  /** frames the sender of the SESSION record has received in this session */
  readonly received: number;
}

function sessionRecord(session: Session): Buffer {
  return Buffer.concat([session.id, u64(session.received)]);
}

function readSession(payload: Uint8Array): Session {
  if (payload.byteLength !== SESSION_ID_BYTES + 8) throw new ProtocolError(`the peer's session record has ${payload.byteLength} bytes, not ${SESSION_ID_BYTES + 8}`);
  const bytes = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  return { id: Buffer.from(bytes.subarray(0, SESSION_ID_BYTES)), received: Number(bytes.readBigUInt64BE(SESSION_ID_BYTES)) };
}

interface LinkEvents {
  record(kind: Kind, payload: Uint8Array): void;
  /** the peer ended its side after its last record */
  ended(): void;
  failed(error: Error): void;
}

/**
 * One authenticated connection: writes and reads records. Until a session
 * takes it (attach), records wait in a queue for `next()`.
 */
/** A record being written a part at a time (Link.writePaced). */
interface Paced {
  readonly parts: readonly Uint8Array[];
  readonly total: number;
  /** bytes handed to the socket so far */
  written: number;
  readonly done: () => void;
}
/**
 * Where a gathered record starts in its buffer, so that the raw pages of a
 * PAGES frame in it (at HEADER_BYTES + count * ENTRY_BYTES + k * pageSize
 * of the payload; entries are 8 bytes) lie on 8-byte boundaries. Landing a page in shared memory
 * (the destination's slabs) copies it with V8's relaxed-atomic copy, which
 * goes a byte at a time when source and target are not aligned alike: 4 to
 * 5 times slower, and most of the receiver's landing copy (from 1 mod 8).
 */
const RECORD_SHIFT = (8 - ((HEAD_BYTES + HEADER_BYTES) % 8)) % 8;
/** Bytes of a paced record held back until the line would have delivered it whole. */
const PACED_TAIL_BYTES = 16 * 1024;
/** How often a paced record's due bytes go to the socket (ms): on a plain timer, its lateness harmless. */
const PACED_STEP_MS = 2;

class Link {
  private sendCounter = 0n;
  private paced: Paced | undefined;
  private receiveCounter = 0n;
  /** the record being gathered (one that spans 'data' chunks), and how much of it arrived */
  private record: Uint8Array | undefined;
  private filled = 0;
  /**
   * The record's check, fed its bytes as they arrive (and decrypting them in place), so that only the
   * last chunk's share is left when the record is whole: checked all at its end, the switch-over's 256
   * KiB record took 0.2-0.3 ms after its last byte came, inside a post-copy's downtime.
   */
  private opening: DecipherGCM | undefined;
  /** a record's head split across chunks, and how much of it arrived */
  private readonly head = new Uint8Array(HEAD_BYTES);
  private headBytes = 0;
  private events: LinkEvents | undefined;
  private readonly queued: { kind: Kind; payload: Uint8Array }[] = [];
  private waiter: { resolve: (r: { kind: Kind; payload: Uint8Array }) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;
  private peerEnded = false;
  /** the first record went to next(): the peer named its session */
  private named = false;
  private done = false;

  constructor(
    readonly socket: Socket,
    inflow: Inflow,
    private readonly sendKey: Uint8Array,
    private readonly receiveKey: Uint8Array,
    readonly rtt: number,
    timeout: number,
    /** records' payloads are encrypted, not only authenticated */
    private readonly encrypt: boolean,
    early: Buffer,
  ) {
    socket.setNoDelay(true);
    socket.setTimeout(timeout * 1000, () => this.fail(new NetworkError(`no traffic with the peer for ${timeout} s: it stalled or the link is down`)));
    inflow.sink = (chunk) => this.take(chunk);
    socket.on("end", () => {
      const partial = this.record ? this.filled : this.headBytes;
      if (partial > 0) return this.fail(new NetworkError(`the peer closed the connection inside a record (${partial} bytes of it arrived)`));
      this.peerEnded = true;
      if (this.events) this.events.ended();
      else if (!this.named) this.fail(new NetworkError("the peer closed the connection before naming its session"));
    });
    socket.on("error", (error) => this.fail(new NetworkError(`connection to the peer failed: ${error.message}`, { cause: error })));
    socket.on("close", () => {
      if (!this.peerEnded) this.fail(new NetworkError("the connection to the peer was cut"));
    });
    if (early.length) this.take(early);
  }

  /** Writes one record; false when the socket wants a 'drain' first. `flushed` runs once it has left for the kernel. */
  write(kind: Kind, payload: Uint8Array, flushed?: () => void): boolean {
    // Records never interleave: the rest of one being paced out goes first.
    this.finishPaced();
    const parts = this.seal(kind, payload);
    // One writev for the three parts, not three writes.
    this.socket.cork();
    this.socket.write(parts[0]);
    this.socket.write(parts[1]);
    const room = this.socket.write(parts[2], flushed && (() => flushed()));
    this.socket.uncork();
    return room;
  }

  /**
   * Writes one record as a line of a lower rate would carry it: starting at
   * `start` and ending at `finish` (performance.now() ms), its bytes handed
   * to the socket as they would have left the line, the last
   * PACED_TAIL_BYTES at `finish`. So the peer has all but the tail when the
   * line would have delivered the record, as the far end of a real line
   * does; handing the whole record over at `finish` left its transfer and
   * reading (a millisecond or more for a 256 KiB switch-over record) after
   * it. Resolves once the last byte has left for the kernel, or the link
   * failed. Another write meanwhile sends the rest at once, ahead of itself.
   */
  writePaced(kind: Kind, payload: Uint8Array, start: number, finish: number): Promise<void> {
    // One record paced at a time: the rest of one still going (sends not awaited in turn) goes first.
    this.finishPaced();
    return new Promise((resolve) => {
      const parts = this.seal(kind, payload);
      const total = parts[0].byteLength + parts[1].byteLength + parts[2].byteLength;
      // Done once the last byte has left for the kernel, or the connection closed (its writes may never be).
      const done = (): void => {
        this.socket.off("close", done);
        resolve();
      };
      this.socket.on("close", done);
      const paced = { parts, total, written: 0, done };
      this.paced = paced;
      const tailFrom = Math.max(0, total - PACED_TAIL_BYTES);
      const writeDue = (): void => {
        const due = Math.min(tailFrom, Math.floor((total * (performance.now() - start)) / (finish - start)));
        if (this.paced === paced && due > paced.written) this.writePart(paced, due);
      };
      void (async () => {
        // A step never sleeps past the moment sleepUntil() takes over: a step that woke just before the
        // tail was due and slept a whole step more sent it up to 2 ms after the line would have.
        while (this.paced === paced && paced.written < tailFrom) {
          const left = finish - TIMER_SLACK_MS - performance.now();
          if (left <= 0) break;
          await sleep(Math.min(PACED_STEP_MS, left));
          writeDue();
        }
        writeDue();
        if (this.paced === paced) await sleepUntil(finish);
        this.finishPaced(paced);
      })();
    });
  }

  /** Sends at once what is left of the record being paced (`only`: that one), and resolves its writePaced(). */
  private finishPaced(only?: Paced): void {
    const paced = this.paced;
    if (!paced || (only && only !== paced)) return;
    this.paced = undefined;
    if (this.done || this.failure || this.socket.destroyed) return paced.done();
    this.writePart(paced, paced.total, paced.done);
  }

  /** Writes bytes [written, to) of a paced record. */
  private writePart(paced: Paced, to: number, flushed?: () => void): void {
    const pieces: Uint8Array[] = [];
    let at = 0;
    for (const part of paced.parts) {
      const from = Math.max(paced.written - at, 0);
      const end = Math.min(to - at, part.byteLength);
      if (end > from) pieces.push(part.subarray(from, end));
      at += part.byteLength;
    }
    paced.written = to;
    this.socket.cork();
    pieces.forEach((piece, k) => this.socket.write(piece, k === pieces.length - 1 && flushed ? () => flushed() : undefined));
    this.socket.uncork();
  }

  /** A record's three parts: head, body (the payload, or its ciphertext) and tag. */
  private seal(kind: Kind, payload: Uint8Array): [Uint8Array, Uint8Array, Uint8Array] {
    const head = Buffer.alloc(HEAD_BYTES);
    head.writeUInt32LE(payload.byteLength, 0);
    head[4] = kind;
    const gcm = createCipheriv("aes-256-gcm", this.sendKey, nonce(this.sendCounter++), { authTagLength: TAG_BYTES });
    gcm.setAAD(head.subarray(4));
    // Encrypted, the payload is GCM's plaintext; authenticated only, it is associated data (GMAC).
    let body = payload;
    if (this.encrypt) body = gcm.update(payload);
    else gcm.setAAD(payload);
    gcm.final();
    return [head, body, gcm.getAuthTag()];
  }

  /** Writes one record; resolves once it has left for the kernel, or the link failed. */
  writeFlushed(kind: Kind, payload: Uint8Array): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off("close", done);
        resolve();
      };
      this.socket.on("close", done);
      this.write(kind, payload, done);
    });
  }

  /** Resolves once the socket has room again, or the link failed. */
  drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off("drain", done);
        this.socket.off("close", done);
        resolve();
      };
      this.socket.on("drain", done);
      this.socket.on("close", done);
    });
  }

  /** The next record, before a session took the link (the SESSION exchange). */
  next(): Promise<{ kind: Kind; payload: Uint8Array }> {
    this.named = true;
    const first = this.queued.shift();
    if (first) return Promise.resolve(first);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  attach(events: LinkEvents): void {
    this.events = events;
    for (const { kind, payload } of this.queued.splice(0)) events.record(kind, payload);
    if (this.failure) events.failed(this.failure);
    else if (this.peerEnded) events.ended();
  }

  end(): void {
    this.finishPaced();
    this.socket.end();
  }

  /** Drops the connection without telling anyone (its session moved on, or gave up). */
  destroy(): void {
    this.done = true;
    this.socket.destroy();
  }

  /**
   * Cuts records out of the byte stream. Every record is gathered into a
   * pooled buffer of its own: a chunk's memory is read into again once this
   * returns (Inflow), and a frame handed on is read later.
   */
  private take(chunk: Buffer): void {
    for (let at = 0; at < chunk.length; ) {
      if (this.failure || this.done) return;
      const record = this.record;
      if (record) {
        const n = Math.min(record.length - this.filled, chunk.length - at);
        record.set(chunk.subarray(at, at + n), this.filled);
        this.absorb(record, this.filled, this.filled + n);
        this.filled += n;
        at += n;
        if (this.filled < record.length) return;
        this.record = undefined;
        this.deliver(record);
        continue;
      }
      if (this.headBytes > 0 || chunk.length - at < HEAD_BYTES) {
        // The head itself is split across chunks.
        const n = Math.min(HEAD_BYTES - this.headBytes, chunk.length - at);
        this.head.set(chunk.subarray(at, at + n), this.headBytes);
        this.headBytes += n;
        at += n;
        if (this.headBytes < HEAD_BYTES) return;
        this.headBytes = 0;
        if (!this.start(this.head, 0)) return;
        this.record!.set(this.head);
        this.filled = HEAD_BYTES;
        continue;
      }
      if (this.start(chunk, at)) this.filled = 0;
    }
  }

  /** A record's whole length from its head at `at`, or undefined (and the link failed) when it is past any frame's. */
  private recordBytes(bytes: Uint8Array, at: number): number | undefined {
    const length = new DataView(bytes.buffer, bytes.byteOffset + at, HEAD_BYTES).getUint32(0, true);
    if (length > MAX_FRAME_BYTES) {
      this.fail(new ProtocolError(`the peer sent a record of ${length} B, past the ${MAX_FRAME_BYTES} B a frame may take`));
      return undefined;
    }
    return HEAD_BYTES + length + TAG_BYTES;
  }

  /** Starts gathering the record whose head is at `at` of `bytes`; false when the link failed. */
  private start(bytes: Uint8Array, at: number): boolean {
    const total = this.recordBytes(bytes, at);
    if (total === undefined) return false;
    this.record = receivePool.take(RECORD_SHIFT + total).subarray(RECORD_SHIFT);
    this.opening = createDecipheriv("aes-256-gcm", this.receiveKey, nonce(this.receiveCounter++), { authTagLength: TAG_BYTES });
    // The head's kind byte is associated data; the length is not (a changed one fails the check anyway).
    this.opening.setAAD(bytes.subarray(at + 4, at + HEAD_BYTES));
    return true;
  }

  /**
   * Feeds bytes [from, to) of the record being gathered to its check (see
   * write()): encrypted, the body is GCM's ciphertext, decrypted in place
   * (GCM keeps no bytes back); authenticated only, it is associated data.
   * Nothing of it is handed on before the tag matched (deliver()).
   */
  private absorb(record: Uint8Array, from: number, to: number): void {
    const lo = Math.max(from, HEAD_BYTES);
    const hi = Math.min(to, record.length - TAG_BYTES);
    if (hi <= lo) return;
    const body = record.subarray(lo, hi);
    if (this.encrypt) record.set(this.opening!.update(body), lo);
    else this.opening!.setAAD(body);
  }

  /** Checks one whole record and hands its payload on. */
  private deliver(record: Uint8Array): void {
    const length = record.length - HEAD_BYTES - TAG_BYTES;
    const kind = record.subarray(4, HEAD_BYTES);
    const opening = this.opening!;
    this.opening = undefined;
    opening.setAuthTag(record.subarray(HEAD_BYTES + length));
    try {
      opening.final();
    } catch {
      return this.fail(new AuthenticationError(`record ${this.receiveCounter - 1n} from the peer failed authentication (wrong key, or changed on the way)`));
    }
    // (Decrypted in place: the payload is the record's body either way.)
    const payload = record.subarray(HEAD_BYTES, HEAD_BYTES + length);
    if (kind[0]! > Kind.REFUSE) return this.fail(new ProtocolError(`the peer sent a record of unknown kind ${kind[0]}`));
    if (this.events) this.events.record(kind[0] as Kind, payload);
    else if (this.waiter) {
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter.resolve({ kind: kind[0] as Kind, payload });
    } else this.queued.push({ kind: kind[0] as Kind, payload });
  }

  private fail(error: Error): void {
    if (this.failure || this.done) return;
    this.failure = error;
    this.socket.destroy();
    if (this.events) this.events.failed(error);
    else if (this.waiter) {
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter.reject(error);
    }
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

/** The next record of a link that no session holds yet, which must be the peer's SESSION record. */
async function peerSession(link: Link, timeout: number): Promise<Session> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new NetworkError(`the peer did not name its session within ${timeout} s`)), timeout * 1000);
  });
  try {
    const { kind, payload } = await Promise.race([link.next(), late]);
    if (kind === Kind.REFUSE) throw new ProtocolError(`the listener will not resume the session: ${Buffer.from(payload).toString("utf8")}`);
    if (kind !== Kind.SESSION) throw new ProtocolError(`the peer's first record is of kind ${kind}, not its session`);
    return readSession(payload);
  } catch (error) {
    link.destroy();
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** Connects, runs the client's half of the handshake, and names `session`; resolves with the link and the server's session record. */
async function dial(host: string, port: number, settings: Settings, session: Session, timeout = settings.timeout): Promise<{ link: Link; peer: Session }> {
  const { key } = settings;
  const inflow = new Inflow();
  const socket = await new Promise<Socket>((resolve, reject) => {
    // (Node's Socket takes highWaterMark; @types/node 20 does not list it.)
    const connect = { host, port, allowHalfOpen: true, highWaterMark: socketBuffer(settings), onread: inflow.onread };
    const s = createConnection(connect);
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
  const reader = new HandshakeReader(socket, inflow);
  const link = await bounded(socket, reader, timeout, async () => {
    const started = performance.now();
    const mine = { nonce: randomBytes(NONCE_BYTES), flags: settings.encrypt ? ENCRYPT : 0 };
    socket.write(hello(mine.nonce, settings));
    const answer = await reader.read(ANSWER_BYTES);
    const rtt = (performance.now() - started) / 1000;
    const theirs = checkHello(answer, "answer");
    if (!timingSafeEqual(answer.subarray(HELLO_BYTES), proof(key, "server", mine, theirs))) {
      throw new AuthenticationError("the listener does not hold the key (its proof does not match)");
    }
    socket.write(proof(key, "client", mine, theirs));
    const keys = sessionKeys(key, mine.nonce, theirs.nonce);
    return new Link(socket, inflow, keys.toServer, keys.toClient, rtt, settings.timeout, encrypted(key, mine.flags | theirs.flags), reader.detach());
  });
  link.write(Kind.SESSION, sessionRecord(session));
  const peer = await peerSession(link, timeout);
  if (!peer.id.equals(session.id)) {
    link.destroy();
    throw new ProtocolError("the listener answered for another session");
  }
  return { link, peer };
}

/** One resumption of a session: when its connection was cut, when a new one was there, when the first frame came again. */
export interface Recovery {
  /** performance.now() ms */
  readonly cutAt: number;
  readonly reconnectedAt: number;
  /** the first record that arrived on the new connection (the peer's re-sent frames or its acknowledgement) */
  resumedAt?: number;
  readonly cause: string;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
/**
 * Waits until performance.now() reaches `at` (ms). A timer fires a
 * millisecond late or more, which on a frame of a capped link is a
 * twentieth of a post-copy downtime: the timer covers all but the last
 * millisecond, and turns of the event loop (I/O still runs) the rest.
 */
async function sleepUntil(at: number): Promise<void> {
  const timed = at - performance.now() - TIMER_SLACK_MS;
  if (timed > 0) await sleep(timed);
  while (performance.now() < at) await new Promise((resolve) => setImmediate(resolve));
}
/** How early the timer of sleepUntil() is set to fire (ms): libuv's clock counts whole milliseconds. */
const TIMER_SLACK_MS = 1;

/** A migration's channel over TCP: one session, over one connection or, after cuts, several. */
export class TcpChannel implements Channel {
  readonly bitsPerSecond: number | undefined;
  /** Every record carries a tag under the session's key (the all-zero key without one), checked before its frame is handed on. */
  readonly authenticatesFrames = true;
  /** the session's resumptions, oldest first */
  readonly recoveries: Recovery[] = [];
  private rttNow: number;
  private link: Link | undefined;
  private sent = 0;
  /** frames sent and not yet acknowledged; log[0] is frame number logStart */
  private log: Uint8Array[] = [];
  private logStart = 0;
  /** bytes of the frames in the log */
  private logBytes = 0;
  /** resolves at the next acknowledgement (or failure): a sender past SEND_WINDOW_BYTES waits on it */
  private ackArrived: { promise: Promise<void>; resolve: () => void } | undefined;
  private framesSent = 0;
  private framesReceived = 0;
  private framesAcked = 0;
  /** bytes of the frames received since the last acknowledgement */
  private bytesUnacked = 0;
  /** an acknowledgement is set to go when the loop turns */
  private ackDue = false;
  private readonly frames: Uint8Array[] = [];
  private waiting: { resolve: (frame: Uint8Array | undefined) => void; reject: (error: Error) => void } | undefined;
  private peerEnded = false;
  private closed = false;
  private failure: Error | undefined;
  private surviving = false;
  private paused: Promise<void> | undefined;
  /** When the capped line is free for the next frame (performance.now() ms). */
  private lineFreeAt = 0;
  /** The frame on the capped line leaving (settles once it reached the socket, or could not). */
  private onLine: Promise<void> = Promise.resolve();
  /** END was written, or is due on the next connection (close() came and the line is clear). */
  private ending = false;
  /** A frame is on the capped line, not yet handed to the socket. */
  private lineBusy = false;
  private over = false;
  private settle!: { resolve: () => void; reject: (error: Error) => void };
  /**
   * Settles when the session is over: both ends sent END and every frame
   * was acknowledged (resolves), or it failed (rejects).
   */
  readonly finished: Promise<void>;

  constructor(
    readonly session: Buffer,
    link: Link,
    private readonly settings: Settings,
    /** a new connection to the same session, within `deadline` (performance.now() ms); the peer's SESSION record with it */
    private readonly reconnect: (deadline: number, received: number) => Promise<{ link: Link; peer: Session }>,
    /** called once when the session is over: undefined when it ended well, else why it failed */
    private readonly onFinished: (failure?: Error) => void = () => {},
  ) {
    this.rttNow = link.rtt;
    this.bitsPerSecond = settings.cap;
    this.finished = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    // Nobody need wait for the end; a failure is also reported by send() and receive().
    this.finished.catch(() => {});
    this.link = link;
    link.attach(this.eventsOf(link));
  }

  /**
   * What `link` tells the session, while it is the session's connection:
   * a connection already given up (cut, replaced) may still report its end
   * or an error (a write to it failing later), which must not cut the one
   * that replaced it.
   */
  private eventsOf(link: Link): LinkEvents {
    return {
      record: (kind, payload) => {
        if (this.link === link) this.record(kind, payload);
      },
      // The peer closes the socket only once the session is over, so this end is finished by then too.
      ended: () => {
        if (this.link === link) this.cut(new NetworkError("the peer closed the connection before the end of the session"));
      },
      failed: (error) => {
        if (this.link === link) this.cut(error);
      },
    };
  }

  get rtt(): number {
    return this.rttNow;
  }

  get sentBytes(): number {
    return this.sent;
  }

  /**
   * From now on a cut connection pauses the channel until a new one comes
   * (the client dials again; a listener hands it over), within the
   * recovery timeout, instead of failing it.
   */
  survive(): void {
    this.surviving = true;
    // A send waiting for the window goes on: after the switch-over each frame waits until it has left instead.
    this.ackHeard();
  }

  send(frame: Uint8Array): Promise<void> {
    return this.transmit(frame, false);
  }

  /** (0 without a cap: no line is modelled.) */
  lineFreeIn(): number {
    return Math.max(0, this.lineFreeAt - performance.now()) / 1000;
  }

  /** Pooled memory for a frame to send; it goes back to the pool once the peer acknowledges the frame. */
  frameBuffer(bytes: number): Uint8Array {
    return sendPool.take(bytes);
  }

  release(frame: Uint8Array): void {
    receivePool.give(frame);
  }

  /**
   * The priority lane: `frame` goes ahead of frames still waiting for the
   * cap (a post-copy page a fault waits on, QEMU's postcopy-preempt). The
   * cap's rate still holds: the frames behind wait its transmission time
   * longer. After the switch-over the socket holds at most one frame, so
   * nothing queues ahead of this one but what is on the wire.
   */
  sendUrgent(frame: Uint8Array): Promise<void> {
    return this.transmit(frame, true);
  }

  private async transmit(frame: Uint8Array, urgent: boolean): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.closed) throw new ChannelClosedError("send on a closed TCP channel");
    checkBytes("frame", frame);
    if (frame.byteLength > MAX_FRAME_BYTES) throw new RangeError(`frame of ${frame.byteLength} B passes the ${MAX_FRAME_BYTES} B limit`);
    this.sent += frame.byteLength;
    if (this.bitsPerSecond === undefined) return this.leave(frame);
    // The cap is a line that carries one frame at a time, as SimulatedLink's: a frame starts once the
    // one before has left, send() resolves then (the sender prepares the next meanwhile: one frame of
    // buffering), and its bytes reach the socket as they would leave the line (Link.writePaced), the
    // last once its last bit would have, as at the far end of a real line. So a stop-and-copy queues
    // behind the frame on the line, as in the simulation (resolving only once a frame had left made a
    // real pre-copy's downtime shorter).
    const now = performance.now();
    const duration = ((frame.byteLength + HEAD_BYTES + TAG_BYTES) * 8 * 1000) / this.bitsPerSecond;
    if (urgent) {
      // The priority lane: the frame goes now, ahead of the line; the frames behind wait its time longer.
      this.lineFreeAt = Math.max(now, this.lineFreeAt) + duration;
      await sleepUntil(now + duration);
      return this.leave(frame);
    }
    const start = Math.max(now, this.lineFreeAt);
    const finish = (this.lineFreeAt = start + duration);
    // The frame before leaves when this one starts (on a busy machine, later): never more than one frame on the line.
    await this.onLine;
    // (An urgent frame may have pushed the start further.)
    if (start > performance.now()) await sleepUntil(start);
    const leaving = this.leave(frame, { start, finish });
    // Its failure is this channel's, which the next send or receive reports.
    const onLine = (this.onLine = leaving.catch(() => {}));
    this.lineBusy = true;
    void onLine.then(() => {
      if (this.onLine === onLine) this.lineBusy = false;
    });
    // After the switch-over too: send() waited there for the frame to leave, so the next push frame was
    // encoded with the line idle (0.3-1 ms a frame, the whole of post-copy's T excess over its twin). An
    // urgent frame still queues behind no more than the frame on the line: the one waiting here is not
    // in the socket.
  }

  /** Hands a frame to the connection (once it is back, after a cut) and keeps it until the peer acknowledges it. */
  private async leave(frame: Uint8Array, line?: { start: number; finish: number }): Promise<void> {
    while (this.paused) await this.paused;
    if (this.failure) throw this.failure;
    this.log.push(frame);
    this.logBytes += frame.byteLength;
    this.framesSent++;
    const link = this.link!;
    // On a capped line the frame goes out as the line carries it, done once its last byte has.
    if (line) await link.writePaced(Kind.FRAME, frame, line.start, line.finish);
    // After the switch-over, wait until the frame has left for the kernel, so an urgent frame never queues behind several.
    else if (this.surviving) await link.writeFlushed(Kind.FRAME, frame);
    else if (!link.write(Kind.FRAME, frame)) await link.drained();
    // A peer that keeps up never fills the socket, so no send waits for 'drain' and the event loop never
    // reads the peer's acknowledgements: every frame stayed in the log and took fresh memory from the pool
    // (an uncapped migration's 256 frames, all new to the process). Past two acknowledgements' worth of
    // frames, each send lets the loop turn once, so acknowledgements that arrived are read and the frames
    // they cover go back to the pool.
    else if (this.log.length > 2 * ACK_EVERY || this.logBytes > 2 * ACK_BYTES) {
      await new Promise((resolve) => setImmediate(resolve));
      while (this.logBytes > SEND_WINDOW_BYTES && !this.failure && !this.surviving) await this.nextAck();
    }
    if (this.failure) throw this.failure;
  }

  private nextAck(): Promise<void> {
    if (!this.ackArrived) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.ackArrived = { promise, resolve };
    }
    return this.ackArrived.promise;
  }

  private ackHeard(): void {
    this.ackArrived?.resolve();
    this.ackArrived = undefined;
  }

  receive(): Promise<Uint8Array | undefined> {
    const frame = this.frames.shift();
    if (frame) return Promise.resolve(frame);
    if (this.failure) return Promise.reject(this.failure);
    if (this.peerEnded) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  /** No more frames from this end (the peer's receive() returns undefined after the last). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const end = (): void => {
      this.ending = true;
      if (this.link && !this.paused) this.link.write(Kind.END, new Uint8Array(0));
    };
    // END goes behind a frame still on the line, else now: a peer that waits for it (the source
    // waits for the destination's) must not wait for what this process does next.
    if (this.lineBusy) void this.onLine.then(end);
    else end();
  }

  /** Drops the connection at once (a failed migration); the session cannot resume. */
  destroy(): void {
    this.closed = true;
    this.fail(new ChannelClosedError("the TCP channel was destroyed"));
  }

  /** Treats the connection as cut (the listener has a newer one for this session). */
  dropConnection(error: Error): void {
    const link = this.link;
    if (!link) return;
    link.destroy();
    this.cut(error);
  }

  private record(kind: Kind, payload: Uint8Array): void {
    const recovery = this.recoveries.at(-1);
    if (recovery && recovery.resumedAt === undefined) recovery.resumedAt = performance.now();
    if (kind === Kind.FRAME) {
      this.framesReceived++;
      this.bytesUnacked += payload.byteLength;
      this.frames.push(payload);
      this.flush();
      if (!this.ackDue && (this.framesReceived - this.framesAcked >= ACK_EVERY || this.bytesUnacked >= ACK_BYTES)) {
        // Written once the loop turns, after the frame's receiver ran: written here (its seal, and a
        // loopback write that wakes the peer) it came between a post-copy's switch-over record and the
        // destination's decode of it, 0.2-0.8 ms of the downtime (stamped, hybrid, load 3-4).
        this.ackDue = true;
        setImmediate(() => {
          this.ackDue = false;
          if (this.framesReceived > this.framesAcked) this.acknowledge();
        });
      }
    } else if (kind === Kind.END) {
      this.peerEnded = true;
      this.acknowledge();
      this.flush();
      this.checkFinished();
    } else if (kind === Kind.ACK) {
      if (payload.byteLength !== 8) return this.fail(new ProtocolError(`the peer's acknowledgement has ${payload.byteLength} bytes, not 8`));
      const acked = Number(Buffer.from(payload.buffer, payload.byteOffset, 8).readBigUInt64BE(0));
      const error = this.trim(acked);
      if (error) return this.fail(error);
      this.checkFinished();
    } else this.fail(new ProtocolError("the peer named its session again in the middle of it"));
  }

  private acknowledge(): void {
    this.framesAcked = this.framesReceived;
    this.bytesUnacked = 0;
    this.link?.write(Kind.ACK, u64(this.framesReceived));
  }

  /** Drops the frames the peer has; an error when it claims frames never sent. */
  private trim(received: number): Error | undefined {
    if (received < this.logStart || received > this.framesSent) {
      return new ProtocolError(`the peer says it received ${received} frames; this end sent ${this.framesSent} and it had acknowledged ${this.logStart}`);
    }
    const done = received - this.logStart;
    for (let k = 0; k < done; k++) {
      this.logBytes -= this.log[k]!.byteLength;
      sendPool.give(this.log[k]!);
    }
    this.log = this.log.slice(done);
    this.logStart = received;
    this.ackHeard();
    return undefined;
  }

  /** Both ends sent END and the peer has every frame: the socket can go. */
  private checkFinished(): void {
    if (this.over || this.failure || !(this.ending && this.peerEnded && this.log.length === 0)) return;
    this.over = true;
    this.link?.end();
    this.onFinished();
    this.settle.resolve();
  }

  private cut(error: Error): void {
    this.link = undefined;
    if (this.failure || this.over) return;
    if (!this.surviving) return this.fail(error);
    void this.recover(error);
  }

  /** Waits for a new connection, then re-sends what the peer did not receive. */
  private async recover(error: Error): Promise<void> {
    const cutAt = performance.now();
    let resume!: () => void;
    this.paused = new Promise((resolve) => (resume = resolve));
    try {
      const { link, peer } = await this.reconnect(cutAt + this.settings.recoverTimeout * 1000, this.framesReceived);
      if (this.failure) {
        link.destroy();
        return;
      }
      const wrong = this.trim(peer.received);
      if (wrong) {
        link.destroy();
        return this.fail(wrong);
      }
      this.recoveries.push({ cutAt, reconnectedAt: performance.now(), cause: error.message });
      this.rttNow = link.rtt;
      this.link = link;
      // The peer acknowledged through peer.received; it learns ours from our SESSION record.
      this.framesAcked = this.framesReceived;
      this.bytesUnacked = 0;
      link.attach(this.eventsOf(link));
      for (const frame of this.log) link.write(Kind.FRAME, frame);
      if (this.ending) link.write(Kind.END, new Uint8Array(0));
      this.checkFinished();
    } catch (failure) {
      this.fail(new NetworkError(`the connection was cut (${error.message}) and could not be resumed: ${(failure as Error).message}`, { cause: failure }));
    } finally {
      this.paused = undefined;
      resume();
    }
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
    } else if (this.peerEnded) {
      this.waiting = undefined;
      waiter.resolve(undefined);
    }
  }

  private fail(error: Error): void {
    if (this.failure) return;
    // Frames that passed their check before the failure are still handed on, then the error.
    this.failure = error;
    this.link?.destroy();
    this.link = undefined;
    this.log = [];
    this.logBytes = 0;
    this.ackHeard();
    this.onFinished(error);
    this.settle.reject(error);
    this.flush();
  }
}

/**
 * Connects to a listening peer: the handshake, then a new session. After a
 * cut (once the channel survives) it dials the same address again, backing
 * off from 50 ms to 1 s between attempts.
 */
export async function connectChannel(host: string, port: number, options: TcpOptions = {}): Promise<TcpChannel> {
  const settings = checkOptions(options);
  const id = randomBytes(SESSION_ID_BYTES);
  const { link, peer } = await dial(host, port, settings, { id, received: 0 });
  if (peer.received !== 0) {
    link.destroy();
    throw new ProtocolError(`the listener says it already received ${peer.received} frames of a session just opened`);
  }
  const redial = async (deadline: number, received: number): Promise<{ link: Link; peer: Session }> => {
    let wait = 50;
    for (;;) {
      const left = (deadline - performance.now()) / 1000;
      if (left <= 0) throw new NetworkError(`${host}:${port} did not take the session back within ${settings.recoverTimeout} s`);
      try {
        return await dial(host, port, settings, { id, received }, Math.min(settings.timeout, left));
      } catch (error) {
        // A peer that refuses the session will not change its mind.
        if (error instanceof AuthenticationError || error instanceof ProtocolError) throw error;
        await sleep(Math.min(wait, Math.max(0, deadline - performance.now())));
        wait = Math.min(wait * 2, 1000);
      }
    }
  };
  return new TcpChannel(id, link, settings, redial);
}

/** Where a listener hands a session's new connection. */
class Reconnection {
  channel: TcpChannel | undefined;
  private arrival: { link: Link; peer: Session } | undefined;
  private waiter: ((arrival: { link: Link; peer: Session }) => void) | undefined;

  /** A connection naming this session: resumes it, or replaces a connection the session still thinks is up. */
  arrive(arrival: { link: Link; peer: Session }): void {
    this.arrival?.link.destroy();
    this.arrival = arrival;
    if (this.waiter) this.waiter(arrival);
    else {
      // The peer saw a cut this end has not noticed yet: a surviving session starts waiting, and takes this one.
      this.channel?.dropConnection(new NetworkError("the peer connected again"));
      // Not taken (the session is not surviving, or is over): dropped. (The session's wait takes it at once,
      // and leaves no waiter behind: testing for a waiter here destroyed the connection just handed over,
      // and the two ends redialled and dropped connections in a loop.)
      if (this.arrival === arrival) {
        arrival.link.destroy();
        this.arrival = undefined;
      }
    }
  }

  /** The session was cut: the next connection naming it, answered with how far this end got. */
  wait(deadline: number, id: Buffer, received: number): Promise<{ link: Link; peer: Session }> {
    const started = performance.now();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new NetworkError(`the peer did not connect again within ${Math.round((deadline - started) / 100) / 10} s`));
      }, Math.max(0, deadline - performance.now()));
      this.waiter = (arrival) => {
        clearTimeout(timer);
        this.waiter = undefined;
        this.arrival = undefined;
        arrival.link.write(Kind.SESSION, sessionRecord({ id, received }));
        resolve(arrival);
      };
      if (this.arrival) this.waiter(this.arrival);
    });
  }
}

/**
 * Accepts connections; each accepted one has passed the handshake and
 * opened a new session. A connection that names a session already open
 * here goes to that session (it resumes after a cut) while the listener
 * listens.
 */
export class TcpListener {
  private readonly accepted: TcpChannel[] = [];
  private readonly errors: Error[] = [];
  private waiting: { resolve: (c: TcpChannel) => void; reject: (e: Error) => void } | undefined;
  /** open sessions, by id (hex) */
  private readonly sessions = new Map<string, Reconnection>();
  /** sessions over here, by id (hex): how they ended, told to a peer that asks to resume one */
  private readonly over = new Map<string, string>();
  private acceptingNew = true;

  constructor(
    private readonly server: Server,
    /** the port listened on (the one chosen when 0 was asked) */
    readonly port: number,
    private readonly settings: Settings,
  ) {
    // Accepted paused (listenChannel), each connection reads into the shared buffer from its first byte.
    server.on("connection", (accepted) => {
      const inflow = new Inflow();
      void this.handshake(inflow.adopt(accepted, socketBuffer(settings)), inflow);
    });
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

  /** Takes no new sessions; sessions already open can still resume here. */
  refuseNew(): void {
    this.acceptingNew = false;
  }

  /** Stops listening (connections already accepted stay open, but cannot resume here). */
  close(): void {
    this.acceptingNew = false;
    if (this.server.listening) this.server.close();
  }

  private async handshake(socket: Socket, inflow: Inflow): Promise<void> {
    const { key, timeout } = this.settings;
    const reader = new HandshakeReader(socket, inflow);
    try {
      const link = await bounded(socket, reader, timeout, async () => {
        const first = await reader.read(HELLO_BYTES);
        const theirs = checkHello(first, "hello");
        const started = performance.now();
        const mine = { nonce: randomBytes(NONCE_BYTES), flags: this.settings.encrypt ? ENCRYPT : 0 };
        socket.write(Buffer.concat([hello(mine.nonce, this.settings), proof(key, "server", theirs, mine)]));
        const answer = await reader.read(PROOF_BYTES);
        const rtt = (performance.now() - started) / 1000;
        if (!timingSafeEqual(answer, proof(key, "client", theirs, mine))) {
          throw new AuthenticationError("the connecting peer does not hold the key (its proof does not match)");
        }
        const keys = sessionKeys(key, theirs.nonce, mine.nonce);
        return new Link(socket, inflow, keys.toClient, keys.toServer, rtt, timeout, encrypted(key, mine.flags | theirs.flags), reader.detach());
      });
      const peer = await peerSession(link, timeout);
      const name = peer.id.toString("hex");
      const open = this.sessions.get(name);
      if (open) return open.arrive({ link, peer });
      const ended = this.over.get(name);
      if (ended !== undefined) {
        link.write(Kind.REFUSE, Buffer.from(ended, "utf8"));
        return link.end();
      }
      // Not a session from here: no answer, and the peer gives up when its time is out.
      if (peer.received !== 0 || !this.acceptingNew) return link.destroy();
      link.write(Kind.SESSION, sessionRecord({ id: peer.id, received: 0 }));
      const entry = new Reconnection();
      this.sessions.set(name, entry);
      const channel = new TcpChannel(
        peer.id,
        link,
        this.settings,
        (deadline, received) => entry.wait(deadline, peer.id, received),
        (failure) => {
          this.sessions.delete(name);
          this.over.set(name, failure ? `it failed here (${failure.message})` : "it ended here");
        },
      );
      entry.channel = channel;
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
  const server = createServer({ allowHalfOpen: true, highWaterMark: socketBuffer(checked), pauseOnConnect: true });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(new NetworkError(`cannot listen on ${host}:${port}: ${error.code === "EADDRINUSE" ? "the port is in use" : error.message}`, { cause: error })),
    );
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  return new TcpListener(server, typeof address === "object" && address ? address.port : port, checked);
}

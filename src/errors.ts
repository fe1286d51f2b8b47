/** Base class of every error pagemill throws on purpose. */
export class PagemillError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A method was called on an object after its dispose(). */
export class DisposedError extends PagemillError {
  constructor(what: string) {
    super(`${what} used after dispose(): it was disposed and its memory given back`);
  }
}

/** Codes a decoder reports for malformed input. */
export type CodecErrorCode =
  | "truncated" // the input ends inside a field
  | "overrun" // the data would write past the destination
  | "malformed" // a field holds a value the format does not allow
  | "length" // a declared length disagrees with the buffer given
  | "checksum"; // a checksum does not match

/** The destination's memory differs from the source's. Names the pages. */
export class VerificationError extends PagemillError {
  constructor(
    message: string,
    readonly pages: readonly number[],
  ) {
    super(message);
  }
}

/**
 * A decoder met bytes it cannot read. Names the page (when known) and the
 * cause; when a codec's WebAssembly kernel rejected it, also the codec and
 * the kernel's reason ("extent", "lz4-truncated", ...: src/codecs/kernel-result.ts).
 */
export class CodecError extends PagemillError {
  readonly code: CodecErrorCode;
  readonly page: number | undefined;
  readonly codec: string | undefined;
  readonly reason: string | undefined;
  constructor(code: CodecErrorCode, message: string, page?: number, rejected?: { codec: string; reason: string }) {
    super(page === undefined ? message : `page ${page}: ${message}`);
    this.code = code;
    this.page = page;
    this.codec = rejected?.codec;
    this.reason = rejected?.reason;
  }
}

/** Checks an integer argument, throwing a RangeError that names it. */
export function checkInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer in [${min}, ${max}], got ${value}`);
  }
}

/** Checks that a page size is a power of two between 512 B and 64 KiB. */
export function checkPageSize(pageSize: number, name = "pageSize"): void {
  if (!Number.isInteger(pageSize) || pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
    throw new RangeError(`${name} must be a power of two from 512 to 65536, got ${pageSize}`);
  }
}

/** What a value is, for an error message: "null", "a string", "Uint16Array", ... */
function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "object") return (value as object).constructor?.name ?? "an object";
  return typeof value === "string" ? "a string" : typeof value;
}

/** Checks that an argument is a byte array (Uint8Array or Buffer), throwing a TypeError that names it. */
export function checkBytes(name: string, value: unknown): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array, got ${describeValue(value)}`);
}

/** `value` as bytes: a Uint8Array as it is, an ArrayBuffer viewed whole; anything else a TypeError that names it. */
export function asBytes(name: string, value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new TypeError(`${name} must be a Uint8Array or ArrayBuffer, got ${describeValue(value)}`);
}

/** Checks that an argument is an object (a record of options or fields), throwing a TypeError that names it and what it should be. */
export function checkObject(name: string, value: unknown, what: string): asserts value is object {
  if (typeof value !== "object" || value === null) throw new TypeError(`${name} must be ${what}, got ${describeValue(value)}`);
}

/** Checks that an argument is array-like (an array or typed array of numbers), throwing a TypeError that names it. */
export function checkArrayLike(name: string, value: unknown): asserts value is ArrayLike<number> {
  if (typeof value !== "object" || value === null || !Number.isInteger((value as ArrayLike<number>).length)) {
    throw new TypeError(`${name} must be an array of numbers, got ${describeValue(value)}`);
  }
}

/** Checks that an argument is an instance of `type`, throwing a TypeError that names it. */
export function checkInstance<T>(name: string, value: unknown, type: abstract new (...args: never[]) => T): asserts value is T {
  if (!(value instanceof type)) throw new TypeError(`${name} must be a ${type.name}, got ${describeValue(value)}`);
}

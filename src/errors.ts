/** Base class of every error pagemill throws on purpose. */
export class PagemillError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Codes a decoder reports for malformed input. */
export type CodecErrorCode =
  | "truncated" // the input ends inside a field
  | "overrun" // the data would write past the destination
  | "malformed" // a field holds a value the format does not allow
  | "length" // a declared length disagrees with the buffer given
  | "checksum"; // a checksum does not match

/** A decoder met bytes it cannot read. Names the page (when known) and the cause. */
export class CodecError extends PagemillError {
  readonly code: CodecErrorCode;
  readonly page: number | undefined;
  constructor(code: CodecErrorCode, message: string, page?: number) {
    super(page === undefined ? message : `page ${page}: ${message}`);
    this.code = code;
    this.page = page;
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

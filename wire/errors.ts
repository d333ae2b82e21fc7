/** The stable error codes of the wire protocol. */
export const ERROR_CODES = [
  "BAD_REQUEST",
  "UNKNOWN_METHOD",
  "NOT_FOUND",
  "UNAVAILABLE",
  "TIMEOUT",
  "OVERLOADED",
  "SLOW_CONSUMER",
  "FRAME_TOO_LARGE",
  "UNAUTHORIZED",
  "INTERNAL",
] as const;

/** A stable error code (`NOT_FOUND`, `TIMEOUT` …). */
export type ErrorCode = typeof ERROR_CODES[number];

/** The wire shape of an error: `{code, message, data?}`. */
export interface ErrorBody {
  /** The code. */
  code: ErrorCode;
  /** What went wrong, for people. */
  message: string;
  /** Details for programs, if any. */
  data?: unknown;
}

/**
 * The one error class of dist. Local failures and errors answered by a peer
 * both arrive as a DistError with a stable `code`.
 */
export class DistError extends Error {
  /** Always `DistError`. */
  override name = "DistError";
  /** What kind of failure (stable: programs test it). */
  readonly code: ErrorCode;
  /** Details for programs, if the sender gave any. */
  readonly data?: unknown;

  /** An error with `code`; `cause` is what caused it here, `data` goes to a peer too. */

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; data?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    if (options?.data !== undefined) this.data = options.data;
  }

  /** The wire form sent to a peer. */
  toBody(): ErrorBody {
    const body: ErrorBody = { code: this.code, message: this.message };
    if (this.data !== undefined) body.data = this.data;
    return body;
  }

  /** Rebuilds an error received from a peer; an unknown code becomes INTERNAL. */
  static fromBody(body: unknown): DistError {
    if (body === null || typeof body !== "object") {
      return new DistError("INTERNAL", "Malformed error from peer");
    }
    // Peer data: read only what has the right type, never String() it (an
    // object with a bad toString would throw here, far from any handler).
    const b = body as Record<string, unknown>;
    const message = typeof b.message === "string"
      ? b.message
      : typeof b.code === "string"
      ? b.code
      : "Malformed error from peer";
    if (isErrorCode(b.code)) return new DistError(b.code, message, { data: b.data });
    // A code outside the protocol's list is a broken peer: INTERNAL, and
    // its text (which it chose, at any length) cut.
    return new DistError(
      "INTERNAL",
      `Error with an unknown code ${describe(b.code, 64)}: ${truncate(message, UNKNOWN_CODE_TEXT)}`,
      { data: b.data },
    );
  }

  /** Wraps anything thrown into a DistError; non-DistErrors become INTERNAL. */
  static from(err: unknown): DistError {
    if (err instanceof DistError) return err;
    const message = err instanceof Error ? err.message : String(err);
    return new DistError("INTERNAL", message, { cause: err });
  }
}

/** Most characters kept of the message of an error whose code is not the protocol's. */
export const UNKNOWN_CODE_TEXT = 200;

/** Text of an untrusted value for a message: strings as they are, anything else typed, capped. */
export function describe(value: unknown, max = 100): string {
  let text: string;
  if (typeof value === "string") text = value;
  else if (typeof value === "number" || typeof value === "boolean" || value == null) {
    text = `${value}`;
  } else text = Array.isArray(value) ? "an array" : `a ${typeof value}`;
  return truncate(text, max);
}

/**
 * `text` cut to about `max` UTF-16 units with a note of its length. Never
 * splits a surrogate pair: half a pair has no UTF-8 form, and a message
 * holding one could not be sent to anyone.
 */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  const end = max > 0 && (text.charCodeAt(max - 1) & 0xfc00) === 0xd800 ? max - 1 : max;
  return `${text.slice(0, end)}… (${text.length} chars)`;
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && (ERROR_CODES as readonly string[]).includes(value);
}

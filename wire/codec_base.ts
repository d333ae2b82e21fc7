/**
 * What both codecs share (wire/codec.ts for JSON, wire/msgpack_codec.ts):
 * the Codec interface, their limits and the errors they refuse with.
 */
import { DistError } from "./errors.ts";
import type { OutBuffer } from "./frame.ts";

/** The codecs a connection may agree on. */
export type CodecName = "json" | "msgpack";
export const CODEC_NAMES: readonly CodecName[] = ["json", "msgpack"];

/** Turns messages into frame payloads and back. */
export interface Codec {
  readonly name: CodecName;
  /**
   * Appends one whole frame (length prefix and payload) to `out`.
   * @throws {DistError} FRAME_TOO_LARGE when the payload exceeds `maxFrame`
   * (nothing is appended), BAD_REQUEST when the value cannot be encoded.
   */
  writeFrame(out: OutBuffer, msg: unknown, maxFrame: number): void;
  /** @throws {DistError} BAD_REQUEST when the payload is not a valid message. */
  decode(payload: Uint8Array): unknown;
  /**
   * Decodes the frames of one read, in order. A frame that cannot be decoded
   * yields its DistError (BAD_REQUEST) in its place; the others still decode.
   */
  decodeAll(frames: readonly Uint8Array[]): unknown[];
}

/** Decodes frame by frame, putting each failure in its place. */
export function decodeEach(
  codec: Codec,
  frames: readonly Uint8Array[],
  out: unknown[] = [],
): unknown[] {
  for (const frame of frames) {
    try {
      out.push(codec.decode(frame));
    } catch (err) {
      out.push(DistError.from(err));
    }
  }
  return out;
}

/** The error for a number neither codec may carry. */
export function nonFinite(value: number): DistError {
  return new DistError("BAD_REQUEST", `Result out of range: ${value} is not a finite number`);
}

/** A JSON.stringify replacer that throws on NaN and ±Infinity instead of writing null. */
export function refuseNonFinite(_key: string, value: unknown): unknown {
  if (typeof value === "number" && !Number.isFinite(value)) throw nonFinite(value);
  return value;
}

/**
 * Deepest nesting of arrays and objects a message may have, in both codecs.
 * Checked before any object is built, so a frame of nested headers cannot
 * cost many times its size while it is decoded.
 */
export const MAX_DEPTH = 64;

export function tooDeep(): DistError {
  return new DistError("BAD_REQUEST", `Message nested deeper than ${MAX_DEPTH} levels`);
}

/**
 * A message that was read but is refused (BAD_REQUEST). Unlike bytes that
 * do not parse, its id is known: the refusal goes to its request or its call
 * instead of `id: null`, so nobody waits for a timeout.
 */
export class RefusedMessage extends DistError {
  /** The message's `id` member, if it is an object with one. */
  readonly id: unknown;
  /** Whether it has a `method` (a request), else it is an answer. */
  readonly isRequest: boolean;

  constructor(message: string, value: unknown) {
    super("BAD_REQUEST", message);
    const m = value !== null && typeof value === "object" && !Array.isArray(value)
      ? value as Record<string, unknown>
      : {};
    this.id = m.id;
    this.isRequest = m.method !== undefined;
  }
}

export function illFormed(): DistError {
  return new DistError(
    "BAD_REQUEST",
    "Cannot encode: a string is not well-formed Unicode (a lone surrogate)",
  );
}

export function tooLarge(len: number, maxFrame: number, atLeast = ""): DistError {
  return new DistError(
    "FRAME_TOO_LARGE",
    `Message of ${atLeast}${len} bytes exceeds the frame limit of ${maxFrame} bytes`,
  );
}

export const textDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/** Replaces invalid bytes with U+FFFD one for one: used on whole reads, see jsonDecodeAll. */
export const looseDecoder = new TextDecoder("utf-8", { ignoreBOM: true });

import { Decoder, Encoder } from "@msgpack/msgpack";
import { DistError } from "./errors.ts";
import { HEADER_BYTES, type OutBuffer } from "./frame.ts";

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
function decodeEach(codec: Codec, frames: readonly Uint8Array[], out: unknown[] = []): unknown[] {
  for (const frame of frames) {
    try {
      out.push(codec.decode(frame));
    } catch (err) {
      out.push(DistError.from(err));
    }
  }
  return out;
}

function tooLarge(len: number, maxFrame: number): DistError {
  return new DistError(
    "FRAME_TOO_LARGE",
    `Message of ${len} bytes exceeds the frame limit of ${maxFrame} bytes`,
  );
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });
/** Replaces invalid bytes with U+FFFD one for one: used on whole reads, see jsonDecodeAll. */
const looseDecoder = new TextDecoder("utf-8");
const REPLACEMENT = "\uFFFD";

/**
 * Decodes the JSON frames of one read with one UTF-8 decode instead of one
 * per frame (each decode is a call into the runtime). Frames that sit back
 * to back in one buffer are decoded as a single span, length prefixes and
 * all; when the text has exactly as many UTF-16 units as the span has bytes,
 * every byte became one unit, so a frame's text is the slice at its byte
 * offsets. A byte above 0x7f can only have become U+FFFD then: inside a
 * length prefix that is harmless, inside a payload it sends that frame to
 * the strict per-frame decoder. Anything else falls back to frame by frame.
 */
function jsonDecodeAll(frames: readonly Uint8Array[]): unknown[] {
  const first = frames[0];
  const last = frames[frames.length - 1];
  const base = first.byteOffset;
  const end = last.byteOffset + last.length;
  let contiguous = frames.length > 1;
  for (let i = 1; contiguous && i < frames.length; i++) {
    const prev = frames[i - 1];
    contiguous = frames[i].buffer === first.buffer &&
      frames[i].byteOffset === prev.byteOffset + prev.length + HEADER_BYTES;
  }
  if (!contiguous) return decodeEach(jsonCodec, frames);
  const text = looseDecoder.decode(new Uint8Array(first.buffer, base, end - base));
  if (text.length !== end - base) return decodeEach(jsonCodec, frames);
  const out: unknown[] = [];
  let bad = text.indexOf(REPLACEMENT);
  for (const frame of frames) {
    const from = frame.byteOffset - base;
    const to = from + frame.length;
    while (bad !== -1 && bad < from) bad = text.indexOf(REPLACEMENT, bad + 1);
    if (bad !== -1 && bad < to) {
      decodeEach(jsonCodec, [frame], out); // not ASCII: decode strictly on its own
      continue;
    }
    try {
      out.push(JSON.parse(text.slice(from, to)));
    } catch (err) {
      out.push(new DistError("BAD_REQUEST", `Invalid JSON: ${(err as Error).message}`));
    }
  }
  return out;
}

/** JSON text in UTF-8, encoded straight into the outbound buffer. */
export const jsonCodec: Codec = {
  name: "json",
  writeFrame(out, msg, maxFrame) {
    let text: string | undefined;
    try {
      text = JSON.stringify(msg);
    } catch (err) {
      throw new DistError(
        "BAD_REQUEST",
        `Cannot encode message as JSON: ${(err as Error).message}`,
      );
    }
    if (text === undefined) {
      throw new DistError("BAD_REQUEST", `Cannot encode ${typeof msg} as JSON`);
    }
    // UTF-8 needs at most 3 bytes per UTF-16 code unit.
    const start = out.length;
    out.reserve(HEADER_BYTES + text.length * 3);
    const { written } = textEncoder.encodeInto(
      text,
      out.bytes.subarray(start + HEADER_BYTES),
    );
    if (written > maxFrame) throw tooLarge(written, maxFrame);
    out.setHeader(start, written);
    out.length = start + HEADER_BYTES + written;
  },
  decode(payload) {
    try {
      return JSON.parse(textDecoder.decode(payload));
    } catch (err) {
      throw new DistError("BAD_REQUEST", `Invalid JSON: ${(err as Error).message}`);
    }
  },
  decodeAll(frames) {
    return frames.length === 1 ? decodeEach(this, frames) : jsonDecodeAll(frames);
  },
};

// One encoder/decoder per process: encoding and decoding are synchronous, so
// they are never used by two messages at once.
const mpEncoder = new Encoder({ ignoreUndefined: true });
const mpDecoder = new Decoder();

/** MessagePack. */
export const msgpackCodec: Codec = {
  name: "msgpack",
  writeFrame(out, msg, maxFrame) {
    let bytes: Uint8Array;
    try {
      bytes = mpEncoder.encodeSharedRef(msg);
    } catch (err) {
      throw new DistError(
        "BAD_REQUEST",
        `Cannot encode message as MessagePack: ${(err as Error).message}`,
      );
    }
    if (bytes.length > maxFrame) throw tooLarge(bytes.length, maxFrame);
    out.writeFrame(bytes);
  },
  decode(payload) {
    try {
      // Copy first: decoded binary values may be views of the input, and the
      // input is the reader's reusable buffer.
      return mpDecoder.decode(payload.slice());
    } catch (err) {
      throw new DistError("BAD_REQUEST", `Invalid MessagePack: ${(err as Error).message}`);
    }
  },
  decodeAll(frames) {
    return decodeEach(this, frames);
  },
};

export function codecByName(name: string): Codec | undefined {
  if (name === "json") return jsonCodec;
  if (name === "msgpack") return msgpackCodec;
  return undefined;
}

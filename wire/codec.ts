import {
  type Codec,
  CODEC_NAMES,
  type CodecName,
  decodeEach,
  illFormed,
  looseDecoder,
  MAX_DEPTH,
  nonFinite,
  RefusedMessage,
  refuseNonFinite,
  textDecoder,
  tooDeep,
  tooLarge,
} from "./codec_base.ts";
import { DistError } from "./errors.ts";
import { HEADER_BYTES } from "./frame.ts";
import { parseJson } from "./json_parse.ts";
import { jsonReplacer } from "./json_value.ts";
import { msgpackCodec, toMsgpack } from "./msgpack_codec.ts";

export {
  type Codec,
  CODEC_NAMES,
  type CodecName,
  MAX_DEPTH,
  msgpackCodec,
  nonFinite,
  RefusedMessage,
  toMsgpack,
};

/** Depth of JSON text `text[from, to)`; stops counting past MAX_DEPTH. */
function jsonDepthExceeds(text: string, from: number, to: number): boolean {
  // Fast path: nesting cannot be deeper than the number of openers.
  let openers = 0;
  for (let i = text.indexOf("{", from); i !== -1 && i < to; i = text.indexOf("{", i + 1)) {
    if (++openers > MAX_DEPTH) break;
  }
  for (let i = text.indexOf("[", from); i !== -1 && i < to; i = text.indexOf("[", i + 1)) {
    if (++openers > MAX_DEPTH) break;
  }
  if (openers <= MAX_DEPTH) return false;
  let depth = 0;
  let inString = false;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > MAX_DEPTH) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

/** Parses one frame's JSON text, refusing nesting deeper than MAX_DEPTH. */
function parseFrameJson(text: string, from = 0, to = text.length): unknown {
  // Sliced first: the depth check's indexOf then stops at the frame's end
  // instead of searching the rest of the read for a "[" (quadratic per read).
  const frame = from === 0 && to === text.length ? text : text.slice(from, to);
  if (jsonDepthExceeds(frame, 0, frame.length)) throw tooDeep();
  let value: unknown;
  try {
    value = parseJson(frame); // not JSON.parse: json_parse.ts
  } catch (err) {
    throw new DistError("BAD_REQUEST", `Invalid JSON: ${(err as Error).message}`);
  }
  // Strict UTF-8 input cannot hold a lone surrogate, but a `\ud800` escape
  // can: such a string has no UTF-8 form, so no other peer (MessagePack
  // especially) could be sent it. Only a text with an escape is walked.
  if (frame.includes("\\u") && !wellFormed(value)) {
    throw new RefusedMessage(
      "Invalid JSON: a string is not well-formed Unicode (a lone surrogate escape)",
      value,
    );
  }
  return value;
}

/** Whether every string in a decoded value (keys too) is well-formed UTF-16. */
function wellFormed(value: unknown): boolean {
  if (typeof value === "string") return value.isWellFormed();
  if (value === null || typeof value !== "object") return true;
  if (Array.isArray(value)) return value.every(wellFormed);
  for (const [k, v] of Object.entries(value)) {
    if (!k.isWellFormed() || !wellFormed(v)) return false;
  }
  return true;
}

function stringify(value: unknown, replacer?: (key: string, value: unknown) => unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value, replacer);
  } catch (err) {
    if (err instanceof DistError) throw err;
    throw new DistError("BAD_REQUEST", `Cannot encode as JSON: ${(err as Error).message}`);
  }
  if (text === undefined) {
    throw new DistError("BAD_REQUEST", `Cannot encode ${typeof value} as JSON`);
  }
  return text;
}

/**
 * The JSON text of `value`, refusing what no codec may carry: NaN and
 * ±Infinity (JSON.stringify would write null). Binary values are base64
 * text, as the broker gives JSON subscribers (wire/json_value.ts). For roles
 * that build frames by hand; frames written by jsonCodec get the same.
 * @throws {DistError} BAD_REQUEST
 */
export function toJsonText(value: unknown): string {
  let text = stringify(value);
  // A decoded binary writes itself as base64 (asJsonBinary); a typed array
  // from elsewhere comes out as {"0":…}: only such a text is written
  // again, with the replacer that makes it base64 too.
  if (text.includes('{"0":')) text = stringify(value, jsonReplacer);
  // Only a text with a null in it can hide a NaN or an infinity.
  if (text.includes("null")) JSON.stringify(value, refuseNonFinite);
  // JSON.stringify writes a lone surrogate as a \ud… escape (pairs go out as
  // they are): only such a text can hold one. Our own decoder would refuse it.
  if (text.includes("\\ud") && !wellFormed(value)) throw illFormed();
  return text;
}

const textEncoder = new TextEncoder();
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
      out.push(parseFrameJson(text, from, to));
    } catch (err) {
      out.push(err);
    }
  }
  return out;
}

/** JSON text in UTF-8, encoded straight into the outbound buffer. */
export const jsonCodec: Codec = {
  name: "json",
  writeFrame(out, msg, maxFrame) {
    const text = toJsonText(msg);
    // Every UTF-16 unit takes a byte at least: a text longer than the frame
    // is refused before any room (up to 3 bytes a unit) is reserved for it.
    if (text.length > maxFrame) throw tooLarge(text.length, maxFrame, "at least ");
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
    let text: string;
    try {
      text = textDecoder.decode(payload);
    } catch (err) {
      return refuseInvalidUtf8(payload, err as Error);
    }
    return parseFrameJson(text);
  },
  decodeAll(frames) {
    return frames.length === 1 ? decodeEach(this, frames) : jsonDecodeAll(frames);
  },
};

/**
 * Refuses a JSON frame whose bytes are not UTF-8. When the frame still
 * parses with each bad byte read as U+FFFD, its id is known and the refusal
 * names it (RefusedMessage), so the caller's request fails at once instead
 * of at its timeout; otherwise it is refused with `id: null`.
 * @throws {DistError} BAD_REQUEST, always
 */
function refuseInvalidUtf8(payload: Uint8Array, err: Error): never {
  let value: unknown;
  try {
    value = parseFrameJson(looseDecoder.decode(payload));
  } catch (parseErr) {
    if (parseErr instanceof RefusedMessage) throw parseErr;
    throw new DistError("BAD_REQUEST", `Invalid JSON: ${err.message}`);
  }
  throw new RefusedMessage("Invalid JSON: a string is not valid UTF-8", value);
}

/** The codec of a name (`json`, `msgpack`); undefined for any other. */
export function codecByName(name: CodecName): Codec;
export function codecByName(name: string): Codec | undefined;
export function codecByName(name: string): Codec | undefined {
  if (name === "json") return jsonCodec;
  if (name === "msgpack") return msgpackCodec;
  return undefined;
}

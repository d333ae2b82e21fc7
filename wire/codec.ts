import { Decoder, Encoder } from "@msgpack/msgpack";
import { DistError } from "./errors.ts";
import { HEADER_BYTES, type OutBuffer } from "./frame.ts";
import { parseJson } from "./json_parse.ts";
import { asJsonBinary, jsonReplacer } from "./json_value.ts";
import { isProtoRefusal, PROTO_KEY, withProtoKeys } from "./proto_key.ts";

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

/** The error for a number neither codec may carry. */
export function nonFinite(value: number): DistError {
  return new DistError("BAD_REQUEST", `Result out of range: ${value} is not a finite number`);
}

/** A JSON.stringify replacer that throws on NaN and ±Infinity instead of writing null. */
function refuseNonFinite(_key: string, value: unknown): unknown {
  if (typeof value === "number" && !Number.isFinite(value)) throw nonFinite(value);
  return value;
}

/**
 * Deepest nesting of arrays and objects a message may have, in both codecs.
 * Checked before any object is built, so a frame of nested headers cannot
 * cost many times its size while it is decoded.
 */
export const MAX_DEPTH = 64;

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

function tooDeep(): DistError {
  return new DistError("BAD_REQUEST", `Message nested deeper than ${MAX_DEPTH} levels`);
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

function illFormed(): DistError {
  return new DistError(
    "BAD_REQUEST",
    "Cannot encode: a string is not well-formed Unicode (a lone surrogate)",
  );
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

function tooLarge(len: number, maxFrame: number, atLeast = ""): DistError {
  return new DistError(
    "FRAME_TOO_LARGE",
    `Message of ${atLeast}${len} bytes exceeds the frame limit of ${maxFrame} bytes`,
  );
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/** Replaces invalid bytes with U+FFFD one for one: used on whole reads, see jsonDecodeAll. */
const looseDecoder = new TextDecoder("utf-8", { ignoreBOM: true });
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
      throw new DistError("BAD_REQUEST", `Invalid JSON: ${(err as Error).message}`);
    }
    return parseFrameJson(text);
  },
  decodeAll(frames) {
    return frames.length === 1 ? decodeEach(this, frames) : jsonDecodeAll(frames);
  },
};

// One encoder/decoder per process: encoding and decoding are synchronous, so
// they are never used by two messages at once.
const mpEncoder = new Encoder({ ignoreUndefined: true, maxDepth: MAX_DEPTH });
const mpDecoder = new Decoder();
/** For a value with a `__proto__` key, which mpDecoder refuses (see proto_key.ts). */
const protoDecoder = new Decoder({ keyDecoder: null });

/**
 * The parts of @msgpack/msgpack's Decoder and Encoder (3.1.x, locked) that
 * are private in its types but are where its limits belong. Each override
 * is pinned by a test in tests/codec_test.ts, so a library change that moves
 * them fails loudly instead of silently lifting a limit.
 */
interface DecoderInternals {
  maxArrayLength: number;
  maxMapLength: number;
  pos: number;
  bytes: Uint8Array;
  stack: { length: number };
  pushArrayState(size: number): void;
  pushMapState(size: number): void;
  decodeUtf8String(byteLength: number, headerOffset: number): string;
  decodeBinary(byteLength: number, headOffset: number): Uint8Array;
  stateIsMapKey(): boolean;
}
interface EncoderInternals {
  encodeNumberAsFloat(value: number): void;
  encodeString(value: string): void;
}

for (const decoder of [mpDecoder, protoDecoder]) {
  const d = decoder as unknown as DecoderInternals;
  const pushArray = d.pushArrayState;
  const pushMap = d.pushMapState;
  const utf8 = d.decodeUtf8String;
  const binary = d.decodeBinary;
  // JSON.stringify writes a binary value as base64 text, not as an object
  // with a member per byte (11 times its size, and slow).
  d.decodeBinary = function (this: DecoderInternals, byteLength: number, offset: number) {
    return asJsonBinary(binary.call(this, byteLength, offset));
  };
  // Depth is bounded before each array or map is allocated.
  d.pushArrayState = function (this: DecoderInternals, size: number) {
    if (this.stack.length >= MAX_DEPTH) throw tooDeep();
    pushArray.call(this, size);
  };
  d.pushMapState = function (this: DecoderInternals, size: number) {
    if (this.stack.length >= MAX_DEPTH) throw tooDeep();
    pushMap.call(this, size);
  };
  // The library replaces invalid UTF-8 silently; JSON refuses it, so must this.
  d.decodeUtf8String = function (this: DecoderInternals, byteLength: number, offset: number) {
    const start = this.pos + offset;
    const end = start + byteLength;
    const bytes = this.bytes;
    if (end <= bytes.length) {
      for (let i = start; i < end; i++) {
        if (bytes[i] < 0x80) continue;
        // Not ASCII: decode strictly.
        let text: string;
        try {
          text = textDecoder.decode(bytes.subarray(start, end));
        } catch {
          throw new DistError("BAD_REQUEST", "Invalid MessagePack: a string is not valid UTF-8");
        }
        this.pos = end;
        return text;
      }
    }
    const text = utf8.call(this, byteLength, offset);
    return decoder === protoDecoder && text === "__proto__" && this.stateIsMapKey()
      ? PROTO_KEY
      : text;
  };
}
{
  const e = mpEncoder as unknown as EncoderInternals;
  const str = e.encodeString;
  // A lone surrogate has no UTF-8 form (the library would write bytes every
  // strict decoder refuses): refuse it here. One-byte strings answer at once.
  e.encodeString = function (this: EncoderInternals, value: string) {
    if (!value.isWellFormed()) throw illFormed();
    str.call(this, value);
  };
  const float = e.encodeNumberAsFloat;
  // NaN and ±Infinity have a MessagePack form but no JSON one, and no
  // operation's answer is meant to be one: refuse them in both codecs.
  e.encodeNumberAsFloat = function (this: EncoderInternals, value: number) {
    if (!Number.isFinite(value)) throw nonFinite(value);
    float.call(this, value);
  };
}

/** The encoder's own buffer holding `value`'s bytes: valid until the next encode. */
function encodeShared(value: unknown): Uint8Array {
  try {
    return mpEncoder.encodeSharedRef(value);
  } catch (err) {
    if (err instanceof DistError) throw err;
    throw new DistError(
      "BAD_REQUEST",
      `Cannot encode as MessagePack: ${(err as Error).message}`,
    );
  }
}

/**
 * The MessagePack bytes of `value` (a fresh copy), refusing what no codec
 * may carry (NaN, ±Infinity, nesting past MAX_DEPTH), for roles that build
 * frames by hand; frames written by msgpackCodec get the same.
 * @throws {DistError} BAD_REQUEST
 */
export function toMsgpack(value: unknown): Uint8Array {
  return encodeShared(value).slice();
}

/** MessagePack. */
export const msgpackCodec: Codec = {
  name: "msgpack",
  writeFrame(out, msg, maxFrame) {
    const bytes = encodeShared(msg);
    if (bytes.length > maxFrame) throw tooLarge(bytes.length, maxFrame);
    out.writeFrame(bytes);
  },
  decode(payload) {
    // An array or map header cannot announce more elements than there are
    // bytes left (each takes one at least): the library allocates for them.
    const d = mpDecoder as unknown as DecoderInternals;
    d.maxArrayLength = d.maxMapLength = payload.length;
    try {
      // Copy first: decoded binary values may be views of the input, and the
      // input is the reader's reusable buffer.
      return mpDecoder.decode(payload.slice());
    } catch (err) {
      if (err instanceof DistError) throw err;
      if (isProtoRefusal(err)) return decodeWithProto(payload);
      throw new DistError("BAD_REQUEST", `Invalid MessagePack: ${(err as Error).message}`);
    }
  },
  decodeAll(frames) {
    return decodeEach(this, frames);
  },
};

/** `payload` decoded with each `__proto__` key an own property (see proto_key.ts). */
function decodeWithProto(payload: Uint8Array): unknown {
  const d = protoDecoder as unknown as DecoderInternals;
  d.maxArrayLength = d.maxMapLength = payload.length;
  try {
    return withProtoKeys(protoDecoder.decode(payload.slice()));
  } catch (err) {
    if (err instanceof DistError) throw err;
    throw new DistError("BAD_REQUEST", `Invalid MessagePack: ${(err as Error).message}`);
  }
}

/** The codec of a name (`json`, `msgpack`); undefined for any other. */
export function codecByName(name: CodecName): Codec;
export function codecByName(name: string): Codec | undefined;
export function codecByName(name: string): Codec | undefined {
  if (name === "json") return jsonCodec;
  if (name === "msgpack") return msgpackCodec;
  return undefined;
}

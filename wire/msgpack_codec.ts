/** The MessagePack codec, with the limits and checks JSON gets (wire/codec.ts). */
import { Decoder, Encoder } from "@msgpack/msgpack";
import {
  type Codec,
  decodeEach,
  illFormed,
  looseDecoder,
  MAX_DEPTH,
  nonFinite,
  RefusedMessage,
  textDecoder,
  tooDeep,
  tooLarge,
} from "./codec_base.ts";
import { DistError } from "./errors.ts";
import { asJsonBinary } from "./json_value.ts";
import { isProtoRefusal, PROTO_KEY, withProtoKeys } from "./proto_key.ts";

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
  encodeNumber(value: number): void;
  encodeNumberAsFloat(value: number): void;
  encodeString(value: string): void;
}

/** Set when a string of the message being decoded was not UTF-8. */
let invalidUtf8 = false;

/**
 * `decoder.decode(bytes)`, refusing a message with a string that is not
 * UTF-8 (JSON refuses it too) by the message's id when it has one.
 */
function decodeMessage(decoder: Decoder, bytes: Uint8Array): unknown {
  invalidUtf8 = false;
  const value = decoder.decode(bytes);
  if (!invalidUtf8) return value;
  invalidUtf8 = false;
  throw new RefusedMessage("Invalid MessagePack: a string is not valid UTF-8", value);
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
          // Read on (bad bytes as U+FFFD) so the message's id is known:
          // decodeMessage refuses the whole message by its id.
          invalidUtf8 = true;
          text = looseDecoder.decode(bytes.subarray(start, end));
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
  const number = e.encodeNumber;
  // -0 is a safe integer, which the library writes as the integer 0: a float keeps its sign, as
  // JSON's `-0` does (hostile44b H-B5).
  e.encodeNumber = function (this: EncoderInternals, value: number) {
    if (value === 0 && 1 / value < 0) this.encodeNumberAsFloat(value);
    else number.call(this, value);
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
      return decodeMessage(mpDecoder, payload.slice());
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
    return withProtoKeys(decodeMessage(protoDecoder, payload.slice()));
  } catch (err) {
    if (err instanceof DistError) throw err;
    throw new DistError("BAD_REQUEST", `Invalid MessagePack: ${(err as Error).message}`);
  }
}

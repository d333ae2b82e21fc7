/**
 * Delivery frames, encoded once per codec and copied to every subscriber.
 *
 * A delivery is the notification `{"method":"broker.message","params":
 * {"topic":…,"value":…[,"retained":true],"sid":N}}`: `retained` only when
 * true (the contract's `retained?`; 17 bytes less on every live delivery,
 * and each byte costs the kernel's loopback and both ends' copies). Only
 * `sid` differs from one subscriber to the next, so it comes last: a
 * message's frame is its length prefix and everything up to the sid
 * ({@link deliveryHead}, cached on the message per codec), and each
 * subscription has its own tail (the sid with its key and the closing
 * brackets, {@link sidTail}). Writing a delivery is then setting the length
 * and copying two byte arrays, whatever the value. A value published in
 * JSON.stringify's layout is not even cut out of its frame: the delivery is
 * the frame's bytes up to the end of the value with `publish` changed to
 * `message` (see FramePublish.canonical), then the tail. */
import {
  type CodecName,
  DistError,
  type FrameWriter,
  type OutBuffer,
  toMsgpack,
} from "../../wire/mod.ts";
// JSON has no bytes: binary values (from MessagePack) travel as base64 text,
// by the wire's one rule (json_value.ts), which also refuses NaN and ±Infinity.
import { jsonReplacer } from "../../wire/mod.ts";
import { DELIVERY_PREFIX, METHOD_WORD_AT } from "../../wire/mod.ts";
import { concatBytes } from "../../wire/byte_words.ts";
import { EncodedValue, type Message } from "./subscriber.ts";
import { msgpackOf, RawJson, RawMsgpack, slabAlloc } from "./raw_json.ts";
import { MP_METHOD_WORD_AT, MP_PARAMS_AT } from "./msgpack_publish.ts";
import {
  MP_MESSAGE_WORD,
  MP_RETAINED_TRUE,
  mpPrefix,
  RETAINED_TRUE,
  topicPrefix,
} from "./delivery_prefix.ts";

/** Index of a codec in `Message.encoded`. */
export const CODEC_SLOT: Record<CodecName, number> = { json: 0, msgpack: 1 };

const HEADER = 4;
const textEncoder = new TextEncoder();
/** Scratch space for JSON text of values that are not kept as text already. */
let scratch = new Uint8Array(64 * 1024);

function nonFinite(value: number): DistError {
  return new DistError("BAD_REQUEST", `Value out of range: ${value} is not a finite number`);
}

/** The JSON text of a value, as UTF-8 (a view of scratch space, or the value's own bytes). */
export function jsonBytes(value: unknown): Uint8Array {
  if (value instanceof RawJson) return value.bytes;
  if (value instanceof RawMsgpack) {
    const text = value.json(); // converted as bytes, no objects made, when it can (z34r)
    if (text !== undefined) return text;
  }
  if (value instanceof EncodedValue) {
    const text = value.jsonText(); // JSON text as it came (an MQTT payload's), not decoded
    if (text !== undefined) return text;
    value = value.decode();
  }
  if (typeof value === "number" && !Number.isFinite(value)) throw nonFinite(value);
  const text = typeof value === "object" && value !== null
    ? JSON.stringify(value, jsonReplacer)
    : JSON.stringify(value) ?? "null";
  if (scratch.length < text.length * 3) scratch = new Uint8Array(text.length * 3);
  const { written } = textEncoder.encodeInto(text, scratch);
  return scratch.subarray(0, written);
}

const EMPTY: Uint8Array = new Uint8Array(0);

function jsonHead(msg: Message): Uint8Array {
  const prefix = topicPrefix(msg.topic);
  const value = jsonBytes(msg.value);
  const flags = msg.retained ? RETAINED_TRUE : EMPTY;
  const head = slabAlloc(HEADER + prefix.length + value.length + flags.length);
  head.set(prefix, HEADER);
  head.set(value, HEADER + prefix.length);
  if (flags.length > 0) head.set(flags, HEADER + prefix.length + value.length);
  return head;
}

/**
 * The parts of a delivery written from its value's bytes as they came (a
 * fast-path publish's JSON text to JSON subscribers, or its MessagePack to
 * MessagePack ones), for the message being fanned out: its deliveries are
 * written one after another, so the topic's prefix is looked up once per
 * message, not per delivery. The parts are all a message's value, topic
 * and retained flag make them, so those are the key (a held message's
 * value is replaced by its detached form); they are forgotten when a
 * borrowed value is released (its bytes change). Not the message itself: a
 * message is young, and storing it here cost V8's write barrier on every
 * message (the lent value, the topic's name and the flag are not). A value
 * has parts in its own codec only, so one set serves both.
 */
let partsValue: unknown;
let partsTopic = "";
let partsRetained = false;
let partsCodec: CodecName | undefined;
let partsPrefix = EMPTY;
/**
 * The value is `partsSource[partsStart, partsEnd)`: its publish's whole
 * frame when the value lies in it no further than the prefix is long
 * (the frame is then copied so that its value lands after the prefix,
 * which is written over what came before it: no view of the value made,
 * one allocation less per message), else the value's bytes.
 */
let partsSource = EMPTY;
let partsStart = 0;
let partsEnd = 0;
let partsFlags = EMPTY;
/**
 * Set instead of the prefix and the value when the value's publish frame
 * is canonical (see FramePublish) and names the message's topic: the
 * delivery up to the end of the value is then the frame's first
 * `partsFrameEnd` bytes with the method's name changed (one copy, and no
 * view of the value made at all). The value, whose `canonicalFrame` that
 * is: the frame itself, a young view, stored here would cost V8's write
 * barrier on every message.
 */
let partsFrame: RawJson | RawMsgpack | undefined;
let partsFrameEnd = 0;

/** Whether `msg` goes to `codec`'s subscribers as parts (see above); if so, they are set. */
function hasParts(msg: Message, codec: CodecName): boolean {
  const value = msg.value;
  if (value === partsValue && msg.topic === partsTopic && msg.retained === partsRetained) {
    return codec === partsCodec;
  }
  let own: CodecName;
  if (value instanceof RawJson) own = "json";
  else if (value instanceof RawMsgpack) own = "msgpack";
  else return false;
  // A head already made (for a delivery that waits) is copied instead.
  if (own !== codec || msg.encoded?.[CODEC_SLOT[own]] !== undefined) return false;
  // The key is set once the parts are (a value used after its release throws below).
  partsValue = undefined;
  partsCodec = own;
  const json = own === "json";
  partsFlags = msg.retained ? (json ? RETAINED_TRUE : MP_RETAINED_TRUE) : EMPTY;
  const frame = value.canonicalFrame;
  if (frame !== undefined && value.canonicalTopic === msg.topic) {
    partsFrame = value;
    partsFrameEnd = value.frameEnd;
    asDelivery(frame, json, partsFlags.length > 0);
    return partsFor(value, msg);
  }
  partsFrame = undefined;
  partsPrefix = json ? topicPrefix(msg.topic) : mpPrefix(msg.topic, msg.retained);
  const lent = value.lentFrame;
  if (lent !== undefined && value.frameStart <= HEADER + partsPrefix.length) {
    partsSource = lent;
    partsStart = value.frameStart;
    partsEnd = value.frameEnd;
  } else {
    partsSource = value.bytes;
    partsStart = 0;
    partsEnd = partsSource.length;
  }
  return partsFor(value, msg);
}

/** Keys the parts just set by what made them (see partsValue); true. */
function partsFor(value: unknown, msg: Message): boolean {
  partsValue = value;
  partsTopic = msg.topic;
  partsRetained = msg.retained;
  return true;
}

/** Drops the parts kept for the last message (its value's bytes are about to be reused). */
export function forgetParts(): void {
  partsValue =
    partsCodec =
    partsFrame =
    WRITER.msg =
      undefined;
  partsPrefix = partsSource = partsFlags = EMPTY;
}

/**
 * Writes one delivery for `FramedConn.sendWith` (a FrameWriter: no closure
 * per delivery), unless it is past the frame limit; `size` is then the
 * payload bytes it wrote (or refused). One for the process. Storing a young
 * object (the message) in a long-lived one costs V8's write barrier: a
 * message written from its parts (see hasParts) is not stored at all, any
 * other once per message.
 */
class DeliveryWriter implements FrameWriter {
  /** The message, unless it is written from the parts set for it (see deliveryWriter). */
  msg: Message | undefined = undefined;
  codec: CodecName = "json";
  tail: Uint8Array = EMPTY;
  limit = Infinity;
  size = 0;

  writeFrames(out: OutBuffer): void {
    const msg = this.msg;
    this.size = msg === undefined
      ? writeParts(out, this.tail, this.limit)
      : writeDelivery(out, msg, this.codec, this.tail, this.limit);
  }
}
const WRITER = new DeliveryWriter();

/**
 * The process's DeliveryWriter, set to write `msg` with `tail` in `codec`
 * within `limit`; used at once (sendWith calls it before anything else can
 * set other parts).
 */
export function deliveryWriter(
  msg: Message,
  codec: CodecName,
  tail: Uint8Array,
  limit: number,
): DeliveryWriter {
  const w = WRITER;
  if (partsOrNot(msg, codec)) {
    if (w.msg !== undefined) w.msg = undefined;
  } else if (w.msg !== msg) w.msg = msg;
  w.codec = codec;
  w.tail = tail;
  w.limit = limit;
  return w;
}

/**
 * hasParts, or false when it throws (a value used after its release):
 * writeDelivery then throws it again, inside the sender's `sendWith`,
 * where a delivery that cannot be encoded is handled.
 */
function partsOrNot(msg: Message, codec: CodecName): boolean {
  try {
    return hasParts(msg, codec);
  } catch {
    return false;
  }
}

/**
 * Bytes of the frame of `msg` with `tail` in `codec` (header included).
 * A value still in its bytes as it came (a fast-path publish, to its codec) is measured, not encoded.
 */
export function deliverySize(msg: Message, codec: CodecName, tail: Uint8Array): number {
  if (hasParts(msg, codec)) {
    const head = partsFrame !== undefined
      ? partsFrameEnd
      : partsPrefix.length + partsEnd - partsStart;
    return HEADER + head + partsFlags.length + tail.length;
  }
  return deliveryHead(msg, codec).length + tail.length;
}

/**
 * Appends the frame of `msg` with `tail` to `out`, unless its payload is
 * past `limit` (then nothing is appended). A JSON value still in its JSON
 * text (or a MessagePack value in its bytes, to MessagePack subscribers)
 * goes in as parts (prefix, value, flags, tail) with no head built at all:
 * nothing to encode, only bytes to copy. Otherwise the head encoded once
 * per codec (cached on the message) is copied.
 * @returns the frame's payload bytes (as `deliverySize`, less the header)
 * @throws {Error} when the value cannot be encoded in this codec (nothing appended)
 */
export function writeDelivery(
  out: OutBuffer,
  msg: Message,
  codec: CodecName,
  tail: Uint8Array,
  limit = Infinity,
): number {
  if (hasParts(msg, codec)) return writeParts(out, tail, limit);
  const at = out.length;
  const head = deliveryHead(msg, codec);
  const len = head.length - HEADER + tail.length;
  if (len > limit) return len;
  out.reserve(HEADER + len);
  out.bytes.set(head, at);
  copySmall(out.bytes, tail, at + head.length);
  out.setHeader(at, len);
  out.length = at + HEADER + len;
  return len;
}

/** writeDelivery of the message whose parts are set (see hasParts). */
function writeParts(out: OutBuffer, tail: Uint8Array, limit: number): number {
  if (partsFrame !== undefined) {
    const len = partsFrameEnd + partsFlags.length + tail.length;
    if (len <= limit) writeFromFrame(out, partsFrame.canonicalFrame!, partsFlags, tail);
    return len;
  }
  const at = out.length;
  const prefix = partsPrefix;
  const source = partsSource;
  const flags = partsFlags;
  const valueAt = at + HEADER + prefix.length;
  const valueEnd = valueAt + partsEnd - partsStart;
  const len = valueEnd - at - HEADER + flags.length + tail.length;
  if (len > limit) return len;
  // The source goes where its value lands (its bytes around the value are then written over).
  out.reserve(Math.max(HEADER + len, valueAt - at - partsStart + source.length));
  const b = out.bytes;
  b.set(source, valueAt - partsStart);
  b.set(prefix, at + HEADER);
  out.setHeader(at, len);
  if (flags.length > 0) copySmall(b, flags, valueEnd);
  copySmall(b, tail, valueEnd + flags.length);
  out.length = at + HEADER + len;
  return len;
}

/** `broker.message`'s word where a canonical publish frame has `publish` (see FramePublish). */
const MESSAGE_WORD = DELIVERY_PREFIX.subarray(METHOD_WORD_AT, METHOD_WORD_AT + 7);

/**
 * Makes a canonical publish frame (see partsFrame) its message's delivery
 * up to the value, in place, once per message rather than once per
 * delivery: the method's name changed (and in MessagePack the params map's
 * size: topic, value, sid and retained when it is there). The frame is the
 * reader's, done with once its publish is handled (its reader kept what it
 * keeps before), and the value's bytes lie past what changes.
 */
function asDelivery(frame: Uint8Array, json: boolean, retained: boolean): void {
  if (json) copySmall(frame, MESSAGE_WORD, METHOD_WORD_AT);
  else {
    copySmall(frame, MP_MESSAGE_WORD, MP_METHOD_WORD_AT);
    frame[MP_PARAMS_AT] = retained ? 0x84 : 0x83;
  }
}

/**
 * Appends a delivery made from a canonical publish frame (see partsFrame),
 * made its delivery's first bytes by asDelivery: the whole frame is copied
 * (what follows the value, at most `,"retain":false}}` or MessagePack's
 * `retain` pair, is then overwritten or left past the end), then the flags
 * and the tail.
 */
function writeFromFrame(
  out: OutBuffer,
  frame: Uint8Array,
  flags: Uint8Array,
  tail: Uint8Array,
): void {
  const at = out.length;
  const end = partsFrameEnd;
  const len = end + flags.length + tail.length;
  out.reserve(HEADER + Math.max(len, frame.length));
  const b = out.bytes;
  out.setHeader(at, len);
  b.set(frame, at + HEADER);
  if (flags.length > 0) copySmall(b, flags, at + HEADER + end);
  copySmall(b, tail, at + HEADER + end + flags.length);
  out.length = at + HEADER + len;
}

/** Copies a few bytes (a sid's tail): a loop costs less than `set` below a few dozen. */
function copySmall(to: Uint8Array, bytes: Uint8Array, at: number): void {
  for (let i = 0; i < bytes.length; i++) to[at + i] = bytes[i];
}

/**
 * The frame of a delivery up to the sid, with 4 bytes of room for the
 * length prefix in front (set by the writer, who knows the tail). Cached
 * on the message: one encoding per codec, however many subscribers.
 * @throws {Error} when the value cannot be encoded in this codec
 */
export function deliveryHead(msg: Message, codec: CodecName): Uint8Array {
  const slot = CODEC_SLOT[codec];
  const cached = msg.encoded?.[slot];
  if (cached !== undefined) return cached;
  let head: Uint8Array;
  if (codec === "json") {
    head = jsonHead(msg);
  } else {
    // A MessagePack publish's value goes out as the bytes it came in.
    const value = msg.value instanceof RawMsgpack
      ? msg.value.bytes
      : msg.value instanceof RawJson
      ? msg.value.msgpack() // JSON text converted as bytes, no objects made (z34r)
      : msg.value instanceof EncodedValue
      ? msgpackOf(msg.value) // an MQTT payload of JSON text: converted as bytes
      : toMsgpack(msg.value);
    const prefix = mpPrefix(msg.topic, msg.retained);
    const flags = msg.retained ? MP_RETAINED_TRUE : EMPTY;
    head = slabAlloc(HEADER + prefix.length + value.length + flags.length);
    head.set(prefix, HEADER);
    head.set(value, HEADER + prefix.length);
    if (flags.length > 0) head.set(flags, HEADER + prefix.length + value.length);
  }
  (msg.encoded ??= [])[slot] = head;
  return head;
}

/**
 * Makes a message's encodings and value its own (copies out of the slab),
 * for a delivery that will wait long in a queue.
 */
export function holdMessage(msg: Message): void {
  const encoded = msg.encoded;
  if (encoded !== undefined) {
    for (let i = 0; i < encoded.length; i++) encoded[i] = encoded[i]?.slice();
  }
  if (msg.value instanceof EncodedValue) msg.value = msg.value.detach();
}

/**
 * The end of a subscription's deliveries: the sid, its key before it and
 * in JSON the closing brackets (`,"sid":N}}`), made once per subscription.
 */
export function sidTail(sid: number, codec: CodecName): Uint8Array {
  return codec === "json"
    ? textEncoder.encode(`,"sid":${sid}}}`)
    : concatBytes([toMsgpack("sid"), toMsgpack(sid)]);
}

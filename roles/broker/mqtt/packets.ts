/**
 * MQTT packets: framing and the hot path by hand, the rest with mqtt-packet.
 *
 * Framing is ours so that a packet's size is judged from its fixed header,
 * before any of it is buffered (mqtt-packet buffers whatever remaining
 * length it is told). PUBLISH, PUBACK, PUBREC/PUBREL/PUBCOMP and PING are
 * encoded and decoded here: mqtt-packet costs ~0.6–1 µs per packet each
 * way, against tens of nanoseconds by hand (see docs in the README). The
 * packets that come once per connection or subscription (CONNECT,
 * SUBSCRIBE, UNSUBSCRIBE, and the acknowledgements of them) go through
 * mqtt-packet, which knows every field and MQTT 5 property.
 */
import { Buffer } from "node:buffer";
import mqttPacket, { type Packet } from "mqtt-packet";
import { ackRepeats, checkStrictly } from "./strict.ts";

export { PacketFault } from "./strict.ts";

export const CONNECT = 1;
export const CONNACK = 2;
export const PUBLISH = 3;
export const PUBACK = 4;
export const PUBREC = 5;
export const PUBREL = 6;
export const PUBCOMP = 7;
export const SUBSCRIBE = 8;
export const UNSUBSCRIBE = 10;
export const PINGREQ = 12;
export const DISCONNECT = 14;
export const AUTH = 15;

/** Most bytes of a remaining length (MQTT: four, up to 256 MiB). */
const MAX_LENGTH_BYTES = 4;

/**
 * Where the packet at `buf[at..end)` lies: `head` is the fixed header's
 * size, `length` the remaining length. `length` is -1 when the header is
 * not complete yet, -2 when it is malformed (a fifth length byte).
 */
export const frame = { head: 0, length: -1 };

/** Reads the fixed header at `at` into {@link frame}. */
export function readFrame(buf: Uint8Array, at: number, end: number): void {
  let length = 0;
  let mul = 1;
  for (let i = at + 1, n = 0; n < MAX_LENGTH_BYTES; i++, n++) {
    if (i >= end) {
      frame.length = -1;
      return;
    }
    const b = buf[i];
    length += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) {
      frame.head = i + 1 - at;
      frame.length = length;
      return;
    }
    mul *= 128;
  }
  frame.length = -2;
}

/** A PUBLISH as read: views of the read buffer, valid until the next read. */
export interface Publish {
  topic: Uint8Array;
  qos: number;
  retain: boolean;
  dup: boolean;
  id: number;
  /** MQTT 5 properties (empty for 3.1.1). */
  properties: Uint8Array;
  payload: Uint8Array;
}

const EMPTY = new Uint8Array(0);
const publishRead: Publish = {
  topic: EMPTY,
  qos: 0,
  retain: false,
  dup: false,
  id: 0,
  properties: EMPTY,
  payload: EMPTY,
};

/**
 * Decodes the body `buf[s..e)` of a PUBLISH whose first byte is `first`.
 * Returns the one shared {@link Publish} record (overwritten by the next
 * call), or a string saying what is malformed.
 */
export function readPublish(
  first: number,
  buf: Uint8Array,
  s: number,
  e: number,
  v5: boolean,
): Publish | string {
  const qos = (first >> 1) & 3;
  if (qos === 3) return "a PUBLISH with QoS 3";
  if (qos === 0 && (first & 8) !== 0) return "a QoS 0 PUBLISH with DUP set";
  if (s + 2 > e) return "a PUBLISH too short for its topic";
  const topicLength = (buf[s] << 8) | buf[s + 1];
  let p = s + 2 + topicLength;
  if (p > e) return "a PUBLISH topic longer than the packet";
  const out = publishRead;
  out.topic = buf.subarray(s + 2, p);
  out.id = 0;
  if (qos > 0) {
    if (p + 2 > e) return "a PUBLISH too short for its packet id";
    out.id = (buf[p] << 8) | buf[p + 1];
    if (out.id === 0) return "a PUBLISH with packet id 0";
    p += 2;
  }
  out.properties = EMPTY;
  if (v5) {
    let length = 0;
    let mul = 1;
    for (let n = 0;; n++) {
      if (p >= e || n === MAX_LENGTH_BYTES) return "a PUBLISH with a malformed property length";
      const b = buf[p++];
      length += (b & 0x7f) * mul;
      mul *= 128;
      if ((b & 0x80) === 0) break;
    }
    if (p + length > e) return "PUBLISH properties longer than the packet";
    out.properties = buf.subarray(p, p + length);
    p += length;
  }
  out.qos = qos;
  out.retain = (first & 1) === 1;
  out.dup = (first & 8) === 8;
  out.payload = buf.subarray(p, e);
  return out;
}

/** Bytes of a remaining length's encoding. */
export function lengthBytes(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4;
}

/** What a PUBLISH carries besides topic and payload (MQTT 5; none for 3.1.1). */
export interface PublishExtras {
  /** MQTT 5 properties passed on as they came (user properties, content type, …). */
  properties: Uint8Array;
  /** Message Expiry: seconds left (written as property 0x02), or -1 for none. */
  expiry: number;
  /**
   * The Subscription Identifier of the subscription it goes by (written as
   * 0x0B), 0: none; or those of a client's overlapping subscriptions its one
   * copy goes by (MQTT-3.3.4-4), each written.
   */
  subscription?: number | readonly number[];
  /** Our Topic Alias for its topic on this connection (written as 0x23), 0: none. */
  alias?: number;
}

export const NO_EXTRAS: PublishExtras = { properties: new Uint8Array(0), expiry: -1 };

/** Bytes of a PUBLISH's properties with their length (MQTT 5). */
function propertiesSize(extras: PublishExtras): number {
  const n = ownProperties(extras) + extras.properties.length;
  return lengthBytes(n) + n;
}

/** Bytes of the properties we write (Message Expiry, Subscription Identifier). */
function ownProperties(extras: PublishExtras): number {
  const sub = extras.subscription ?? 0;
  let ids = 0;
  if (typeof sub === "number") ids = sub > 0 ? 1 + lengthBytes(sub) : 0;
  else for (const id of sub) ids += 1 + lengthBytes(id);
  return (extras.expiry >= 0 ? 5 : 0) + ids + ((extras.alias ?? 0) > 0 ? 3 : 0);
}

/** Bytes of a PUBLISH (fixed header included). */
export function publishSize(
  topic: Uint8Array,
  qos: number,
  v5: boolean,
  payload: number,
  extras: PublishExtras = NO_EXTRAS,
): number {
  const rest = 2 + topic.length + (qos > 0 ? 2 : 0) + (v5 ? propertiesSize(extras) : 0) + payload;
  return 1 + lengthBytes(rest) + rest;
}

/** Writes a remaining length (or a property length) at `out[at..]`; returns where it ends. */
function writeLength(out: Uint8Array, at: number, n: number): number {
  let x = n;
  do {
    let b = x & 0x7f;
    x >>>= 7;
    if (x > 0) b |= 0x80;
    out[at++] = b;
  } while (x > 0);
  return at;
}

/**
 * Writes a PUBLISH at `out[at..]` (room checked by the caller with
 * {@link publishSize}); returns where it ends. MQTT 5: the Message Expiry
 * first (where {@link patchExpiry} finds it), the Subscription Identifier,
 * the Topic Alias, then the publisher's properties.
 * With `qos` > 0 and `id` 0, the id is patched in later ({@link patchId}).
 */
export function writePublish(
  out: Uint8Array,
  at: number,
  topic: Uint8Array,
  payload: Uint8Array,
  qos: number,
  retain: boolean,
  id: number,
  v5: boolean,
  extras: PublishExtras = NO_EXTRAS,
): number {
  const props = v5 ? propertiesSize(extras) : 0;
  const rest = 2 + topic.length + (qos > 0 ? 2 : 0) + props + payload.length;
  out[at++] = 0x30 | (qos << 1) | (retain ? 1 : 0);
  at = writeLength(out, at, rest);
  out[at++] = topic.length >> 8;
  out[at++] = topic.length & 0xff;
  out.set(topic, at);
  at += topic.length;
  if (qos > 0) {
    out[at++] = id >> 8;
    out[at++] = id & 0xff;
  }
  if (v5) {
    const expiry = extras.expiry;
    at = writeLength(out, at, ownProperties(extras) + extras.properties.length);
    if (expiry >= 0) {
      out[at++] = 0x02;
      out[at++] = expiry >>> 24;
      out[at++] = (expiry >>> 16) & 0xff;
      out[at++] = (expiry >>> 8) & 0xff;
      out[at++] = expiry & 0xff;
    }
    const sub = extras.subscription ?? 0;
    if (typeof sub !== "number") {
      for (const id of sub) {
        out[at++] = 0x0b;
        at = writeLength(out, at, id);
      }
    } else if (sub > 0) {
      out[at++] = 0x0b;
      at = writeLength(out, at, sub);
    }
    const alias = extras.alias ?? 0;
    if (alias > 0) {
      out[at++] = 0x23;
      out[at++] = alias >> 8;
      out[at++] = alias & 0xff;
    }
    out.set(extras.properties, at);
    at += extras.properties.length;
  }
  out.set(payload, at);
  return at + payload.length;
}

/**
 * Where the first property of an encoded MQTT 5 PUBLISH is, when it is a
 * Message Expiry (as {@link writePublish} puts it); -1 otherwise.
 */
export function expiryAt(packet: Uint8Array): number {
  let i = 1;
  while (packet[i] & 0x80) i++;
  i++;
  i += 2 + ((packet[i] << 8) | packet[i + 1]);
  if (publishQos(packet) > 0) i += 2;
  if (packet[i] === 0) return -1; // no properties
  while (packet[i] & 0x80) i++; // their length (128 bytes or more: several)
  i++;
  return packet[i] === 0x02 ? i + 1 : -1;
}

/** Reads the 4-byte Message Expiry at `at`. */
export function readExpiry(packet: Uint8Array, at: number): number {
  return ((packet[at] << 24) | (packet[at + 1] << 16) | (packet[at + 2] << 8) | packet[at + 3]) >>>
    0;
}

/** Writes the 4-byte Message Expiry at `at`. */
export function patchExpiry(packet: Uint8Array, at: number, seconds: number): void {
  packet[at] = seconds >>> 24;
  packet[at + 1] = (seconds >>> 16) & 0xff;
  packet[at + 2] = (seconds >>> 8) & 0xff;
  packet[at + 3] = seconds & 0xff;
}

/** The QoS of an encoded PUBLISH. */
export function publishQos(packet: Uint8Array): number {
  return (packet[0] >> 1) & 3;
}

/** Sets the packet id of an encoded PUBLISH with QoS > 0 (in place). */
export function patchId(packet: Uint8Array, id: number): void {
  let i = 1;
  while (packet[i] & 0x80) i++;
  i++;
  i += 2 + ((packet[i] << 8) | packet[i + 1]);
  packet[i] = id >> 8;
  packet[i + 1] = id & 0xff;
}

/** An acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP) with no reason code: 4 bytes. */
export function writeAck(out: Uint8Array, at: number, type: number, id: number): void {
  out[at] = (type << 4) | (type === PUBREL ? 2 : 0);
  out[at + 1] = 2;
  out[at + 2] = id >> 8;
  out[at + 3] = id & 0xff;
}

/**
 * The packet id of an acknowledgement body at `buf[s..e)`, or -1 when it
 * has none, or (`v5`) has a property twice (strict.ts ackRepeats).
 */
export function ackId(buf: Uint8Array, s: number, e: number, v5 = false): number {
  if (e - s < 2 || (v5 && ackRepeats(buf, s, e))) return -1;
  return (buf[s] << 8) | buf[s + 1];
}

/** SUBACK or UNSUBACK: the packet id, (MQTT 5: no properties), the codes. */
export function withIds(first: number, id: number, codes: number[], v5: boolean): Uint8Array {
  const body = 2 + (v5 ? 1 : 0) + codes.length;
  const head = 1 + lengthBytes(body);
  const packet = new Uint8Array(head + body);
  packet[0] = first;
  let x = body;
  let at = 1;
  do {
    let b = x & 0x7f;
    x >>>= 7;
    if (x > 0) b |= 0x80;
    packet[at++] = b;
  } while (x > 0);
  packet[at++] = id >> 8;
  packet[at++] = id & 0xff;
  if (v5) packet[at++] = 0;
  packet.set(codes, at);
  return packet;
}

export const PINGRESP_BYTES = Uint8Array.of(0xd0, 0);

/**
 * The protocol level a CONNECT asks for (3, 4 or 5; anything else as
 * found), read before parsing so that a refusal can be answered in the
 * client's own version; -1 when the packet is too short to say.
 */
export function connectLevel(packet: Uint8Array, head: number): number {
  if (packet.length < head + 2) return -1;
  const at = head + 2 + ((packet[head] << 8) | packet[head + 1]);
  return at < packet.length ? packet[at] & 0x7f : -1;
}

/** Whether a CONNECT's flags (the byte after its level) say it carries a will. */
export function connectHasWill(packet: Uint8Array, head: number): boolean {
  const at = head + 3 + ((packet[head] << 8) | packet[head + 1]);
  return at < packet.length && (packet[at] & 0x04) !== 0;
}

/**
 * Parses one whole packet with mqtt-packet (`version` 4 or 5: which
 * properties to read). Throws with the parser's reason when it is
 * malformed, or when it is not exactly one packet; a {@link PacketFault}
 * for what the parser takes and MQTT refuses (strict.ts).
 */
export function parseSlow(packet: Uint8Array, version: number): Packet {
  const parser = mqttPacket.parser({ protocolVersion: version });
  strictStrings(parser as unknown as StringReader);
  let out: Packet | undefined;
  let error: Error | undefined;
  parser.on("packet", (p: Packet) => out ??= p);
  parser.on("error", (e: Error) => error ??= e);
  parser.parse(Buffer.from(packet.buffer, packet.byteOffset, packet.length));
  if (error !== undefined) throw error;
  if (out === undefined) throw new Error("Incomplete packet");
  checkStrictly(packet, version === 5);
  return out;
}

/** A string field that is not well-formed UTF-8: a Malformed Packet (MQTT 5 §1.5.4, 3.1.1 §1.5.3). */
export class MalformedString extends Error {}

/** What {@link strictStrings} uses of mqtt-packet's parser (9.0.2: every UTF-8 string field is read by `_parseString`). */
interface StringReader {
  _parseString(): string | null;
  _list: { slice(from: number, to: number): Uint8Array };
  _pos: number;
}

const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Makes `parser` refuse a UTF-8 string field that is not well-formed (client
 * id, will topic, user name, filters, string properties): mqtt-packet reads
 * them with Buffer's lossy decoder, which turns 0xFF, an overlong form or a
 * lone surrogate into U+FFFD, so `dev\xff` and `dev\xfe` were one client id
 * and `u/\xff` a filter on `u/U+FFFD` (hostile review 40b U5). Only a string
 * holding U+FFFD is read again, strictly, from its bytes (a valid EF BF BD
 * passes).
 */
function strictStrings(parser: StringReader): void {
  const lossy = parser._parseString;
  parser._parseString = function (this: StringReader) {
    const at = this._pos + 2; // past the string's length
    const text = lossy.call(this);
    if (text !== null && text.includes("\uFFFD")) {
      try {
        fatal.decode(this._list.slice(at, this._pos));
      } catch {
        throw new MalformedString("a string that is not UTF-8");
      }
    }
    return text;
  };
}

/** Encodes a packet with mqtt-packet. */
export function generate(packet: Packet, version: number): Uint8Array {
  return mqttPacket.generate(packet, { protocolVersion: version });
}

/**
 * Delivery frames, encoded once per codec and copied to every subscriber.
 *
 * A delivery is the notification `{"method":"broker.message","params":
 * {"topic":…,"value":…,"retained":…,"sid":N}}`. Only `sid` differs from one
 * subscriber to the next, so it comes last: a message's frame is its length
 * prefix and everything up to the sid ({@link deliveryHead}, cached on the
 * message per codec), and each subscription has its own tail (the sid and
 * the closing brackets, {@link sidTail}). Writing a delivery is then setting
 * the length and copying two byte arrays, whatever the value.
 */
import { Buffer } from "node:buffer";
import { Encoder } from "@msgpack/msgpack";
import type { CodecName } from "../../wire/mod.ts";
import type { Message } from "./subscriber.ts";

/** Index of a codec in `Message.encoded`. */
export const CODEC_SLOT: Record<CodecName, number> = { json: 0, msgpack: 1 };

const HEADER = 4;
const textEncoder = new TextEncoder();
const mpEncoder = new Encoder({ ignoreUndefined: true });
/** Scratch space for JSON text, grown as needed; a frame is sliced out of it. */
let scratch = new Uint8Array(64 * 1024);

/** JSON has no bytes: binary values (from MessagePack) travel as base64 text. */
function jsonReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString("base64");
  return value;
}

function jsonText(value: unknown): string {
  return typeof value === "object" && value !== null
    ? JSON.stringify(value, jsonReplacer)
    : JSON.stringify(value) ?? "null";
}

/** Bytes with room for the length prefix in front. */
function withHeaderRoom(text: string): Uint8Array {
  if (scratch.length < HEADER + text.length * 3) {
    scratch = new Uint8Array(Math.max(scratch.length * 2, HEADER + text.length * 3));
  }
  const { written } = textEncoder.encodeInto(text, scratch.subarray(HEADER));
  return scratch.slice(0, HEADER + written);
}

/** MessagePack: a fixmap header, then key/value pairs; `sid` comes from the tail. */
const MP_HEAD = concat([
  Uint8Array.of(0x82),
  mpEncoder.encode("method"),
  mpEncoder.encode("broker.message"),
  mpEncoder.encode("params"),
  Uint8Array.of(0x84),
  mpEncoder.encode("topic"),
]);
const MP_VALUE = mpEncoder.encode("value");
const MP_RETAINED = mpEncoder.encode("retained");
const MP_SID = mpEncoder.encode("sid");

function concat(parts: Uint8Array[], room = 0): Uint8Array {
  let n = room;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = room;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
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
    head = withHeaderRoom(
      `{"method":"broker.message","params":{"topic":${JSON.stringify(msg.topic)},"value":${
        jsonText(msg.value)
      },"retained":${msg.retained},"sid":`,
    );
  } else {
    head = concat([
      MP_HEAD,
      mpEncoder.encode(msg.topic),
      MP_VALUE,
      mpEncoder.encode(msg.value),
      MP_RETAINED,
      Uint8Array.of(msg.retained ? 0xc3 : 0xc2),
      MP_SID,
    ], HEADER);
  }
  (msg.encoded ??= [])[slot] = head;
  return head;
}

/** The end of a subscription's deliveries: its sid and the closing brackets. */
export function sidTail(sid: number, codec: CodecName): Uint8Array {
  return codec === "json" ? textEncoder.encode(`${sid}}}`) : mpEncoder.encode(sid);
}

/** Sets the length prefix of a head for a frame that ends with `tailLength` bytes. */
export function setLength(head: Uint8Array, tailLength: number): void {
  const len = head.length - HEADER + tailLength;
  head[0] = len >>> 24;
  head[1] = (len >>> 16) & 0xff;
  head[2] = (len >>> 8) & 0xff;
  head[3] = len & 0xff;
}

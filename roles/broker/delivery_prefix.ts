/**
 * A delivery's bytes up to its value, per topic (and for MessagePack per
 * retained flag), kept since topics repeat: what frames.ts writes before a
 * value that is not written from its publish frame.
 */
import { DELIVERY_PREFIX, toMsgpack } from "../../wire/mod.ts";
import { concatBytes } from "../../wire/byte_words.ts";
import { MP_METHOD_WORD_AT } from "./msgpack_publish.ts";

const textEncoder = new TextEncoder();
const EMPTY: Uint8Array = new Uint8Array(0);
const VALUE_KEY = textEncoder.encode(',"value":');
/** Between the value and the sid's tail of a retained value's delivery. */
export const RETAINED_TRUE = textEncoder.encode(',"retained":true');

/**
 * A delivery's bytes up to its value, per topic:
 * `{"method":"broker.message","params":{"topic":"T","value":`. Kept, since
 * topics repeat (the map is emptied when it passes TOPIC_PREFIXES_KEPT).
 */
const topicPrefixes = new Map<string, Uint8Array>();
const TOPIC_PREFIXES_KEPT = 4096;

/** The last topic asked for and its prefix: a publisher's run on one topic asks no map. */
let lastTopic = "";
let lastPrefix = EMPTY;

export function topicPrefix(topic: string): Uint8Array {
  if (topic === lastTopic) return lastPrefix;
  let prefix = topicPrefixes.get(topic);
  if (prefix === undefined) {
    if (topicPrefixes.size >= TOPIC_PREFIXES_KEPT) topicPrefixes.clear();
    const text = textEncoder.encode(JSON.stringify(topic));
    prefix = new Uint8Array(DELIVERY_PREFIX.length + text.length + VALUE_KEY.length);
    prefix.set(DELIVERY_PREFIX, 0);
    prefix.set(text, DELIVERY_PREFIX.length);
    prefix.set(VALUE_KEY, DELIVERY_PREFIX.length + text.length);
    topicPrefixes.set(topic, prefix);
  }
  lastTopic = topic;
  return lastPrefix = prefix;
}

/**
 * MessagePack: a fixmap header, then key/value pairs; `sid` comes from the
 * tail. `params` has 3 members, or 4 with `retained` (only when true, as in JSON).
 */
function mpHead(members: number): Uint8Array {
  return concatBytes([
    Uint8Array.of(0x82),
    toMsgpack("method"),
    toMsgpack("broker.message"),
    toMsgpack("params"),
    Uint8Array.of(0x80 | members),
    toMsgpack("topic"),
  ]);
}
const MP_HEAD = mpHead(3);
const MP_HEAD_RETAINED = mpHead(4);
const MP_VALUE = toMsgpack("value");
export const MP_RETAINED_TRUE = concatBytes([toMsgpack("retained"), Uint8Array.of(0xc3)]);
/** `message` in MP_HEAD, where a canonical MessagePack publish has `publish`. */
export const MP_MESSAGE_WORD = MP_HEAD.subarray(MP_METHOD_WORD_AT, MP_METHOD_WORD_AT + 7);

/** A MessagePack delivery's bytes up to its value, per topic and retained flag (as topicPrefixes for JSON). */
const mpPrefixes = new Map<string, Uint8Array>();
const mpRetainedPrefixes = new Map<string, Uint8Array>();

export function mpPrefix(topic: string, retained: boolean): Uint8Array {
  const prefixes = retained ? mpRetainedPrefixes : mpPrefixes;
  let prefix = prefixes.get(topic);
  if (prefix === undefined) {
    if (prefixes.size >= TOPIC_PREFIXES_KEPT) prefixes.clear();
    prefix = concatBytes([retained ? MP_HEAD_RETAINED : MP_HEAD, toMsgpack(topic), MP_VALUE]);
    prefixes.set(topic, prefix);
  }
  return prefix;
}

/**
 * A `broker.publish` notification or request (a confirmed publish) in
 * MessagePack read as bytes, as
 * wire/pubsub_json.ts reads a JSON one: the frame is checked in one pass as
 * strictly as the decoder checks it (wire/msgpack_scan.ts), nothing is built, and the value is a
 * view of the frame that MessagePack subscribers get as it came. Anything
 * the decoder would read differently or refuse is left to it (undefined):
 * an id other than an integer of 32 bits or a short ASCII string, another member, extension types (dates among them),
 * map keys that are not strings, integers past 2^53, NaN and ±Infinity,
 * invalid UTF-8, nesting past MAX_DEPTH.
 */
import { type FramePublish, PublishRead, type TopicCache } from "../../wire/mod.ts";
import {
  ID_READ,
  readMsgpackId,
  readStr,
  skipMsgpack,
  STR,
  strIs,
} from "../../wire/msgpack_scan.ts";
import { bytesAt, knownFrame, startsWith } from "../../wire/byte_words.ts";

const encoder = new TextEncoder();
const ID = encoder.encode("id");
const METHOD = encoder.encode("method");
const PARAMS = encoder.encode("params");
const PUBLISH_METHOD = encoder.encode("broker.publish");
const TOPIC = encoder.encode("topic");
const VALUE = encoder.encode("value");
const RETAIN = encoder.encode("retain");
/** A notification's start as encoders write it: `{method: "broker.publish", params: …}`. */
const CANONICAL = Uint8Array.of(
  0x82,
  0xa6,
  ...METHOD,
  0xa0 | PUBLISH_METHOD.length,
  ...PUBLISH_METHOD,
  0xa6,
  ...PARAMS,
);

/** `params` is a map in the message: its members' parent is at depth 2. */
const VALUE_DEPTH = 2;

/** Reused by readMsgpackPublish for each frame (its caller uses it at once). */
const PUBLISH = new PublishRead();

/** Where `publish` (in CANONICAL) and `message` (in a delivery) are, 7 bytes each. */
export const MP_METHOD_WORD_AT = 16;
/** Where the params map's header is, after CANONICAL. */
export const MP_PARAMS_AT = CANONICAL.length;
const TOPIC_KEY = Uint8Array.of(0xa0 | TOPIC.length, ...TOPIC);
const VALUE_KEY = Uint8Array.of(0xa0 | VALUE.length, ...VALUE);

/**
 * Whether a notification that starts with CANONICAL has its params as a
 * delivery has them up to the value: a fixmap whose first member is the
 * topic, as a fixstr (what the encoder writes for under 32 bytes, as the
 * broker does), and the second the value at `valueStart`. A delivery is
 * then the frame's first bytes up to the value's end, but for the method's
 * word and the map's size (see FramePublish.canonical).
 */
function canonicalParams(b: Uint8Array, valueStart: number): boolean {
  let i = MP_PARAMS_AT + 1;
  if ((b[MP_PARAMS_AT] & 0xf0) !== 0x80 || !bytesAt(b, i, TOPIC_KEY)) return false;
  i += TOPIC_KEY.length;
  const c = b[i];
  if (c < 0xa0 || c > 0xbf) return false;
  i += 1 + (c & 0x1f);
  return bytesAt(b, i, VALUE_KEY) && i + VALUE_KEY.length === valueStart;
}

/**
 * Reads a `broker.publish` notification in MessagePack: a map of `method`
 * and `params` (a map of `topic`, `value` and optionally `retain`), in any
 * order, and `id` for a request. The answer is one object reused for every
 * frame: read it at once.
 */
export function readMsgpackPublish(
  frame: Uint8Array,
  topics: TopicCache,
  buffer?: ArrayBufferLike,
): FramePublish | undefined {
  const b = frame;
  // A frame the publisher sent before but where its value may change (see PublishMemo): read already.
  const kept = topics.memo.match(b, buffer);
  if (kept !== undefined) {
    PUBLISH.id = undefined;
    PUBLISH.topic = kept.topic;
    PUBLISH.at(b, kept.valueStart, kept.valueEnd);
    PUBLISH.retain = kept.retain;
    PUBLISH.canonical = true;
    return PUBLISH;
  }
  if (buffer !== undefined) knownFrame(b, buffer); // (not on a hit: see readPublish)
  PUBLISH.canonical = false;
  const head = topics.head(b);
  if (head > 0 && readCanonicalValue(b, head, topics.headTopic)) {
    topics.memo.checked(b, PUBLISH, true);
    return PUBLISH;
  }
  if (startsWith(b, CANONICAL)) {
    // As the client's encoder writes it (most publishes): only the params to read.
    const end = readParams(b, CANONICAL.length, topics);
    if (end === b.length) {
      PUBLISH.id = undefined;
      PUBLISH.canonical = canonicalParams(b, PUBLISH.valueStart);
      // Its head, for the publishes after it on this topic (see TopicCache).
      if (PUBLISH.canonical) {
        topics.keepHead(b, PUBLISH.valueStart, PUBLISH.topic);
        topics.memo.checked(b, PUBLISH, true);
      }
      return PUBLISH;
    }
  }
  const c = b[0];
  // A fixmap of two members, or three with an id.
  if (c !== 0x82 && c !== 0x83) return undefined;
  let i = 1;
  let method = false;
  let params = false;
  let id: number | string | undefined;
  for (let k = c & 0x0f; k > 0; k--) {
    i = readStr(b, i);
    if (i < 0) return undefined;
    if (strIs(b, METHOD) && !method) {
      i = readStr(b, i);
      if (i < 0 || !strIs(b, PUBLISH_METHOD)) return undefined;
      method = true;
    } else if (strIs(b, PARAMS) && !params) {
      i = readParams(b, i, topics);
      if (i < 0) return undefined;
      params = true;
    } else if (strIs(b, ID) && id === undefined) {
      i = readMsgpackId(b, i);
      if (i < 0) return undefined;
      id = ID_READ.value;
    } else return undefined;
  }
  if (i !== b.length || !method || !params) return undefined;
  PUBLISH.id = id;
  return PUBLISH;
}

const RETAIN_KEY = Uint8Array.of(0xa0 | RETAIN.length, ...RETAIN);

/**
 * A canonical notification (see canonicalParams) whose bytes up to its
 * value at `start` are the head kept for `topic` (see TopicCache): the
 * value, then nothing more when the params map has two members, or
 * `retain` and a boolean when three. False for anything else (the frame is
 * read the long way).
 */
function readCanonicalValue(b: Uint8Array, start: number, topic: string): boolean {
  const end = skipMsgpack(b, start, VALUE_DEPTH);
  if (end < 0) return false;
  let retain = true;
  if (b[MP_PARAMS_AT] === 0x83) {
    const flag = b[end + RETAIN_KEY.length];
    if (
      end + RETAIN_KEY.length + 1 !== b.length || !bytesAt(b, end, RETAIN_KEY) ||
      (flag !== 0xc2 && flag !== 0xc3)
    ) return false;
    retain = flag === 0xc3;
  } else if (end !== b.length) return false;
  PUBLISH.id = undefined;
  PUBLISH.topic = topic;
  PUBLISH.at(b, start, end);
  PUBLISH.retain = retain;
  PUBLISH.canonical = true;
  return true;
}

function readParams(b: Uint8Array, i: number, topics: TopicCache): number {
  // A map's header (no pair allocated per publish to return its two numbers).
  const c = b[i];
  let n: number;
  if (c >= 0x80 && c <= 0x8f) {
    n = c & 0x0f;
    i++;
  } else if (c === 0xde) {
    n = (b[i + 1] << 8) | b[i + 2];
    i += 3;
  } else return -1;
  let topic = false;
  let value = false;
  let retain: boolean | undefined;
  for (let k = 0; k < n; k++) {
    i = readStr(b, i);
    if (i < 0) return -1;
    if (strIs(b, TOPIC) && !topic) {
      i = readStr(b, i);
      if (i < 0) return -1;
      PUBLISH.topic = topics.topic(b, STR.start, STR.end);
      topic = true;
    } else if (strIs(b, VALUE) && !value) {
      const end = skipMsgpack(b, i, VALUE_DEPTH);
      if (end < 0) return -1;
      PUBLISH.at(b, i, end);
      i = end;
      value = true;
    } else if (strIs(b, RETAIN) && retain === undefined) {
      if (b[i] !== 0xc2 && b[i] !== 0xc3) return -1;
      retain = b[i] === 0xc3;
      i++;
    } else return -1;
  }
  if (!topic || !value) return -1;
  PUBLISH.retain = retain ?? true;
  return i;
}

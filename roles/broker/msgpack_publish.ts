/**
 * A `broker.publish` notification or request (a confirmed publish) in
 * MessagePack read as bytes, as
 * wire/pubsub_json.ts reads a JSON one: the frame is checked in one pass as
 * strictly as the decoder checks it, nothing is built, and the value is a
 * view of the frame that MessagePack subscribers get as it came. Anything
 * the decoder would read differently or refuse is left to it (undefined):
 * an id other than an integer of 32 bits or a short ASCII string, another member, extension types (dates among them),
 * map keys that are not strings, integers past 2^53, NaN and ±Infinity,
 * invalid UTF-8, nesting past MAX_DEPTH.
 */
import { type FramePublish, MAX_DEPTH, PublishRead, type TopicCache } from "../../wire/mod.ts";
import { skipUtf8 } from "../../wire/json_scan.ts";
import { bytesAt, startsWith } from "../../wire/byte_words.ts";

const encoder = new TextEncoder();
const ID = encoder.encode("id");
const METHOD = encoder.encode("method");
const PARAMS = encoder.encode("params");
const PUBLISH_METHOD = encoder.encode("broker.publish");
const TOPIC = encoder.encode("topic");
const VALUE = encoder.encode("value");
const RETAIN = encoder.encode("retain");
const PROTO = encoder.encode("__proto__");
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

/** Where the last string read by `str` starts and ends (its bytes, header excluded). */
let strStart = 0;
let strEnd = 0;

/** Reads the string header at `i`; sets strStart/strEnd and returns its end, or -1. */
function str(b: Uint8Array, i: number): number {
  const c = b[i];
  let n: number;
  let at: number;
  if (c >= 0xa0 && c <= 0xbf) {
    n = c & 0x1f;
    at = i + 1;
  } else if (c === 0xd9) {
    n = b[i + 1];
    at = i + 2;
  } else if (c === 0xda) {
    n = (b[i + 1] << 8) | b[i + 2];
    at = i + 3;
  } else if (c === 0xdb) {
    n = u32(b, i + 1);
    at = i + 5;
  } else return -1;
  const end = at + n;
  if (!(end <= b.length)) return -1;
  for (let j = at; j < end;) {
    if (b[j] < 0x80) j++;
    else {
      j = skipUtf8(b, j);
      if (j < 0 || j > end) return -1;
    }
  }
  strStart = at;
  strEnd = end;
  return end;
}

function u32(b: Uint8Array, i: number): number {
  return ((b[i] << 24) >>> 0) + ((b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]);
}

/** Whether the string last read by `str` is `word`. */
function strIs(b: Uint8Array, word: Uint8Array): boolean {
  if (strEnd - strStart !== word.length) return false;
  for (let k = 0; k < word.length; k++) if (b[strStart + k] !== word[k]) return false;
  return true;
}

/**
 * The end of the fixstr at `i` (its header `c`), or -1: ASCII (most of
 * most strings) one comparison a byte, the rest checked as UTF-8 from there.
 */
function fixstr(b: Uint8Array, i: number, c: number, n: number): number {
  const end = i + 1 + (c & 0x1f);
  if (end > n) return -1;
  let j = i + 1;
  while (j < end) {
    if (b[j] < 0x80) j++;
    else if ((j = skipUtf8(b, j)) < 0 || j > end) return -1;
  }
  return end;
}

/** Per open container in skipMsgpack: items left in it, and whether it is a map. */
const LEFT = new Int32Array(MAX_DEPTH + 1);
const MAPS = new Uint8Array(MAX_DEPTH + 1);

/**
 * The end of the MessagePack value at `i`, or -1 for anything the decoder
 * would refuse or read as something else than itself (see the module).
 * `depth` is the nesting of the value's parent.
 *
 * One loop with its own stack of open containers (a map of n pairs is 2n
 * items, keys at odd counts left), not a call per value, and short
 * strings read in place.
 */
export function skipMsgpack(b: Uint8Array, i: number, depth: number): number {
  const room = MAX_DEPTH - depth;
  const n = b.length;
  let top = 0;
  /** Items left at this level (the top level: the value itself). */
  let left = 1;
  let map = false;
  while (true) {
    if (left === 0) {
      if (top === 0) return i <= n ? i : -1;
      top--;
      left = LEFT[top];
      map = MAPS[top] === 1;
      continue;
    }
    left--;
    if (i >= n) return -1;
    const c = b[i];
    if (map && (left & 1) === 1) {
      // A key: strings only (the decoder makes others strings), never one
      // that sets a prototype; a short ASCII one (most are) in place.
      if (c >= 0xa0 && c <= 0xbf && c !== 0xa9) {
        if ((i = fixstr(b, i, c, n)) < 0) return -1;
      } else if ((i = str(b, i)) < 0 || strIs(b, PROTO)) return -1;
      continue;
    }
    if (c <= 0x7f || c >= 0xe0) { // fixints
      i++;
      continue;
    }
    if (c >= 0xa0 && c <= 0xbf) {
      if ((i = fixstr(b, i, c, n)) < 0) return -1;
      continue;
    }
    let count: number;
    let isMap: boolean;
    if (c <= 0x9f) { // fixmap, fixarray
      count = c & 0x0f;
      isMap = c <= 0x8f;
      i++;
    } else {
      switch (c) {
        case 0xc0: // nil
        case 0xc2: // false
        case 0xc3: // true
          i++;
          continue;
        case 0xc4: // bin 8, 16, 32
          i += 2 + b[i + 1];
          continue;
        case 0xc5:
          i += 3 + ((b[i + 1] << 8) | b[i + 2]);
          continue;
        case 0xc6:
          i += 5 + u32(b, i + 1);
          continue;
        case 0xca: // float 32: all exponent bits set is NaN or ±Infinity
          if ((b[i + 1] & 0x7f) === 0x7f && (b[i + 2] & 0x80) !== 0) return -1;
          i += 5;
          continue;
        case 0xcb: // float 64
          if ((b[i + 1] & 0x7f) === 0x7f && (b[i + 2] & 0xf0) === 0xf0) return -1;
          i += 9;
          continue;
        case 0xcc:
        case 0xd0:
          i += 2;
          continue;
        case 0xcd:
        case 0xd1:
          i += 3;
          continue;
        case 0xce:
        case 0xd2:
          i += 5;
          continue;
        case 0xcf: // uint 64: below 2^53 only (a double holds it exactly)
          if (b[i + 1] !== 0 || !(b[i + 2] < 0x20)) return -1;
          i += 9;
          continue;
        case 0xd3: { // int 64: within ±2^53
          const hi = (b[i + 1] << 24) | (b[i + 2] << 16) | (b[i + 3] << 8) | b[i + 4];
          if (hi < -0x200000 || hi >= 0x200000) return -1;
          i += 9;
          continue;
        }
        case 0xd9:
        case 0xda:
        case 0xdb:
          if ((i = str(b, i)) < 0) return -1;
          continue;
        case 0xdc:
        case 0xde:
          count = (b[i + 1] << 8) | b[i + 2];
          isMap = c === 0xde;
          i += 3;
          break;
        case 0xdd:
        case 0xdf:
          count = u32(b, i + 1);
          isMap = c === 0xdf;
          i += 5;
          break;
        default: // extensions (timestamps too) and 0xc1, which is never used
          return -1;
      }
    }
    // A container of `count` items (pairs for a map), each at least a byte.
    if (top >= room || (isMap ? 2 * count : count) > n - i) return -1;
    if (count === 0) continue;
    LEFT[top] = left;
    MAPS[top] = map ? 1 : 0;
    top++;
    left = isMap ? 2 * count : count;
    map = isMap;
  }
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
): FramePublish | undefined {
  const b = frame;
  // A frame the publisher sent before but where its value may change (see PublishMemo): read already.
  const kept = topics.memo.match(b);
  if (kept !== undefined) {
    PUBLISH.id = undefined;
    PUBLISH.topic = kept.topic;
    PUBLISH.at(b, kept.valueStart, kept.valueEnd);
    PUBLISH.retain = kept.retain;
    PUBLISH.canonical = true;
    return PUBLISH;
  }
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
    i = str(b, i);
    if (i < 0) return undefined;
    if (strIs(b, METHOD) && !method) {
      i = str(b, i);
      if (i < 0 || !strIs(b, PUBLISH_METHOD)) return undefined;
      method = true;
    } else if (strIs(b, PARAMS) && !params) {
      i = readParams(b, i, topics);
      if (i < 0) return undefined;
      params = true;
    } else if (strIs(b, ID) && id === undefined) {
      i = readId(b, i);
      if (i < 0) return undefined;
      id = idRead;
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

/** The id read by readId. */
let idRead: number | string = 0;

/**
 * Reads a request id at `i` into idRead: an integer of at most 32 bits, or
 * a string of at most 256 ASCII characters (the decoder takes the rest).
 * Returns its end, or -1.
 */
function readId(b: Uint8Array, i: number): number {
  const c = b[i];
  if (c <= 0x7f) idRead = c;
  else if (c >= 0xe0) idRead = c - 0x100;
  else if (c === 0xcc) idRead = b[i + 1];
  else if (c === 0xcd) idRead = (b[i + 1] << 8) | b[i + 2];
  else if (c === 0xce) idRead = u32(b, i + 1);
  else if (c === 0xd0) idRead = (b[i + 1] << 24) >> 24;
  else if (c === 0xd1) idRead = (((b[i + 1] << 8) | b[i + 2]) << 16) >> 16;
  else if (c === 0xd2) idRead = u32(b, i + 1) | 0;
  else {
    const end = str(b, i);
    if (end < 0 || strEnd - strStart > 256) return -1;
    let text = "";
    for (let j = strStart; j < strEnd; j++) {
      if (b[j] >= 0x80) return -1;
      text += String.fromCharCode(b[j]);
    }
    idRead = text;
    return end;
  }
  const end = c <= 0x7f || c >= 0xe0
    ? i + 1
    : c === 0xcc || c === 0xd0
    ? i + 2
    : c === 0xcd || c === 0xd1
    ? i + 3
    : i + 5;
  return end <= b.length ? end : -1;
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
    i = str(b, i);
    if (i < 0) return -1;
    if (strIs(b, TOPIC) && !topic) {
      i = str(b, i);
      if (i < 0) return -1;
      PUBLISH.topic = topics.topic(b, strStart, strEnd);
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

/**
 * The JSON layouts of the broker's two hot messages, shared by whoever
 * writes or reads them as bytes rather than through JSON.parse:
 *
 *   {"method":"broker.publish","params":{"topic":"T","value":V[,"retain":B]}}
 *   {"method":"broker.message","params":{"topic":"T","value":V[,"retained":B],"sid":N}}
 *
 * A publish is read in any member order and spacing, with any value (see
 * readPublish); a delivery only as the broker writes it (the layout
 * above: what `JSON.stringify` writes for those objects; its reader is in
 * pubsub_delivery.ts). A reader that
 * meets anything else hands the frame to the ordinary decoder: the fast
 * path is an optimisation, never a second protocol.
 */
import { plainInteger, plainString, skipSpace, skipString, skipValue } from "./json_scan.ts";
import { bytesAt, knownFrame, startsWith, WordRun } from "./byte_words.ts";
import type { TopicCache } from "./topic_cache.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const bytes = (text: string) => encoder.encode(text);

export const PUBLISH_PREFIX: Uint8Array = bytes('{"method":"broker.publish","params":{"topic":"');
export const DELIVERY_PREFIX: Uint8Array = bytes('{"method":"broker.message","params":{"topic":');
/** Between a canonical publish's or delivery's topic and its value. */
export const VALUE_KEY: Uint8Array = bytes('","value":');

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const BRACE = 0x7d;

/**
 * Whether `frame` starts with PUBLISH_PREFIX, the cheapest tells first (a
 * delivery differs at 19, other methods at 18–25).
 */
function startsWithPublish(frame: Uint8Array): boolean {
  if (frame.length <= PUBLISH_PREFIX.length) return false;
  if (frame[19] !== PUBLISH_PREFIX[19] || frame[0] !== PUBLISH_PREFIX[0]) return false;
  return PUBLISH_RUN.at(frame, 0);
}

const PUBLISH_RUN = new WordRun(PUBLISH_PREFIX);

/**
 * The end of a topic starting at `from`: the index of its closing quote, or
 * -1 when it is not plain ASCII without escapes (then the frame takes the
 * ordinary path).
 */
export function topicEnd(frame: Uint8Array, from: number): number {
  for (let i = from; i < frame.length; i++) {
    const c = frame[i];
    if (c === QUOTE) return i > from ? i : -1;
    if (c < 0x21 || c > 0x7e || c === BACKSLASH) return -1;
  }
  return -1;
}

/** A publish read as bytes: the topic, and the value's JSON text as a view of the frame. */
export interface RawPublish {
  topic: string;
  value: Uint8Array;
  retain: boolean;
  /** A confirmed publish's request id; undefined for a notification. */
  id: number | string | undefined;
}

/**
 * A publish reader's answer (readPublish, the broker's MessagePack reader):
 * a RawPublish that also says where its value lies in the frame, its view
 * made only when asked (a typed array view costs about as much as copying
 * 200 bytes, and a fast-path delivery copies the frame instead; see
 * `canonical`).
 */
export interface FramePublish extends RawPublish {
  /** The frame read (valid only as long as it is). */
  readonly frame: Uint8Array;
  /** The value's bytes are `frame[valueStart, valueEnd)`. */
  readonly valueStart: number;
  readonly valueEnd: number;
  /**
   * The frame's first `valueEnd` bytes are a delivery's of that topic but
   * for a few bytes at known places. In JSON: the frame is a notification
   * that starts with PUBLISH_PREFIX, then the topic (plain ASCII, so as
   * JSON.stringify writes it) and `","value":`, and differs from a
   * delivery (see DELIVERY_PREFIX) only in the method's name (`publish`
   * where `message` goes, at METHOD_WORD_AT).
   */
  canonical: boolean;
}

/** Where `broker.publish` and `broker.message` differ in JSON: `publish`/`message`, 7 bytes each. */
export const METHOD_WORD_AT = 18;

/** A FramePublish reused for each frame read. */
export class PublishRead implements FramePublish {
  topic = "";
  retain = true;
  id: number | string | undefined = undefined;
  frame: Uint8Array = new Uint8Array(0);
  valueStart = 0;
  valueEnd = 0;
  canonical = false;

  get value(): Uint8Array {
    return this.frame.subarray(this.valueStart, this.valueEnd);
  }

  set value(_view: Uint8Array) {
    throw new Error("PublishRead.value is read-only");
  }

  /** The value is `frame[start, end)`. */
  at(frame: Uint8Array, start: number, end: number): void {
    this.frame = frame;
    this.valueStart = start;
    this.valueEnd = end;
  }
}

/** Reused by readPublish for each frame (its caller uses it at once). */
const PUBLISH = new PublishRead();

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;
const ID = bytes('"id"');
/** How a client writes a request: its id first (`{"id":7,"method":…`). */
const ID_FIRST = bytes('{"id":');
const METHOD = bytes('"method"');
const PARAMS = bytes('"params"');
const PUBLISH_METHOD = bytes('"broker.publish"');
const TOPIC = bytes('"topic"');
const VALUE = bytes('"value"');
const RETAIN = bytes('"retain"');
const TRUE = bytes("true");
const FALSE = bytes("false");
/** `params` is an object in the message: its members' parent is at depth 2. */
const VALUE_DEPTH = 2;

/**
 * Reads a `broker.publish` notification, or a request (a confirmed
 * publish: `id` is set), as any encoder writes it: members in any order,
 * any whitespace, `retain` present or not, the value any JSON value
 * (objects, arrays, numbers, escapes, any text). The frame is checked in
 * one pass as bytes, as strictly as the decoder checks it (well-formed
 * UTF-8 and escapes, no lone surrogate, no number past a double, nesting
 * within MAX_DEPTH) and nothing is built: the value is a view of the frame.
 * Anything else returns undefined, for the ordinary decoder, which then
 * handles or refuses it as it always does: another member, a member twice,
 * a non-string topic, an id that is not a plain integer or string, a value
 * it would refuse. The answer is one object reused for every frame: read
 * it at once. `buffer`, when given, is `frame.buffer` (known to the
 * decoder: FrameDecoder.frameBuffer), which the readers then need not ask.
 */
export function readPublish(
  frame: Uint8Array,
  topics: TopicCache,
  buffer?: ArrayBufferLike,
): FramePublish | undefined {
  const b = frame;
  PUBLISH.id = undefined;
  // A frame the publisher sent before but for its value's digits (see PublishMemo): read already.
  const kept = topics.memo.match(b, buffer);
  if (kept !== undefined) {
    PUBLISH.topic = kept.topic;
    PUBLISH.at(b, kept.valueStart, kept.valueEnd);
    PUBLISH.retain = kept.retain;
    PUBLISH.canonical = kept.canonical !== false;
    return PUBLISH;
  }
  // Not on a memo's hit: storing the frame (young) costs V8's write barrier.
  if (buffer !== undefined) knownFrame(b, buffer);
  PUBLISH.canonical = false;
  const head = topics.head(b);
  if (head > 0) {
    // The head of this publisher's last publishes (its prefix, topic and `","value":`).
    const canonical = readCanonicalValue(b, head, topics.headTopic);
    if (canonical !== null) return canonicalRead(b, canonical, topics);
  } else if (startsWithPublish(b)) {
    // As JSON.stringify writes it (most publishes): no member to look for.
    const canonical = readCanonical(b, PUBLISH_PREFIX.length, topics);
    if (canonical !== null) return canonicalRead(b, canonical, topics);
  } else if (startsWith(b, ID_FIRST)) {
    const read = readIdFirst(b, topics);
    if (read !== null) return read;
  } else {
    // Another encoder's layout as this publisher's last publish had it (else member by member).
    const start = topics.layout.head(b);
    const end = start > 0 ? skipValue(b, start, VALUE_DEPTH) : -1;
    if (end > 0 && topics.layout.tail(b, end)) return layoutRead(b, start, end, topics);
  }
  return readAnyLayout(b, topics);
}

/** A notification in its publisher's last layout (see LayoutMemo), its value `b[start, end)`. */
function layoutRead(b: Uint8Array, start: number, end: number, topics: TopicCache): FramePublish {
  PUBLISH.topic = topics.layout.topic;
  PUBLISH.retain = topics.layout.retain;
  PUBLISH.at(b, start, end);
  topics.memo.checked(b, PUBLISH, false);
  return PUBLISH;
}

/**
 * A confirmed publish as clients write it, `{"id":N,` then the
 * notification's layout from `"method"` on: as readCanonical (null when
 * laid out otherwise, undefined when its value is not valid). Exported for
 * its test: readPublish tries it on frames that start with `{"id":`.
 */
export function readIdFirst(b: Uint8Array, topics: TopicCache): FramePublish | undefined | null {
  PUBLISH.id = undefined;
  PUBLISH.canonical = false;
  const end = skipValue(b, ID_FIRST.length, 1);
  const id = end < 0 ? undefined : readId(b, ID_FIRST.length, end);
  // The comma at `end` stands where the notification has its `{`.
  if (id === undefined || b[end] !== COMMA || !startsWith(b, PUBLISH_PREFIX, end + 1, 1)) {
    return null;
  }
  const read = readCanonical(b, end + PUBLISH_PREFIX.length, topics);
  if (read) PUBLISH.id = id;
  return read;
}

/** A canonical notification read (or undefined: its value is not valid), kept for the next ones. */
function canonicalRead(
  b: Uint8Array,
  read: FramePublish | undefined,
  topics: TopicCache,
): FramePublish | undefined {
  if (read === undefined) return undefined;
  PUBLISH.canonical = true;
  topics.memo.checked(b, PUBLISH, false);
  return PUBLISH;
}

/** A request id the fast path answers itself: a plain integer or string (else the decoder's). */
function readId(b: Uint8Array, start: number, end: number): number | string | undefined {
  return b[start] === QUOTE ? plainString(b, start, end) : plainInteger(b, start, end);
}

/** readPublish for members in any order and spacing (and the params in any order). */
function readAnyLayout(b: Uint8Array, topics: TopicCache): FramePublish | undefined {
  let i = skipSpace(b, 0);
  if (b[i] !== OPEN_BRACE) return undefined;
  i = skipSpace(b, i + 1);
  let method = false;
  let params = false;
  let id: number | string | undefined;
  while (true) {
    // Each key is told by its first letter before it is compared.
    const k = b[i + 1];
    if (k === 0x6d && !method && startsWith(b, METHOD, i)) {
      i = afterColon(b, i + METHOD.length);
      if (!startsWith(b, PUBLISH_METHOD, i)) return undefined;
      i += PUBLISH_METHOD.length;
      method = true;
    } else if (k === 0x70 && !params && startsWith(b, PARAMS, i)) {
      i = readParams(b, afterColon(b, i + PARAMS.length), topics);
      if (i < 0) return undefined;
      params = true;
    } else if (k === 0x69 && id === undefined && startsWith(b, ID, i)) {
      const start = afterColon(b, i + ID.length);
      if (start < 0) return undefined;
      i = skipValue(b, start, 1);
      if (i < 0) return undefined;
      id = readId(b, start, i);
      if (id === undefined) return undefined;
    } else return undefined;
    i = spaced(b, i);
    if (b[i] === COMMA) {
      i = spaced(b, i + 1);
      continue;
    }
    if (b[i] !== BRACE || skipSpace(b, i + 1) !== b.length || !method || !params) {
      return undefined;
    }
    PUBLISH.id = id;
    // Another encoder's notifications are as regular as JSON.stringify's: kept too (not canonical).
    if (id === undefined) {
      topics.memo.checked(b, PUBLISH, false);
      topics.layout.keep(b, PUBLISH.valueStart, PUBLISH.valueEnd, PUBLISH.topic, PUBLISH.retain);
    }
    return PUBLISH;
  }
}

const RETAIN_FALSE_END = bytes(',"retain":false}}');
const RETAIN_TRUE_END = bytes(',"retain":true}}');

/**
 * The rest of a publish after PUBLISH_PREFIX (ending at `from`) in the exact layout
 * `JSON.stringify` writes (`T","value":V}}`, or with `,"retain":B` before
 * the brackets): each part compared in place, the value scanned once.
 * Null when the frame is laid out otherwise (the general reader takes it);
 * undefined when the value is not valid (no reader would take it).
 */
function readCanonical(
  b: Uint8Array,
  from: number,
  topics: TopicCache,
): FramePublish | undefined | null {
  const t = topicEnd(b, from);
  if (t < 0 || !bytesAt(b, t, VALUE_KEY)) return null;
  const start = t + VALUE_KEY.length;
  const topic = topics.topic(b, from, t);
  const read = readCanonicalValue(b, start, topic);
  // A notification's head, for the publishes after it on this topic.
  if (read && from === PUBLISH_PREFIX.length) topics.keepHead(b, start, topic);
  return read;
}

/**
 * The rest of a canonical publish from its value at `start` on (the
 * value, then `}}`, `,"retain":false}}` or `,"retain":true}}`), to
 * `topic`: as readCanonical.
 */
function readCanonicalValue(
  b: Uint8Array,
  start: number,
  topic: string,
): FramePublish | undefined | null {
  const end = skipValue(b, start, VALUE_DEPTH);
  if (end < 0) return undefined;
  const rest = b.length - end;
  let retain = true;
  if (rest === 2) {
    if (b[end] !== BRACE || b[end + 1] !== BRACE) return null;
  } else if (rest === RETAIN_FALSE_END.length && bytesAt(b, end, RETAIN_FALSE_END)) {
    retain = false;
  } else if (rest !== RETAIN_TRUE_END.length || !bytesAt(b, end, RETAIN_TRUE_END)) {
    return null;
  }
  PUBLISH.topic = topic;
  PUBLISH.at(b, start, end);
  PUBLISH.retain = retain;
  return PUBLISH;
}

/** The index of the value after a key ending at `i` (spaces, a colon, spaces), or -1. */
function afterColon(b: Uint8Array, i: number): number {
  i = spaced(b, i);
  return b[i] === COLON ? spaced(b, i + 1) : -1;
}

/**
 * skipSpace, called only when `b[i]` may be a space (JSON's are at most
 * 0x20; past the end, undefined is no space): most keys and values are
 * not spaced.
 */
function spaced(b: Uint8Array, i: number): number {
  return b[i] <= 0x20 ? skipSpace(b, i) : i;
}

/** Reads the topic string at `start` into PUBLISH; returns the index after it, or -1. */
function readTopic(b: Uint8Array, start: number, topics: TopicCache): number {
  if (start < 0 || b[start] !== QUOTE) return -1;
  const plain = topicEnd(b, start + 1);
  if (plain > 0) {
    PUBLISH.topic = topics.topic(b, start + 1, plain);
    return plain + 1;
  }
  // Escapes, spaces or non-ASCII (rare): checked, then decoded.
  const end = skipString(b, start);
  if (end < 0) return -1;
  PUBLISH.topic = JSON.parse(decoder.decode(b.subarray(start, end)));
  return end;
}

/**
 * Reads the params at `i` into PUBLISH (an object, or positional: see
 * readPositional); returns their end, or -1.
 */
function readParams(b: Uint8Array, i: number, topics: TopicCache): number {
  if (i >= 0 && b[i] === OPEN_BRACKET) return readPositional(b, i, topics);
  if (i < 0 || b[i] !== OPEN_BRACE) return -1;
  i = skipSpace(b, i + 1);
  let topic = false;
  let value = false;
  let retain: boolean | undefined;
  while (true) {
    const k = b[i + 1];
    if (k === 0x74 && !topic && startsWith(b, TOPIC, i)) {
      i = readTopic(b, afterColon(b, i + TOPIC.length), topics);
      if (i < 0) return -1;
      topic = true;
    } else if (k === 0x76 && !value && startsWith(b, VALUE, i)) {
      const start = afterColon(b, i + VALUE.length);
      if (start < 0) return -1;
      i = skipValue(b, start, VALUE_DEPTH);
      if (i < 0) return -1;
      PUBLISH.at(b, start, i);
      value = true;
    } else if (k === 0x72 && retain === undefined && startsWith(b, RETAIN, i)) {
      i = afterColon(b, i + RETAIN.length);
      if (startsWith(b, TRUE, i)) {
        retain = true;
        i += TRUE.length;
      } else if (startsWith(b, FALSE, i)) {
        retain = false;
        i += FALSE.length;
      } else return -1;
    } else return -1;
    i = spaced(b, i);
    if (b[i] === COMMA) {
      i = spaced(b, i + 1);
      continue;
    }
    if (b[i] !== BRACE || !topic || !value) return -1;
    PUBLISH.retain = retain ?? true;
    return i + 1;
  }
}

/**
 * Positional params at `i`, `[topic, value]` or `[topic, value, retain]`
 * (the contract reads an array in its shape's order), as readParams: a
 * value published so is read as bytes too, never parsed into objects
 * (hostile review 34 Z3a). Anything else (a null retain, more elements)
 * is the decoder's.
 */
function readPositional(b: Uint8Array, i: number, topics: TopicCache): number {
  i = readTopic(b, skipSpace(b, i + 1), topics);
  if (i < 0) return -1;
  i = skipSpace(b, i);
  if (b[i] !== COMMA) return -1;
  const start = skipSpace(b, i + 1);
  i = skipValue(b, start, VALUE_DEPTH);
  if (i < 0) return -1;
  PUBLISH.at(b, start, i);
  i = skipSpace(b, i);
  let retain = true;
  if (b[i] === COMMA) {
    i = skipSpace(b, i + 1);
    if (startsWith(b, TRUE, i)) i += TRUE.length;
    else if (startsWith(b, FALSE, i)) {
      retain = false;
      i += FALSE.length;
    } else return -1;
    i = skipSpace(b, i);
  }
  if (b[i] !== CLOSE_BRACKET) return -1;
  PUBLISH.retain = retain;
  return i + 1;
}

/**
 * The canonical JSON layouts of the broker's two hot messages, shared by
 * whoever writes or reads them as bytes rather than through JSON.parse:
 *
 *   {"method":"broker.publish","params":{"topic":"T","value":V[,"retain":B]}}
 *   {"method":"broker.message","params":{"topic":"T","value":V,"retained":B,"sid":N}}
 *
 * This is exactly what `JSON.stringify` writes for those objects with their
 * members in this order, so producers that build the object produce it. A
 * reader that meets anything else (another member order, spaces, escapes
 * in the topic) hands the frame to the ordinary decoder: the fast path is
 * an optimisation, never a second protocol.
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (text: string) => encoder.encode(text);

export const PUBLISH_PREFIX: Uint8Array = bytes('{"method":"broker.publish","params":{"topic":"');
export const DELIVERY_PREFIX: Uint8Array = bytes('{"method":"broker.message","params":{"topic":');
const VALUE_KEY = bytes('","value":');
const RETAIN_FALSE_END = bytes(',"retain":false}}');
const RETAIN_TRUE_END = bytes(',"retain":true}}');
const RETAINED_FALSE = bytes(',"retained":false');
const RETAINED_TRUE = bytes(',"retained":true');
const SID_KEY = bytes(',"sid":');

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const BRACE = 0x7d;

/** Bytes that may stand in a JSON string as they are, within printable ASCII. */
const PLAIN = new Uint8Array(256);
for (let c = 0x20; c <= 0x7e; c++) PLAIN[c] = c === QUOTE || c === BACKSLASH ? 0 : 1;

/**
 * A cheap first look for a fast path's `accepts`: the frame is long enough
 * and has the bytes that tell `prefix` (ending in a method name) from any
 * other message's start. The reader then checks the whole prefix.
 */
export function mayStartWith(frame: Uint8Array, prefix: Uint8Array): boolean {
  return frame.length > prefix.length && frame[19] === prefix[19] && frame[22] === prefix[22] &&
    frame[0] === prefix[0];
}

/** Whether `frame` has `prefix` at `at`. */
export function startsWith(frame: Uint8Array, prefix: Uint8Array, at = 0): boolean {
  if (frame.length < at + prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (frame[at + i] !== prefix[i]) return false;
  return true;
}

function endsWith(frame: Uint8Array, suffix: Uint8Array, end: number): boolean {
  return end >= suffix.length && startsWith(frame, suffix, end - suffix.length);
}

/**
 * The end of a topic starting at `from`: the index of its closing quote, or
 * -1 when it is not plain ASCII without escapes (then the frame takes the
 * ordinary path).
 */
function topicEnd(frame: Uint8Array, from: number): number {
  for (let i = from; i < frame.length; i++) {
    const c = frame[i];
    if (c === QUOTE) return i > from ? i : -1;
    if (c < 0x21 || c > 0x7e || c === BACKSLASH) return -1;
  }
  return -1;
}

/** Remembers the last topic read, so a run of messages on one topic makes one string. */
export class TopicCache {
  #bytes = new Uint8Array(0);
  #topic = "";

  /** The topic in `frame[from, to)` (ASCII). */
  topic(frame: Uint8Array, from: number, to: number): string {
    const cached = this.#bytes;
    const len = to - from;
    if (len === cached.length) {
      let same = true;
      for (let i = 0; i < len; i++) {
        if (frame[from + i] !== cached[i]) {
          same = false;
          break;
        }
      }
      if (same) return this.#topic;
    }
    this.#bytes = frame.slice(from, to);
    this.#topic = decoder.decode(this.#bytes);
    return this.#topic;
  }
}

/** A publish read as bytes: the topic, and the value's JSON text as a view of the frame. */
export interface RawPublish {
  topic: string;
  value: Uint8Array;
  retain: boolean;
}

/** Reused by readPublish for each frame (its caller uses it at once). */
const PUBLISH: RawPublish = { topic: "", value: new Uint8Array(0), retain: true };

/**
 * Reads a `broker.publish` notification in the canonical layout whose value
 * is a JSON string of printable ASCII without escapes (what load tests and
 * most text values are); anything else returns undefined, for the ordinary
 * decoder. The answer is one object reused for every frame: read it at once.
 */
export function readPublish(frame: Uint8Array, topics: TopicCache): RawPublish | undefined {
  if (!startsWith(frame, PUBLISH_PREFIX)) return undefined;
  const from = PUBLISH_PREFIX.length;
  const t = topicEnd(frame, from);
  if (t < 0 || !startsWith(frame, VALUE_KEY, t)) return undefined;
  const valueStart = t + VALUE_KEY.length;
  let end = frame.length;
  let retain = true;
  if (endsWith(frame, RETAIN_FALSE_END, end)) {
    end -= RETAIN_FALSE_END.length;
    retain = false;
  } else if (endsWith(frame, RETAIN_TRUE_END, end)) {
    end -= RETAIN_TRUE_END.length;
  } else if (frame[end - 1] === BRACE && frame[end - 2] === BRACE) {
    end -= 2;
  } else {
    return undefined;
  }
  if (end - valueStart < 2 || frame[valueStart] !== QUOTE || frame[end - 1] !== QUOTE) {
    return undefined;
  }
  for (let i = valueStart + 1; i < end - 1; i++) if (PLAIN[frame[i]] === 0) return undefined;
  PUBLISH.topic = topics.topic(frame, from, t);
  PUBLISH.value = new Uint8Array(frame.buffer, frame.byteOffset + valueStart, end - valueStart);
  PUBLISH.retain = retain;
  return PUBLISH;
}

/** A delivery read as bytes: the value's JSON text is a view of the frame. */
export interface RawDelivery {
  /** The subscription it is for. */
  sid: number;
  /** The topic it was published to. */
  topic: string;
  /** The value's JSON text (UTF-8), a view of the frame: copy it to keep it. */
  value: Uint8Array;
  /** A retained value sent on subscribe. */
  retained: boolean;
}

/**
 * Reads a `broker.message` notification in the layout the broker writes;
 * undefined for anything else (the ordinary decoder takes it). The value is
 * not checked: the broker wrote it.
 */
export function readDelivery(frame: Uint8Array, topics: TopicCache): RawDelivery | undefined {
  if (!startsWith(frame, DELIVERY_PREFIX)) return undefined;
  const from = DELIVERY_PREFIX.length + 1;
  if (frame[from - 1] !== QUOTE) return undefined;
  const t = topicEnd(frame, from);
  if (t < 0 || !startsWith(frame, VALUE_KEY, t)) return undefined;
  // From the end: }} then the sid's digits, then ,"sid": then ,"retained":B
  let end = frame.length;
  if (frame[end - 1] !== BRACE || frame[end - 2] !== BRACE) return undefined;
  end -= 2;
  let sid = 0;
  let scale = 1;
  while (end > 0 && frame[end - 1] >= 0x30 && frame[end - 1] <= 0x39 && scale <= 1e15) {
    sid += (frame[end - 1] - 0x30) * scale;
    scale *= 10;
    end--;
  }
  if (scale === 1 || !endsWith(frame, SID_KEY, end)) return undefined;
  end -= SID_KEY.length;
  let retained = false;
  if (endsWith(frame, RETAINED_FALSE, end)) end -= RETAINED_FALSE.length;
  else if (endsWith(frame, RETAINED_TRUE, end)) {
    end -= RETAINED_TRUE.length;
    retained = true;
  } else return undefined;
  const valueStart = t + VALUE_KEY.length;
  if (end <= valueStart) return undefined;
  return {
    sid,
    topic: topics.topic(frame, from, t),
    value: new Uint8Array(frame.buffer, frame.byteOffset + valueStart, end - valueStart),
    retained,
  };
}

/** The value of a raw publish or delivery: its JSON text parsed. */
export function parseRawValue(value: Uint8Array): unknown {
  return JSON.parse(decoder.decode(value));
}

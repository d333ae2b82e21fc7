/**
 * A delivery read as bytes by a subscriber (see pubsub_json.ts for the
 * layout): only as the broker writes it; anything else goes to the
 * ordinary decoder.
 */
import { endsWith, startsWith } from "./byte_words.ts";
import { parseJson } from "./json_parse.ts";
import type { TopicCache } from "./topic_cache.ts";
import { DELIVERY_PREFIX, topicEnd, VALUE_KEY } from "./pubsub_json.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const RETAINED_FALSE = encoder.encode(',"retained":false');
const RETAINED_TRUE = encoder.encode(',"retained":true');
const SID_KEY = encoder.encode(',"sid":');
const QUOTE = 0x22;
const BRACE = 0x7d;

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
  // From the end: }} then the sid's digits, then ,"sid": then ,"retained":B if there (the
  // broker writes it only when true; older ones wrote false too).
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
  }
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
  return parseJson(decoder.decode(value));
}

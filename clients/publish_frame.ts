/**
 * A fire-and-forget JSON publish written straight into the connection's
 * output: the fixed parts of the canonical layout as bytes, the topic's
 * JSON text kept from the last publish, and only the value run through
 * JSON.stringify. The bytes are those `jsonCodec` writes for
 * `{ method: "broker.publish", params: { topic, value[, retain: false] } }`
 * (the layout the broker reads as bytes), without building that message
 * and stringifying its members for every publish.
 */
import { DistError, type FrameWriter, type OutBuffer, type Peer, toJsonText } from "../wire/mod.ts";

const encoder = new TextEncoder();
const HEAD = encoder.encode('{"method":"broker.publish","params":{"topic":');
const VALUE = encoder.encode(',"value":');
const END_RETAIN_FALSE = encoder.encode(',"retain":false}}');
const END = encoder.encode("}}");
/** The frame's length prefix. */
const HEADER = 4;

/** Whether `topic`'s JSON text is the topic in quotes: printable ASCII, no quote or backslash. */
function plain(topic: string): boolean {
  for (let i = 0; i < topic.length; i++) {
    const c = topic.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return false;
  }
  return true;
}

/** Writes one publish per `send` (a FrameWriter: no closure per publish). */
export class PublishFrame implements FrameWriter {
  #topic = "";
  /** The frame's bytes up to the value, for #topic: HEAD, `"topic"`, VALUE (one copy a publish). */
  #head = head('""');
  #value: unknown = undefined;
  #retain = true;
  #maxFrame = 0;

  /**
   * Queues the publish on `peer` (a JSON connection).
   * @returns false when it cannot take this publish as bytes (a topic that
   * is not plain ASCII, an undefined value): the caller sends it the
   * ordinary way, which says what is wrong with it
   * @throws {DistError} BAD_REQUEST when the value cannot be JSON,
   * FRAME_TOO_LARGE past the frame limit (nothing is queued), or
   * UNAVAILABLE when the connection is closed
   */
  send(peer: Peer, topic: string, value: unknown, retain: boolean): boolean {
    // What JSON.stringify leaves out as a member, or turns by its key (toJSON is given
    // "value" there and "" on its own): the ordinary path, for the same bytes or error.
    if (value === undefined || typeof value === "function" || typeof value === "symbol") {
      return false;
    }
    if (typeof value === "object" && value !== null && "toJSON" in value) return false;
    if (topic !== this.#topic) {
      if (!plain(topic)) return false;
      this.#topic = topic;
      this.#head = head(`"${topic}"`);
    }
    this.#value = value;
    this.#retain = retain;
    this.#maxFrame = peer.conn.maxFrame;
    try {
      if (!peer.conn.sendWith(this)) throw new DistError("UNAVAILABLE", "Not connected");
    } finally {
      this.#value = undefined;
    }
    return true;
  }

  writeFrames(out: OutBuffer): void {
    const text = toJsonText(this.#value);
    const head = this.#head;
    const end = this.#retain ? END : END_RETAIN_FALSE;
    const fixed = head.length + end.length;
    const maxFrame = this.#maxFrame;
    // Every UTF-16 unit takes a byte at least, at most 3.
    if (fixed + text.length > maxFrame) throw tooLarge(fixed + text.length, maxFrame, "at least ");
    const start = out.length;
    out.reserve(HEADER + fixed + 3 * text.length);
    const b = out.bytes;
    let at = start + HEADER;
    b.set(head, at);
    at += head.length;
    at += encoder.encodeInto(text, b.subarray(at)).written;
    b.set(end, at);
    at += end.length;
    const len = at - start - HEADER;
    if (len > maxFrame) throw tooLarge(len, maxFrame);
    out.setHeader(start, len);
    out.length = at;
  }
}

/** HEAD, the topic's JSON text `topicJson`, VALUE: a publish's bytes up to its value. */
function head(topicJson: string): Uint8Array {
  const topic = encoder.encode(topicJson);
  const bytes = new Uint8Array(HEAD.length + topic.length + VALUE.length);
  bytes.set(HEAD);
  bytes.set(topic, HEAD.length);
  bytes.set(VALUE, HEAD.length + topic.length);
  return bytes;
}

/** The error jsonCodec.writeFrame gives. */
function tooLarge(len: number, maxFrame: number, atLeast = ""): DistError {
  return new DistError(
    "FRAME_TOO_LARGE",
    `Message of ${atLeast}${len} bytes exceeds the frame limit of ${maxFrame} bytes`,
  );
}

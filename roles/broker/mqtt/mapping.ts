/**
 * MQTT names and payloads as the broker's core knows them.
 *
 * Topics: MQTT `a/b` is `/a/b`; a filter `a/#` is the subtree `/a` (which
 * includes `a` itself, as MQTT's `#` does), `#` is `/`, `+` stays `+`; a
 * filter without `#` matches its own level only (an exact subscription).
 * MQTT allows empty levels (`/a`, `a//b`, `a/`) which dist topics do not
 * have: they are refused rather than escaped, so two MQTT topics never
 * become one dist topic.
 *
 * Payloads (see {@link MqttPayload} and {@link payloadOf}): bytes from MQTT
 * go to MQTT subscribers unchanged; native subscribers get them decoded.
 */
import { DistError, parseJson } from "../../../wire/mod.ts";
import { checkValue } from "../core.ts";
import { jsonBytes } from "../frames.ts";
import { RawJson } from "../raw_json.ts";
import { EncodedValue, type Message } from "../subscriber.ts";
import { conversions } from "../conversion.ts";
import { keptPropertiesPass } from "./properties.ts";
import { skipSpace, skipValue } from "../../../wire/json_scan.ts";

const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

/** Index of a message's MQTT payload in `Message.encoded` (after the dist codecs' 0 and 1). */
export const MQTT_SLOT = 2;

const EMPTY = new Uint8Array(0);

/**
 * The dist topic of an MQTT topic name (to publish on).
 * @throws {DistError} BAD_REQUEST for wildcards, empty levels or NUL (the
 * core refuses what else dist topics may not hold)
 */
export function topicFromMqtt(name: string): string {
  if (name === "") throw new DistError("BAD_REQUEST", "An MQTT topic name must not be empty");
  if (name.includes("+") || name.includes("#")) {
    throw new DistError("BAD_REQUEST", `Wildcards are for filters, not topic names: ${name}`);
  }
  if (name.startsWith("/") || name.endsWith("/") || name.includes("//")) {
    throw new DistError(
      "BAD_REQUEST",
      `Empty topic levels are not supported: ${JSON.stringify(name)}`,
    );
  }
  return "/" + name;
}

/** The MQTT topic name of a dist topic, or undefined when it has none (`/`, or a `#` in it). */
export function topicToMqtt(topic: string): string | undefined {
  if (topic === "/" || topic.includes("#")) return undefined;
  return topic.slice(1);
}

/** What an MQTT topic filter subscribes to in the core. */
export interface Filter {
  /** The dist pattern. */
  pattern: string;
  /** Only topics at the pattern's own depth (no `#`). */
  exact: boolean;
  /** A shared subscription's group (`$share/GROUP/filter`, MQTT 5). */
  group?: string;
}

/**
 * The core's view of an MQTT topic filter.
 * @throws {DistError} BAD_REQUEST for a malformed filter or one with empty levels
 */
export function filterFromMqtt(filter: string, v5: boolean): Filter {
  let group: string | undefined;
  if (v5 && filter.startsWith("$share/")) {
    const slash = filter.indexOf("/", 7);
    group = filter.slice(7, slash < 0 ? filter.length : slash);
    if (slash < 0 || group === "" || group.includes("+") || group.includes("#")) {
      throw new DistError("BAD_REQUEST", `Malformed shared subscription: ${filter}`);
    }
    filter = filter.slice(slash + 1);
  }
  if (filter === "") throw new DistError("BAD_REQUEST", "An MQTT topic filter must not be empty");
  const hash = filter.indexOf("#");
  let exact = true;
  if (hash >= 0) {
    if (hash !== filter.length - 1 || (hash > 0 && filter[hash - 1] !== "/")) {
      throw new DistError("BAD_REQUEST", `# must be the last level of a filter: ${filter}`);
    }
    exact = false;
    filter = filter.slice(0, Math.max(0, hash - 1));
    if (filter === "") return { pattern: "/", exact, group };
  }
  if (filter.startsWith("/") || filter.endsWith("/") || filter.includes("//")) {
    throw new DistError(
      "BAD_REQUEST",
      `Empty topic levels are not supported: ${JSON.stringify(filter)}`,
    );
  }
  return { pattern: "/" + filter, exact, group };
}

/**
 * An MQTT payload as a dist value: its bytes, kept as they came (MQTT
 * subscribers get them unchanged), decoded for native subscribers: empty
 * is null; valid UTF-8 that is JSON is that value; other valid UTF-8 is a
 * string; anything else is binary (a Uint8Array).
 */
export class MqttPayload extends EncodedValue {
  #bytes: Uint8Array | undefined;
  #decoded = false;
  #value: unknown;
  /** A detached copy (a retained value, a held message): nothing decoded is kept on it. */
  #kept = false;
  /** MQTT 5 properties passed on to MQTT 5 subscribers (not Message Expiry: see `expiresAt`). */
  properties: Uint8Array = EMPTY;
  /** When the MQTT 5 Message Expiry Interval runs out (ms since the epoch), or -1: never. */
  expiresAt = -1;
  /**
   * The session that published it (its `serial`, session.ts; 0: none),
   * for no-local subscriptions. A number, not the client id: a retained
   * copy kept the id (up to 64 KB) of a client long gone, uncounted (4,000
   * connections with 65 KB ids retaining 1 byte each: RSS +350 MB, counted
   * 3.3 MB: hostile review 38 L3).
   */
  origin = 0;
  /** The publish's RETAIN flag, for retain-as-published subscriptions. */
  retain = false;

  private constructor(bytes: Uint8Array) {
    super();
    this.#bytes = bytes;
  }

  /** A payload in a read buffer, valid until `release()` (used only while it is published). */
  static borrow(view: Uint8Array): MqttPayload {
    return new MqttPayload(view);
  }

  /** Ends a borrow: using the value after this is a bug that throws. */
  release(): void {
    this.#bytes = undefined;
  }

  get bytes(): Uint8Array {
    if (this.#bytes === undefined) throw new Error("MqttPayload used after release()");
    return this.#bytes;
  }

  /**
   * What it holds: payload and MQTT 5 properties, as the retained store and
   * `--max-memory` count it and a queue group compares it with a member's
   * refused size (properties uncounted, 1 MB of User Properties on a 1-byte
   * payload cost ~70 bytes: hostile review 37 K1).
   */
  get byteLength(): number {
    return this.bytes.length + this.properties.length;
  }

  get isNull(): boolean {
    return this.bytes.length === 0;
  }

  /**
   * The value for native subscribers. Cached only while borrowed (every
   * front end of one publish shares it); a kept copy is decoded anew for
   * each caller, metered as a conversion (see conversion.ts): a decoded form
   * cached on a retained 1 MB JSON payload stayed some 20 MB of objects for
   * as long as it was retained, uncounted (hostile review 34 Z3b).
   */
  decode(): unknown {
    if (this.#kept) {
      conversions.bytes += this.bytes.length;
      return decodePayload(this.bytes);
    }
    if (!this.#decoded) {
      this.#value = decodePayload(this.bytes);
      this.#decoded = true;
    }
    return this.#value;
  }

  /**
   * The payload as it came when it is JSON text (checked as bytes as
   * strictly as the decoder reads it: UTF-8, escapes, numbers, depth), for
   * JSON subscribers: what decoding and encoding it again would give them,
   * at a tenth of the cost (a 1 MB `[{},{},…]` took 140–150 ms of the
   * broker per delivery: hostile review 34 Z3).
   */
  override jsonText(): Uint8Array | undefined {
    const b = this.bytes;
    const json = jsonOf(b);
    if (json === undefined) return undefined;
    if (this.#kept) conversions.bytes += b.length;
    return json;
  }

  /**
   * What a data file keeps of a retained payload (its bytes, MQTT 5
   * properties and expiry): before, the row was the MessagePack of this
   * object's public fields, without the payload, so every retained value
   * published over MQTT came back from a restart as those fields (hostile
   * review 36 J10).
   */
  toRow(): [Uint8Array, Uint8Array, number] {
    return [this.bytes, this.properties, this.expiresAt];
  }

  /**
   * A retained payload from its row ({@link toRow}).
   * @throws {Error} for a row that is not one, or whose properties do not pass the check
   * of a publish's (hostile review 37 K2: one such value cut every MQTT 5 subscriber off)
   */
  static fromRow(row: unknown): MqttPayload {
    if (!Array.isArray(row) || row.length !== 3) throw new Error("not an MQTT payload row");
    const [bytes, properties, expiresAt] = row;
    if (!(bytes instanceof Uint8Array) || !(properties instanceof Uint8Array)) {
      throw new Error("not an MQTT payload row");
    }
    if (typeof expiresAt !== "number") throw new Error("not an MQTT payload row");
    // Written before the properties were checked (or damaged): refused by every client (K2).
    if (!keptPropertiesPass(properties)) throw new Error("MQTT 5 properties that do not pass");
    const payload = new MqttPayload(bytes);
    payload.properties = properties.length === 0 ? EMPTY : properties;
    payload.expiresAt = expiresAt;
    payload.retain = true;
    payload.#kept = true;
    return payload;
  }

  detach(): MqttPayload {
    const copy = new MqttPayload(this.bytes.slice());
    copy.properties = this.properties.length === 0 ? EMPTY : this.properties.slice();
    copy.expiresAt = this.expiresAt;
    copy.origin = this.origin;
    copy.retain = this.retain;
    copy.#kept = true;
    return copy;
  }
}

/**
 * The JSON value `b` holds, without the spaces around it, when it is JSON
 * text as strictly as the decoder reads it (UTF-8, escapes, numbers, and
 * depth at a delivery's value, under its params); else undefined.
 */
function jsonOf(b: Uint8Array): Uint8Array | undefined {
  const start = skipSpace(b, 0);
  if (start >= b.length) return undefined;
  const end = skipValue(b, start, 2);
  if (end < 0 || skipSpace(b, end) !== b.length) return undefined;
  return b.subarray(start, end);
}

/** The payload rule, for native subscribers (see {@link MqttPayload}). */
export function decodePayload(bytes: Uint8Array): unknown {
  if (bytes.length === 0) return null;
  let text: string;
  try {
    text = strict.decode(bytes);
  } catch {
    return bytes.slice();
  }
  // JSON only as the byte scanner reads it, as jsonText() does: nested deeper than a delivery
  // may be (hostile review 36 J8: 70 levels), it is text, which every codec carries.
  if (jsonOf(bytes) === undefined) return text;
  try {
    const value = parseJson(text);
    checkValue(value); // e.g. "\ud800": valid JSON, not a value every subscriber can take
    return value;
  } catch {
    return text;
  }
}

/**
 * The MQTT payload of a message, encoded once and cached on it: the bytes
 * of an MQTT publish unchanged; null as an empty payload; a string as its
 * UTF-8 text (unquoted); binary as its bytes; anything else as JSON text.
 */
export function payloadOf(msg: Message): Uint8Array {
  const value = msg.value;
  if (value instanceof MqttPayload) return value.bytes;
  const cached = msg.encoded?.[MQTT_SLOT];
  if (cached !== undefined) return cached;
  let bytes: Uint8Array;
  if (value instanceof RawJson) {
    const raw = value.bytes;
    // A JSON string goes out as its text; any other JSON text is its own payload.
    bytes = raw[0] === 0x22 ? encoder.encode(value.decode() as string) : raw;
  } else {
    const v = value instanceof EncodedValue ? value.decode() : value;
    if (v === null || v === undefined) bytes = EMPTY;
    else if (typeof v === "string") bytes = encoder.encode(v);
    else if (v instanceof Uint8Array) bytes = v;
    // From its bytes when it came encoded: a MessagePack -0 stays -0 (hostile45b K-B3).
    else bytes = jsonBytes(value).slice();
  }
  (msg.encoded ??= [])[MQTT_SLOT] = bytes;
  return bytes;
}

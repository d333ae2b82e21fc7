/**
 * Values kept encoded, for the wire front end's fast path: a publish whose
 * value is passed through to the subscribers of its codec as the bytes it
 * came in (JSON text, or MessagePack), decoded only for the others.
 * Also the slab that delivery frames and such values are carved from.
 */
import { msgpackCodec, parseJson, toMsgpack } from "../../wire/mod.ts";
import { jsonToMsgpack, textToMsgpack } from "./json_to_msgpack.ts";
import { msgpackToJson } from "../../wire/msgpack_to_json.ts";
import { EncodedValue } from "./subscriber.ts";
import { conversions } from "./conversion.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const SLAB_BYTES = 64 * 1024;
let slab = new Uint8Array(SLAB_BYTES);
let slabUsed = 0;

/**
 * `n` bytes carved from a shared slab (a fresh typed array costs an
 * allocation of its own, several times a copy of 200 bytes). A slab lives as
 * long as any piece of it: pieces are for short-lived data (a message in
 * flight, a FIFO queue of recent messages); keep long-lived data as a copy.
 */
export function slabAlloc(n: number): Uint8Array {
  if (n > SLAB_BYTES / 8) return new Uint8Array(n);
  if (slabUsed + n > SLAB_BYTES) {
    slab = new Uint8Array(SLAB_BYTES);
    slabUsed = 0;
  }
  const piece = slab.subarray(slabUsed, slabUsed + n);
  slabUsed += n;
  return piece;
}

const NULL_TEXT = "null";
const NON_ASCII = /[\u0080-\uffff]/;

/**
 * What a kept JSON text takes in memory: V8 keeps a string of ASCII at a
 * byte a character, any other (most) at two (Latin-1 text takes one, and
 * is counted at two: an estimate from above).
 * @param ascii whether it is ASCII (when the caller knows it; scanned otherwise)
 */
function textCost(text: string, ascii = !NON_ASCII.test(text)): number {
  return ascii ? text.length : 2 * text.length;
}

/**
 * What RawJson and RawMsgpack share: a borrowed publish's frame, where the
 * value lies in it (`[start, end)`, its view made when asked) and, when the
 * frame is canonical (see FramePublish.canonical), the publish's topic.
 * One `lend` for both: the front end's call site sees one function.
 */
abstract class FrameValue extends EncodedValue {
  protected frame: Uint8Array | undefined = undefined;
  protected start = 0;
  protected end = 0;
  protected frameTopic: string | undefined = undefined;

  /**
   * This lender's value is now the bytes in `frame[start, end)`, borrowed
   * as by `borrowFrame` (until `release()`, after which using it throws
   * again until it is lent anew). Whoever keeps a value past the publish
   * keeps its `detach()`ed form, never the value lent.
   */
  lend(frame: Uint8Array, start: number, end: number, canonicalTopic: string | undefined): this {
    this.frame = frame;
    this.start = start;
    this.end = end;
    this.frameTopic = canonicalTopic;
    return this;
  }

  /** The borrowed canonical frame (see borrowFrame), or undefined. */
  get canonicalFrame(): Uint8Array | undefined {
    return this.frameTopic === undefined ? undefined : this.frame;
  }

  /** The canonical frame's topic (see borrowFrame). */
  get canonicalTopic(): string | undefined {
    return this.frameTopic;
  }

  /** Where the value ends in the canonical frame (or in the frame lent, see lentFrame). */
  get frameEnd(): number {
    return this.end;
  }

  /** The frame lent, canonical or not (undefined when none is): the value is `[frameStart, frameEnd)`. */
  get lentFrame(): Uint8Array | undefined {
    return this.frame;
  }

  /** Where the value starts in the frame lent. */
  get frameStart(): number {
    return this.start;
  }
}

/** A JSON value as its text: bytes (from a frame) or a string (when kept). */
export class RawJson extends FrameValue {
  #bytes: Uint8Array | undefined;
  #text: string | undefined;
  /** What a kept text takes in memory (see textCost). */
  #cost = 0;
  #decoded = false;
  #value: unknown;

  private constructor(bytes: Uint8Array | undefined, text: string | undefined, cost = 0) {
    super();
    this.#bytes = bytes;
    this.#text = text;
    this.#cost = cost;
  }

  /**
   * The JSON text in `view`, a frame's bytes that are valid only until
   * `release()`: for a value used only while it is published (the core
   * encodes, keeps and holds values during `publish()`), without a copy.
   */
  static borrow(view: Uint8Array): RawJson {
    return new RawJson(view, undefined);
  }

  /**
   * The value of a publish read as bytes (`frame[start, end)`), borrowed as
   * by `borrow`. With `canonicalTopic` (the frame is canonical: see
   * FramePublish), a delivery to that topic is the frame's first `end` bytes
   * but for the method's name, and is written from the frame (see frames.ts).
   */
  static borrowFrame(
    frame: Uint8Array,
    start: number,
    end: number,
    canonicalTopic: string | undefined,
  ): RawJson {
    return new RawJson(undefined, undefined).lend(frame, start, end, canonicalTopic);
  }

  /**
   * A value to lend to one publish after another (see `lend`): one object
   * per connection rather than one per publish (88 bytes of young
   * generation each, about a third of what a publish allocated).
   */
  static lender(): RawJson {
    return new RawJson(undefined, undefined);
  }

  /**
   * A kept value from its JSON text (read back from a data file, or written
   * by the broker from a value it checked: not checked again).
   */
  static fromText(text: string): RawJson {
    return new RawJson(undefined, text, textCost(text));
  }

  /** The JSON text. */
  get text(): string {
    return this.#text ?? decoder.decode(this.bytes);
  }

  /** Ends a borrow: from now on, using the value is a bug that throws, not garbage read. */
  release(): void {
    if (this.#text === undefined) {
      this.#bytes = undefined;
      this.frame = this.frameTopic = undefined;
      this.#decoded = false;
      this.#value = undefined;
    }
  }

  /** The JSON text as UTF-8 (encoded anew each time from a kept string: it is rarely asked). */
  get bytes(): Uint8Array {
    if (this.#bytes !== undefined) return this.#bytes;
    if (this.frame !== undefined) {
      return this.#bytes = this.frame.subarray(this.start, this.end);
    }
    if (this.#text === undefined) throw new Error("RawJson used after release()");
    return encoder.encode(this.#text);
  }

  /** Bytes of the text; a kept text's, what it takes in memory (see textCost). */
  get byteLength(): number {
    if (this.#text !== undefined) return this.#cost;
    return this.frame !== undefined ? this.end - this.start : this.bytes.length;
  }

  get isNull(): boolean {
    if (this.#text !== undefined) return this.#text === NULL_TEXT;
    let b: Uint8Array;
    let at = 0;
    if (this.frame !== undefined) {
      if (this.end - this.start !== 4) return false;
      b = this.frame;
      at = this.start;
    } else {
      b = this.bytes;
      if (b.length !== 4) return false;
    }
    return b[at] === 0x6e && b[at + 1] === 0x75 && b[at + 2] === 0x6c && b[at + 3] === 0x6c;
  }

  /**
   * The value itself. Cached only while borrowed (every front end of one
   * publish shares it); a kept value (its text) is parsed anew for each
   * caller and nothing is kept beside the text (see conversion.ts).
   */
  decode(): unknown {
    const text = this.#text;
    if (text !== undefined) {
      conversions.bytes += text.length;
      return parseJson(text);
    }
    if (!this.#decoded) {
      this.#value = parseJson(decoder.decode(this.bytes));
      this.#decoded = true;
    }
    return this.#value;
  }

  /**
   * Its MessagePack, made from the text without decoding it (see
   * json_to_msgpack.ts) and kept nowhere: a view valid until the next
   * conversion (copy it at once).
   */
  msgpack(): Uint8Array {
    const text = this.#text;
    if (text !== undefined) conversions.bytes += text.length;
    try {
      return text !== undefined ? textToMsgpack(text) : jsonToMsgpack(this.bytes);
    } catch {
      return toMsgpack(this.decode()); // not valid JSON after all: the parser says why
    }
  }

  /** Its text as a string of its own: no slab kept alive by a retained value. */
  detach(): RawJson {
    if (this.#text !== undefined) return this;
    const bytes = this.bytes;
    const text = decoder.decode(bytes);
    // As many characters as bytes: ASCII (UTF-8 writes any other character in two bytes or more).
    return new RawJson(undefined, text, textCost(text, text.length === bytes.length));
  }
}

/**
 * The MessagePack of an encoded value of another front end (an MQTT
 * payload): converted from its JSON text as bytes when it is JSON text (no
 * objects made), else decoded and encoded. A view valid until the next
 * conversion (copy it at once).
 */
export function msgpackOf(value: EncodedValue): Uint8Array {
  const text = value.jsonText();
  if (text !== undefined) {
    try {
      return jsonToMsgpack(text);
    } catch {
      // Not convertible after all: decoded below, whose rule says what it is.
    }
  }
  return toMsgpack(value.decode());
}

/**
 * A MessagePack value as its bytes (checked by readMsgpackPublish): what
 * MessagePack subscribers get as it came; decoded for the others.
 */
export class RawMsgpack extends FrameValue {
  #bytes: Uint8Array | undefined;
  #decoded = false;
  #value: unknown;
  /** A detached copy, kept (see decode). */
  #kept = false;

  private constructor(bytes: Uint8Array | undefined) {
    super();
    this.#bytes = bytes;
  }

  /** The value in `view`, a frame's bytes valid only until `release()` (see RawJson.borrow). */
  static borrow(view: Uint8Array): RawMsgpack {
    return new RawMsgpack(view);
  }

  /** The value of a publish read as bytes, `frame[start, end)` (see RawJson.borrowFrame). */
  static borrowFrame(
    frame: Uint8Array,
    start: number,
    end: number,
    canonicalTopic: string | undefined,
  ): RawMsgpack {
    return new RawMsgpack(undefined).lend(frame, start, end, canonicalTopic);
  }

  /** A kept value from its MessagePack (bytes of its own, valid: encoded by the broker or checked). */
  static kept(bytes: Uint8Array): RawMsgpack {
    const value = new RawMsgpack(bytes);
    value.#kept = true;
    return value;
  }

  /** A value to lend to one publish after another (see RawJson.lender). */
  static lender(): RawMsgpack {
    return new RawMsgpack(undefined);
  }

  /** Ends a borrow (a detached copy is not affected). */
  release(): void {
    if (this.#kept) return;
    this.#bytes = undefined;
    this.frame = this.frameTopic = undefined;
    this.#decoded = false;
    this.#value = undefined;
  }

  get bytes(): Uint8Array {
    if (this.#bytes !== undefined) return this.#bytes;
    if (this.frame !== undefined) {
      return this.#bytes = this.frame.subarray(this.start, this.end);
    }
    throw new Error("RawMsgpack used after release()");
  }

  get byteLength(): number {
    return this.frame !== undefined ? this.end - this.start : this.bytes.length;
  }

  get isNull(): boolean {
    if (this.frame !== undefined) {
      return this.end - this.start === 1 && this.frame[this.start] === 0xc0;
    }
    const b = this.bytes;
    return b.length === 1 && b[0] === 0xc0;
  }

  /** The value itself (copies: binary values are its own); cached only while borrowed (see RawJson.decode). */
  decode(): unknown {
    if (this.#kept) {
      conversions.bytes += this.#bytes!.length;
      return msgpackCodec.decode(this.#bytes!);
    }
    if (!this.#decoded) {
      this.#value = msgpackCodec.decode(this.bytes);
      this.#decoded = true;
    }
    return this.#value;
  }

  /**
   * Its JSON text as UTF-8, made from the bytes without decoding them (see
   * msgpack_to_json.ts) and kept nowhere (a view valid until the next
   * conversion: copy it at once); undefined when that cannot be
   * done (an extension type: a date), and the caller decodes the value.
   */
  json(): Uint8Array | undefined {
    const bytes = this.bytes;
    if (this.#kept) conversions.bytes += bytes.length;
    try {
      return msgpackToJson(bytes);
    } catch {
      return undefined;
    }
  }

  /** A copy of its bytes (a piece of no slab or read buffer), without any decoded form. */
  detach(): RawMsgpack {
    if (this.#kept) return this;
    const copy = new RawMsgpack(this.bytes.slice());
    copy.#kept = true;
    return copy;
  }
}

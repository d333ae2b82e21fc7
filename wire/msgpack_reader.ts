/**
 * One cursor over a MessagePack value for the walkers that write it as JSON
 * (msgpack_to_json.ts) and count that text (msgpack_json_size.ts): each
 * value's head (type byte, then its length or number) is read here once,
 * and each walker keeps its own job (writing, counting) for what it names.
 *
 * The value is taken as checked by msgpack_scan.ts; what the cursor does
 * not name (extension types, the unused 0xc1) comes back OTHER, for the
 * walker to refuse in its own words.
 */

/** The kinds head() names. */
export const NIL = 0;
export const FALSE = 1;
export const TRUE = 2;
/** An integer of any width (never -0, always finite): number() reads it. */
export const INT = 3;
/** A float32 or float64: number() reads it. */
export const FLOAT = 4;
/** A string: `n` bytes at `pos` (present: checked), not yet passed. */
export const STRING = 5;
/** A binary: `n` bytes at `pos` (present: checked), not yet passed. */
export const BINARY = 6;
/** An array of `n` values, which follow. */
export const ARRAY = 7;
/** A map of `n` key and value pairs, which follow. */
export const MAP = 8;
/** A type no JSON writer here writes: `tag` says which. */
export const OTHER = 9;

const EMPTY = new Uint8Array(0);
const EMPTY_VIEW = new DataView(EMPTY.buffer);

/** The error of a value a walker does not write as JSON. */
export function unsupported(what: string): Error {
  return new Error(`not written as JSON here: ${what}`);
}

/** A cursor over one value at a time (start() to end()). */
export class MsgpackReader {
  input: Uint8Array = EMPTY;
  view: DataView = EMPTY_VIEW;
  pos = 0;
  /** input.length, kept as a number (a typed array's length costs a check each read). */
  size = 0;
  /** The type byte head() read last. */
  tag = 0;
  /** What head() read after the type byte: a string's or binary's length, an array's or map's count, a number's width. */
  n = 0;

  start(bytes: Uint8Array): void {
    this.input = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
    this.size = bytes.length;
  }

  /** Lets go of the value; with `whole`, first checks that it was read to its end. */
  end(whole: boolean): void {
    const rest = this.pos !== this.size;
    this.input = EMPTY;
    this.size = 0;
    this.view = EMPTY_VIEW;
    if (whole && rest) throw new Error("bytes after the value");
  }

  need(n: number): void {
    if (this.pos + n > this.size) throw new Error("truncated");
  }

  /** A length of 1, 2 or 4 bytes, big-endian. */
  length(bytes: 1 | 2 | 4): number {
    this.need(bytes);
    const p = this.pos;
    this.pos = p + bytes;
    const v = this.view;
    return bytes === 1 ? v.getUint8(p) : bytes === 2 ? v.getUint16(p) : v.getUint32(p);
  }

  /**
   * Reads the next value's head: its kind, with `tag` and `n` set. A string
   * or binary's bytes, a number's, and an array or map's least bytes (one a
   * value) are checked to be there.
   */
  head(): number {
    if (this.pos >= this.size) throw new Error("truncated");
    const c = this.input[this.pos++];
    this.tag = c;
    if (c < 0x80 || c >= 0xe0) {
      this.n = 0;
      return INT;
    }
    if (c <= 0x8f) return this.#items(MAP, c & 0x0f);
    if (c <= 0x9f) return this.#items(ARRAY, c & 0x0f);
    if (c <= 0xbf) return this.#bytes(STRING, c & 0x1f);
    return this.#wide(c);
  }

  /** head() of the types 0xc0 to 0xdf (kept apart: a small head() is inlined by the walkers). */
  #wide(c: number): number {
    switch (c) {
      case 0xc0:
        return NIL;
      case 0xc2:
        return FALSE;
      case 0xc3:
        return TRUE;
      case 0xc4:
        return this.#bytes(BINARY, this.length(1));
      case 0xc5:
        return this.#bytes(BINARY, this.length(2));
      case 0xc6:
        return this.#bytes(BINARY, this.length(4));
      case 0xca:
        return this.#bytes(FLOAT, 4);
      case 0xcb:
        return this.#bytes(FLOAT, 8);
      case 0xcc:
      case 0xd0:
        return this.#bytes(INT, 1);
      case 0xcd:
      case 0xd1:
        return this.#bytes(INT, 2);
      case 0xce:
      case 0xd2:
        return this.#bytes(INT, 4);
      case 0xcf:
      case 0xd3:
        return this.#bytes(INT, 8);
      case 0xd9:
        return this.#bytes(STRING, this.length(1));
      case 0xda:
        return this.#bytes(STRING, this.length(2));
      case 0xdb:
        return this.#bytes(STRING, this.length(4));
      case 0xdc:
        return this.#items(ARRAY, this.length(2));
      case 0xdd:
        return this.#items(ARRAY, this.length(4));
      case 0xde:
        return this.#items(MAP, this.length(2));
      case 0xdf:
        return this.#items(MAP, this.length(4));
    }
    return OTHER;
  }

  /**
   * The number whose head() said INT or FLOAT, passed (given back, not kept:
   * a field that held floats would box every integer read after).
   */
  number(): number {
    const c = this.tag;
    if (c < 0x80) return c;
    if (c >= 0xe0) return c - 0x100;
    const p = this.pos;
    const v = this.view;
    this.pos = p + this.n;
    switch (c) {
      case 0xca:
        return v.getFloat32(p);
      case 0xcb:
        return v.getFloat64(p);
      case 0xcc:
        return v.getUint8(p);
      case 0xcd:
        return v.getUint16(p);
      case 0xce:
        return v.getUint32(p);
      case 0xcf:
        return v.getUint32(p) * 0x100000000 + v.getUint32(p + 4);
      case 0xd0:
        return v.getInt8(p);
      case 0xd1:
        return v.getInt16(p);
      case 0xd2:
        return v.getInt32(p);
    }
    return v.getInt32(p) * 0x100000000 + v.getUint32(p + 4);
  }

  /** `n` bytes, which must be there (a string's, a binary's, a number's). */
  #bytes(kind: number, n: number): number {
    if (this.pos + n > this.size) throw new Error("truncated");
    this.n = n;
    return kind;
  }

  /** An array of `n` values or a map of `n` pairs: at least a byte a value must follow. */
  #items(kind: number, n: number): number {
    if (this.pos + (kind === MAP ? 2 * n : n) > this.size) throw new Error("truncated");
    this.n = n;
    return kind;
  }
}

/**
 * A publisher's last JSON value checked in full, so that the next ones can
 * be checked against it: applications publish the same layout over and over
 * (a sensor's reading, a status), with only some digits changed. A value of
 * the same length that differs from the one kept only where that one has a
 * digit a digit may replace (below) is valid JSON of the same structure, so
 * it needs no scan: comparing words costs a fraction of skipValue's table
 * read and unpredictable branch per token.
 *
 * Where a digit may be replaced by another, keeping the value valid as the
 * strict decoder wants it: in a string, outside escapes (a `\uXXXX`'s digits
 * could break a surrogate pair); in a number without an exponent and of at
 * most 300 characters (nothing of that size passes a double), any digit but
 * the first of an integer part of two digits or more, which may only become
 * 1–9 (no leading zero). Everything else must be the same byte.
 *
 * MessagePack values (the broker's MessagePack reader) likewise: digits in
 * strings; a fixint's byte within its kind (0x00–0x7f, 0xe0–0xff); the bytes
 * of 8-, 16- and 32-bit integers and of binary data, any; a boolean either
 * one; a float's bytes, any but an exponent of all ones (NaN and ±Infinity,
 * which the decoder refuses). Types, lengths, 64-bit integers (bounded to
 * ±2^53) and everything else stay as they are.
 */

/** Values longer than this are not kept (a copy and a mask each). */
export const MEMO_MAX_BYTES = 1024;
/** Full checks in a row without a match before the last value is kept anyway. */
const RETRY_AFTER = 8;

/** How a byte of the kept value may change (see the module comment). */
const SAME = 0, ANY_DIGIT = 1, NONZERO_DIGIT = 2, ANY_BYTE = 3, FIXINT = 4, NEGATIVE_FIXINT = 5;
const BOOLEAN = 6, FLOAT32_HIGH = 7, FLOAT32_NEXT = 8, FLOAT64_HIGH = 9, FLOAT64_NEXT = 10;

let viewBuffer: ArrayBufferLike | undefined;
let view: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0));

/** A DataView of `b`'s buffer (one per read buffer: asking `b.buffer` costs ~12 ns). */
function dataView(b: Uint8Array): DataView<ArrayBufferLike> {
  const buffer = b.buffer;
  if (buffer !== viewBuffer) {
    viewBuffer = buffer;
    view = new DataView(buffer);
  }
  return view;
}

/** The last value a reader checked in full (see the module comment); one per publisher. */
export class ValueMemo {
  #words = new Int32Array(MEMO_MAX_BYTES >> 2);
  #bytes = new Uint8Array(this.#words.buffer);
  /** How each byte of the kept value may change (SAME, ANY_DIGIT, NONZERO_DIGIT). */
  #free = new Uint8Array(MEMO_MAX_BYTES);
  /** #free by word: 0xff where a byte may change, 0 where it may not. */
  #freeWords = new Int32Array(MEMO_MAX_BYTES >> 2);
  #freeBytes = new Uint8Array(this.#freeWords.buffer);
  /** The kept value's length; -1 when none. */
  #length = -1;
  /** Whether the kept value is MessagePack (else JSON text). */
  #msgpack = false;
  /** Whether #free describes the kept value (made at its first mismatch). */
  #freeMade = false;
  /** Matches since the value was kept, and full checks since without one. */
  #hits = 0;
  #misses = 0;

  /** The kept value's length in bytes; -1 when none is kept. */
  get length(): number {
    return this.#length;
  }

  /**
   * Whether `b[start, end)` is, byte for byte, the kept value or one that
   * differs from it only by digits it may change: then it is valid JSON
   * whenever the kept value was (at the same nesting).
   */
  matches(b: Uint8Array, start: number, end: number): boolean {
    const n = this.#length;
    if (end - start !== n) return false;
    const dv = dataView(b);
    const base = b.byteOffset + start;
    const words = this.#words;
    const whole = n >> 2;
    for (let w = 0; w < whole; w++) {
      const got = dv.getInt32(base + 4 * w, true);
      if (got === words[w]) continue;
      if (!this.#freeMade) this.#makeFree();
      const changed = got ^ words[w];
      if ((changed & ~this.#freeWords[w]) !== 0) return false;
      for (let k = 0; k < 4; k++) {
        if (((changed >>> (8 * k)) & 0xff) !== 0 && !this.#mayBe(b, start, 4 * w + k)) return false;
      }
    }
    const bytes = this.#bytes;
    for (let p = whole << 2; p < n; p++) {
      if (b[start + p] === bytes[p]) continue;
      if (!this.#freeMade) this.#makeFree();
      if (!this.#mayBe(b, start, p)) return false;
    }
    this.#hits++;
    return true;
  }

  /** Whether byte `p` of the kept value may be `b[start + p]` (see the module comment). */
  #mayBe(b: Uint8Array, start: number, p: number): boolean {
    const c = b[start + p];
    switch (this.#free[p]) {
      case ANY_DIGIT:
        return c >= 0x30 && c <= 0x39;
      case NONZERO_DIGIT:
        return c >= 0x31 && c <= 0x39;
      case ANY_BYTE:
        return true;
      case FIXINT:
        return c <= 0x7f;
      case NEGATIVE_FIXINT:
        return c >= 0xe0;
      case BOOLEAN:
        return c === 0xc2 || c === 0xc3;
      // A float's sign and exponent: all exponent bits set is NaN or ±Infinity.
      case FLOAT32_HIGH:
        return (c & 0x7f) !== 0x7f || (b[start + p + 1] & 0x80) === 0;
      case FLOAT32_NEXT:
        return (b[start + p - 1] & 0x7f) !== 0x7f || (c & 0x80) === 0;
      case FLOAT64_HIGH:
        return (c & 0x7f) !== 0x7f || (b[start + p + 1] & 0xf0) !== 0xf0;
      case FLOAT64_NEXT:
        return (b[start + p - 1] & 0x7f) !== 0x7f || (c & 0xf0) !== 0xf0;
      default:
        return false;
    }
  }

  /**
   * A value `b[start, end)` was checked in full and is valid: kept when the
   * one kept before it matched since it was kept, or after RETRY_AFTER full
   * checks without a match (values whose layout keeps changing are not
   * copied each time).
   */
  checked(b: Uint8Array, start: number, end: number, msgpack = false): void {
    const n = end - start;
    if (n > MEMO_MAX_BYTES) return;
    if (this.#length >= 0 && this.#hits === 0 && ++this.#misses < RETRY_AFTER) return;
    const bytes = this.#bytes;
    for (let i = 0; i < n; i++) bytes[i] = b[start + i];
    this.#length = n;
    this.#msgpack = msgpack;
    this.#freeMade = false;
    this.#hits = this.#misses = 0;
  }

  /** Marks the kept value's bytes that may change (see the module comment). */
  #makeFree(): void {
    const free = this.#free;
    const n = this.#length;
    free.fill(SAME, 0, n);
    if (this.#msgpack) freeMsgpack(this.#bytes, n, free);
    else freeJson(this.#bytes, n, free);
    const freeBytes = this.#freeBytes;
    for (let k = 0; k < n; k++) freeBytes[k] = free[k] === SAME ? 0 : 0xff;
    freeBytes.fill(0, n, (n + 3) & ~3);
    this.#freeMade = true;
  }
}

/** Marks what may change in the JSON value `t[0, n)` (valid: see the module comment). */
function freeJson(t: Uint8Array, n: number, free: Uint8Array): void {
  let i = 0;
  while (i < n) {
    const c = t[i];
    if (c === QUOTE) {
      i++;
      while (i < n) {
        const s = t[i];
        if (s === QUOTE) break;
        if (s === BACKSLASH) {
          i += t[i + 1] === 0x75 ? 6 : 2; // \uXXXX, else \" \\ \/ \b \f \n \r \t
          continue;
        }
        if (isDigit(s)) free[i] = ANY_DIGIT;
        i++;
      }
      i++;
    } else if (c === 0x2d || isDigit(c)) {
      const from = i;
      if (c === 0x2d) i++;
      const whole = i;
      while (i < n && isDigit(t[i])) i++;
      const wholeEnd = i;
      let fraction = i;
      if (t[i] === 0x2e) {
        fraction = ++i;
        while (i < n && isDigit(t[i])) i++;
      }
      const exponent = t[i] === 0x65 || t[i] === 0x45;
      if (exponent) {
        i++;
        if (t[i] === 0x2b || t[i] === 0x2d) i++;
        while (i < n && isDigit(t[i])) i++;
      } else if (i - from <= 300) {
        free[whole] = wholeEnd - whole > 1 ? NONZERO_DIGIT : ANY_DIGIT;
        for (let k = whole + 1; k < wholeEnd; k++) free[k] = ANY_DIGIT;
        if (fraction > wholeEnd) { for (let k = fraction; k < i; k++) free[k] = ANY_DIGIT; }
      }
    } else i++;
  }
}

/** Marks what may change in the MessagePack value `t[0, n)` (valid: see the module comment). */
function freeMsgpack(t: Uint8Array, n: number, free: Uint8Array): void {
  const digits = (from: number, len: number) => {
    for (let k = from; k < from + len && k < n; k++) if (isDigit(t[k])) free[k] = ANY_DIGIT;
  };
  const any = (from: number, len: number) => free.fill(ANY_BYTE, from, Math.min(n, from + len));
  // Items in order, whatever their nesting: a container's header adds its items to those left.
  let left = 1;
  let i = 0;
  while (left > 0 && i < n) {
    left--;
    const c = t[i];
    if (c <= 0x7f) free[i++] = FIXINT;
    else if (c >= 0xe0) free[i++] = NEGATIVE_FIXINT;
    else if (c >= 0xa0 && c <= 0xbf) {
      digits(i + 1, c & 0x1f);
      i += 1 + (c & 0x1f);
    } else if (c <= 0x8f) {
      left += 2 * (c & 0x0f);
      i++;
    } else if (c <= 0x9f) {
      left += c & 0x0f;
      i++;
    } else {
      const u16 = (t[i + 1] << 8) | t[i + 2];
      const u32 = ((t[i + 1] << 24) | (t[i + 2] << 16) | (t[i + 3] << 8) | t[i + 4]) >>> 0;
      switch (c) {
        case 0xc2:
        case 0xc3:
          free[i++] = BOOLEAN;
          break;
        case 0xc4:
          any(i + 2, t[i + 1]);
          i += 2 + t[i + 1];
          break;
        case 0xc5:
          any(i + 3, u16);
          i += 3 + u16;
          break;
        case 0xc6:
          any(i + 5, u32);
          i += 5 + u32;
          break;
        case 0xca:
          free[i + 1] = FLOAT32_HIGH;
          free[i + 2] = FLOAT32_NEXT;
          any(i + 3, 2);
          i += 5;
          break;
        case 0xcb:
          free[i + 1] = FLOAT64_HIGH;
          free[i + 2] = FLOAT64_NEXT;
          any(i + 3, 6);
          i += 9;
          break;
        case 0xcc:
        case 0xd0:
          any(i + 1, 1);
          i += 2;
          break;
        case 0xcd:
        case 0xd1:
          any(i + 1, 2);
          i += 3;
          break;
        case 0xce:
        case 0xd2:
          any(i + 1, 4);
          i += 5;
          break;
        case 0xd9:
          digits(i + 2, t[i + 1]);
          i += 2 + t[i + 1];
          break;
        case 0xda:
          digits(i + 3, u16);
          i += 3 + u16;
          break;
        case 0xdb:
          digits(i + 5, u32);
          i += 5 + u32;
          break;
        case 0xdc:
          left += u16;
          i += 3;
          break;
        case 0xdd:
          left += u32;
          i += 5;
          break;
        case 0xde:
          left += 2 * u16;
          i += 3;
          break;
        case 0xdf:
          left += 2 * u32;
          i += 5;
          break;
        default: // nil, 64-bit integers (bounded): as they are
          i += c === 0xcf || c === 0xd3 ? 9 : 1;
      }
    }
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

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
 */

/** Values longer than this are not kept (a copy and a mask each). */
export const MEMO_MAX_BYTES = 1024;
/** Full checks in a row without a match before the last value is kept anyway. */
const RETRY_AFTER = 8;

/** How a byte of the kept value may change (see the module comment). */
const SAME = 0, ANY_DIGIT = 1, NONZERO_DIGIT = 2;

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
      if (got !== words[w] && !this.#digitsDiffer(got, w)) return false;
    }
    const bytes = this.#bytes;
    for (let i = whole << 2; i < n; i++) {
      const c = b[start + i];
      if (c === bytes[i]) continue;
      if (!this.#freeMade) this.#makeFree();
      const f = this.#free[i];
      if (f === SAME || c > 0x39 || c < (f === NONZERO_DIGIT ? 0x31 : 0x30)) return false;
    }
    this.#hits++;
    return true;
  }

  /**
   * Whether the kept value's word `w` may become `got` (little-endian): the
   * bytes that differ are digits that may change (see the module comment),
   * and the new ones digits of their kind.
   */
  #digitsDiffer(got: number, w: number): boolean {
    if (!this.#freeMade) this.#makeFree();
    const changed = got ^ this.#words[w];
    if ((changed & ~this.#freeWords[w]) !== 0) return false;
    for (let k = 0; k < 4; k++) {
      if (((changed >>> (8 * k)) & 0xff) === 0) continue;
      const c = (got >>> (8 * k)) & 0xff;
      if (c > 0x39 || c < (this.#free[4 * w + k] === NONZERO_DIGIT ? 0x31 : 0x30)) return false;
    }
    return true;
  }

  /**
   * A value `b[start, end)` was checked in full and is valid: kept when the
   * one kept before it matched since it was kept, or after RETRY_AFTER full
   * checks without a match (values whose layout keeps changing are not
   * copied each time).
   */
  checked(b: Uint8Array, start: number, end: number): void {
    const n = end - start;
    if (n > MEMO_MAX_BYTES) return;
    if (this.#length >= 0 && this.#hits === 0 && ++this.#misses < RETRY_AFTER) return;
    const bytes = this.#bytes;
    for (let i = 0; i < n; i++) bytes[i] = b[start + i];
    this.#length = n;
    this.#freeMade = false;
    this.#hits = this.#misses = 0;
  }

  /** Marks the kept value's digits that may change (see the module comment). */
  #makeFree(): void {
    const t = this.#bytes;
    const free = this.#free;
    const n = this.#length;
    free.fill(SAME, 0, n);
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
    const freeBytes = this.#freeBytes;
    for (let k = 0; k < n; k++) freeBytes[k] = free[k] === SAME ? 0 : 0xff;
    freeBytes.fill(0, n, (n + 3) & ~3);
    this.#freeMade = true;
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

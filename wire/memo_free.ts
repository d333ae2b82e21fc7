/**
 * What may change in a kept publish frame's value (see publish_memo.ts): each
 * byte of the value marked with how it may change, and the check of a byte
 * against its mark.
 */

/** How a byte of the kept value may change (see publish_memo.ts). */
export const SAME = 0, ANY_DIGIT = 1, NONZERO_DIGIT = 2, ANY_BYTE = 3, FIXINT = 4;
const NEGATIVE_FIXINT = 5, BOOLEAN = 6, FLOAT32_HIGH = 7, FLOAT32_NEXT = 8, FLOAT64_HIGH = 9;
const FLOAT64_NEXT = 10;

/** Whether byte `p` of a kept frame may be `b[p]` (see publish_memo.ts). */
export function mayBe(free: Uint8Array, b: Uint8Array, p: number): boolean {
  const c = b[p];
  switch (free[p]) {
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
      return (c & 0x7f) !== 0x7f || (b[p + 1] & 0x80) === 0;
    case FLOAT32_NEXT:
      return (b[p - 1] & 0x7f) !== 0x7f || (c & 0x80) === 0;
    case FLOAT64_HIGH:
      return (c & 0x7f) !== 0x7f || (b[p + 1] & 0xf0) !== 0xf0;
    case FLOAT64_NEXT:
      return (b[p - 1] & 0x7f) !== 0x7f || (c & 0xf0) !== 0xf0;
    default:
      return false;
  }
}

/** Marks what may change in the JSON value `t[from, n)` (valid: see publish_memo.ts). */
export function freeJson(t: Uint8Array, from: number, n: number, free: Uint8Array): void {
  let i = from;
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
      const number = i;
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
      } else if (i - number <= 300) {
        free[whole] = wholeEnd - whole > 1 ? NONZERO_DIGIT : ANY_DIGIT;
        for (let k = whole + 1; k < wholeEnd; k++) free[k] = ANY_DIGIT;
        if (fraction > wholeEnd) { for (let k = fraction; k < i; k++) free[k] = ANY_DIGIT; }
      }
    } else i++;
  }
}

/** Marks what may change in the MessagePack value `t[from, n)` (valid: see publish_memo.ts). */
export function freeMsgpack(t: Uint8Array, from: number, n: number, free: Uint8Array): void {
  const digits = (from: number, len: number) => {
    for (let k = from; k < from + len && k < n; k++) if (isDigit(t[k])) free[k] = ANY_DIGIT;
  };
  const any = (from: number, len: number) => free.fill(ANY_BYTE, from, Math.min(n, from + len));
  // Items in order, whatever their nesting: a container's header adds its items to those left.
  let left = 1;
  let i = from;
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

export function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

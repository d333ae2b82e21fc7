/**
 * MessagePack read as bytes, as json_scan.ts reads JSON: a value is checked
 * in one pass as strictly as the decoder checks it (codec.ts) and skipped,
 * nothing built. The broker's publish reader (roles/broker/
 * msgpack_publish.ts) and the request envelope reader
 * (msgpack_envelope.ts, the balancer's MessagePack pass-through) use it.
 *
 * skipMsgpack takes what the decoder reads as itself and no more: no
 * extension types (dates among them), map keys that are strings (never
 * `__proto__`), integers within 2^53, no NaN or ±Infinity, valid UTF-8,
 * nesting within MAX_DEPTH, and no length past the frame's end. What it
 * does not take, `skipProblem` says.
 */
import { MAX_DEPTH } from "./codec.ts";
import { MAX_ID_LENGTH } from "./classify.ts";
import { skipUtf8 } from "./json_scan.ts";

/** Where the last string read by {@link readStr} lies in its frame (its bytes, header excluded). */
export const STR = { start: 0, end: 0 };

/** The big-endian unsigned 32-bit integer at `i`. */
export function u32(b: Uint8Array, i: number): number {
  return ((b[i] << 24) >>> 0) + ((b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]);
}

/**
 * Reads the string (header and UTF-8 bytes, checked) at `i`; sets
 * {@link STR} and returns its end, or -1 for anything else.
 */
export function readStr(b: Uint8Array, i: number): number {
  const c = b[i];
  let n: number;
  let at: number;
  if (c >= 0xa0 && c <= 0xbf) {
    n = c & 0x1f;
    at = i + 1;
  } else if (c === 0xd9) {
    n = b[i + 1];
    at = i + 2;
  } else if (c === 0xda) {
    n = (b[i + 1] << 8) | b[i + 2];
    at = i + 3;
  } else if (c === 0xdb) {
    n = u32(b, i + 1);
    at = i + 5;
  } else return -1;
  const end = at + n;
  if (!(end <= b.length)) return fail(TRUNCATED);
  for (let j = at; j < end;) {
    if (b[j] < 0x80) j++;
    else {
      j = skipUtf8(b, j);
      if (j < 0 || j > end) return fail(BAD_UTF8);
    }
  }
  STR.start = at;
  STR.end = end;
  return end;
}

/** Whether the string last read by {@link readStr} is `word`. */
export function strIs(b: Uint8Array, word: Uint8Array): boolean {
  if (STR.end - STR.start !== word.length) return false;
  for (let k = 0; k < word.length; k++) if (b[STR.start + k] !== word[k]) return false;
  return true;
}

/**
 * The end of the fixstr at `i` (its header `c`; `n` the frame's length),
 * or -1: ASCII (most of most strings) one comparison a byte, the rest
 * checked as UTF-8 from there.
 */
function fixstr(b: Uint8Array, i: number, c: number, n: number): number {
  const end = i + 1 + (c & 0x1f);
  if (end > n) return fail(TRUNCATED);
  let j = i + 1;
  while (j < end) {
    if (b[j] < 0x80) j++;
    else if ((j = skipUtf8(b, j)) < 0 || j > end) return fail(BAD_UTF8);
  }
  return end;
}

export const TRUNCATED = "a length past the end of the frame";
const BAD_UTF8 = "a string that is not valid UTF-8";
const TOO_DEEP = `nesting deeper than ${MAX_DEPTH} levels`;
const NOT_FINITE = "NaN or an infinity";
const BIG_INTEGER = "an integer past 2^53";
const EXTENSION = "an extension type (a timestamp, say)";
const KEY = "a map key that is not a string (or is __proto__)";

/**
 * Why the last {@link skipMsgpack} (or readStr) answered -1: what the
 * decoder refuses (a length past the frame's end, bad UTF-8, nesting past
 * MAX_DEPTH) or reads as something else (the rest; see {@link refuses}).
 */
export let skipProblem = "";

function fail(why: string): -1 {
  skipProblem = why;
  return -1;
}

/**
 * What a lenient skipMsgpack stepped over that a strict one refuses (what
 * the decoder reads as something else), "" when nothing.
 */
export let lenientProblem = "";

/** In a lenient skip, notes `why` and goes on (true); else false. */
function lenientlyFor(why: string, lenient: boolean): boolean {
  if (lenient) lenientProblem ||= why;
  return lenient;
}

/** Whether the last failed skip was for what the decoder refuses too (else: what it reads otherwise). */
export function refuses(): boolean {
  return skipProblem === TRUNCATED || skipProblem === BAD_UTF8 || skipProblem === TOO_DEEP;
}

const PROTO = new TextEncoder().encode("__proto__");

/** Per open container in skipMsgpack: items left in it, and whether it is a map. */
const LEFT = new Int32Array(MAX_DEPTH + 1);
const MAPS = new Uint8Array(MAX_DEPTH + 1);

/**
 * The end of the MessagePack value at `i`, or -1 for anything the decoder
 * would refuse or read as something else than itself (see the module;
 * {@link skipProblem} says which). `depth` is the nesting of the value's
 * parent. `lenient` steps over what the decoder reads otherwise (extension
 * types, keys that are not strings, integers past 2^53, NaN), noting the
 * first in {@link lenientProblem}, to find where such a value ends.
 *
 * One loop with its own stack of open containers (a map of n pairs is 2n
 * items, keys at odd counts left), not a call per value, and short
 * strings read in place.
 */
export function skipMsgpack(b: Uint8Array, i: number, depth: number, lenient = false): number {
  skipProblem = lenientProblem = "";
  const room = MAX_DEPTH - depth;
  const n = b.length;
  let top = 0;
  /** Items left at this level (the top level: the value itself). */
  let left = 1;
  let map = false;
  while (true) {
    if (left === 0) {
      if (top === 0) return i <= n ? i : fail(TRUNCATED);
      top--;
      left = LEFT[top];
      map = MAPS[top] === 1;
      continue;
    }
    left--;
    if (i >= n) return fail(TRUNCATED);
    const c = b[i];
    if (map && (left & 1) === 1) {
      // A key: strings only (the decoder makes others strings), never one
      // that sets a prototype; a short ASCII one (most are) in place.
      if (c >= 0xa0 && c <= 0xbf && c !== 0xa9) {
        if ((i = fixstr(b, i, c, n)) < 0) return -1;
        continue;
      }
      const at = i;
      if ((i = readStr(b, at)) >= 0 && !strIs(b, PROTO)) continue;
      if (skipProblem === TRUNCATED || skipProblem === BAD_UTF8) return -1;
      if (!lenient) return fail(KEY);
      lenientProblem ||= KEY;
      if (i >= 0) continue;
      i = at; // any other key is skipped as the value it is, below
    }
    if (c <= 0x7f || c >= 0xe0) { // fixints
      i++;
      continue;
    }
    if (c >= 0xa0 && c <= 0xbf) {
      if ((i = fixstr(b, i, c, n)) < 0) return -1;
      continue;
    }
    let count: number;
    let isMap: boolean;
    if (c <= 0x9f) { // fixmap, fixarray
      count = c & 0x0f;
      isMap = c <= 0x8f;
      i++;
    } else {
      switch (c) {
        case 0xc0: // nil
        case 0xc2: // false
        case 0xc3: // true
          i++;
          continue;
        case 0xc4: // bin 8, 16, 32
          i += 2 + b[i + 1];
          continue;
        case 0xc5:
          i += 3 + ((b[i + 1] << 8) | b[i + 2]);
          continue;
        case 0xc6:
          i += 5 + u32(b, i + 1);
          continue;
        case 0xca: // float 32: all exponent bits set is NaN or ±Infinity
          if (
            (b[i + 1] & 0x7f) === 0x7f && (b[i + 2] & 0x80) !== 0 &&
            !lenientlyFor(NOT_FINITE, lenient)
          ) {
            return fail(NOT_FINITE);
          }
          i += 5;
          continue;
        case 0xcb: // float 64
          if (
            (b[i + 1] & 0x7f) === 0x7f && (b[i + 2] & 0xf0) === 0xf0 &&
            !lenientlyFor(NOT_FINITE, lenient)
          ) {
            return fail(NOT_FINITE);
          }
          i += 9;
          continue;
        case 0xcc:
        case 0xd0:
          i += 2;
          continue;
        case 0xcd:
        case 0xd1:
          i += 3;
          continue;
        case 0xce:
        case 0xd2:
          i += 5;
          continue;
        case 0xcf: // uint 64: below 2^53 only (a double holds it exactly)
          if ((b[i + 1] !== 0 || !(b[i + 2] < 0x20)) && !lenientlyFor(BIG_INTEGER, lenient)) {
            return fail(BIG_INTEGER);
          }
          i += 9;
          continue;
        case 0xd3: { // int 64: within ±2^53
          const hi = (b[i + 1] << 24) | (b[i + 2] << 16) | (b[i + 3] << 8) | b[i + 4];
          if ((hi < -0x200000 || hi >= 0x200000) && !lenientlyFor(BIG_INTEGER, lenient)) {
            return fail(BIG_INTEGER);
          }
          i += 9;
          continue;
        }
        case 0xd9:
        case 0xda:
        case 0xdb:
          if ((i = readStr(b, i)) < 0) return -1;
          continue;
        case 0xdc:
        case 0xde:
          count = (b[i + 1] << 8) | b[i + 2];
          isMap = c === 0xde;
          i += 3;
          break;
        case 0xdd:
        case 0xdf:
          count = u32(b, i + 1);
          isMap = c === 0xdf;
          i += 5;
          break;
        case 0xc1: // never used
          return fail(TRUNCATED);
        default: // extensions (timestamps too): 0xc7-0xc9, 0xd4-0xd8
          if (!lenientlyFor(EXTENSION, lenient)) return fail(EXTENSION);
          i += c >= 0xd4
            ? 2 + (1 << (c - 0xd4))
            : c === 0xc7
            ? 3 + b[i + 1]
            : c === 0xc8
            ? 4 + ((b[i + 1] << 8) | b[i + 2])
            : 6 + u32(b, i + 1);
          continue;
      }
    }
    // A container of `count` items (pairs for a map), each at least a byte.
    if (top >= room) return fail(TOO_DEEP);
    if ((isMap ? 2 * count : count) > n - i) return fail(TRUNCATED);
    if (count === 0) continue;
    LEFT[top] = left;
    MAPS[top] = map ? 1 : 0;
    top++;
    left = isMap ? 2 * count : count;
    map = isMap;
  }
}

/** The id read by {@link readMsgpackId}. */
export const ID_READ: { value: number | string } = { value: 0 };

/**
 * Reads a request id at `i` into {@link ID_READ}: an integer of at most 32
 * bits, or a string of at most 256 ASCII characters (the decoder takes the
 * rest). Returns its end, or -1.
 */
export function readMsgpackId(b: Uint8Array, i: number): number {
  const c = b[i];
  if (c <= 0x7f) ID_READ.value = c;
  else if (c >= 0xe0) ID_READ.value = c - 0x100;
  else if (c === 0xcc) ID_READ.value = b[i + 1];
  else if (c === 0xcd) ID_READ.value = (b[i + 1] << 8) | b[i + 2];
  else if (c === 0xce) ID_READ.value = u32(b, i + 1);
  else if (c === 0xd0) ID_READ.value = (b[i + 1] << 24) >> 24;
  else if (c === 0xd1) ID_READ.value = (((b[i + 1] << 8) | b[i + 2]) << 16) >> 16;
  else if (c === 0xd2) ID_READ.value = u32(b, i + 1) | 0;
  else {
    const end = readStr(b, i);
    if (end < 0 || STR.end - STR.start > MAX_ID_LENGTH) return -1;
    ID_READ.value = asciiAt(b, STR.start, STR.end) ?? "";
    return ID_READ.value === "" && STR.end > STR.start ? -1 : end;
  }
  const end = c <= 0x7f || c >= 0xe0
    ? i + 1
    : c === 0xcc || c === 0xd0
    ? i + 2
    : c === 0xcd || c === 0xd1
    ? i + 3
    : i + 5;
  return end <= b.length ? end : -1;
}

/** The text of `b[start, end)` when it is ASCII, else undefined. */
export function asciiAt(b: Uint8Array, start: number, end: number): string | undefined {
  let text = "";
  for (let j = start; j < end; j++) {
    if (b[j] >= 0x80) return undefined;
    text += String.fromCharCode(b[j]);
  }
  return text;
}

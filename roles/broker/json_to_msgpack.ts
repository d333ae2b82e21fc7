/**
 * JSON text to MessagePack, byte to byte: what a MessagePack subscriber
 * gets of a value that came (and is kept) as JSON text, without the
 * objects JSON.parse would make of it (1 MB of `[{},{},…]` is 333,333
 * objects: some 20 MB of heap and 50–300 ms of parsing and encoding, where
 * this takes a few milliseconds and leaves one buffer). The value decoded
 * from the result equals JSON.parse's (numbers as the library encodes
 * them: a safe integer as the smallest integer, anything else as a
 * float64; a duplicate key is kept twice, and a decoder keeps the last, as
 * JSON.parse does).
 *
 * Two passes over the text: the first counts each container's elements
 * (MessagePack writes them before the elements), the second writes.
 * Precondition: `text` is valid JSON (the broker checks every value it
 * keeps); what is not throws, and the caller falls back to JSON.parse.
 */

const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const encoder = new TextEncoder();

/** Element counts of the containers, in the order they open (reused). */
let counts = new Uint32Array(1024);
/** The open containers during the first pass (indices into counts). */
let stack = new Uint32Array(256);

let out = new Uint8Array(64 * 1024);
/** Past this, the buffers a conversion grew are dropped at the next. */
const KEEP_BYTES = 4 * 1024 * 1024;
let at = 0;

function room(n: number): void {
  if (at + n <= out.length) return;
  let size = out.length * 2;
  while (size < at + n) size *= 2;
  const bigger = new Uint8Array(size);
  bigger.set(out.subarray(0, at));
  out = bigger;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Index just past the string whose opening quote is at `i`; `escaped[0]` tells whether it has escapes. */
function stringEnd(b: Uint8Array, i: number, escaped: boolean[]): number {
  let esc = false;
  for (let j = i + 1; j < b.length; j++) {
    const c = b[j];
    if (c === QUOTE) {
      escaped[0] = esc;
      return j + 1;
    }
    if (c === BACKSLASH) {
      esc = true;
      j++;
    }
  }
  throw new Error("unterminated string");
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** First pass: each container's element count, in opening order; how many containers. */
function countElements(b: Uint8Array): number {
  let containers = 0;
  let depth = 0;
  const escaped = [false];
  for (let i = 0; i < b.length; i++) {
    const c = b[i];
    if (c === QUOTE) {
      i = stringEnd(b, i, escaped) - 1;
    } else if (c === 0x5b || c === 0x7b) { // [ {
      if (containers === counts.length) {
        const bigger = new Uint32Array(counts.length * 2);
        bigger.set(counts);
        counts = bigger;
      }
      if (depth === stack.length) {
        const bigger = new Uint32Array(stack.length * 2);
        bigger.set(stack);
        stack = bigger;
      }
      // Empty unless something other than its close follows.
      let j = i + 1;
      while (j < b.length && isSpace(b[j])) j++;
      counts[containers] = b[j] === c + 2 ? 0 : 1; // ] is [ + 2, } is { + 2
      stack[depth++] = containers++;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    } else if (c === 0x2c) {
      counts[stack[depth - 1]]++;
    }
  }
  if (depth !== 0) throw new Error("unbalanced");
  return containers;
}

function writeHeader(n: number, fix: number, fixMax: number, b16: number): void {
  room(5);
  if (n <= fixMax) out[at++] = fix | n;
  else if (n < 0x10000) {
    out[at++] = b16;
    out[at++] = n >>> 8;
    out[at++] = n;
  } else {
    out[at++] = b16 + 1;
    out[at++] = n >>> 24;
    out[at++] = n >>> 16;
    out[at++] = n >>> 8;
    out[at++] = n;
  }
}

function writeStringBytes(s: Uint8Array): void {
  const n = s.length;
  room(5 + n);
  if (n < 32) out[at++] = 0xa0 | n;
  else if (n < 0x100) {
    out[at++] = 0xd9;
    out[at++] = n;
  } else if (n < 0x10000) {
    out[at++] = 0xda;
    out[at++] = n >>> 8;
    out[at++] = n;
  } else {
    out[at++] = 0xdb;
    out[at++] = n >>> 24;
    out[at++] = n >>> 16;
    out[at++] = n >>> 8;
    out[at++] = n;
  }
  out.set(s, at);
  at += n;
}

const scratch = new DataView(new ArrayBuffer(8));

function writeNumber(v: number): void {
  room(9);
  if (!Number.isFinite(v)) throw new Error("not a finite number");
  if (!Number.isSafeInteger(v) || (v === 0 && 1 / v < 0)) { // -0 keeps its sign as a float
    out[at++] = 0xcb;
    scratch.setFloat64(0, v);
    for (let k = 0; k < 8; k++) out[at++] = scratch.getUint8(k);
    return;
  }
  if (v >= 0) {
    if (v < 0x80) out[at++] = v;
    else if (v < 0x100) {
      out[at++] = 0xcc;
      out[at++] = v;
    } else if (v < 0x10000) {
      out[at++] = 0xcd;
      out[at++] = v >>> 8;
      out[at++] = v;
    } else if (v < 0x100000000) {
      out[at++] = 0xce;
      out[at++] = v >>> 24;
      out[at++] = v >>> 16;
      out[at++] = v >>> 8;
      out[at++] = v;
    } else {
      out[at++] = 0xcf;
      scratch.setBigUint64(0, BigInt(v));
      for (let k = 0; k < 8; k++) out[at++] = scratch.getUint8(k);
    }
  } else if (v >= -0x20) out[at++] = v & 0xff;
  else if (v >= -0x80) {
    out[at++] = 0xd0;
    out[at++] = v & 0xff;
  } else if (v >= -0x8000) {
    out[at++] = 0xd1;
    out[at++] = (v >> 8) & 0xff;
    out[at++] = v & 0xff;
  } else if (v >= -0x80000000) {
    out[at++] = 0xd2;
    out[at++] = (v >> 24) & 0xff;
    out[at++] = (v >> 16) & 0xff;
    out[at++] = (v >> 8) & 0xff;
    out[at++] = v & 0xff;
  } else {
    out[at++] = 0xd3;
    scratch.setBigInt64(0, BigInt(v));
    for (let k = 0; k < 8; k++) out[at++] = scratch.getUint8(k);
  }
}

/** The number whose text is `b[i, end)`: small integers read directly, others by Number(). */
function readNumber(b: Uint8Array, i: number, end: number): number {
  let neg = false;
  let j = i;
  if (b[j] === 0x2d) {
    neg = true;
    j++;
  }
  if (end - j <= 15) {
    let v = 0;
    let k = j;
    for (; k < end; k++) {
      const d = b[k] - 0x30;
      if (d < 0 || d > 9) break;
      v = v * 10 + d;
    }
    if (k === end) return neg ? -v : v; // "-0" is -0, as JSON.parse reads it
  }
  return Number(decoder.decode(b.subarray(i, end)));
}

/**
 * The MessagePack encoding of the JSON text `b`: a view of scratch space,
 * valid until the next conversion (copy it at once).
 * @throws {Error} when `b` is not valid JSON (see the module comment)
 */
export function jsonToMsgpack(b: Uint8Array): Uint8Array {
  // What one large value grew is not kept for long (its result is a view of it until now).
  if (out.length > KEEP_BYTES) out = new Uint8Array(64 * 1024);
  if (counts.length > KEEP_BYTES / 4) counts = new Uint32Array(1024);
  countElements(b);
  at = 0;
  let container = 0;
  const escaped = [false];
  for (let i = 0; i < b.length; i++) {
    const c = b[i];
    if (c === QUOTE) {
      const end = stringEnd(b, i, escaped);
      if (escaped[0]) {
        const s = JSON.parse(decoder.decode(b.subarray(i, end))) as string;
        if (!s.isWellFormed()) throw new Error("a lone surrogate");
        writeStringBytes(encoder.encode(s));
      } else writeStringBytes(b.subarray(i + 1, end - 1));
      i = end - 1;
    } else if (c === 0x5b) writeHeader(counts[container++], 0x90, 15, 0xdc);
    else if (c === 0x7b) writeHeader(counts[container++], 0x80, 15, 0xde);
    else if (c === 0x74) { // true
      room(1);
      out[at++] = 0xc3;
      i += 3;
    } else if (c === 0x66) { // false
      room(1);
      out[at++] = 0xc2;
      i += 4;
    } else if (c === 0x6e) { // null
      room(1);
      out[at++] = 0xc0;
      i += 3;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      let end = i + 1;
      while (end < b.length) {
        const d = b[end];
        if (
          (d >= 0x30 && d <= 0x39) || d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b ||
          d === 0x2d
        ) end++;
        else break;
      }
      writeNumber(readNumber(b, i, end));
      i = end - 1;
    }
    // Anything else (`,` `:` `]` `}` white space) writes nothing.
  }
  return out.subarray(0, at);
}

/** Scratch space for a kept value's text as UTF-8 (see textToMsgpack). */
let utf8 = new Uint8Array(64 * 1024);

/**
 * As jsonToMsgpack, for JSON text kept as a string: encoded into scratch
 * space rather than a new array per conversion (a megabyte each, freed
 * late: under a snapshot of large values RSS grew by half again).
 */
export function textToMsgpack(text: string): Uint8Array {
  if (utf8.length > KEEP_BYTES * 3) utf8 = new Uint8Array(64 * 1024);
  if (utf8.length < text.length * 3) utf8 = new Uint8Array(text.length * 3);
  const { written } = encoder.encodeInto(text, utf8);
  return jsonToMsgpack(utf8.subarray(0, written));
}

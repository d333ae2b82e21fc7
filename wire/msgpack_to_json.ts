/**
 * MessagePack to JSON text, byte to byte: what a JSON subscriber gets of a
 * value that came (and is kept) as MessagePack, without the objects a
 * decoder would make of it (a megabyte of empty maps is a million objects;
 * see roles/broker/json_to_msgpack.ts for the other way; the balancer
 * writes a MessagePack request to a JSON backend with it). The text, parsed, equals
 * JSON.stringify's of the decoded value with the wire's rule for binaries
 * (base64 text): numbers as JavaScript writes them, strings escaped as
 * JSON.stringify escapes them, map members in their order (a decoder's
 * object may list integer-like keys first: the same value).
 *
 * What this does not write (extension types such as timestamps, keys other
 * than strings and integers, text that is not UTF-8, numbers
 * JSON has not) throws, and the caller decodes the value instead.
 */
import { base64Of } from "./json_value.ts";

const encoder = new TextEncoder();
const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

let out = new Uint8Array(64 * 1024);
let at = 0;
let input: Uint8Array = new Uint8Array(0);
let view: DataView = new DataView(input.buffer);
let pos = 0;

function room(n: number): void {
  if (at + n <= out.length) return;
  let size = out.length * 2;
  while (size < at + n) size *= 2;
  const bigger = new Uint8Array(size);
  bigger.set(out.subarray(0, at));
  out = bigger;
}

function unsupported(what: string): Error {
  return new Error(`not written as JSON here: ${what}`);
}

function need(n: number): void {
  if (pos + n > input.length) throw new Error("truncated");
}

function writeAscii(s: string): void {
  room(s.length);
  for (let i = 0; i < s.length; i++) out[at++] = s.charCodeAt(i);
}

function writeNumber(v: number): void {
  if (!Number.isFinite(v)) throw unsupported(String(v));
  // String(-0) is "0": JSON has -0, and a JSON publisher's reaches JSON subscribers (hostile45b K-B3).
  writeAscii(Object.is(v, -0) ? "-0" : String(v));
}

const HEX = "0123456789abcdef";

/** The ASCII string in `input[start, start + n)` as JSON (quoted, escaped as JSON.stringify does). */
function writeString(start: number, n: number): void {
  const end = start + n;
  if (end > input.length) throw new Error("truncated");
  room(2 + n * 6);
  out[at++] = 0x22;
  for (let i = start; i < end; i++) {
    const c = input[i];
    if (c === 0x22 || c === 0x5c) {
      out[at++] = 0x5c;
      out[at++] = c;
    } else if (c < 0x20) {
      out[at++] = 0x5c;
      if (c === 0x08) out[at++] = 0x62; // b
      else if (c === 0x09) out[at++] = 0x74; // t
      else if (c === 0x0a) out[at++] = 0x6e; // n
      else if (c === 0x0c) out[at++] = 0x66; // f
      else if (c === 0x0d) out[at++] = 0x72; // r
      else {
        out[at++] = 0x75; // u00XX
        out[at++] = 0x30;
        out[at++] = 0x30;
        out[at++] = HEX.charCodeAt(c >> 4);
        out[at++] = HEX.charCodeAt(c & 15);
      }
    } else out[at++] = c;
  }
  out[at++] = 0x22;
}

/** As writeString, for a string with non-ASCII text (checked as UTF-8): escaped by JSON.stringify itself. */
function writeStringSlow(start: number, n: number): void {
  const s = strict.decode(input.subarray(start, start + n));
  const text = encoder.encode(JSON.stringify(s));
  room(text.length);
  out.set(text, at);
  at += text.length;
}

function hasNonAscii(start: number, n: number): boolean {
  for (let i = start; i < start + n; i++) if (input[i] >= 0x80) return true;
  return false;
}

function string(n: number): void {
  need(n);
  if (hasNonAscii(pos, n)) writeStringSlow(pos, n);
  else writeString(pos, n);
  pos += n;
}

function u8(): number {
  need(1);
  return input[pos++];
}

function length(bytes: 1 | 2 | 4): number {
  need(bytes);
  const n = bytes === 1
    ? view.getUint8(pos)
    : bytes === 2
    ? view.getUint16(pos)
    : view.getUint32(pos);
  pos += bytes;
  return n;
}

function binary(n: number): void {
  need(n);
  const text = base64Of(input.subarray(pos, pos + n));
  pos += n;
  room(text.length + 2);
  out[at++] = 0x22;
  writeAscii(text);
  out[at++] = 0x22;
}

function array(n: number, depth: number): void {
  room(1);
  out[at++] = 0x5b;
  for (let i = 0; i < n; i++) {
    if (i > 0) {
      room(1);
      out[at++] = 0x2c;
    }
    value(depth + 1);
  }
  room(1);
  out[at++] = 0x5d;
}

function map(n: number, depth: number): void {
  room(1);
  out[at++] = 0x7b;
  for (let i = 0; i < n; i++) {
    if (i > 0) {
      room(1);
      out[at++] = 0x2c;
    }
    key();
    room(1);
    out[at++] = 0x3a;
    value(depth + 1);
  }
  room(1);
  out[at++] = 0x7d;
}

/** A map's key: a string, or an integer (a decoder makes it a string). */
function key(): void {
  const c = u8();
  let n: number;
  if (c >= 0xa0 && c <= 0xbf) n = c & 0x1f;
  else if (c === 0xd9) n = length(1);
  else if (c === 0xda) n = length(2);
  else if (c === 0xdb) n = length(4);
  else if (c < 0x80 || c >= 0xe0 || (c >= 0xcc && c <= 0xd3)) {
    pos--;
    const start = at;
    value(0);
    const text = new TextDecoder("utf-8", { ignoreBOM: true }).decode(out.subarray(start, at));
    at = start;
    writeAscii(JSON.stringify(text));
    return;
  } else throw unsupported(`a key of type 0x${c.toString(16)}`);
  need(n);
  string(n);
}

function value(depth: number): void {
  if (depth > 64) throw unsupported("nesting");
  const c = u8();
  if (c < 0x80) return writeAscii(String(c));
  if (c >= 0xe0) return writeAscii(String(c - 0x100));
  if (c <= 0x8f) return map(c & 0x0f, depth);
  if (c <= 0x9f) return array(c & 0x0f, depth);
  if (c <= 0xbf) return string(c & 0x1f);
  switch (c) {
    case 0xc0:
      return writeAscii("null");
    case 0xc2:
      return writeAscii("false");
    case 0xc3:
      return writeAscii("true");
    case 0xc4:
      return binary(length(1));
    case 0xc5:
      return binary(length(2));
    case 0xc6:
      return binary(length(4));
    case 0xca:
      need(4);
      pos += 4;
      return writeNumber(view.getFloat32(pos - 4));
    case 0xcb:
      need(8);
      pos += 8;
      return writeNumber(view.getFloat64(pos - 8));
    case 0xcc:
      return writeAscii(String(length(1)));
    case 0xcd:
      return writeAscii(String(length(2)));
    case 0xce:
      return writeAscii(String(length(4)));
    case 0xcf:
      need(8);
      pos += 8;
      return writeNumber(view.getUint32(pos - 8) * 0x100000000 + view.getUint32(pos - 4));
    case 0xd0:
      need(1);
      return writeAscii(String(view.getInt8(pos++)));
    case 0xd1:
      need(2);
      pos += 2;
      return writeAscii(String(view.getInt16(pos - 2)));
    case 0xd2:
      need(4);
      pos += 4;
      return writeAscii(String(view.getInt32(pos - 4)));
    case 0xd3:
      need(8);
      pos += 8;
      return writeNumber(view.getInt32(pos - 8) * 0x100000000 + view.getUint32(pos - 4));
    case 0xd9:
      return string(length(1));
    case 0xda:
      return string(length(2));
    case 0xdb:
      return string(length(4));
    case 0xdc:
      return array(length(2), depth);
    case 0xdd:
      return array(length(4), depth);
    case 0xde:
      return map(length(2), depth);
    case 0xdf:
      return map(length(4), depth);
  }
  throw unsupported(`type 0x${c.toString(16)}`);
}

/**
 * The JSON text (UTF-8) of the MessagePack value `bytes`: a view of
 * scratch space, valid until the next conversion (copy it at once).
 * @throws {Error} for what it does not write (see the module comment)
 */
export function msgpackToJson(bytes: Uint8Array): Uint8Array {
  // What one large value grew is not kept for long (its result is a view of it until now).
  if (out.length > 4 * 1024 * 1024) out = new Uint8Array(64 * 1024);
  input = bytes;
  view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  pos = 0;
  at = 0;
  try {
    value(0);
    if (pos !== bytes.length) throw new Error("bytes after the value");
    return out.subarray(0, at);
  } finally {
    input = new Uint8Array(0);
    view = new DataView(input.buffer);
  }
}

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
import * as mp from "./msgpack_reader.ts";

const encoder = new TextEncoder();
const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

let out = new Uint8Array(64 * 1024);
let at = 0;
const r = new mp.MsgpackReader();

function room(n: number): void {
  if (at + n <= out.length) return;
  let size = out.length * 2;
  while (size < at + n) size *= 2;
  const bigger = new Uint8Array(size);
  bigger.set(out.subarray(0, at));
  out = bigger;
}

function writeAscii(s: string): void {
  room(s.length);
  for (let i = 0; i < s.length; i++) out[at++] = s.charCodeAt(i);
}

function writeNumber(v: number): void {
  if (!Number.isFinite(v)) throw mp.unsupported(String(v));
  // String(-0) is "0": JSON has -0, and a JSON publisher's reaches JSON subscribers (hostile45b K-B3).
  writeAscii(Object.is(v, -0) ? "-0" : String(v));
}

const HEX = "0123456789abcdef";

/** The ASCII string in `r.input[start, start + n)` as JSON (quoted, escaped as JSON.stringify does). */
function writeString(start: number, n: number): void {
  const input = r.input;
  const end = start + n;
  // Room for the plain text; the rest at worst (\u00XX) only from its first escape (review h48b L6:
  // 6n up front grew the buffer to 64 MiB+ for a 10 MB plain string).
  room(2 + n);
  out[at++] = 0x22;
  let roomy = false;
  for (let i = start; i < end; i++) {
    const c = input[i];
    if (!roomy && (c === 0x22 || c === 0x5c || c < 0x20)) {
      room((end - i) * 6 + 1);
      roomy = true;
    }
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
  const s = strict.decode(r.input.subarray(start, start + n));
  const text = encoder.encode(JSON.stringify(s));
  room(text.length);
  out.set(text, at);
  at += text.length;
}

function hasNonAscii(start: number, n: number): boolean {
  const input = r.input;
  for (let i = start; i < start + n; i++) if (input[i] >= 0x80) return true;
  return false;
}

/** A string of `n` bytes at the cursor (there: head() checked). */
function string(n: number): void {
  const start = r.pos;
  if (hasNonAscii(start, n)) writeStringSlow(start, n);
  else writeString(start, n);
  r.pos = start + n;
}

/** A binary of `n` bytes at the cursor (there: head() checked), as base64 text. */
function binary(n: number): void {
  const text = base64Of(r.input.subarray(r.pos, r.pos + n));
  r.pos += n;
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
  const kind = r.head();
  if (kind === mp.STRING) return string(r.n);
  if (kind === mp.INT) return writeAscii(`"${r.number()}"`);
  throw mp.unsupported(`a key of type 0x${r.tag.toString(16)}`);
}

function value(depth: number): void {
  if (depth > 64) throw mp.unsupported("nesting");
  switch (r.head()) {
    case mp.INT:
      return writeAscii(String(r.number()));
    case mp.STRING:
      return string(r.n);
    case mp.MAP:
      return map(r.n, depth);
    case mp.ARRAY:
      return array(r.n, depth);
    case mp.NIL:
      return writeAscii("null");
    case mp.FALSE:
      return writeAscii("false");
    case mp.TRUE:
      return writeAscii("true");
    case mp.FLOAT:
      return writeNumber(r.number());
    case mp.BINARY:
      return binary(r.n);
  }
  throw mp.unsupported(`type 0x${r.tag.toString(16)}`);
}

/**
 * The JSON text (UTF-8) of the MessagePack value `bytes`: a view of
 * scratch space, valid until the next conversion (copy it at once).
 * @throws {Error} for what it does not write (see the module comment)
 */
export function msgpackToJson(bytes: Uint8Array): Uint8Array {
  // What one large value grew is not kept for long (its result is a view of it until now).
  if (out.length > 4 * 1024 * 1024) out = new Uint8Array(64 * 1024);
  r.start(bytes);
  at = 0;
  try {
    value(0);
  } catch (err) {
    r.end(false);
    throw err;
  }
  r.end(true);
  return out.subarray(0, at);
}

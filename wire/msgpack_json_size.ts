/**
 * How many bytes of JSON text msgpack_to_json.ts writes for a MessagePack
 * value, counted without writing them and given up past a bound (hostile46a
 * G8: 900 KB of U+0001 in a string is 5.4 MB of `\u0001`; the balancer wrote
 * it whole to measure it, then again to send it, and kept 5.4 MB counted
 * against the client's share until its queue timeout). The count is the
 * length of what the converter writes, byte for byte, for a value it writes.
 *
 * The value is taken as checked by msgpack_scan.ts (valid UTF-8, lengths
 * within the bytes): a string's non-ASCII bytes are counted as one each, as
 * JSON.stringify keeps them; what the converter does not write (extension
 * types, keys that are neither strings nor integers, non-finite numbers)
 * throws here too.
 */

import * as mp from "./msgpack_reader.ts";

const r = new mp.MsgpackReader();
let size = 0;
let limit = 0;

/** Thrown (and caught below) once the count passes the limit. */
const PAST = Symbol("past the limit");

function add(n: number): void {
  size += n;
  if (size > limit) throw PAST;
}

function numberText(v: number): number {
  if (!Number.isFinite(v)) throw mp.unsupported(String(v));
  return Object.is(v, -0) ? 2 : String(v).length;
}

/** An integer's digits (and sign), the small ones without writing them. */
function intText(v: number): number {
  if (v >= 0) return v < 10 ? 1 : v < 100 ? 2 : v < 1000 ? 3 : String(v).length;
  return v > -10 ? 2 : v > -100 ? 3 : String(v).length;
}

/** A string of `n` bytes at the cursor: quotes, each byte, and escapes as JSON.stringify writes them. */
function string(n: number): void {
  const input = r.input;
  const end = r.pos + n;
  let count = 2;
  // Checked a chunk at a time, so 900 KB of control characters stop at the limit, not at their end.
  for (let i = r.pos; i < end;) {
    const stop = Math.min(end, i + 4096);
    for (; i < stop; i++) {
      const c = input[i];
      if (c >= 0x20) count += c === 0x22 || c === 0x5c ? 2 : 1;
      else if (c === 0x08 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d) count += 2;
      else count += 6;
    }
    if (size + count > limit) throw PAST;
  }
  r.pos = end;
  add(count);
}

function items(n: number, depth: number, keyed: boolean): void {
  add(2 + Math.max(0, n - 1));
  for (let i = 0; i < n; i++) {
    if (keyed) {
      key();
      add(1);
    }
    value(depth + 1);
  }
}

/** A map's key: a string, or an integer written as a string (its digits, quoted). */
function key(): void {
  const kind = r.head();
  if (kind === mp.STRING) return string(r.n);
  if (kind === mp.INT) return add(2 + intText(r.number()));
  throw mp.unsupported(`a key of type 0x${r.tag.toString(16)}`);
}

function value(depth: number): void {
  if (depth > 64) throw mp.unsupported("nesting");
  switch (r.head()) {
    case mp.INT:
      return add(intText(r.number()));
    case mp.STRING:
      return string(r.n);
    case mp.MAP:
      return items(r.n, depth, true);
    case mp.ARRAY:
      return items(r.n, depth, false);
    case mp.NIL:
    case mp.TRUE:
      return add(4);
    case mp.FALSE:
      return add(5);
    case mp.FLOAT:
      return add(numberText(r.number()));
    case mp.BINARY:
      r.pos += r.n;
      return add(2 + 4 * Math.ceil(r.n / 3));
  }
  throw mp.unsupported(`type 0x${r.tag.toString(16)}`);
}

/**
 * The length of msgpackToJson(bytes), or -1 once it would pass `atMost`
 * (counted no further: the work is bounded by `atMost`, not by the value).
 * @throws {Error} for what the converter does not write (see the module comment)
 */
export function msgpackJsonSize(bytes: Uint8Array, atMost: number): number {
  r.start(bytes);
  size = 0;
  limit = atMost;
  try {
    value(0);
  } catch (err) {
    r.end(false);
    if (err === PAST) return -1;
    throw err;
  }
  r.end(true);
  return size;
}

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

let input: Uint8Array = new Uint8Array(0);
let view: DataView = new DataView(input.buffer);
let pos = 0;
let size = 0;
let limit = 0;

/** Thrown (and caught below) once the count passes the limit. */
const PAST = Symbol("past the limit");

function unsupported(what: string): Error {
  return new Error(`not written as JSON here: ${what}`);
}

function need(n: number): void {
  if (pos + n > input.length) throw new Error("truncated");
}

function add(n: number): void {
  size += n;
  if (size > limit) throw PAST;
}

function numberText(v: number): number {
  if (!Number.isFinite(v)) throw unsupported(String(v));
  return Object.is(v, -0) ? 2 : String(v).length;
}

/** A string of `n` bytes at `pos`: quotes, each byte, and escapes as JSON.stringify writes them. */
function string(n: number): void {
  need(n);
  const end = pos + n;
  let count = 2;
  // Checked a chunk at a time, so 900 KB of control characters stop at the limit, not at their end.
  for (let i = pos; i < end;) {
    const stop = Math.min(end, i + 4096);
    for (; i < stop; i++) {
      const c = input[i];
      if (c >= 0x20) count += c === 0x22 || c === 0x5c ? 2 : 1;
      else if (c === 0x08 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d) count += 2;
      else count += 6;
    }
    if (size + count > limit) throw PAST;
  }
  pos = end;
  add(count);
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
  pos += n;
  add(2 + 4 * Math.ceil(n / 3));
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
  need(1);
  const c = input[pos];
  if ((c >= 0xa0 && c <= 0xbf) || c === 0xd9 || c === 0xda || c === 0xdb) return value(0);
  if (c < 0x80 || c >= 0xe0 || (c >= 0xcc && c <= 0xd3)) {
    add(2);
    return value(0);
  }
  throw unsupported(`a key of type 0x${c.toString(16)}`);
}

function value(depth: number): void {
  if (depth > 64) throw unsupported("nesting");
  need(1);
  const c = input[pos++];
  if (c < 0x80) return add(c < 10 ? 1 : c < 100 ? 2 : 3);
  if (c >= 0xe0) return add(c - 0x100 > -10 ? 2 : 3);
  if (c <= 0x8f) return items(c & 0x0f, depth, true);
  if (c <= 0x9f) return items(c & 0x0f, depth, false);
  if (c <= 0xbf) return string(c & 0x1f);
  switch (c) {
    case 0xc0:
      return add(4);
    case 0xc2:
      return add(5);
    case 0xc3:
      return add(4);
    case 0xc4:
      return binary(length(1));
    case 0xc5:
      return binary(length(2));
    case 0xc6:
      return binary(length(4));
    case 0xca:
      need(4);
      pos += 4;
      return add(numberText(view.getFloat32(pos - 4)));
    case 0xcb:
      need(8);
      pos += 8;
      return add(numberText(view.getFloat64(pos - 8)));
    case 0xcc:
      return add(String(length(1)).length);
    case 0xcd:
      return add(String(length(2)).length);
    case 0xce:
      return add(String(length(4)).length);
    case 0xcf:
      need(8);
      pos += 8;
      return add(numberText(view.getUint32(pos - 8) * 0x100000000 + view.getUint32(pos - 4)));
    case 0xd0:
      need(1);
      return add(String(view.getInt8(pos++)).length);
    case 0xd1:
      need(2);
      pos += 2;
      return add(String(view.getInt16(pos - 2)).length);
    case 0xd2:
      need(4);
      pos += 4;
      return add(String(view.getInt32(pos - 4)).length);
    case 0xd3:
      need(8);
      pos += 8;
      return add(numberText(view.getInt32(pos - 8) * 0x100000000 + view.getUint32(pos - 4)));
    case 0xd9:
      return string(length(1));
    case 0xda:
      return string(length(2));
    case 0xdb:
      return string(length(4));
    case 0xdc:
      return items(length(2), depth, false);
    case 0xdd:
      return items(length(4), depth, false);
    case 0xde:
      return items(length(2), depth, true);
    case 0xdf:
      return items(length(4), depth, true);
  }
  throw unsupported(`type 0x${c.toString(16)}`);
}

/**
 * The length of msgpackToJson(bytes), or -1 once it would pass `atMost`
 * (counted no further: the work is bounded by `atMost`, not by the value).
 * @throws {Error} for what the converter does not write (see the module comment)
 */
export function msgpackJsonSize(bytes: Uint8Array, atMost: number): number {
  input = bytes;
  view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  pos = 0;
  size = 0;
  limit = atMost;
  try {
    value(0);
    if (pos !== bytes.length) throw new Error("bytes after the value");
    return size;
  } catch (err) {
    if (err === PAST) return -1;
    throw err;
  } finally {
    input = new Uint8Array(0);
    view = new DataView(input.buffer);
  }
}

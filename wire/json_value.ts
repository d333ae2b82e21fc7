/**
 * Binary values in JSON, and what a decoded value costs as JSON text,
 * without building that text.
 *
 * JSON has no bytes: a binary value (a MessagePack `bin`, decoded as a
 * Uint8Array) travels to a JSON peer as base64 text, whichever role writes
 * it (the broker's deliveries, the balancer's re-encoded requests, any
 * JSON frame). JSON.stringify alone would write a typed array as an object
 * with one member per byte (`{"0":1,"1":2,…}`: 11 bytes of text per byte,
 * some 600 ms per MiB), so neither the text nor a size may come from it.
 */
import { DistError } from "./errors.ts";

/** Deepest nesting measured (the decoders' MAX_DEPTH bounds what they build). */
const MAX_WALK_DEPTH = 64;

/** Standard base64 (with padding) of `bytes`, as btoa writes it. */
export function base64Of(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function binaryToJson(this: Uint8Array): string {
  return base64Of(this);
}

/**
 * Makes a decoded MessagePack binary one that JSON.stringify writes as its
 * base64 text (through a toJSON of its own, not enumerable: it is still a
 * plain Uint8Array to everyone else, deepEqual included), so every JSON
 * encoding of a decoded value agrees with {@link jsonReplacer} at no cost to
 * values without one.
 */
export function asJsonBinary(bytes: Uint8Array): Uint8Array {
  Object.defineProperty(bytes, "toJSON", { value: binaryToJson });
  return bytes;
}

function nonFinite(value: number): DistError {
  return new DistError("BAD_REQUEST", `Value out of range: ${value} is not a finite number`);
}

/**
 * A JSON.stringify replacer: any typed array becomes base64 text (as
 * {@link asJsonBinary} makes a decoded one write itself), and NaN and
 * ±Infinity are refused instead of written as null.
 * @throws {DistError} BAD_REQUEST on a number JSON cannot carry
 */
export function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === "number" && !Number.isFinite(value)) throw nonFinite(value);
  if (!ArrayBuffer.isView(value)) return value;
  const bytes = value instanceof Uint8Array
    ? value
    : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return base64Of(bytes);
}

/** Options of {@link jsonSize}. */
export interface JsonSizeOptions {
  /** Stop once the size passes this (the result is then some number above it). */
  limit?: number;
  /**
   * The length of JSON.stringify's text (UTF-16 units: escapes counted,
   * binaries as base64) instead of the quick estimate (a string by its
   * length, a binary by its bytes), at a pass over every string. In UTF-8
   * the text takes at most 3 bytes a unit.
   */
  exact?: boolean;
}

/** The length of `s` as JSON text between its quotes, in UTF-16 units (escapes included). */
function exactStringLength(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20) n += c === 8 || c === 9 || c === 10 || c === 12 || c === 13 ? 1 : 5;
    else if (c === 34 || c === 92) n += 1;
    else if (c >= 0xd800 && c <= 0xdfff) {
      const d = s.charCodeAt(i + 1);
      if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) i++; // a pair goes out as it is
      else n += 5; // a lone surrogate: a \u escape
    }
  }
  return n;
}

/**
 * About the size of `value` as JSON text, walked without building the text
 * (a decoded value's depth and breadth are bounded by its frame, so this
 * is bounded too; `limit` stops it sooner). A typed array counts its bytes
 * (`exact`: its base64 text); a Date its ISO text; a string its length plus
 * quotes (`exact`: with its escapes); undefined members nothing.
 * @throws {DistError} BAD_REQUEST past MAX_WALK_DEPTH levels (or a cycle)
 */
export function jsonSize(value: unknown, options: JsonSizeOptions = {}): number {
  const limit = options.limit ?? Infinity;
  const exact = options.exact === true;
  let total = 0;
  const walk = (v: unknown, depth: number): void => {
    if (total > limit) return;
    switch (typeof v) {
      case "string":
        total += (exact ? exactStringLength(v) : v.length) + 2;
        return;
      case "number":
        total += exact ? (Number.isFinite(v) ? String(v).length : 4) : 8;
        return;
      case "boolean":
        total += v ? 4 : 5;
        return;
      case "bigint":
        total += String(v).length;
        return;
      case "object":
        break;
      default:
        total += 4; // undefined, a function: null in an array, nothing in an object
        return;
    }
    if (v === null) {
      total += 4;
      return;
    }
    if (ArrayBuffer.isView(v)) {
      total += exact ? Math.ceil(v.byteLength / 3) * 4 + 2 : v.byteLength;
      return;
    }
    if (v instanceof Date) {
      total += 26;
      return;
    }
    if (depth >= MAX_WALK_DEPTH) {
      throw new DistError("BAD_REQUEST", `A value nested more than ${MAX_WALK_DEPTH} deep`);
    }
    if (Array.isArray(v)) {
      total += 2 + Math.max(0, v.length - 1);
      for (let i = 0; i < v.length && total <= limit; i++) walk(v[i], depth + 1);
      return;
    }
    total += 1; // {
    const o = v as Record<string, unknown>;
    let members = 0;
    for (const key in o) {
      if (!Object.hasOwn(o, key)) continue;
      const member = o[key];
      if (member === undefined || typeof member === "function") continue;
      members++;
      total += (exact ? exactStringLength(key) : key.length) + 4; // "key": and , or }
      walk(member, depth + 1);
      if (total > limit) return;
    }
    if (members === 0) total += 1; // }
  };
  walk(value, 0);
  return total;
}

/** ASCII with nothing to escape. */
const PLAIN_TEXT = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/**
 * The UTF-8 bytes of `s` as a JSON string, quotes and escapes included: an
 * upper bound of its MessagePack form too, within 3 bytes (a header of up
 * to 5 against JSON's 2 quotes). A pass over the characters only when the
 * text is not plain ASCII; that pass stops once past `limit` (the result is
 * then some number above it).
 */
export function jsonStringBytes(s: string, limit = Infinity): number {
  if (PLAIN_TEXT.test(s)) return s.length + 2;
  let n = 2;
  for (let i = 0; i < s.length && n <= limit; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) n += c < 0x800 ? 2 : 3;
    else if (c >= 0x20) n += c === 34 || c === 92 ? 2 : 1;
    else n += c === 8 || c === 9 || c === 10 || c === 12 || c === 13 ? 2 : 6;
    if (c >= 0xd800 && c <= 0xdfff) {
      const d = s.charCodeAt(i + 1);
      if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
        n += 1; // a pair: 4 bytes for the two units
        i++;
      } else n += 3; // a lone surrogate: a 6-byte \u escape
    }
  }
  return n;
}

/**
 * The JSON values of deliveries waiting to be taken (by a subscription's
 * iterator, or by `onMessage` callbacks at the end of a read), kept as
 * their bytes and parsed a run at a time when taken: up to
 * {@link RUN_BYTES} of values are decoded from UTF-8 in one call and
 * parsed by one `JSON.parse`, as the elements of one array. For the
 * end-to-end bench's 130-byte object, a 64 KiB read of 371 deliveries
 * costs 537 ns a value that way and 894 ns decoded and parsed one by one
 * (in process, with reading each delivery: most of a `JSON.parse` of a
 * small text is the call, not the text). Made and used by subscription.ts
 * and pubsub.ts.
 */
import { hasEscapedKey, parseJson } from "../wire/mod.ts";

/** Bytes of values parsed together, at most (what exists at once as parsed values). */
const RUN_BYTES = 32 * 1024;
/** A buffer past this is let go of once everything in it was taken. */
const KEEP_BYTES = 64 * 1024;
const COMMA = 0x2c;
const NEWLINE = 0x0a;
const OPEN = 0x5b;
const CLOSE = 0x5d;
const EMPTY = new Uint8Array(0);
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * A first-in first-out queue of JSON values: `add` copies one's bytes in,
 * `take` gives the oldest one parsed. Each value is kept as `,` + its bytes
 * + a newline, so a run of them is a JSON array once its first comma is a
 * `[` and a `]` follows. Valid values parse as that array's elements
 * exactly as each would alone. One that is not JSON (only a broken
 * broker's) is found by its run: the newline ends a string it leaves open
 * (a JSON string holds no raw newline), so its text cannot swallow the
 * next ones; a run that does not parse, or not into as many elements, is
 * parsed value by value, and `take` throws that value's error. So is a run
 * holding a key written with an escape, so that only that value takes
 * parseJson's careful parser (V8's escaped-key bug, see
 * wire/json_parse.ts). Values that are not JSON could still make an array
 * of as many elements together (`[[1]`, `[2]]`, `[3],[4]`) and be taken as
 * those: the broker checks every value it forwards, so it takes a broken
 * broker sending several such values in a row.
 */
export class HeldValues {
  #buf: Uint8Array = EMPTY;
  /** Bytes [#at, #end) of #buf are values not parsed yet. */
  #at = 0;
  #end = 0;
  /** Byte lengths of the values not parsed yet, from #lens[#lenAt] on. */
  #lens: number[] = [];
  #lenAt = 0;
  /** Values parsed and not taken yet, from #values[#valueAt] on. */
  #values: unknown[] = [];
  #valueAt = 0;
  /** Of a run parsed value by value: the error of each value of #values that is not JSON. */
  #errors: unknown[] | undefined;

  /** Values added and not taken. */
  get size(): number {
    return this.#lens.length - this.#lenAt + this.#values.length - this.#valueAt;
  }

  /** Keeps a copy of `value`'s bytes (a view that may be reused once this returns). */
  add(value: Uint8Array): void {
    const n = value.byteLength;
    // A comma, the value, a newline, and room after them for a run's closing `]`.
    if (this.#end + n + 3 > this.#buf.length) this.#room(n + 3);
    const buf = this.#buf;
    buf[this.#end] = COMMA;
    buf.set(value, this.#end + 1);
    this.#end += n + 1;
    buf[this.#end++] = NEWLINE;
    this.#lens.push(n);
  }

  /**
   * The oldest value, parsed. Precondition: `size > 0`.
   * @throws {SyntaxError} when its bytes are not JSON (it is taken all the same)
   */
  take(): unknown {
    if (this.#valueAt === this.#values.length) this.#parseRun();
    const i = this.#valueAt++;
    const value = this.#values[i];
    const err = this.#errors?.[i];
    if (this.#valueAt === this.#values.length && this.#lenAt === this.#lens.length) this.#reset();
    if (err !== undefined) throw err;
    return value;
  }

  /** Parses the oldest values, up to RUN_BYTES of them (one at least), into #values. */
  #parseRun(): void {
    const from = this.#at;
    let to = from;
    let count = 0;
    const lens = this.#lens;
    while (this.#lenAt + count < lens.length && (count === 0 || to - from < RUN_BYTES)) {
      to += lens[this.#lenAt + count++] + 2;
    }
    const buf = this.#buf;
    // The run as an array: its first comma (taken with it) becomes `[`; `]` goes after it
    // for the decode only (that byte is the next value's comma, or free room: see add).
    buf[from] = OPEN;
    const after = buf[to];
    buf[to] = CLOSE;
    const text = decoder.decode(buf.subarray(from, to + 1));
    let values: unknown;
    // A run holding a key written with an escape goes value by value: only that value then
    // takes parseJson's careful parser, not the whole run (any publisher could send one).
    if (!hasEscapedKey(text)) {
      try {
        values = parseJson(text);
      } catch {
        values = undefined;
      }
    }
    buf[to] = after;
    this.#errors = undefined;
    if (Array.isArray(values) && values.length === count) this.#values = values;
    else this.#oneByOne(from + 1, count);
    this.#valueAt = 0;
    this.#lenAt += count;
    this.#at = to;
  }

  /** Parses the `count` values from `at` on one by one, keeping the errors of those not JSON. */
  #oneByOne(at: number, count: number): void {
    const values: unknown[] = [];
    const errors: unknown[] = [];
    for (let i = 0; i < count; i++) {
      const n = this.#lens[this.#lenAt + i];
      try {
        values.push(parseJson(decoder.decode(this.#buf.subarray(at, at + n))));
      } catch (err) {
        values.push(undefined);
        errors[i] = err;
      }
      at += n + 2;
    }
    this.#values = values;
    this.#errors = errors;
  }

  /** Everything was taken: the buffer is reused from its start (or let go of, when large). */
  #reset(): void {
    this.#at =
      this.#end =
      this.#lenAt =
      this.#valueAt =
        0;
    this.#lens.length = 0;
    this.#values = [];
    this.#errors = undefined;
    if (this.#buf.length > KEEP_BYTES) this.#buf = EMPTY;
  }

  /** Makes room for `n` more bytes: what was parsed moves out, and the buffer doubles if needed. */
  #room(n: number): void {
    const pending = this.#end - this.#at;
    let buf = this.#buf;
    if (pending + n > buf.length) {
      buf = new Uint8Array(Math.max(2 * buf.length, pending + n, 4096));
      buf.set(this.#buf.subarray(this.#at, this.#end));
    } else buf.copyWithin(0, this.#at, this.#end);
    this.#buf = buf;
    this.#at = 0;
    this.#end = pending;
    if (this.#lenAt > 1024 && 2 * this.#lenAt > this.#lens.length) {
      this.#lens = this.#lens.slice(this.#lenAt);
      this.#lenAt = 0;
    }
  }
}

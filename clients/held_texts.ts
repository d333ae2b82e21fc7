/**
 * The JSON texts of deliveries waiting for a subscription's iterator, kept
 * as their bytes and decoded a run at a time when the iterator takes them:
 * one UTF-8 decode (a call into the runtime, ~150–250 ns for a 130-byte
 * value here) for up to {@link RUN_BYTES} of values, instead of one per
 * value. Made and used by subscription.ts.
 */

/** Bytes of values decoded together, at most (what exists at once as text). */
const RUN_BYTES = 32 * 1024;
/** A buffer past this is let go of once everything in it was taken. */
const KEEP_BYTES = 64 * 1024;
const NUL = 0;
const EMPTY = new Uint8Array(0);
const decoder = new TextDecoder();

/**
 * A first-in first-out queue of values' JSON bytes: `add` copies one in,
 * `take` gives the oldest one's text. Each value is followed by a NUL
 * byte, which valid JSON text never holds, so a run's text splits into
 * its values; a run that does not split into as many (a broken broker's
 * value holding a NUL) is decoded value by value instead.
 */
export class HeldTexts {
  #buf: Uint8Array = EMPTY;
  /** Bytes [#at, #end) of #buf are values not decoded yet. */
  #at = 0;
  #end = 0;
  /** Byte lengths of the values not decoded yet, from #lens[#lenAt] on. */
  #lens: number[] = [];
  #lenAt = 0;
  /** Texts decoded and not taken yet, from #texts[#textAt] on. */
  #texts: string[] = [];
  #textAt = 0;

  /** Values added and not taken. */
  get size(): number {
    return this.#lens.length - this.#lenAt + this.#texts.length - this.#textAt;
  }

  /** Keeps a copy of `value` (a view that may be reused once this returns). */
  add(value: Uint8Array): void {
    const n = value.byteLength;
    if (this.#end + n + 1 > this.#buf.length) this.#room(n + 1);
    this.#buf.set(value, this.#end);
    this.#end += n;
    this.#buf[this.#end++] = NUL;
    this.#lens.push(n);
  }

  /** The oldest value's text. Precondition: `size > 0`. */
  take(): string {
    if (this.#textAt === this.#texts.length) this.#decodeRun();
    const text = this.#texts[this.#textAt++];
    if (this.#textAt === this.#texts.length && this.#lenAt === this.#lens.length) this.#reset();
    return text;
  }

  /** Decodes the oldest values, up to RUN_BYTES of them (one at least), into #texts. */
  #decodeRun(): void {
    const from = this.#at;
    let to = from;
    let count = 0;
    const lens = this.#lens;
    while (this.#lenAt + count < lens.length && (count === 0 || to - from < RUN_BYTES)) {
      to += lens[this.#lenAt + count++] + 1;
    }
    const buf = this.#buf;
    let texts = decoder.decode(buf.subarray(from, to - 1)).split("\0");
    if (texts.length !== count) {
      texts = [];
      for (let i = 0, at = from; i < count; i++) {
        const n = lens[this.#lenAt + i];
        texts.push(decoder.decode(buf.subarray(at, at + n)));
        at += n + 1;
      }
    }
    this.#texts = texts;
    this.#textAt = 0;
    this.#lenAt += count;
    this.#at = to;
  }

  /** Everything was taken: the buffer is reused from its start (or let go of, when large). */
  #reset(): void {
    this.#at =
      this.#end =
      this.#lenAt =
      this.#textAt =
        0;
    this.#lens.length = this.#texts.length = 0;
    if (this.#buf.length > KEEP_BYTES) this.#buf = EMPTY;
  }

  /** Makes room for `n` more bytes: what was decoded moves out, and the buffer doubles if needed. */
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

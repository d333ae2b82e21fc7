import { DistError } from "./errors.ts";

/** Default largest accepted frame payload (1 MiB); configurable up to MAX_FRAME_LIMIT. */
export const DEFAULT_MAX_FRAME = 1024 * 1024;
/** The hard ceiling any connection may be configured to accept (64 MiB). */
export const MAX_FRAME_LIMIT = 64 * 1024 * 1024;
/** Shared by every empty buffer (never written: it has no room). */
const EMPTY = new Uint8Array(0);
/** Bytes in the length prefix. */
export const HEADER_BYTES = 4;
/**
 * A decoder's own buffer (for a frame split across reads) above this size
 * is released once it drains, so an idle connection does not keep a large
 * frame's room.
 */
const KEEP_OWN_BYTES = 16 * 1024;
/** Room a partial frame gets at first when its prefix announces more. */
const FIRST_PARTIAL_BYTES = 64 * 1024;

/**
 * Incremental decoder of length-prefixed frames (4-byte big-endian length,
 * then the payload). Feed it whatever the socket gave with `push()`, then
 * call `next()` until it returns null.
 *
 * Frames returned by `next()` are views, not copies: they stay valid only
 * until the next `push()`. A pushed chunk is borrowed, not copied, while whole
 * frames are read out of it. Only a frame split across reads is copied into
 * the decoder's own buffer: its first part when its read ends, and at the next
 * push only the bytes that complete it; the rest of that chunk is borrowed in
 * turn. So the caller may reuse its read buffer once `next()` has returned null,
 * and a stream of small frames split at every read copies one frame a read, not
 * the whole read (which, at 64 KiB, allocated and copied 64 KiB a read).
 */
export class FrameDecoder {
  readonly maxFrame: number;
  /** The bytes frames are read from now: a borrowed chunk, or #own. */
  #buf: Uint8Array = EMPTY;
  /** #buf's ArrayBuffer and where #buf starts in it (views are made from these). */
  #ab: ArrayBufferLike = EMPTY.buffer;
  #base = 0;
  #start = 0;
  #end = 0;
  #borrowed = false;
  #own: Uint8Array = EMPTY;
  /** The owned buffer before #own, holding a frame returned since the last push (see #drained). */
  #spare: Uint8Array = EMPTY;
  /**
   * A chunk whose bytes from #restAt on follow the frame #own holds (the one
   * push completed): frames are read from it once that one is taken.
   */
  #rest: Uint8Array | undefined;
  #restAt = 0;
  /** Where the bytes pushed with #rest end in it. */
  #restEnd = 0;
  #frameBuffer: ArrayBufferLike = EMPTY.buffer;

  constructor(maxFrame = DEFAULT_MAX_FRAME) {
    this.maxFrame = maxFrame;
  }

  /**
   * The ArrayBuffer of the last frame `next()` returned (its `buffer`, which
   * costs a reader about 17 ns to ask the frame for: see byte_words.ts).
   */
  get frameBuffer(): ArrayBufferLike {
    return this.#frameBuffer;
  }

  /**
   * The frames returned are handed over: the decoder keeps no reference to
   * the last one's buffer (an idle connection kept its last 1 MB frame's,
   * uncounted: hostile review 39b Q13). What the caller still holds of
   * them holds the buffer itself.
   */
  handedOver(): void {
    this.#frameBuffer = EMPTY.buffer;
  }

  /** What the prefix of the frame pending announces, once `next()` returned null; -1 before 4 bytes. */
  get partialLength(): number {
    const b = this.#buf;
    const s = this.#start;
    if (this.#end - s < HEADER_BYTES) return -1;
    return ((b[s] << 24) | (b[s + 1] << 16) | (b[s + 2] << 8) | b[s + 3]) >>> 0;
  }

  /** Bytes received but not yet returned as frames. */
  get buffered(): number {
    const rest = this.#rest;
    return this.#end - this.#start + (rest === undefined ? 0 : this.#restEnd - this.#restAt);
  }

  /**
   * Adds bytes from the stream: the first `n` of `chunk` (all of it by
   * default; a read buffer's count, so that no view of it is made a read).
   * Precondition: `next()` returned null since the last push (all complete
   * frames were taken).
   */
  push(chunk: Uint8Array, n = chunk.length): void {
    if (n === 0) return;
    if (this.#start === this.#end) {
      this.#borrow(chunk, 0, n);
      return;
    }
    // A partial frame is pending in the owned buffer: only what completes it is copied.
    let at = 0;
    let pending = this.#end - this.#start;
    if (this.#buf !== this.#own) this.#ensureOwn(pending); // (next() keeps it there already)
    if (pending < HEADER_BYTES) {
      at = Math.min(HEADER_BYTES - pending, n);
      this.#append(chunk, 0, at);
      pending += at;
      if (pending < HEADER_BYTES) return;
    }
    const o = this.#own;
    const s = this.#start;
    const len = ((o[s] << 24) | (o[s + 1] << 16) | (o[s + 2] << 8) | o[s + 3]) >>> 0;
    // Past the limit: next() refuses it (nothing is allocated for it).
    const need = len > this.maxFrame ? 0 : HEADER_BYTES + len - pending;
    const take = Math.min(need, n - at);
    if (take > 0) this.#append(chunk, at, at + take);
    if (at + take < n) {
      this.#rest = chunk;
      this.#restAt = at + take;
      this.#restEnd = n;
    }
  }

  /**
   * The next complete frame's payload, or null when more bytes are needed.
   * @throws {DistError} FRAME_TOO_LARGE as soon as a length prefix exceeds the
   * limit, before anything is allocated for it. The decoder is unusable after.
   */
  next(): Uint8Array | null {
    const avail = this.#end - this.#start;
    if (avail >= HEADER_BYTES) {
      const b = this.#buf;
      const s = this.#start;
      const len = ((b[s] << 24) | (b[s + 1] << 16) | (b[s + 2] << 8) | b[s + 3]) >>> 0;
      if (len > this.maxFrame) {
        throw new DistError(
          "FRAME_TOO_LARGE",
          `Frame of ${len} bytes exceeds the limit of ${this.maxFrame} bytes`,
        );
      }
      if (avail >= HEADER_BYTES + len) {
        // A view made from its buffer: subarray() costs about twice as much.
        const frame = new Uint8Array(
          this.#frameBuffer = this.#ab,
          this.#base + s + HEADER_BYTES,
          len,
        );
        this.#start = s + HEADER_BYTES + len;
        if (this.#start === this.#end) this.#drained();
        return frame;
      }
      // Partial frame whose size is allowed: room grows with the bytes that
      // arrive, not with what the prefix claims (a header alone costs little).
      this.#keep(HEADER_BYTES + len);
      return null;
    }
    this.#keep(HEADER_BYTES);
    return null;
  }

  /** Frames are read from `chunk[at, end)` (borrowed). */
  #borrow(chunk: Uint8Array, at: number, end: number): void {
    this.#buf = chunk;
    this.#ab = chunk.buffer;
    this.#base = chunk.byteOffset;
    this.#start = at;
    this.#end = end;
    this.#borrowed = true;
  }

  /** Every byte of #buf was returned: on to the rest of the last chunk, if any. */
  #drained(): void {
    const rest = this.#rest;
    if (rest !== undefined) {
      // The frame just returned was completed in #own: the chunk's next bytes
      // follow it. That frame stays valid until the next push, so a partial
      // frame at the chunk's end goes to the other owned buffer.
      this.#rest = undefined;
      const used = this.#own;
      this.#own = this.#spare;
      this.#spare = used.length > KEEP_OWN_BYTES ? EMPTY : used;
      this.#borrow(rest, this.#restAt, this.#restEnd);
      return;
    }
    // An idle connection does not keep a large frame's buffer (the frame
    // just returned still holds it until the caller is done).
    if (this.#own.length > KEEP_OWN_BYTES) this.#own = EMPTY;
    this.#start = this.#end = 0;
    this.#setOwn(this.#own);
  }

  /**
   * Moves a pending partial frame out of a borrowed chunk into owned memory.
   * An owned buffer is left as it is: compacting it here would overwrite
   * frames already returned, which stay valid until the next push (push
   * makes room when it must).
   */
  #keep(frameBytes: number): void {
    const pending = this.#end - this.#start;
    if (pending > 0 && this.#borrowed) {
      this.#ensureOwn(Math.min(frameBytes, Math.max(FIRST_PARTIAL_BYTES, 2 * pending)));
    }
  }

  /** Appends `chunk[from, to)` to the partial frame in #own. */
  #append(chunk: Uint8Array, from: number, to: number): void {
    const pending = this.#end - this.#start;
    if (this.#buf !== this.#own || this.#start + pending + (to - from) > this.#own.length) {
      this.#ensureOwn(pending + (to - from));
    }
    this.#own.set(from === 0 && to === chunk.length ? chunk : chunk.subarray(from, to), this.#end);
    this.#end += to - from;
  }

  #ensureOwn(capacity: number): void {
    const pending = this.#buf.subarray(this.#start, this.#end);
    let own = this.#own;
    if (own.length < capacity) {
      own = new Uint8Array(
        Math.max(capacity, Math.min(own.length * 2, this.maxFrame + HEADER_BYTES)),
      );
    }
    own.set(pending, 0); // copyWithin semantics: `set` handles overlap for the same buffer
    this.#setOwn(own);
    this.#start = 0;
    this.#end = pending.length;
  }

  #setOwn(own: Uint8Array): void {
    this.#own = own;
    this.#buf = own;
    this.#ab = own.buffer;
    this.#base = 0;
    this.#borrowed = false;
  }
}

/**
 * A growable byte buffer that frames are written into. Writers reserve room
 * and write in place, so a frame is encoded once, straight into the bytes
 * that go out.
 */
export class OutBuffer {
  bytes: Uint8Array;
  length = 0;

  /** @param capacity initial room; 0 allocates nothing until the first write */
  constructor(capacity = 16 * 1024) {
    this.bytes = capacity > 0 ? new Uint8Array(capacity) : EMPTY;
  }

  /** Makes room for `n` more bytes after `length`. */
  reserve(n: number): void {
    const need = this.length + n;
    if (need <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(need, this.bytes.length * 2, MIN_OUT_BYTES));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
  }

  /** When empty, gives back room above `keep` bytes (an idle connection's burst buffer). */
  release(keep = MIN_OUT_BYTES): void {
    if (this.length === 0 && this.bytes.length > keep) this.bytes = EMPTY;
  }

  /** Writes a 4-byte big-endian length at `offset`. */
  setHeader(offset: number, len: number): void {
    const b = this.bytes;
    b[offset] = len >>> 24;
    b[offset + 1] = (len >>> 16) & 0xff;
    b[offset + 2] = (len >>> 8) & 0xff;
    b[offset + 3] = len & 0xff;
  }

  /** Appends one frame holding `payload`. */
  writeFrame(payload: Uint8Array): void {
    this.reserve(HEADER_BYTES + payload.length);
    this.setHeader(this.length, payload.length);
    this.bytes.set(payload, this.length + HEADER_BYTES);
    this.length += HEADER_BYTES + payload.length;
  }

  /**
   * Empties the buffer. Past KEEP_OUT_BYTES it is kept only while it is used
   * at a comparable size (this time at least a quarter full): a subscriber
   * that stays behind gets writes of megabytes one after another, and
   * regrowing the next one from nothing (copied at each doubling, and fresh
   * pages zeroed) cost the broker 7–15 % of its CPU end to end. Once the
   * writes get small, or the connection is idle (Outbound.trim), it goes.
   */
  reset(): void {
    const used = this.length;
    this.length = 0;
    if (this.bytes.length > KEEP_OUT_BYTES && used < this.bytes.length / 4) this.bytes = EMPTY;
  }
}

/** An OutBuffer up to this size is kept by reset() whatever it held. */
const KEEP_OUT_BYTES = 1024 * 1024;

/** The smallest room an OutBuffer allocates: a ping and a few answers. */
const MIN_OUT_BYTES = 512;

/** One frame as a fresh byte array (for tests and one-off writes). */
export function encodeFrame(payload: Uint8Array): Uint8Array {
  const out = new OutBuffer(HEADER_BYTES + payload.length);
  out.writeFrame(payload);
  return out.bytes.subarray(0, out.length);
}

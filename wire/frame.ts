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
 * frames are sliced out of it; only a trailing partial frame is copied into
 * the decoder's own buffer, so the caller may reuse its read buffer after
 * `next()` has returned null.
 */
export class FrameDecoder {
  readonly maxFrame: number;
  #buf: Uint8Array = EMPTY;
  #start = 0;
  #end = 0;
  #borrowed = false;
  #own: Uint8Array = EMPTY;

  constructor(maxFrame = DEFAULT_MAX_FRAME) {
    this.maxFrame = maxFrame;
  }

  /** Bytes received but not yet returned as frames. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /**
   * Adds bytes from the stream. Precondition: `next()` returned null since
   * the last push (all complete frames were taken).
   */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.#start === this.#end) {
      this.#buf = chunk;
      this.#start = 0;
      this.#end = chunk.length;
      this.#borrowed = true;
      return;
    }
    // A partial frame is pending in the owned buffer: append to it.
    const pending = this.#end - this.#start;
    const need = pending + chunk.length;
    if (this.#buf !== this.#own || this.#start + need > this.#own.length) {
      this.#ensureOwn(need);
    }
    this.#own.set(chunk, this.#end);
    this.#end += chunk.length;
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
        const frame = b.subarray(s + HEADER_BYTES, s + HEADER_BYTES + len);
        this.#start = s + HEADER_BYTES + len;
        if (this.#start === this.#end) {
          // Drained: an idle connection does not keep a large frame's buffer
          // (the frame just returned still holds it until the caller is done).
          if (this.#own.length > KEEP_OWN_BYTES) this.#own = EMPTY;
          this.#start = this.#end = 0;
          this.#buf = this.#own;
          this.#borrowed = false;
        }
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

  #ensureOwn(capacity: number): void {
    const pending = this.#buf.subarray(this.#start, this.#end);
    let own = this.#own;
    if (own.length < capacity) {
      own = new Uint8Array(
        Math.max(capacity, Math.min(own.length * 2, this.maxFrame + HEADER_BYTES)),
      );
    }
    own.set(pending, 0); // copyWithin semantics: `set` handles overlap for the same buffer
    this.#own = own;
    this.#buf = own;
    this.#start = 0;
    this.#end = pending.length;
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

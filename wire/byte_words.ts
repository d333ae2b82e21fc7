/**
 * Comparing a frame's bytes with a fixed word, for the readers that look at
 * frames as bytes (wire/pubsub_json.ts, the broker's MessagePack reader):
 * a byte at a time for a few bytes, four at a time for runs past a few dozen;
 * and joining byte arrays ({@link concatBytes}).
 */

/** `parts` one after the other in a new array, after `room` bytes left free at its start. */
export function concatBytes(parts: readonly Uint8Array[], room = 0): Uint8Array {
  let n = room;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = room;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
/** Whether `b` has `word` at `at`, a byte at a time (for a few bytes: see WordRun). */
export function bytesAt(b: Uint8Array, at: number, word: Uint8Array): boolean {
  const n = word.length;
  if (at < 0 || b.length - at < n) return false;
  for (let i = 0; i < n; i++) if (b[at + i] !== word[i]) return false;
  return true;
}

/**
 * A cheap first look for a fast path's `accepts`: the frame is long enough
 * and has the bytes that tell `prefix` (ending in a method name) from any
 * other message's start. The reader then checks the whole prefix
 * (pubsub_json.ts).
 */
export function mayStartWith(frame: Uint8Array, prefix: Uint8Array): boolean {
  return frame.length > prefix.length && frame[19] === prefix[19] && frame[22] === prefix[22] &&
    frame[0] === prefix[0];
}

let viewBuffer: ArrayBufferLike | undefined;
let view: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0));
let viewFrame: Uint8Array | undefined;

/**
 * A DataView of `b`'s buffer, one per read buffer (which holds hundreds of
 * frames). Asking a view for its buffer costs about 12 ns, so the last
 * frame asked about is remembered too: a publish's frame is read through
 * words twice (its publisher's memo, then its head).
 */
export function frameView(b: Uint8Array): DataView<ArrayBufferLike> {
  if (b === viewFrame) return view;
  viewFrame = b;
  const buffer = b.buffer;
  if (buffer !== viewBuffer) {
    viewBuffer = buffer;
    view = new DataView(buffer);
  }
  return view;
}

/**
 * A DataView of `buffer` (a frame's, known to its caller: see knownFrame),
 * without remembering any frame: storing the frame (a young view) in this
 * module costs V8's write barrier, about 5–8 ns a frame.
 */
export function bufferView(buffer: ArrayBufferLike): DataView<ArrayBufferLike> {
  if (buffer !== viewBuffer) {
    viewBuffer = buffer;
    view = new DataView(buffer);
  }
  return view;
}

/**
 * Tells frameView that `b`'s buffer is `buffer` (the decoder knows it:
 * FrameDecoder.frameBuffer), so that it need not ask `b`, which costs about
 * 17 ns a frame (half of what comparing a 200-byte frame's words with a
 * kept one's takes). Precondition: `buffer === b.buffer`.
 */
export function knownFrame(b: Uint8Array, buffer: ArrayBufferLike): void {
  viewFrame = b;
  if (buffer !== viewBuffer) {
    viewBuffer = buffer;
    view = new DataView(buffer);
  }
}

/**
 * Bytes to look for at the start of frames, compared four at a time
 * (little-endian words read through a DataView of the frame's buffer,
 * one per read buffer, which holds hundreds of frames) and the last few
 * one by one. Asking a frame for its buffer costs about 12 ns, so this
 * pays for itself only past a few dozen bytes: shorter runs use bytesAt.
 */
export class WordRun {
  readonly bytes: Uint8Array;
  readonly #words: Int32Array;

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.#words = new Int32Array(bytes.length >> 2);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    for (let w = 0; w < this.#words.length; w++) this.#words[w] = dv.getInt32(4 * w, true);
  }

  get length(): number {
    return this.bytes.length;
  }

  /** Whether `b` has these bytes at `at`. */
  at(b: Uint8Array, at: number): boolean {
    const bytes = this.bytes;
    const n = bytes.length;
    if (at < 0 || b.length - at < n) return false;
    const dv = frameView(b);
    const words = this.#words;
    const base = b.byteOffset + at;
    for (let w = 0; w < words.length; w++) {
      if (dv.getInt32(base + 4 * w, true) !== words[w]) return false;
    }
    for (let i = words.length << 2; i < n; i++) if (b[at + i] !== bytes[i]) return false;
    return true;
  }
}

/** Whether `frame` has `prefix` (from its byte `from` on) at `at`. */
export function startsWith(frame: Uint8Array, prefix: Uint8Array, at = 0, from = 0): boolean {
  if (frame.length < at + prefix.length - from) return false;
  for (let i = from; i < prefix.length; i++) if (frame[at + i - from] !== prefix[i]) return false;
  return true;
}

export function endsWith(frame: Uint8Array, suffix: Uint8Array, end: number): boolean {
  return end >= suffix.length && startsWith(frame, suffix, end - suffix.length);
}

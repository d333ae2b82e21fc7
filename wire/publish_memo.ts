/**
 * A publisher's last publish frames read in full (notifications in any layout:
 * see FramePublish.canonical), so that the next ones can be checked against
 * them: applications publish the same layout over and over (a sensor's
 * reading, a status) on the same topic, with only some digits changed. A
 * frame of a kept one's length that differs from it only where its value
 * may change (below) is that publish again, with a valid value of the same
 * structure: it needs no reading at all (prefix, topic, value, retain): its
 * words are compared with the kept frame's, at a fraction of the value
 * scanner's table read and unpredictable branch per token.
 *
 * Where a JSON value's digit may be replaced by another, keeping it valid as
 * the strict decoder wants it: in a string, outside escapes (a `\uXXXX`'s
 * digits could break a surrogate pair); in a number without an exponent and
 * of at most 300 characters (nothing of that size passes a double), any
 * digit but the first of an integer part of two digits or more, which may
 * only become 1–9 (no leading zero). Everything else must be the same byte.
 *
 * MessagePack values (the broker's MessagePack reader) likewise: digits in
 * strings; a fixint's byte within its kind (0x00–0x7f, 0xe0–0xff); the bytes
 * of 8-, 16- and 32-bit integers and of binary data, any; a boolean either
 * one; a float's bytes, any but an exponent of all ones (NaN and ±Infinity,
 * which the decoder refuses). Types, lengths, 64-bit integers (bounded to
 * ±2^53) and everything else stay as they are.
 */

import { bufferView, frameView } from "./byte_words.ts";
import { ANY_BYTE, ANY_DIGIT, freeJson, freeMsgpack, isDigit, mayBe, SAME } from "./memo_free.ts";

/**
 * What every publisher's kept frames (and layouts: LayoutMemo, TopicCache's
 * head) take in this process: a broker counts it in --max-memory and sets
 * `budget` (hostile37 K8: 3,000 publishing connections kept 82 MiB that
 * nothing counted). Past the budget nothing more is kept: publishes are
 * read in full, as a publisher's first ones are.
 */
export const memoMemory = { bytes: 0, budget: Infinity };
/** What a typed array view and an ArrayBuffer cost beside their bytes (V8 objects, backing store). */
export const VIEW_BYTES = 128, BUFFER_BYTES = 640;

/** Takes `bytes` for a memo when the budget has room (true); a release is a negative charge. */
export function charge(bytes: number): boolean {
  if (bytes > 0 && memoMemory.bytes + bytes > memoMemory.budget) return false;
  memoMemory.bytes += bytes;
  return true;
}

/** What a WordRun (byte_words.ts) of `n` bytes takes: its copy of them and their words. */
export function runCost(n: number): number {
  return 2 * n + 2 * VIEW_BYTES + 2 * BUFFER_BYTES;
}

/** Frames longer than this are not kept (a copy and a mask each). */
export const MEMO_MAX_BYTES = 1024;
/** Frames kept per publisher, of different lengths (a reading's length varies: `21.9`, `22`). */
const SLOTS = 4;
/** Misses in a row past which fewer frames are kept (16th, 32nd, …, 1 in RETRY_MOST) and matched. */
const RETRY_EVERY = 8, RETRY_MOST = 256;

const EMPTY_WORDS = new Int32Array(0), EMPTY_PAIRS = new Float64Array(0);
const EMPTY_BYTES = new Uint8Array(0);

/** What a reader read in a frame (a FramePublish). */
export interface KeptRead {
  readonly valueStart: number;
  readonly valueEnd: number;
  readonly topic: string;
  readonly retain: boolean;
  /** Whether the frame is canonical (see FramePublish.canonical); when not said, it is. */
  readonly canonical?: boolean;
}

/** One kept frame and what a reader read in it (arrays sized to it, rounded up to 64 bytes). */
class Slot implements KeptRead {
  words: Int32Array = EMPTY_WORDS;
  /** The same bytes eight at a time (see `matches`). */
  pairs: Float64Array = EMPTY_PAIRS;
  bytes: Uint8Array = EMPTY_BYTES;
  /** How each byte may change (SAME, ANY_DIGIT, …): made at the first compare. */
  free: Uint8Array = EMPTY_BYTES;
  /**
   * `free` by word, three masks side by side for word `w` (one array, read
   * at `3w`, `3w + 1`, `3w + 2`): 0xff where a byte may change; where it may
   * be any digit (ANY_DIGIT); where a change is checked byte by byte (not a
   * digit nor ANY_BYTE). 0 elsewhere.
   */
  masks: Int32Array = EMPTY_WORDS;
  /** `masks` as bytes: byte `k` of the frame is lane `k & 3` of word `k >> 2`'s masks. */
  maskBytes: Uint8Array = EMPTY_BYTES;
  freeMade = false;
  /** The frame's length; -1 when none is kept. */
  length = -1;
  msgpack = false;
  valueStart = 0;
  valueEnd = 0;
  topic = "";
  retain = true;
  canonical = true;
  /** When it last matched or was kept (the memo's count of reads). */
  used = 0;

  /** What its arrays take, as counted in memoMemory. */
  cost = 0;

  /**
   * Room for a frame of `n` bytes, if the process's memos may take it (see
   * memoMemory); what may change is marked later, at the first compare (makeMasks).
   */
  fit(n: number): boolean {
    if (this.bytes.length >= n) return true;
    const room = (n + 63) & ~63;
    if (!charge(room + 3 * VIEW_BYTES + BUFFER_BYTES - this.cost)) return false;
    this.cost = room + 3 * VIEW_BYTES + BUFFER_BYTES;
    this.words = new Int32Array(room >> 2);
    this.pairs = new Float64Array(this.words.buffer);
    this.bytes = new Uint8Array(this.words.buffer);
    this.free = this.maskBytes = EMPTY_BYTES;
    this.masks = EMPTY_WORDS;
    return true;
  }

  /** Room to mark what may change (`free` and its words), if the process's memos may take it. */
  makeMasks(): boolean {
    const room = this.bytes.length;
    if (this.free.length === room) return true;
    const cost = 4 * room + 3 * VIEW_BYTES + BUFFER_BYTES;
    if (!charge(cost)) return false;
    this.cost += cost;
    const buffer = new ArrayBuffer(4 * room);
    this.free = new Uint8Array(buffer, 0, room);
    this.masks = new Int32Array(buffer, room, 3 * (room >> 2));
    this.maskBytes = new Uint8Array(buffer, room, 3 * room);
    return true;
  }
}

/** The last publish frames a reader read in full (see the module comment); one per publisher. */
export class PublishMemo {
  /** Made as frames are kept: a connection that never publishes pays nothing. */
  readonly #slots: Slot[] = [];
  /** Reads so far (see Slot.used), and full reads in a row since the last match. */
  #reads = 0;
  #missRun = 0;
  /** Frames kept so far (copies made). */
  stored = 0;

  /** Gives back what the kept frames take (the publisher's connection closed). */
  release(): void {
    for (const slot of this.#slots) memoMemory.bytes -= slot.cost;
    this.#slots.length = 0;
  }

  /**
   * The kept frame that `b` is, or differs from only where its value may
   * change (see the module comment); undefined when none (or not tried: one frame in RETRY_EVERY
   * after as many misses in a row). Its value then lies at the same place (`valueStart`,
   * `valueEnd`), to the same topic, with the same retain flag. `buffer`, when
   * given, is `b.buffer` (see FrameDecoder.frameBuffer).
   */
  match(b: Uint8Array, buffer?: ArrayBufferLike): KeptRead | undefined {
    const n = b.length, slots = this.#slots, run = this.#missRun;
    if (run > RETRY_EVERY && (run & (RETRY_EVERY - 1)) !== 0) return undefined;
    let slot: Slot | undefined;
    for (let k = 0; k < slots.length; k++) {
      if (slots[k].length === n) {
        slot = slots[k];
        break;
      }
    }
    if (slot === undefined) return undefined;
    if (!matches(slot, b, buffer === undefined ? frameView(b) : bufferView(buffer))) {
      return undefined;
    }
    slot.used = ++this.#reads;
    this.#missRun = 0;
    return slot;
  }

  /**
   * A notification `b` was read in full (`read`): its value
   * `b[valueStart, valueEnd)` (JSON, or MessagePack) is valid.
   * Kept in place of the kept frame of its length, else of the one used
   * longest ago; after RETRY_EVERY full reads in a row without a match, only
   * the 16th, 32nd, … and then one in RETRY_MOST is (frames whose layout
   * keeps changing are not copied each time).
   */
  checked(b: Uint8Array, read: KeptRead, msgpack: boolean): void {
    const n = b.length;
    if (n > MEMO_MAX_BYTES) return;
    const run = ++this.#missRun;
    if (run > RETRY_EVERY && (run & (run - 1)) !== 0 && run % RETRY_MOST !== 0) return;
    const slots = this.#slots;
    let slot: Slot | undefined;
    let oldest: Slot | undefined;
    for (let k = 0; k < slots.length; k++) {
      const s = slots[k];
      if (s.length === n) {
        slot = s;
        break;
      }
      if (oldest === undefined || s.used < oldest.used) oldest = s;
    }
    const fresh = slot === undefined && slots.length < SLOTS;
    if (slot === undefined) slot = fresh ? new Slot() : oldest!;
    // Past the process's budget for memos the frame is not kept (read in full next time too).
    if (!slot.fit(n)) return;
    if (fresh) slots.push(slot);
    slot.bytes.set(b, 0);
    this.stored++;
    slot.length = n;
    slot.msgpack = msgpack;
    slot.valueStart = read.valueStart;
    slot.valueEnd = read.valueEnd;
    slot.topic = read.topic;
    slot.retain = read.retain;
    slot.canonical = read.canonical ?? true;
    slot.freeMade = false;
    slot.used = ++this.#reads;
  }
}

/**
 * Whether `b` (read through `dv`, its buffer's view) is `slot`'s frame but where its value may
 * change (see the module comment): eight bytes at a time as doubles (equal ones but ±0 have the
 * same bits; a pair that differs, is zero or NaN goes as two words), a word that differs checked
 * against what may change there.
 */
function matches(slot: Slot, b: Uint8Array, dv: DataView<ArrayBufferLike>): boolean {
  const n = slot.length;
  const base = b.byteOffset;
  const { pairs, words, bytes } = slot;
  const wholePairs = n >> 3;
  for (let q = 0; q < wholePairs; q++) {
    const x = dv.getFloat64(base + 8 * q, true);
    if (x === pairs[q] && x !== 0) continue;
    const w = 2 * q;
    const lo = dv.getInt32(base + 4 * w, true);
    if (lo !== words[w] && !wordMayBe(slot, b, w, lo)) return false;
    const hi = dv.getInt32(base + 4 * w + 4, true);
    if (hi !== words[w + 1] && !wordMayBe(slot, b, w + 1, hi)) return false;
  }
  let p = wholePairs << 3;
  if (n - p >= 4) {
    const x = dv.getInt32(base + p, true);
    if (x !== words[p >> 2] && !wordMayBe(slot, b, p >> 2, x)) return false;
    p += 4;
  }
  for (; p < n; p++) {
    if (b[p] === bytes[p]) continue;
    if (!slot.freeMade && !mayBeFree(slot, bytes[p])) return false;
    if (!mayBe(slot.free, b, p)) return false;
  }
  return true;
}

/**
 * Whether a kept byte `kept` may change, before that is marked (once per frame kept, when a frame
 * first differs where it may; in JSON only a digit may): changing layouts differ elsewhere first.
 */
function mayBeFree(slot: Slot, kept: number): boolean {
  if ((!slot.msgpack && !isDigit(kept)) || !slot.makeMasks()) return false;
  makeFree(slot);
  return true;
}

/**
 * Whether word `w` of a kept frame (`slot`) may be `x`, the frame `b`'s,
 * which differs from it: every byte that changed may change, a digit's
 * (ANY_DIGIT) to a digit (four at a time: each byte XOR "0" at most 9),
 * ANY_BYTE's to anything, any other's as `mayBe` says. The word's three
 * masks are side by side (one array: a differing word costs a few loads).
 */
function wordMayBe(slot: Slot, b: Uint8Array, w: number, x: number): boolean {
  const kept = slot.words[w];
  const changed = x ^ kept;
  if (!slot.freeMade && !changedMayBeFree(slot, changed, kept)) return false;
  const masks = slot.masks;
  const m = 3 * w;
  if ((changed & ~masks[m]) !== 0) return false;
  const digits = masks[m + 1];
  if (digits !== 0) {
    const y = (x ^ 0x30303030) & digits;
    if ((y & 0xf0f0f0f0) !== 0 || ((y + 0x06060606) & 0x10101010) !== 0) return false;
  }
  const others = changed & masks[m + 2];
  return others === 0 || othersMayBe(slot.free, b, w, others);
}

/** Before what may change is marked: whether each changed byte of `kept` may (see mayBeFree). */
function changedMayBeFree(slot: Slot, changed: number, kept: number): boolean {
  for (let k = 0; k < 4 && !slot.freeMade; k++) {
    if (((changed >>> (8 * k)) & 0xff) !== 0 && !mayBeFree(slot, (kept >>> (8 * k)) & 0xff)) {
      return false;
    }
  }
  return true;
}

/** Whether the bytes of word `w` set in `others` may change as `b` has them (see mayBe). */
function othersMayBe(free: Uint8Array, b: Uint8Array, w: number, others: number): boolean {
  for (let k = 0; k < 4; k++) {
    if (((others >>> (8 * k)) & 0xff) !== 0 && !mayBe(free, b, 4 * w + k)) return false;
  }
  return true;
}

/** Marks the bytes of a kept frame's value that may change (see the module comment). */
function makeFree(slot: Slot): void {
  const { free, maskBytes, length: n, valueStart, valueEnd } = slot;
  const room = (n + 3) & ~3;
  free.fill(SAME, 0, n);
  maskBytes.fill(0, 0, 3 * room);
  if (slot.msgpack) freeMsgpack(slot.bytes, valueStart, valueEnd, free);
  else freeJson(slot.bytes, valueStart, valueEnd, free);
  // Only the value's bytes may be anything but SAME.
  for (let k = valueStart; k < valueEnd; k++) {
    const f = free[k];
    if (f === SAME) continue;
    const at = 12 * (k >> 2) + (k & 3); // lane k & 3 of word k >> 2's first mask
    maskBytes[at] = 0xff;
    if (f === ANY_DIGIT) maskBytes[at + 4] = 0xff;
    else if (f !== ANY_BYTE) maskBytes[at + 8] = 0xff;
  }
  slot.freeMade = true;
}

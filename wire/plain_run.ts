/**
 * Runs of plain bytes in JSON strings (printable ASCII but `"` and `\`),
 * for the value scanner (json_scan.ts): a byte at a time, long runs four
 * bytes at a time.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Bytes that stand for themselves in a JSON string: printable ASCII but `"` and `\`. */
export const PLAIN: Uint8Array = new Uint8Array(256);
for (let c = 0x20; c < 0x80; c++) PLAIN[c] = c === QUOTE || c === BACKSLASH ? 0 : 1;

/** Plain bytes read one at a time before a string's run may go four at a time (see plainEnd). */
const BYTES_FIRST = 24;
/** Bytes that must be left in the frame past those for the four-at-a-time read. */
const WORDS_FROM = 64;
/** Buffers at most this large keep their word view for the next string (the read buffer). */
const KEEP_VIEW_AT_MOST = 64 * 1024;
let viewOf: ArrayBufferLike | undefined;
let words: Int32Array<ArrayBufferLike> = new Int32Array(0);

/** BYTES_FIRST and WORDS_FROM when `b`'s buffer is known (see plainEnd). */
const KNOWN_BYTES_FIRST = 8, KNOWN_WORDS_FROM = 16;

/**
 * The first byte at or after `j` that is not PLAIN (past the end: `b.length`).
 * A long run (a 4 KB text) is read four bytes at a time, from an aligned
 * Int32Array view of `b`'s buffer: a word passes when none of its bytes is
 * 0x80 or more, below 0x20, `"` or `\` (the exact zero-byte and less-than
 * tests on all four at once); the word that fails, and what is left, go a
 * byte at a time. A short string (the first BYTES_FIRST bytes, or less than
 * WORDS_FROM bytes left) never makes or looks up the view. `buffer`, when
 * given, is `b.buffer` (FrameDecoder.frameBuffer; asking `b` costs ~25 ns):
 * for the buffer whose view is kept, runs go by words sooner (KNOWN_*).
 */
export function plainEnd(b: Uint8Array, j: number, buffer?: ArrayBufferLike): number {
  if (buffer === undefined) {
    const first = j + BYTES_FIRST;
    while (j < first && PLAIN[b[j]] === 1) j++;
    if (j === first && b.length - j >= WORDS_FROM) j = plainWords(b, j, b.buffer);
  } else {
    // Sooner only for the buffer whose view is kept (no view made per string: see wordsFor).
    const kept = buffer === viewOf;
    const first = j + (kept ? KNOWN_BYTES_FIRST : BYTES_FIRST);
    while (j < first && PLAIN[b[j]] === 1) j++;
    if (j === first && b.length - j >= (kept ? KNOWN_WORDS_FROM : WORDS_FROM)) {
      j = plainWords(b, j, buffer);
    }
  }
  while (PLAIN[b[j]] === 1) j++;
  return j;
}

/**
 * Keeps the word view of `buffer`, a read buffer that frames of many
 * connections are views of (raw_reads.ts), for plainEnd.
 */
export function wordsFor(buffer: ArrayBufferLike): void {
  if (buffer === viewOf || buffer.byteLength > KEEP_VIEW_AT_MOST) return;
  viewOf = buffer;
  words = new Int32Array(buffer, 0, buffer.byteLength >>> 2);
}

/** plainEnd's words: where the run from `j` (plain so far) stops being plain, to a word (`buffer`: b's). */
function plainWords(b: Uint8Array, j: number, buffer: ArrayBufferLike): number {
  const off = b.byteOffset;
  while (((off + j) & 3) !== 0) {
    if (PLAIN[b[j]] !== 1) return j;
    j++;
  }
  let view = words;
  if (buffer !== viewOf) {
    view = new Int32Array(buffer, 0, buffer.byteLength >>> 2);
    // A large frame's own buffer is not kept alive for later (nor looked up again: it is read once).
    if (buffer.byteLength <= KEEP_VIEW_AT_MOST) {
      viewOf = buffer;
      words = view;
    }
  }
  let w = (off + j) >>> 2;
  const end = Math.min((off + b.length) >>> 2, view.length);
  while (w < end) {
    const x = view[w];
    const q = x ^ 0x22222222;
    const e = x ^ 0x5c5c5c5c;
    // A byte of 0x80+ (x itself), below 0x20, `"` (a zero byte of q) or `\` (of e).
    const bad = (((x - 0x20202020) | 0) & ~x) | x | (((q - 0x01010101) | 0) & ~q) |
      (((e - 0x01010101) | 0) & ~e);
    if ((bad & 0x80808080) !== 0) break;
    w++;
  }
  return (w << 2) - off;
}

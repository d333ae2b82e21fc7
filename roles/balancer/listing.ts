/**
 * `balancer.backends`: every backend with its health and load, in a frame
 * whatever their names and however many they are (hostile43a A10, A15:
 * 1,000 workers named with 200 CJK characters, 3 bytes each in UTF-8, in
 * `name` and again in `peer`, made the listing 1.23 MB, refused "Answer
 * too large to send" to everyone).
 *
 * Each entry's texts are cut to a budget of bytes as JSON writes them
 * (a name to {@link NAME_BYTES}, keeping its head and its tail, where
 * names that differ mostly differ), so an entry is at most about
 * {@link ENTRY_BYTES}: the default `--max-workers 1000` of them fit the
 * default 1 MiB frame. A pool larger than a frame holds is listed a page
 * at a time: `{offset, limit}` answers the backends from `offset` on, as
 * many as fit (at most `limit`); an empty page is the end. Asked for all
 * at once, such a pool is refused `FRAME_TOO_LARGE`, naming the page
 * parameters, rather than cut short without a word.
 */
import type { BackendInfo } from "../../clients/contracts/mod.ts";
import { DistError } from "../../wire/mod.ts";

/** Most bytes of a backend's name in the listing (a name of 200 ASCII characters fits). */
export const NAME_BYTES = 200;
/** Most bytes of the name its process gave in its handshake. */
export const PEER_BYTES = 128;
/** Most bytes of its state's reason. */
export const REASON_BYTES = 200;
/** Most bytes of its address and of its source. */
export const SHORT_BYTES = 64;
/** An entry's members but its texts, at their longest (names, quotes, numbers of 16 digits). */
const FIXED_BYTES = 320;
/** The most bytes an entry takes in JSON (MessagePack takes fewer). */
export const ENTRY_BYTES = FIXED_BYTES + NAME_BYTES + PEER_BYTES + REASON_BYTES +
  3 * SHORT_BYTES;
/** What a frame's envelope around the list may take besides its entries (id, keys, `by`). */
const ENVELOPE_BYTES = 1024;

/** What the listing is asked for: all (no params), or a page. */
export interface Page {
  offset?: number;
  limit?: number;
}

/**
 * The listing of `list`'s entries (`describe` each), within `maxFrame`
 * bytes (see the module comment).
 * @throws DistError FRAME_TOO_LARGE when all are asked for and they do not fit
 */
export function listBackends<B>(
  list: readonly B[],
  describe: (b: B) => BackendInfo,
  options: { page?: Page; maxFrame: number },
): BackendInfo[] {
  const { page, maxFrame } = options;
  const room = Math.max(ENTRY_BYTES, maxFrame - ENVELOPE_BYTES);
  const paged = page?.offset !== undefined || page?.limit !== undefined;
  const from = Math.min(page?.offset ?? 0, list.length);
  const to = Math.min(list.length, from + (page?.limit ?? list.length));
  if (!paged && (to - from) * ENTRY_BYTES > room) {
    // Measured only when the bound says it might not fit.
    const all = fitting(list, describe, from, to, room);
    if (all.length === to - from) return all;
    throw new DistError(
      "FRAME_TOO_LARGE",
      `balancer.backends: ${list.length} backends are too large for a frame of ${maxFrame} ` +
        `bytes; ask for them a page at a time with {offset, limit}`,
    );
  }
  return fitting(list, describe, from, to, room);
}

/** The entries of `list` from `from` to `to`, texts cut, as many as fit in `room` bytes. */
function fitting<B>(
  list: readonly B[],
  describe: (b: B) => BackendInfo,
  from: number,
  to: number,
  room: number,
): BackendInfo[] {
  const out: BackendInfo[] = [];
  let used = 0;
  for (let i = from; i < to; i++) {
    const info = shorten(describe(list[i]));
    used += FIXED_BYTES + jsonBytes(info.name) + jsonBytes(info.peer) + jsonBytes(info.reason) +
      jsonBytes(info.address) + jsonBytes(info.source) + jsonBytes(info.kind);
    if (used > room && out.length > 0) break;
    out.push(info);
  }
  return out;
}

/** `info` with its texts cut to their budgets. */
function shorten(info: BackendInfo): BackendInfo {
  info.name = cutBytes(info.name, NAME_BYTES);
  info.peer = cutBytes(info.peer, PEER_BYTES);
  info.reason = cutBytes(info.reason, REASON_BYTES);
  info.address = cutBytes(info.address, SHORT_BYTES);
  info.source = cutBytes(info.source, SHORT_BYTES);
  return info;
}

/** The bytes one UTF-16 unit at `i` of `s` takes in JSON (0 for the second of a pair). */
function unitBytes(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c < 0x80) return c < 0x20 ? 6 : c === 0x22 || c === 0x5c ? 2 : 1;
  if (c < 0x800) return 2;
  if (c >= 0xd800 && c <= 0xdbff) {
    const next = s.charCodeAt(i + 1);
    return next >= 0xdc00 && next <= 0xdfff ? 4 : 6;
  }
  if (c >= 0xdc00 && c <= 0xdfff) {
    const prev = s.charCodeAt(i - 1);
    return prev >= 0xd800 && prev <= 0xdbff ? 0 : 6;
  }
  return 3;
}

/** The bytes `s` takes as a JSON string's contents (an escape counted whole). */
export function jsonBytes(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) n += unitBytes(s, i);
  return n;
}

/** `…`, which joins the head and tail of a cut text: 3 bytes. */
const ELLIPSIS = "\u2026";

/**
 * `s` within `max` bytes as JSON writes it: as it is if it fits, else its
 * head and its tail joined by `…`, never splitting a surrogate pair.
 */
export function cutBytes(s: string, max: number): string {
  if (s.length * 6 <= max || jsonBytes(s) <= max) return s;
  const half = (max - 3) >> 1;
  let head = 0;
  for (let n = 0; head < s.length;) {
    const w = isPairStart(s, head) ? 2 : 1;
    const take = w === 2 ? 4 : unitBytes(s, head);
    if (n + take > half) break;
    n += take;
    head += w;
  }
  let tail = s.length;
  for (let n = 0; tail > head;) {
    const w = tail - 2 >= head && isPairEnd(s, tail - 1) ? 2 : 1;
    const take = w === 2 ? 4 : unitBytes(s, tail - 1);
    if (n + take > half) break;
    n += take;
    tail -= w;
  }
  return s.slice(0, head) + ELLIPSIS + s.slice(tail);
}

function isPairStart(s: string, i: number): boolean {
  const c = s.charCodeAt(i);
  const d = s.charCodeAt(i + 1);
  return c >= 0xd800 && c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff;
}

function isPairEnd(s: string, i: number): boolean {
  const c = s.charCodeAt(i);
  const p = s.charCodeAt(i - 1);
  return c >= 0xdc00 && c <= 0xdfff && p >= 0xd800 && p <= 0xdbff;
}

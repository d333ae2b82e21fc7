/**
 * Bytes of requests a backend has not read yet (issue 16; hostile37 K5).
 *
 * Every client's requests to a backend share one connection, read in the
 * order they were sent: a request waits there behind the bytes of those
 * sent before it that the backend has not read. Once the backend answers a
 * request, it has read every one sent to it before that one; a request it
 * read and sits on (a `sleep` of 60 KB, say) delays nothing sent after it,
 * and is no longer counted once it was sent SIT_MS ago. One a backend
 * sends nothing after (the placement keeps small requests off a backend
 * with large ones) is taken for read, and sitting, once it was sent SIT_MS
 * ago while the backends answer in under a quarter of that on average (the
 * shares count requests sitting so, slots.ts): three sleeping requests of
 * 60 KB on one backend, none after them, still kept requests of 32 KiB or
 * more from going.
 * The byte bound and placement (backend_bytes.ts, pacing.ts) count these
 * unread bytes, so three connections each holding one sleeping request of
 * 60 KB no longer keep every request of 4 KiB or more waiting while the
 * backends are idle (before: `OVERLOADED` after 3 s).
 *
 * A request left by timeout or a lost connection counts as answered here:
 * those sent before it left before it, or with it.
 */

import { STUCK_FACTOR } from "./slots.ts";

/**
 * How long a request the backend read stays counted: one read and not
 * answered this long sits there (the shares stop counting such ones after
 * STUCK_MS, slots.ts); before that it may be work the backend queued, whose
 * answer comes back ahead of later ones.
 */
const SIT_MS = 100;

/** What requests of one send time (or all of a backend) hold. */
type Tally = { bytes: number; paced: number; large: number };

/** One backend's connection. */
class Line {
  /** Requests sent before this (ms, the dispatcher's clock) were read by the backend. */
  mark = -Infinity;
  /** Requests on it, read or not. */
  n = 0;
  /** Unread requests by send time, oldest first. */
  readonly at = new Map<number, Tally>();
  readonly unread: Tally = { bytes: 0, paced: 0, large: 0 };
}

export class Unread {
  /** Unread bytes on every backend. */
  bytes = 0;
  /** Unread bytes of paced requests on every backend. */
  paced = 0;
  /** Unread large requests on every backend. */
  large = 0;
  #lines = new Map<object, Line>();
  #settledAt = -Infinity;
  /** The backends' answers' time, a moving average (ms). */
  #latency = 0;
  /** Requests of this many bytes or more are paced; of `large`, large. */
  #paced: number;
  #large: number;

  constructor(paced: number, large: number) {
    this.#paced = paced;
    this.#large = large;
  }

  /** Unread bytes on `backend`. */
  on(backend: object): number {
    return this.#lines.get(backend)?.unread.bytes ?? 0;
  }

  /** Unread bytes of paced requests on `backend`. */
  pacedOn(backend: object): number {
    return this.#lines.get(backend)?.unread.paced ?? 0;
  }

  /** A request of `bytes` was sent to `backend` at `at`. */
  took(bytes: number, backend: object, at: number): void {
    let line = this.#lines.get(backend);
    if (line === undefined) this.#lines.set(backend, line = new Line());
    line.n++;
    let t = line.at.get(at);
    if (t === undefined) line.at.set(at, t = { bytes: 0, paced: 0, large: 0 });
    this.#add(t, line.unread, bytes, 1);
  }

  /**
   * A request of `bytes` sent to `backend` at `at` left it at `now`
   * (-Infinity: it was never sent).
   */
  gave(bytes: number, backend: object, at: number, now: number): void {
    const line = this.#lines.get(backend);
    if (line === undefined) return;
    const answered = now > -Infinity;
    // Not there: taken out as read (settled).
    const t = line.at.get(at);
    if (t !== undefined) {
      this.#add(t, line.unread, bytes, -1);
      if (t.bytes <= 0 && t.paced <= 0 && t.large <= 0) line.at.delete(at);
    }
    if (answered) {
      this.#latency += (now - at - this.#latency) / 16;
      if (at > line.mark) line.mark = at;
    }
    if (--line.n <= 0) this.#lines.delete(backend);
    else this.#settle(line, now);
  }

  /** Takes out what the backends read SIT_MS or more ago (before `now`). */
  settle(now: number): void {
    if (now < this.#settledAt + 1) return;
    this.#settledAt = now;
    for (const line of this.#lines.values()) this.#settle(line, now);
  }

  #settle(line: Line, now: number): void {
    // Send times only grow, so the map is oldest first.
    for (const [sent, t] of line.at) {
      if (sent > now - SIT_MS || (sent >= line.mark && this.#latency * STUCK_FACTOR >= SIT_MS)) {
        break;
      }
      this.bytes -= t.bytes;
      this.paced -= t.paced;
      this.large -= t.large;
      line.unread.bytes -= t.bytes;
      line.unread.paced -= t.paced;
      line.unread.large -= t.large;
      line.at.delete(sent);
    }
  }

  /** Adds (sign 1) or takes away (-1) a request of `bytes` in `t` and `line`. */
  #add(t: Tally, line: Tally, bytes: number, sign: 1 | -1): void {
    const paced = bytes >= this.#paced ? bytes * sign : 0;
    const large = bytes >= this.#large ? sign : 0;
    t.bytes += bytes * sign;
    t.paced += paced;
    t.large += large;
    line.bytes += bytes * sign;
    line.paced += paced;
    line.large += large;
    this.bytes += bytes * sign;
    this.paced += paced;
    this.large += large;
  }
}

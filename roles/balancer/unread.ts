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

import { type AnswerTime, STUCK_FACTOR } from "./slots.ts";

/**
 * How long a request the backend read stays counted: one read and not
 * answered this long sits there (the shares stop counting such ones after
 * STUCK_MS, slots.ts); before that it may be work the backend queued, whose
 * answer comes back ahead of later ones.
 */
const SIT_MS = 100;

/** Most send times a line's arrays keep room for while empty. */
const MAX_KEPT = 64;

/** What requests of one send time (or all of a backend) hold. */
type Tally = { bytes: number; paced: number; large: number };

/**
 * One backend's connection. Its unread tallies are kept oldest first in two
 * arrays read from `#head` (send times only grow: a run's is appended, an
 * answered one is mostly the oldest), not in a Map: a Map that a run's send
 * time enters and its answer leaves grew or shrank its table in V8's
 * runtime at most runs (the Map's set and delete calling into C++: about 1 %
 * of the balancer's samples at c=64, 1.5 % at c=16).
 */
class Line {
  /** Requests sent before this (ms, the dispatcher's clock) were read by the backend. */
  mark = -Infinity;
  /** Requests on it, read or not. */
  n = 0;
  /** Send times of its unread requests, ascending, in [#head, #end). */
  #times: number[] = [];
  /** Their tallies (undefined outside [#head, #end)). */
  #tallies: (Tally | undefined)[] = [];
  #head = 0;
  #end = 0;
  readonly unread: Tally = { bytes: 0, paced: 0, large: 0 };
  /**
   * At most the oldest send time held (Infinity: none): what settles is
   * that old at least, so a line with nothing that old is not looked through.
   */
  oldest = Infinity;
  /** The send time looked up last, and its tally (a run's requests share one: runs.ts). */
  lastAt = NaN;
  last: Tally | undefined;

  /** Send times held. */
  get size(): number {
    return this.#end - this.#head;
  }

  /** The oldest send time held and its tally (undefined: none). */
  get firstAt(): number {
    return this.#times[this.#head];
  }
  get first(): Tally | undefined {
    return this.#head < this.#end ? this.#tallies[this.#head] : undefined;
  }

  /** The tally of send time `at` (undefined: none, or taken out as read). */
  tally(at: number): Tally | undefined {
    if (at === this.lastAt) return this.last;
    const i = this.#find(at);
    if (i < 0) return undefined;
    const t = this.#tallies[i];
    this.lastAt = at;
    this.last = t;
    return t;
  }

  /** A new tally for send time `at` (none held yet). */
  add(at: number): Tally {
    const t: Tally = { bytes: 0, paced: 0, large: 0 };
    const times = this.#times, tallies = this.#tallies;
    const end = this.#end;
    if (end > this.#head && times[end - 1] > at) {
      // Send times come in order; one that does not goes where it belongs.
      const i = this.#place(at);
      times.splice(i, 0, at);
      tallies.splice(i, 0, t);
      if (times.length > end + 1) times.length = tallies.length = end + 1;
    } else if (end < times.length) {
      times[end] = at;
      tallies[end] = t;
    } else {
      times.push(at);
      tallies.push(t);
    }
    this.#end = end + 1;
    if (at < this.oldest) this.oldest = at;
    this.lastAt = at;
    this.last = t;
    return t;
  }

  /** Forgets the tally of send time `at`. */
  drop(at: number): void {
    const i = this.#find(at);
    if (i >= 0) {
      this.#tallies[i] = undefined;
      if (i === this.#head) this.#head++;
      else {
        this.#times.copyWithin(i, i + 1, this.#end);
        this.#tallies.copyWithin(i, i + 1, this.#end);
        this.#tallies[--this.#end] = undefined;
      }
      this.#compact();
    }
    if (this.size === 0) this.oldest = Infinity;
    if (at === this.lastAt) {
      this.lastAt = NaN;
      this.last = undefined;
    }
  }

  /** As made new (nothing held already): for the next backend's use. */
  clear(): Line {
    this.mark = -Infinity;
    this.n = 0;
    this.unread.bytes = this.unread.paced = this.unread.large = 0;
    this.oldest = Infinity;
    this.lastAt = NaN;
    this.last = undefined;
    return this;
  }

  /** The index of send time `at`, or -1. */
  #find(at: number): number {
    const i = this.#place(at);
    return i < this.#end && this.#times[i] === at ? i : -1;
  }

  /** The first index from #head whose send time is `at` or later (binary search). */
  #place(at: number): number {
    const times = this.#times;
    let lo = this.#head, hi = this.#end;
    // The oldest and the newest first: answers mostly come back in order.
    if (lo === hi || times[lo] >= at) return lo;
    if (times[hi - 1] < at) return hi;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (times[mid] < at) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Starts the arrays over once nothing is held, or moves what is to their start. */
  #compact(): void {
    const head = this.#head, end = this.#end;
    if (head === end) {
      this.#head = this.#end = 0;
      // A burst's arrays are not kept for good.
      if (this.#times.length > MAX_KEPT) this.#times = [], this.#tallies = [];
    } else if (head >= 32 && head * 2 >= end) {
      this.#times.copyWithin(0, head, end);
      this.#tallies.copyWithin(0, head, end);
      this.#tallies.fill(undefined, end - head, end);
      this.#head = 0;
      this.#end = end - head;
    }
  }
}

export class Unread {
  /** Unread bytes on every backend. */
  bytes = 0;
  /** Unread bytes of paced requests on every backend. */
  paced = 0;
  /** Unread large requests on every backend. */
  large = 0;
  #lines = new Map<object, Line>();
  /** A line let go of with nothing in it, taken by the next line made (not one made per run). */
  #spare: Line | undefined;
  /** The backend looked up last, and its line. */
  #lastOn: object | undefined;
  #last: Line | undefined;
  #settledAt = -Infinity;
  /** The backends' answers' time (slots.ts). */
  #answers: AnswerTime;
  /** Requests of this many bytes or more are paced; of `large`, large. */
  #paced: number;
  #large: number;

  constructor(paced: number, large: number, answers: AnswerTime) {
    this.#paced = paced;
    this.#large = large;
    this.#answers = answers;
  }

  /** Unread bytes on `backend`. */
  on(backend: object): number {
    return this.#line(backend)?.unread.bytes ?? 0;
  }

  /** Unread bytes of paced requests on `backend`. */
  pacedOn(backend: object): number {
    return this.#line(backend)?.unread.paced ?? 0;
  }

  #line(backend: object): Line | undefined {
    if (backend === this.#lastOn) return this.#last;
    const line = this.#lines.get(backend);
    if (line !== undefined) {
      this.#lastOn = backend;
      this.#last = line;
    }
    return line;
  }

  /** A request of `bytes` was sent to `backend` at `at`. */
  took(bytes: number, backend: object, at: number): void {
    let line = this.#line(backend);
    if (line === undefined) {
      this.#lines.set(backend, line = this.#spare ?? new Line());
      this.#spare = undefined;
      this.#lastOn = backend;
      this.#last = line;
    }
    line.n++;
    const t = line.tally(at) ?? line.add(at);
    this.#add(
      t,
      line.unread,
      bytes,
      bytes >= this.#paced ? bytes : 0,
      bytes >= this.#large ? 1 : 0,
    );
  }

  /**
   * `n` requests (one unless told; more: each under the paced size) of
   * `bytes` together sent to `backend` at `at` left it at `now`
   * (-Infinity: never sent).
   */
  gave(bytes: number, backend: object, at: number, now: number, n = 1): void {
    const line = this.#line(backend);
    // None, or kept empty (below): nothing of it is on the backend.
    if (line === undefined || line.n === 0) return;
    // Not there: taken out as read (settled).
    const t = line.tally(at);
    if (t !== undefined) {
      const paced = n === 1 && bytes >= this.#paced ? -bytes : 0;
      const large = n === 1 && bytes >= this.#large ? -1 : 0;
      this.#add(t, line.unread, -bytes, paced, large);
      if (t.bytes <= 0 && t.paced <= 0 && t.large <= 0) line.drop(at);
    }
    if (now > -Infinity && at > line.mark) line.mark = at;
    if ((line.n -= n) <= 0) {
      // Kept, cleared, for its next request (a backend's runs come and go:
      // one a read); settle() lets go of it (a Map entry made and dropped a
      // run grew and shrank the Map's table in V8's runtime).
      if (line.size === 0) return void line.clear();
      this.#lines.delete(backend);
      if (backend === this.#lastOn) this.#lastOn = this.#last = undefined;
      return;
    }
    // Counted one by one, each answer settled with the figure after it: the
    // figures of a run move one way, so its first and last settle as much.
    if (n > 1) this.#settle(line, now, this.#answers.first);
    this.#settle(line, now, this.#answers.ms);
  }

  /** Takes out what the backends read SIT_MS or more ago (before `now`). */
  settle(now: number): void {
    if (now < this.#settledAt + 1) return;
    this.#settledAt = now;
    for (const [backend, line] of this.#lines) {
      if (line.n === 0 && line.size === 0) {
        // Kept empty since its last answer (see gave): let go of now, the next line made takes it.
        this.#lines.delete(backend);
        if (backend === this.#lastOn) this.#lastOn = this.#last = undefined;
        this.#spare = line;
      } else this.#settle(line, now, this.#answers.ms);
    }
  }

  /** Takes out of `line` what it read SIT_MS or more ago, the answers' time being `ms`. */
  #settle(line: Line, now: number, ms: number): void {
    if (line.oldest > now - SIT_MS) return;
    // Oldest first.
    for (let t = line.first; t !== undefined; t = line.first) {
      const sent = line.firstAt;
      if (
        sent > now - SIT_MS ||
        (sent >= line.mark && ms * STUCK_FACTOR >= SIT_MS)
      ) {
        line.oldest = sent;
        break;
      }
      this.bytes -= t.bytes;
      this.paced -= t.paced;
      this.large -= t.large;
      line.unread.bytes -= t.bytes;
      line.unread.paced -= t.paced;
      line.unread.large -= t.large;
      line.drop(sent);
    }
  }

  /** Adds `bytes`, `paced` and `large` (negative: takes them away) in `t` and `line`. */
  #add(t: Tally, line: Tally, bytes: number, paced: number, large: number): void {
    t.bytes += bytes;
    t.paced += paced;
    t.large += large;
    line.bytes += bytes;
    line.paced += paced;
    line.large += large;
    this.bytes += bytes;
    this.paced += paced;
    this.large += large;
  }
}

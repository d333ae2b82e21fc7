/**
 * Requests of many bytes among small ones (issue 16; the shares, shares.ts,
 * decide how many requests and bytes each connection and source has on the
 * backends; this decides how fast requests of many bytes go, and where).
 *
 * Every client's requests to a backend share one connection, so a small
 * request waits behind the large ones ahead of it, on the way out and
 * behind their answers on the way back (hostile32 X2). So:
 *
 * - A request of {@link PACED_BYTES} or more is paced: while a smaller one
 *   is on the backends (or was answered within {@link LARGE_GRACE_MS}),
 *   paced requests go at the pace the others' requests earn them
 *   ({@link SMALL_EARNS} each, paid back in bytes: deficit round robin in
 *   bytes, the others' requests being the rounds). Alone they owe nothing.
 *   The line was at {@link LARGE_BYTES} only: 32,700-byte requests, from
 *   sixteen connections or sixteen addresses, went unpaced and cut another
 *   client to 0.1–0.2× (hostile33 Y1).
 * - Of them, those of LARGE_BYTES or more are large: while more than one
 *   connection is active and a small request was on the backends within
 *   {@link CLEAR_MS}, at most one large request fewer than backends in
 *   rotation (at least one) is on the backends.
 * - A small request goes to a backend with less than LARGE_BYTES of paced
 *   requests on it when there is one ({@link Pacing.place}); and when
 *   pacing lapses (small clients between requests, past the grace) within
 *   CLEAR_MS, paced requests keep off one backend, so there is one: then
 *   sixteen connections of one 1 MB request each put one ahead of every
 *   small request of a client at 20 a second or one (hostile33 Y2).
 *
 * Requests of every size pay their bytes too: a bound on the bytes on the
 * backends, and placement by them (backend_bytes.ts, {@link Pacing.bound}).
 */

import { ByteBound, type Mine } from "./backend_bytes.ts";
import type { AnswerTime } from "./slots.ts";
import {
  CLEAR_MS,
  LARGE_BYTES,
  LARGE_GRACE_MS,
  MAX_EARNED,
  PACED_BYTES,
  SMALL_EARNS,
} from "./share_limits.ts";

/**
 * Bytes paced requests earn each millisecond no paced request is on the
 * backends unread (see Pacing.#refill): a client of one such request at a
 * time finds it earned when it comes back (8 KB in 0.03 ms).
 */
const PACED_PER_MS = 256 * 1024;
/**
 * Most that time earns them ahead: nothing, so it pays a debt only, and one
 * request goes (at 64 KiB, sixteen addresses' requests of 16,000 bytes went
 * four at a time, to the backend kept clear for small ones).
 */
const TIME_EARNED = 0;
/** Requests of at most this many bytes earn with time (see Pacing.room). */
const TIME_BYTES = 64 * 1024;

/** A backend as placement sees it. */
type Placed = { readonly available: boolean; inflight: number };

/** A request as placement sees it (forward.ts's Job). */
type Placing = {
  readonly bytes?: number;
  readonly share?: { readonly bytes: number };
  readonly line?: { readonly bytes: number };
};

export class Pacing {
  /** Requests of PACED_BYTES or more on the backends. */
  paced = 0;
  /** Bytes of requests of every size on the backends, and where (backend_bytes.ts). */
  readonly bound: ByteBound;
  /** When a small request was last answered. */
  #smallAt = -Infinity;
  /** What paced requests may send before they wait for others' requests (see SMALL_EARNS). */
  #earned = 0;
  /** When #earned last earned with time. */
  #refilledAt = -Infinity;
  #now: () => number;
  /** Backends in rotation now. */
  #backends: () => number;
  /** Requests on the backends, of every size. */
  #inflight: () => number;
  /** Client connections active now. */
  #active: () => number;
  /** Pumps the queue in `ms` (nothing else may, when nothing is on the backends). */
  #wakeIn: (ms: number) => void;

  constructor(options: {
    now: () => number;
    backends: () => number;
    inflight: () => number;
    active: () => number;
    wakeIn: (ms: number) => void;
    /** The backends' answers' time (slots.ts). */
    answers: AnswerTime;
  }) {
    this.#now = options.now;
    this.#backends = options.backends;
    this.#inflight = options.inflight;
    this.#active = options.active;
    this.#wakeIn = options.wakeIn;
    this.bound = new ByteBound(options);
  }

  /**
   * Whether a request of `bytes` of a connection holding `mine` may go now,
   * as far as bytes go (others active).
   */
  room(bytes: number, mine: Mine): boolean {
    if (!this.bound.fits(bytes, mine)) return false;
    if (bytes < PACED_BYTES) return true;
    if (
      bytes >= LARGE_BYTES && this.bound.unread.large >= Math.max(1, this.#backends() - 1) &&
      this.#smallSeen()
    ) return false;
    if (this.#inflight() === this.paced) {
      const wait = this.#smallAt + LARGE_GRACE_MS - this.#now();
      if (wait <= 0) return true;
      // Nothing on the backends may come back to pump the line then (paced ones may sit there).
      this.#wakeIn(wait);
    }
    // Requests past TIME_BYTES wait for small ones' (non-readers' 1 MB echoes: RSS 310-335 MiB, not 245).
    const timed = bytes <= TIME_BYTES;
    if (timed) this.#refill();
    if (this.#earned >= 0) return true;
    // Nothing may come back to pump the line when time has paid it: paced requests
    // on the backends may sit there (three sleeping ones of 60 KB, hostile37 K5).
    if (timed && this.bound.unread.paced === 0 || this.paced === 0) {
      this.#wakeIn(Math.ceil(-this.#earned / PACED_PER_MS));
    }
    return false;
  }

  /**
   * Paced requests earn PACED_PER_MS with time too, up to TIME_EARNED (one request),
   * while none is on the backends unread (so flows that keep several there
   * go at the pace small requests earn them, as before): a
   * few small requests a second (twenty connections each sending a 10-byte
   * echo every 400 ms) held a client of 8 KB echoes to the 4 KiB each of
   * theirs earned it: 36 a second against 1,200–2,900 (hostile37 K5).
   */
  #refill(): void {
    const now = this.#now();
    const ms = now - this.#refilledAt;
    this.#refilledAt = now;
    // Only while no paced request is there unread: one at a time, at least.
    if (ms > 0 && ms < Infinity && this.#earned < TIME_EARNED && this.bound.unread.paced === 0) {
      this.#earned = Math.min(TIME_EARNED, this.#earned + ms * PACED_PER_MS);
    }
  }

  /**
   * Where `job` goes instead of `picked` (`avoid` aside): first by bytes,
   * while the bound spreads requests ({@link ByteBound.spread}); then by
   * its size, while paced requests are on the backends: a small one, when
   * `picked` has LARGE_BYTES or more of them, to the least busy available
   * backend with less; a paced one, while pacing lapses (nothing small on the
   * backends nor answered within the grace) yet more than one connection
   * is active and a small request was on the backends within CLEAR_MS, to
   * the least busy with paced ones already when `picked` is the last
   * available without. `picked` when there is none such.
   */
  place<B extends Placed>(picked: B, job: Placing, list: readonly B[], avoid: B | undefined): B {
    const bytes = job.bytes ?? 0;
    if (this.bound.spreading) {
      // Held by its connection: on the backends, and waiting (itself included).
      const held = (job.share?.bytes ?? 0) + (job.line?.bytes ?? bytes);
      picked = this.bound.spread(picked, held, list, avoid);
      if (this.paced === 0) return picked;
    }
    const on = this.bound.unread;
    if (bytes < PACED_BYTES) {
      return on.pacedOn(picked) < LARGE_BYTES
        ? picked
        : this.#leastBusy(list, avoid, (n) => n < LARGE_BYTES) ?? picked;
    }
    if (on.pacedOn(picked) > 0 || this.#active() <= 1 || !this.#smallSeen() || this.#pacing()) {
      return picked;
    }
    let clear = 0;
    for (const b of list) if (b !== avoid && b.available && on.pacedOn(b) === 0) clear++;
    return clear > 1 ? picked : this.#leastBusy(list, avoid, (n) => n > 0) ?? picked;
  }

  /** The least busy available backend of `list` (not `avoid`) whose paced bytes pass `test`. */
  #leastBusy<B extends Placed>(
    list: readonly B[],
    avoid: B | undefined,
    test: (bytes: number) => boolean,
  ): B | undefined {
    let best: B | undefined;
    for (const b of list) {
      if (b === avoid || !b.available || !test(this.bound.unread.pacedOn(b))) continue;
      if (best === undefined || b.inflight < best.inflight) best = b;
    }
    return best;
  }

  /** Whether paced requests go at the pace small ones earn: one is on the backends, or answered within the grace. */
  #pacing(): boolean {
    return this.#inflight() > this.paced || this.#now() - this.#smallAt < LARGE_GRACE_MS;
  }

  /** Whether a small request is on the backends, or was answered within CLEAR_MS. */
  #smallSeen(): boolean {
    return this.#inflight() > this.paced || this.#now() - this.#smallAt < CLEAR_MS;
  }

  /** A request of `bytes` went to `backend` at `now` (counted in `inflight` already). */
  took(bytes: number, backend: object, now: number): void {
    // Time earns nothing while a paced request is there unread (see #refill).
    if (bytes >= PACED_BYTES && bytes <= TIME_BYTES) this.#refill();
    this.bound.took(bytes, backend, now);
    if (bytes < PACED_BYTES) {
      if (this.#earned < MAX_EARNED) this.#earned += SMALL_EARNS;
      return;
    }
    this.paced++;
    // Alone (nothing small on the backends nor answered within the grace), they owe nothing.
    const alone = this.#inflight() === this.paced && now - this.#smallAt >= LARGE_GRACE_MS;
    this.#earned = alone ? 0 : this.#earned - bytes;
  }

  /**
   * `n` requests (one unless told; more: each under PACED_BYTES) of `bytes`
   * together sent to `backend` at `sentAt` left it at `now` (-Infinity:
   * never sent).
   */
  gave(bytes: number, backend: object, now: number, sentAt: number, n = 1): void {
    const before = this.bound.unread.paced;
    this.bound.gave(bytes, backend, sentAt, now, n);
    if (before > 0 && this.bound.unread.paced === 0) this.#refilledAt = this.#now();
    if (n > 1 || bytes < PACED_BYTES) {
      if (now > this.#smallAt) this.#smallAt = now;
      return;
    }
    this.paced--;
  }
}

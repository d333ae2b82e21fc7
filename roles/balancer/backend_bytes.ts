/**
 * Every request pays its bytes, whatever its size (issue 16; hostile35
 * H12). Every client's requests to a backend share one connection, so a
 * request waits there behind the bytes of every request ahead of it, and
 * behind their answers on the way back. Requests of PACED_BYTES or more are
 * paced (pacing.ts); a line under which nothing was paid let sixteen
 * addresses keeping 16 echoes of 4,000 bytes each put 512 KiB on each
 * backend's connection ahead of a small request: legit p99 284 ms, against
 * 27 ms at 4,200 bytes. So, while more than one connection is active:
 *
 * - Requests of every size have at most {@link BACKEND_BYTES} per backend
 *   in rotation (the bound) on the backends; past it a connection adds
 *   only up to its part (the bound over the connections active), or one
 *   request when it has none there ({@link ByteBound.fits}).
 * - While the bytes there are past a quarter of BACKEND_BYTES
 *   ({@link ByteBound.spreading}), requests of a connection that holds
 *   more than its part (on the backends and waiting) keep off one backend,
 *   and those of connections within their parts go to it
 *   ({@link ByteBound.spread}), as paced requests keep off one backend
 *   (pacing.ts): a small request then finds few bytes ahead of it,
 *   whatever the others send, while another backend takes theirs.
 *
 * Both count the bytes the backends have not read yet (unread.ts): a
 * request a backend read and sits on delays nothing sent after it. Before,
 * three sleeping requests of 60 KB kept the bytes at the bound, and every
 * request larger than its part waited, then failed (hostile37 K5).
 */
import { BACKEND_BYTES, CLEAR_MS, LARGE_BYTES, PACED_BYTES } from "./share_limits.ts";
import { Unread } from "./unread.ts";
import type { AnswerTime } from "./slots.ts";

/** A backend as placement sees it. */
type Placed = { readonly available: boolean };

/** A client connection's requests on the backends, as the bound sees them. */
export type Mine = { readonly inflight: number; readonly bytes: number };

export class ByteBound {
  /** Bytes of requests of every size on the backends, not read by them yet. */
  readonly unread: Unread;
  /** When a request of a connection within its part was last placed. */
  #lightAt = -Infinity;
  /** The backend kept clear of requests past their parts (see spread). */
  #clear: object | undefined;
  #now: () => number;
  /** Backends in rotation now. */
  #backends: () => number;
  /** Client connections active now. */
  #active: () => number;
  #boundNow = BACKEND_BYTES;
  #countedAt = NaN;

  constructor(
    options: {
      now: () => number;
      backends: () => number;
      active: () => number;
      /** The backends' answers' time (slots.ts). */
      answers: AnswerTime;
    },
  ) {
    this.unread = new Unread(PACED_BYTES, LARGE_BYTES, options.answers);
    this.#now = options.now;
    this.#backends = options.backends;
    this.#active = options.active;
  }

  /**
   * Whether spread() may move requests: the bytes there are past a quarter
   * of one backend's bound and an eighth of the bound (a large pool of
   * workers is not looked through for every request while it is far from
   * its bound). At one backend's bound, 23 % of a small client's requests
   * went while it was not, half of them to the others' backend.
   */
  get spreading(): boolean {
    this.unread.settle(this.#now());
    const bytes = this.unread.bytes;
    return bytes > BACKEND_BYTES / 4 && bytes > this.#bound() / 8;
  }

  /** The bound: BACKEND_BYTES per backend in rotation (counted once per turn of the clock). */
  #bound(): number {
    const now = this.#now();
    if (now !== this.#countedAt) {
      this.#countedAt = now;
      this.#boundNow = BACKEND_BYTES * Math.max(1, this.#backends());
    }
    return this.#boundNow;
  }

  /**
   * Whether a request of `bytes` of a connection holding `mine` fits (others
   * active): in the bound; past it, in the connection's part of it; or,
   * larger than its part, as the connection's only one while the bytes
   * there are under the bound. The parts together are the bound (more for
   * a while as connections come: each took its part of the bound over those
   * active then), so what is there stays within about twice the bound plus
   * one request, a request within its part always goes (when the others'
   * requests larger than their parts could take its room, a client at 1,000
   * requests a second had one at a time on the backends, p50 0.2–1.6 s),
   * and one larger than its part, of a connection with nothing there, goes
   * soon: those past their parts add only within the bound.
   */
  fits(bytes: number, mine: Mine): boolean {
    this.unread.settle(this.#now());
    const there = this.unread.bytes;
    const after = there + bytes;
    if (after <= BACKEND_BYTES) return true;
    const bound = this.#bound();
    if (after <= bound) return true;
    if (mine.bytes + bytes <= bound / Math.max(1, this.#active())) return true;
    return mine.inflight === 0 && there < bound;
  }

  /**
   * Where a request goes instead of `picked` (`avoid` aside), while
   * `spreading`: its connection holds `held` bytes (on the backends and
   * waiting, itself included). One backend is kept clear: the one requests
   * within their parts went to last, while it is available and has at most
   * BACKEND_BYTES, else the available one with the fewest bytes. A request
   * within its part goes to it when `picked` has a quarter of BACKEND_BYTES
   * more; one past its part, while a request within
   * its part was placed within CLEAR_MS, to the available backend with the
   * fewest bytes of the others when `picked` is the clear one. (Keeping off
   * whichever had the fewest bytes at each request let the two backends
   * trade places as the others' bytes drained, and a small request then
   * found theirs ahead of it: 1 in 4 went there, p99 172 ms.)
   */
  spread<B extends Placed>(picked: B, held: number, list: readonly B[], avoid: B | undefined): B {
    const active = this.#active();
    if (active <= 1) return picked;
    const on = this.unread;
    let clear: B | undefined;
    let fewest: B | undefined;
    let least = Infinity;
    for (const b of list) {
      if (b === avoid || !b.available) continue;
      const n = on.on(b);
      if (b === this.#clear && n <= BACKEND_BYTES) clear = b;
      if (n < least) {
        fewest = b;
        least = n;
      }
    }
    if (fewest === undefined) return picked;
    if (clear === undefined) this.#clear = clear = fewest;
    const now = this.#now();
    if (held <= this.#bound() / active) {
      this.#lightAt = now;
      // Runs of light requests stay where the policy put them unless that is well past the clear one.
      return on.on(picked) > on.on(clear) + BACKEND_BYTES / 4 ? clear : picked;
    }
    if (picked !== clear || now - this.#lightAt >= CLEAR_MS) return picked;
    let other: B | undefined;
    least = Infinity;
    for (const b of list) {
      if (b === avoid || b === clear || !b.available) continue;
      const n = on.on(b);
      if (n < least) {
        other = b;
        least = n;
      }
    }
    return other ?? picked;
  }

  /** A request of `bytes` went to `backend` at `at`. */
  took(bytes: number, backend: object, at: number): void {
    this.unread.took(bytes, backend, at);
  }

  /**
   * `n` requests (one unless told; more: each under PACED_BYTES) of `bytes`
   * together sent to `backend` at `at` left it at `now` (-Infinity: never sent).
   */
  gave(bytes: number, backend: object, at: number, now: number, n = 1): void {
    this.unread.gave(bytes, backend, at, now, n);
  }
}

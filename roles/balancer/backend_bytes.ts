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
 * - While the bytes there are past BACKEND_BYTES and half the bound
 *   ({@link ByteBound.spreading}), requests of a connection that holds
 *   more than its part (on the backends and waiting) keep off the backend
 *   with the fewest bytes, and those of connections within their parts go
 *   to it ({@link ByteBound.spread}), as paced requests keep off one
 *   backend (pacing.ts): a small request then finds few bytes ahead of it,
 *   whatever the others send, while another backend takes theirs.
 *
 * The bound counts requests a backend sits on until they are answered or
 * time out (`--timeout`); meanwhile the others go within their parts.
 */
import { BACKEND_BYTES, CLEAR_MS } from "./share_limits.ts";

/** A backend as placement sees it. */
type Placed = { readonly available: boolean };

/** A client connection's requests on the backends, as the bound sees them. */
export type Mine = { readonly inflight: number; readonly bytes: number };

export class ByteBound {
  /** Bytes of requests of every size on the backends. */
  bytes = 0;
  /** Bytes on each backend (only backends with some). */
  #on = new Map<object, number>();
  /** When a request of a connection within its part was last placed. */
  #lightAt = -Infinity;
  #now: () => number;
  /** Backends in rotation now. */
  #backends: () => number;
  /** Client connections active now. */
  #active: () => number;
  #boundNow = BACKEND_BYTES;
  #countedAt = NaN;

  constructor(options: { now: () => number; backends: () => number; active: () => number }) {
    this.#now = options.now;
    this.#backends = options.backends;
    this.#active = options.active;
  }

  /**
   * Whether spread() may move requests: the bytes there are past one
   * backend's bound, and past half the bound (a large pool of workers is
   * not looked through for every request while it is far from its bound).
   */
  get spreading(): boolean {
    return this.bytes > BACKEND_BYTES && this.bytes > this.#bound() / 2;
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
    const after = this.bytes + bytes;
    if (after <= BACKEND_BYTES) return true;
    const bound = this.#bound();
    if (after <= bound) return true;
    if (mine.bytes + bytes <= bound / Math.max(1, this.#active())) return true;
    return mine.inflight === 0 && this.bytes < bound;
  }

  /**
   * Where a request of `bytes` goes instead of `picked` (`avoid` aside),
   * while `spreading`: its connection holds `held` bytes (on the backends
   * and waiting, itself included). Within its part, to the available
   * backend with the fewest bytes when `picked` has more; past it, while a
   * request within its part was placed within CLEAR_MS, off that backend
   * when another is available.
   */
  spread<B extends Placed>(picked: B, held: number, list: readonly B[], avoid: B | undefined): B {
    const active = this.#active();
    if (active <= 1) return picked;
    const on = this.#on;
    let fewest: B | undefined;
    let next: B | undefined;
    let least = Infinity;
    let second = Infinity;
    for (const b of list) {
      if (b === avoid || !b.available) continue;
      const n = on.get(b) ?? 0;
      if (n < least) {
        next = fewest;
        second = least;
        fewest = b;
        least = n;
      } else if (n < second) {
        next = b;
        second = n;
      }
    }
    if (fewest === undefined) return picked;
    const now = this.#now();
    if (held <= this.#bound() / active) {
      this.#lightAt = now;
      return least < (on.get(picked) ?? 0) ? fewest : picked;
    }
    if (picked !== fewest || next === undefined || now - this.#lightAt >= CLEAR_MS) return picked;
    return next;
  }

  /** A request of `bytes` went to `backend`. */
  took(bytes: number, backend: object): void {
    this.bytes += bytes;
    this.#on.set(backend, (this.#on.get(backend) ?? 0) + bytes);
  }

  /** A request of `bytes` left `backend`. */
  gave(bytes: number, backend: object): void {
    this.bytes -= bytes;
    const n = (this.#on.get(backend) ?? 0) - bytes;
    if (n <= 0) this.#on.delete(backend);
    else this.#on.set(backend, n);
  }
}

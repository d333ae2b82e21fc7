/**
 * Who may take a backend slot (hostile32 X10, X6): the rules on top of the
 * shares (shares.ts) that bound what one source holds however it spreads
 * its requests, and that keep requests a backend sits on from holding their
 * client's share.
 *
 * Slots are never taken back: there is no cancel on the wire, and a request
 * whose client left still runs on its backend. So 16 connections that kept
 * 16 `sleep 20000` each outstanding held every slot of two backends
 * (2 × `--max-inflight 128`) before anyone else came, and every other
 * request was OVERLOADED, also after they left. The bound therefore applies
 * when a slot is taken, always (not only while another source is busy):
 *
 * - a quarter of the slots of the backends in rotation ({@link RESERVE_PART})
 *   is a reserve kept for sources holding few: a source holding n requests
 *   may take a slot only while n ÷ {@link RESERVE_HOLD} of the reserve
 *   stays free (all of it from RESERVE_HOLD on), so one holding none may
 *   take the last free slot, and a client alone still uses three quarters;
 * - while other sources have requests in the balancer (on the backends or
 *   waiting), a source holding RESERVE_HOLD or more may take one only up to
 *   its fair part of those three quarters: them ÷ busy sources; and in the
 *   reserve (no more than a quarter free), a source may hold no more than
 *   it got back within the last {@link LONG_MS} to twice that, one if none:
 *   requests that come back quickly turn slots over, those that sit hold
 *   them (20 or more addresses, each holding a few slow requests, drained
 *   the reserve: each newcomer took n of it while n ÷ RESERVE_HOLD stayed
 *   free, hostile33's review; now such a source takes one).
 *
 * A request on a backend for {@link LONG_MS} or more counts
 * {@link LONG_WEIGHT} times in what its source holds: slow requests are what
 * hold slots for long. (HAProxy bounds a server's connections with maxconn
 * and queues the rest; Envoy's circuit breakers bound a cluster's requests:
 * neither bounds a source, which is what a shared balancer must do here.)
 *
 * Requests sent to a backend more than {@link STUCK_MS} to 2 × STUCK_MS
 * ago stop counting in their connection's share (not in their source's)
 * while the backends answer in under STUCK_MS ÷ {@link STUCK_FACTOR} on
 * average: a backend that leaves some requests unanswered is the backend's
 * fault, and counting them kept the connection's other requests waiting
 * (for `--queue-timeout`, then OVERLOADED) while other backends idled (X6).
 * When answers are slow anyway (the backends loaded, or slow requests), a
 * share counts every request, as before: the shares keep the pipelining
 * clients in their place under load.
 */

/** A source holding this many requests (long ones weighted) leaves all the reserve free. */
export const RESERVE_HOLD = 16;
/** One slot in this many of the backends' in rotation is kept from sources holding more. */
export const RESERVE_PART = 4;
/** A request on a backend this long (up to twice) counts LONG_WEIGHT times in its source's hold (ms). */
export const LONG_MS = 1000;
export const LONG_WEIGHT = 2;
/** A request on a backend this long (up to twice) no longer counts in its connection's share (ms). */
export const STUCK_MS = 50;
/** Requests are told stuck only while the backends answer this many times faster on average. */
export const STUCK_FACTOR = 4;

/**
 * Requests held on the backends, and how many of them were sent at least
 * `ms` ago (at most 2 × `ms`: two buckets of send times, so a request costs
 * a few operations, not a timer or a list).
 */
export class Held {
  /** Requests on the backends now. */
  inflight = 0;
  #ms: number;
  /** The bucket of send times `#cur` counts (time ÷ ms). */
  #epoch = 0;
  /** The time of the last roll. */
  #rolledAt = NaN;
  #cur = 0;
  #prev = 0;

  constructor(ms: number) {
    this.#ms = ms;
  }

  /** One more, sent at `now`. */
  took(now: number): void {
    this.inflight++;
    this.#roll(now);
    this.#cur++;
  }

  /** `n` (one unless told) sent at `sentAt` ended at `now`. */
  gave(sentAt: number, now: number, n = 1): void {
    this.inflight -= n;
    this.#roll(now);
    const e = Math.floor(sentAt / this.#ms);
    if (e === this.#epoch) this.#cur -= n;
    else if (e === this.#epoch - 1) this.#prev -= n;
  }

  /** Of those on the backends, sent at least `ms` ago. */
  old(now: number): number {
    this.#roll(now);
    return this.inflight - this.#cur - this.#prev;
  }

  /** Whether any will be old later without an answer (when to look again). */
  get young(): number {
    return this.#cur + this.#prev;
  }

  #roll(now: number): void {
    // Read many times a turn at one time (the turn clock): a compare, not a division.
    if (now === this.#rolledAt) return;
    this.#rolledAt = now;
    const e = Math.floor(now / this.#ms);
    if (e === this.#epoch) return;
    this.#prev = e === this.#epoch + 1 ? this.#cur : 0;
    this.#cur = 0;
    this.#epoch = e;
  }
}

/**
 * The sources of one network (an IPv4 /24, an IPv6 /48: redial_nets.ts
 * networkOf) together: how many hold requests on the backends
 * (source_book.ts netRoom).
 */
export class NetShare {
  /** Its sources holding requests on the backends. */
  holders = 0;
  sources = 0;
  /** Requests its light sources took past the network's rule (source_book.ts netRoom). */
  light = 0;
  /** What its sources that left had shown (SourceShare quick, slowAt), by source, the newest last. */
  readonly left = new Map<string, [number, number]>();
  constructor(readonly key: string) {}
}

/**
 * The requests of one source's connections (a peer address, or an
 * authenticated user) on the backends (`inflight`, long ones told apart:
 * slots.ts).
 */
export class SourceShare extends Held {
  /** Its network, when it is an IPv4 address (source_book.ts). */
  net: NetShare | undefined;
  /** Its requests waiting in the queue. */
  waiting = 0;
  /** The bytes of its requests on the backends. */
  bytes = 0;
  /** Its connections known to the shares (active within ACTIVE_MS). */
  connections = 0;
  /** Requests it got back within LONG_MS since it last got back a longer one (netRoom). */
  quick = 0;
  /** When it last got back one held LONG_MS or more. */
  slowAt = -Infinity;
  /** Of its requests on the backends, those taken past its network's rule, at most (netRoom). */
  light = 0;
  /** Whether its next request taken is one of those (netRoom let it go past the rule). */
  lightNext = false;
  /** Requests it got back (answered, lost, timed out) in this LONG_MS and the last. */
  #back = [0, 0];
  #backEpoch = 0;
  constructor(readonly key: string) {
    super(LONG_MS);
  }

  override took(now: number): void {
    const net = this.net;
    if (this.inflight === 0 && net !== undefined) net.holders++;
    super.took(now);
    if (this.lightNext && net !== undefined) {
      this.lightNext = false;
      this.light++;
      net.light++;
    }
  }

  override gave(sentAt: number, now: number, n = 1): void {
    super.gave(sentAt, now, n);
    if (now - sentAt < LONG_MS) this.quick += n;
    else {
      this.slowAt = now;
      this.quick = 0;
    }
    const net = this.net;
    if (net !== undefined) {
      if (this.inflight === 0) net.holders--;
      // Those taken past the rule are counted as the last to come back (an upper bound).
      if (this.light > this.inflight) {
        net.light -= this.light - this.inflight;
        this.light = this.inflight;
      }
    }
    this.#rollBack(now);
    this.#back[0] += n;
  }

  /** Requests it got back within the last LONG_MS to 2 × LONG_MS. */
  back(now: number): number {
    this.#rollBack(now);
    return this.#back[0] + this.#back[1];
  }

  #rollBack(now: number): void {
    const e = Math.floor(now / LONG_MS);
    if (e === this.#backEpoch) return;
    this.#back[1] = e === this.#backEpoch + 1 ? this.#back[0] : 0;
    this.#back[0] = 0;
    this.#backEpoch = e;
  }
}

/**
 * One client connection's requests on the backends (`inflight`; those on a
 * backend for STUCK_MS no longer count in its share: slots.ts).
 */
export class ClientShare extends Held {
  /** Their bytes. */
  bytes = 0;
  /** When it last sent a request (the dispatcher's clock). */
  lastAt = 0;
  /** Its requests waiting in the queue. */
  waiting = 0;
  /** Whether its client leaves its answers unread (allowance.ts), as found at `unreadAt`. */
  unread = false;
  unreadAt = NaN;
  constructor(readonly key: object, readonly source: SourceShare | undefined) {
    super(STUCK_MS);
  }
}

/**
 * The backends' answers' time: a moving average over about 16 answers (ms),
 * of requests answered, timed out or lost (one never sent has none). What
 * the shares count as sitting (Sitting) and what unread.ts takes for read
 * both go by it.
 */
export class AnswerTime {
  ms = 0;
  /**
   * The figure after the first of the last answers added: the figures
   * between move one way, so they are all between this and `ms`.
   */
  first = 0;

  /** `n` answers (one unless told) that each took `ms` (one at a time: the same figure as n calls). */
  add(ms: number, n = 1): void {
    let avg = this.ms + (ms - this.ms) / 16;
    this.first = avg;
    for (let i = 1; i < n; i++) avg += (ms - avg) / 16;
    this.ms = avg;
  }
}

/** Requests stuck on a backend from which new ones go to another (see Sitting). */
export const STUCK_AVOID = 4;

/**
 * Requests sitting on the backends: on one for STUCK_MS or more while the
 * backends answer in under STUCK_MS ÷ STUCK_FACTOR on average, or while
 * nothing sent lately is on them (all that is there sits). Those no longer
 * count in their connection's share (see the top of this file), and a
 * backend that leaves requests unanswered while its peers answer quickly
 * gets new requests only when no other has at most half as many sitting
 * ({@link STUCK_AVOID} or more), so it does not gather more and more of
 * them until `--timeout` (hostile32 X6: the one answering every other
 * request filled its 128 slots with requests that all timed out). Slow
 * requests on every backend alike change nothing.
 */
export class Sitting {
  /** The backends' answers' time (shared with unread.ts). */
  readonly #answers: AnswerTime;
  /** Every request on the backends. */
  #all = new Held(STUCK_MS);
  /** Those on each backend (weak: backends come and go, and are never listed here). */
  #on = new WeakMap<object, Held>();
  /** The backend looked up last, and its Held: a run of requests goes to one backend (runs.ts). */
  #lastOn: object | undefined;
  #lastHeld: Held | undefined;

  constructor(answers: AnswerTime) {
    this.#answers = answers;
  }

  took(backend: object, now: number): void {
    this.#all.took(now);
    let held = this.#held(backend);
    if (held === undefined) {
      this.#on.set(backend, held = new Held(STUCK_MS));
      this.#lastOn = backend;
      this.#lastHeld = held;
    }
    held.took(now);
  }

  /** `n` (one unless told) sent to `backend` at `sentAt` ended at `now`. */
  gave(backend: object, sentAt: number, now: number, n = 1): void {
    this.#all.gave(sentAt, now, n);
    this.#held(backend)?.gave(sentAt, now, n);
  }

  #held(backend: object): Held | undefined {
    if (backend === this.#lastOn) return this.#lastHeld;
    const held = this.#on.get(backend);
    if (held !== undefined) {
      this.#lastOn = backend;
      this.#lastHeld = held;
    }
    return held;
  }

  /** Requests on `backend` sent less than STUCK_MS (up to twice) ago: what it is working on. */
  young(backend: object, now: number): number {
    const held = this.#held(backend);
    return held === undefined ? 0 : held.inflight - held.old(now);
  }

  /** Whether requests on a backend for STUCK_MS are taken for stuck now. */
  #now(now: number): boolean {
    return this.#answers.ms * STUCK_FACTOR < STUCK_MS || this.#all.old(now) === this.#all.inflight;
  }

  /** Of `held`, those stuck now. */
  stuck(held: Held, now: number): number {
    return this.#now(now) ? held.old(now) : 0;
  }

  /**
   * `picked`, or when STUCK_AVOID or more requests are stuck on it, the
   * available backend of `list` (not `avoid`) with the fewest stuck, if that
   * is at most half as many.
   */
  elsewhere<B extends { readonly available: boolean }>(
    picked: B,
    list: readonly B[],
    avoid: B | undefined,
    now: number,
  ): B {
    const held = this.#held(picked);
    if (held === undefined || held.inflight < STUCK_AVOID) return picked;
    const stuck = this.stuck(held, now);
    if (stuck < STUCK_AVOID) return picked;
    let best = picked;
    let fewest = stuck;
    for (const b of list) {
      if (b === picked || b === avoid || !b.available) continue;
      const n = this.#on.get(b)?.old(now) ?? 0;
      if (n * 2 <= stuck && n < fewest) {
        best = b;
        fewest = n;
      }
    }
    return best;
  }
}

/** Whether `group` (of parked flows: forward.ts) is a source holding fewer than RESERVE_HOLD. */
export function holdsLittle(group: object): boolean {
  return group instanceof SourceShare && group.inflight < RESERVE_HOLD;
}

/** What a source holds, long requests counting LONG_WEIGHT times. */
export function weighted(held: Held, now: number): number {
  return held.inflight + (LONG_WEIGHT - 1) * held.old(now);
}

/**
 * Whether a source holding `held` may take a slot now.
 * @param used requests on the backends, of every source
 * @param capacity slots of the backends in rotation
 * @param busy sources with requests in the balancer (on the backends or waiting), itself included
 */
export function mayHold(
  held: SourceShare,
  now: number,
  slots: { used: number; capacity: number; busy: number },
): boolean {
  const { used, capacity, busy } = slots;
  const reserve = Math.floor(capacity / RESERVE_PART);
  const w = weighted(held, now);
  const free = capacity - used;
  // Slots it must leave free: a part of the reserve as large as its part of RESERVE_HOLD.
  if (free - 1 < Math.floor(reserve * Math.min(w, RESERVE_HOLD) / RESERVE_HOLD)) return false;
  if (busy <= 1) return true;
  // In the reserve, no more than it got back lately (one if none).
  if (free <= reserve && w >= Math.max(1, held.back(now))) return false;
  return w < Math.max(RESERVE_HOLD, Math.ceil((capacity - reserve) / busy));
}

/**
 * Per-connection shares of the backends' in-flight slots (issue 16).
 *
 * The fair queue (queue.ts) decides whose waiting request goes next, but a
 * request sent to a backend waits there behind every request already on
 * that connection: a client that pipelines without reading kept every slot
 * of every backend full (128 each), and a legitimate request, sent at its
 * turn, still waited behind a few hundred of the attacker's. So while more
 * than one client connection is active (a request taken within the last
 * {@link ACTIVE_MS}), each may have at most {@link CONTENDED_SHARE} requests
 * on the backends; the rest wait in its line of the fair queue. A client
 * alone may use every slot.
 */

/** Requests one client connection may have on the backends while others are active. */
export const CONTENDED_SHARE = 16;
/** How long a connection counts as active after its last request (ms). */
export const ACTIVE_MS = 1000;

/** One client connection's requests on the backends. */
export class ClientShare {
  /** Requests of it on backends now. */
  inflight = 0;
  /** When it last sent a request (the dispatcher's clock). */
  lastAt = 0;
  constructor(readonly key: object) {}
}

const SHARED_KEY = {};

export class Shares {
  readonly contended: number;
  #byKey = new Map<object, ClientShare>();
  /** The share `of` gave last (still in #byKey). */
  #last: ClientShare | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #now: () => number;
  #waiting: (key: object) => boolean;

  /**
   * @param waiting whether a connection has requests waiting (its share is
   * kept until they are sent)
   */
  constructor(
    options: { contended?: number; now: () => number; waiting: (key: object) => boolean },
  ) {
    this.contended = options.contended ?? CONTENDED_SHARE;
    this.#now = options.now;
    this.#waiting = options.waiting;
  }

  /** Connections active now. */
  get active(): number {
    return this.#byKey.size;
  }

  /** The share of the connection `key` (undefined: one shared by connection-less jobs). */
  of(key: object | undefined): ClientShare {
    const k = key ?? SHARED_KEY;
    // Requests come in runs from one connection (one read, many frames).
    if (this.#last?.key === k) return this.#last;
    let share = this.#byKey.get(k);
    if (share === undefined) {
      share = new ClientShare(k);
      this.#byKey.set(k, share);
      if (this.#timer === undefined) {
        this.#timer = setInterval(() => this.#sweep(), ACTIVE_MS);
        Deno.unrefTimer(this.#timer);
      }
    }
    return this.#last = share;
  }

  /** Whether a request of `share`'s connection may go to a backend now. */
  mayTake(share: ClientShare): boolean {
    return share.inflight < this.contended || this.#byKey.size <= 1;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Forgets connections idle for ACTIVE_MS: nothing on backends, nothing waiting. */
  #sweep(): void {
    const before = this.#now() - ACTIVE_MS;
    for (const [key, share] of this.#byKey) {
      if (share.inflight === 0 && share.lastAt < before && !this.#waiting(key)) {
        this.#byKey.delete(key);
        if (this.#last === share) this.#last = undefined;
      }
    }
    if (this.#byKey.size === 0) this.stop();
  }
}

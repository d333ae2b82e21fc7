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
 *
 * A share still let four pipelining clients hold 64 requests on the
 * backends beside a legitimate client's 8: its requests waited behind them,
 * and the attackers' requests took the CPU of the balancer and the servers
 * (a 2-core machine here), so it got a fifth of its throughput. So a
 * connection that holds more than {@link BULK_DEPTH} shares (on the backends
 * and waiting) is a bulk flow, and bulk flows yield to the others: while a
 * connection within that depth is busy (a request on the backends, or one
 * answered within {@link LIGHT_GRACE_MS}), bulk flows together get one
 * request to a backend for every {@link LIGHT_PER_BULK} of the others', at
 * most one at once for every LIGHT_PER_BULK of theirs there (at least one).
 * When none is busy, bulk flows share the backends, each within its share.
 * This is fq_codel's priority of sparse flows over bulk ones, by connection.
 * A client slow to read for a moment holds a few shares at most; one that
 * pipelines without reading holds the wire's limit (256).
 *
 * Shares by connection alone let a client spread over connections take a
 * share on each: sixteen connections of 64 requests each held 256 slots, and
 * none was a bulk flow. So the connections of one source (a peer address, or
 * an authenticated user) count together too, but only while another source
 * has requests in the balancer (or had one answered within the grace): many
 * clients behind one address (a NAT, every test on loopback) are one source,
 * and alone they are limited by connection only. Then a source's connections
 * together may have {@link SOURCE_OUT} shares on the backends, and those
 * holding more than {@link SOURCE_DEPTH} shares (on the backends and
 * waiting) are bulk flows: what one connection may hold, plus one share.
 */

/** Requests one client connection may have on the backends while others are active. */
export const CONTENDED_SHARE = 16;
/** How long a connection counts as active after its last request (ms). */
export const ACTIVE_MS = 1000;
/** Shares a connection may hold (on the backends and waiting) before it is a bulk flow. */
export const BULK_DEPTH = 4;
/** Shares the connections of one source may have on the backends while another source is busy. */
export const SOURCE_OUT = 2;
/** Shares the connections of one source may hold before they are bulk flows (another busy). */
export const SOURCE_DEPTH = BULK_DEPTH + 1;
/** Requests of other connections sent for each one of bulk flows, while those are busy. */
export const LIGHT_PER_BULK = 8;
/** Most bulk requests that others' may have earned ahead (a burst of bulk beside them). */
const MAX_CREDIT = 2;
/**
 * How long after a request of a connection that is not a bulk flow was
 * answered bulk flows still yield (ms): a client has nothing on the backends
 * between an answer and its next request, longer when its machine is busy.
 */
export const LIGHT_GRACE_MS = 50;

/** What {@link Shares.admit} allows a waiting request. */
export enum Admit {
  /** Not now: its connection has its share, or bulk flows have theirs. */
  No,
  /** As a request of a connection that is not a bulk flow. */
  Light,
  /** As a request of a bulk flow (counted against the bulk flows' allowance). */
  Bulk,
}

/** The requests of one source's connections (a peer address, or an authenticated user). */
export class SourceShare {
  /** Its requests on the backends. */
  inflight = 0;
  /** Its requests waiting in the queue. */
  waiting = 0;
  /** Its connections known to the shares (active within ACTIVE_MS). */
  connections = 0;
  constructor(readonly key: string) {}
}

/** One client connection's requests on the backends. */
export class ClientShare {
  /** Requests of it on backends now. */
  inflight = 0;
  /** When it last sent a request (the dispatcher's clock). */
  lastAt = 0;
  constructor(readonly key: object, readonly source: SourceShare | undefined) {}
}

const SHARED_KEY = {};

export class Shares {
  readonly contended: number;
  /** Requests on the backends, of every connection. */
  inflight = 0;
  /** Of them, sent for bulk flows. */
  bulk = 0;
  /** Bulk requests earned by others sent (1/LIGHT_PER_BULK each, up to MAX_CREDIT). */
  #credit = 0;
  /** Set while a pump is due once the grace passes (see `admit`). */
  #graceTimer: ReturnType<typeof setTimeout> | undefined;
  #wake: () => void;
  /** When a request of a connection within its share was last answered. */
  #lightAt = -Infinity;
  #byKey = new Map<object, ClientShare>();
  #sources = new Map<string, SourceShare>();
  /** Sources with requests in the balancer (on the backends or waiting). */
  #busySources = 0;
  /** The two sources that last went idle, and when (another within the grace counts as busy). */
  #idle: [SourceShare | undefined, number, SourceShare | undefined, number] = [
    undefined,
    -Infinity,
    undefined,
    -Infinity,
  ];
  #sourceOf: ((key: object) => string | undefined) | undefined;
  /** The share `of` gave last (still in #byKey). */
  #last: ClientShare | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #now: () => number;
  #waiting: (key: object) => boolean;

  /**
   * @param waiting whether a connection has requests waiting (its share is
   * kept until they are sent)
   * @param wake called when bulk flows held back for the grace may go
   * @param sourceOf the source of a connection (undefined: its own)
   */
  constructor(
    options: {
      contended?: number;
      now: () => number;
      waiting: (key: object) => boolean;
      wake: () => void;
      sourceOf?: (key: object) => string | undefined;
    },
  ) {
    this.contended = options.contended ?? CONTENDED_SHARE;
    this.#now = options.now;
    this.#waiting = options.waiting;
    this.#wake = options.wake;
    this.#sourceOf = options.sourceOf;
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
      share = new ClientShare(k, key === undefined ? undefined : this.#sourceFor(key));
      this.#byKey.set(k, share);
      if (this.#timer === undefined) {
        this.#timer = setInterval(() => this.#sweep(), ACTIVE_MS);
        Deno.unrefTimer(this.#timer);
      }
    }
    return this.#last = share;
  }

  /**
   * Whether a request of `share`'s connection, with nothing of it waiting,
   * may go to a backend now (as a request within its share).
   */
  mayTake(share: ClientShare): boolean {
    if (this.#byKey.size <= 1) return true;
    if (share.inflight >= this.contended) return false;
    const source = share.source;
    return source === undefined || source.connections <= 1 ||
      source.inflight < SOURCE_OUT * this.contended || !this.#othersBusy(source);
  }

  /**
   * Whether the head of `share`'s line may go to a backend now, and as what.
   * @param waiting requests of that connection waiting, the head included
   */
  admit(share: ClientShare, waiting: number): Admit {
    if (this.#byKey.size <= 1) return Admit.Light;
    if (share.inflight >= this.contended) return Admit.No;
    let light = share.inflight + waiting <= BULK_DEPTH * this.contended;
    const source = share.source;
    if (source !== undefined && source.connections > 1 && this.#othersBusy(source)) {
      if (source.inflight >= SOURCE_OUT * this.contended) return Admit.No;
      if (source.inflight + source.waiting > SOURCE_DEPTH * this.contended) light = false;
    }
    if (light) return Admit.Light;
    return this.#bulk();
  }

  /** Whether a request of a bulk flow may go now. */
  #bulk(): Admit {
    const light = this.inflight - this.bulk;
    if (light === 0) {
      const wait = this.#lightAt + LIGHT_GRACE_MS - this.#now();
      if (wait <= 0) return Admit.Bulk;
      // Nothing may come to pump the line when the grace ends.
      if (this.bulk === 0 && this.#graceTimer === undefined) {
        this.#graceTimer = setTimeout(() => {
          this.#graceTimer = undefined;
          this.#wake();
        }, wait + 1);
      }
    }
    return this.#credit >= 1 && this.bulk < Math.max(1, (light / LIGHT_PER_BULK) | 0)
      ? Admit.Bulk
      : Admit.No;
  }

  /** A request of `share` went to a backend (`bulk`: as a bulk flow's). */
  took(share: ClientShare, bulk: boolean): void {
    share.inflight++;
    this.inflight++;
    const source = share.source;
    if (source !== undefined && source.inflight++ + source.waiting === 0) this.#busySources++;
    if (bulk) {
      this.bulk++;
      this.#credit = this.#credit > 1 ? this.#credit - 1 : 0;
    } else if (this.#credit < MAX_CREDIT) this.#credit += 1 / LIGHT_PER_BULK;
  }

  /**
   * A request of `share` sent as `bulk` left its backend at `now` (the
   * dispatcher's clock; -Infinity: it was never sent).
   */
  gave(share: ClientShare, bulk: boolean, now: number): void {
    share.inflight--;
    this.inflight--;
    const source = share.source;
    if (source !== undefined && --source.inflight + source.waiting === 0) {
      this.#wentIdle(source, now > -Infinity ? now : this.#now());
    }
    if (bulk) this.bulk--;
    else if (now > this.#lightAt) this.#lightAt = now;
  }

  /** A request of `share` began (1) or stopped (-1) waiting in the queue. */
  queued(share: ClientShare, n: 1 | -1): void {
    const source = share.source;
    if (source === undefined) return;
    const before = source.inflight + source.waiting;
    source.waiting += n;
    if (before === 0) this.#busySources++;
    else if (before + n === 0) this.#wentIdle(source, this.#now());
  }

  /** Whether a source other than `source` has requests in, or had within the grace. */
  #othersBusy(source: SourceShare): boolean {
    const mine = source.inflight + source.waiting > 0 ? 1 : 0;
    if (this.#busySources > mine) return true;
    const idle = this.#idle;
    const other = idle[0] !== source ? idle[1] : idle[3];
    return other > -Infinity && this.#now() - other < LIGHT_GRACE_MS;
  }

  #wentIdle(source: SourceShare, now: number): void {
    this.#busySources--;
    const idle = this.#idle;
    // Keeps the last two distinct sources, newest first.
    if (idle[0] !== source) {
      idle[2] = idle[0];
      idle[3] = idle[1];
      idle[0] = source;
    }
    idle[1] = now;
  }

  #sourceFor(key: object): SourceShare | undefined {
    const name = this.#sourceOf?.(key);
    if (name === undefined) return undefined;
    let source = this.#sources.get(name);
    if (source === undefined) {
      source = new SourceShare(name);
      this.#sources.set(name, source);
    }
    source.connections++;
    return source;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    clearTimeout(this.#graceTimer);
    this.#graceTimer = undefined;
  }

  /** Forgets connections idle for ACTIVE_MS: nothing on backends, nothing waiting. */
  #sweep(): void {
    const before = this.#now() - ACTIVE_MS;
    for (const [key, share] of this.#byKey) {
      if (share.inflight === 0 && share.lastAt < before && !this.#waiting(key)) {
        this.#byKey.delete(key);
        if (this.#last === share) this.#last = undefined;
        const source = share.source;
        if (source !== undefined && --source.connections === 0) {
          this.#sources.delete(source.key);
          if (this.#idle[0] === source) this.#idle[0] = undefined;
          if (this.#idle[2] === source) this.#idle[2] = undefined;
        }
      }
    }
    if (this.#byKey.size === 0) this.stop();
  }
}

/**
 * The gate's memory of failures: per host and claimed user (a record), how
 * many hellos failed lately and how many are being checked or held; per
 * host, how many are held before their refusal; and the delay a failure
 * costs (see gate.ts's module comment).
 */

/** How failures are slowed (see the module comment). */
export interface DelayOptions {
  baseMs: number;
  maxDelayMs: number;
  forgetMs: number;
  maxBusy: number;
  /** Hellos of one host held before their refusal, past which its records with failures go unchecked. */
  maxHostHeld: number;
  maxAddresses: number;
}

export const DEFAULT_DELAYS: DelayOptions = Object.freeze({
  baseMs: 250,
  maxDelayMs: 10_000,
  forgetMs: 60_000,
  maxBusy: 16,
  maxHostHeld: 64,
  maxAddresses: 10_000,
});

/** An address and claimed user with hellos in progress or recent failures. */
export interface AddressRecord {
  host: string;
  failures: number;
  last: number;
  /** Its hellos being checked or held before their refusal. */
  busy: number;
  /** Guessable checks made while flooded (see FailureRecords.mayGuess), and since when. */
  guesses?: number;
  guessedAt?: number;
  /** Until when it stays flooded though its hellos are fewer than the cap (see FailureRecords.flooded). */
  floodedUntil?: number;
}

/** See the module comment. */
export class FailureRecords {
  #options: DelayOptions;
  #now: () => number;
  #map = new Map<string, AddressRecord>();
  /** Hellos held before their refusal, by host. */
  #held = new Map<string, number>();
  /** Failures by host, whatever they claimed (see failed). */
  #byHost = new Map<string, { failures: number; last: number }>();

  constructor(options: Partial<DelayOptions> | undefined, now: () => number) {
    this.#options = { ...DEFAULT_DELAYS, ...options };
    this.#now = now;
  }

  /** Hosts with a record. */
  hosts(): number {
    const hosts = new Set<string>();
    for (const r of this.#map.values()) hosts.add(r.host);
    return hosts.size;
  }

  /** The delay before the next check of a record with `failures` failures (ms). */
  delayAfter(failures: number): number {
    if (failures <= 0) return 0;
    return Math.min(this.#options.baseMs * 2 ** (failures - 1), this.#options.maxDelayMs);
  }

  /** Hellos of `host` held before their refusal. */
  held(host: string): number {
    return this.#held.get(host) ?? 0;
  }

  /**
   * Whether a hello of record `r` (from `host`) gets only the checks a
   * guess cannot pass: the record has failures, and it or its host holds
   * too many hellos already, or did so less than a delay of its failures
   * ago. A record without failures is never flooded. The delay keeps a
   * flood's guesses on the flooded path, within mayGuess's budget, while
   * one of its held hellos is answered and sent again (under load, in
   * that moment the right proof took the ordinary check and was let in
   * after 100 guesses in 514 ms: a guesser wins nothing by pausing).
   */
  flooded(r: AddressRecord, host: string): boolean {
    if (r.failures === 0) return false;
    const now = this.#now();
    if (r.busy >= this.#options.maxBusy || this.held(host) >= this.#options.maxHostHeld) {
      r.floodedUntil = now + this.delayAfter(r.failures);
      return true;
    }
    return now < (r.floodedUntil ?? -Infinity);
  }

  /**
   * Whether a flooded record may have one more check a guess could pass (a password that
   * succeeded lately): at most maxBusy per delay of its failures, as held hellos would have
   * (h46d D1: the flooded path answered every guess at once, 300 in 147 ms, the right one let in).
   */
  mayGuess(r: AddressRecord): boolean {
    const now = this.#now();
    if (now - (r.guessedAt ?? -Infinity) >= this.delayAfter(r.failures)) {
      r.guessedAt = now;
      r.guesses = 0;
    }
    r.guesses = (r.guesses ?? 0) + 1;
    return r.guesses <= this.#options.maxBusy;
  }

  /**
   * Counts a failure of record `r`, from `host`: the record's own (its
   * throttle and delay) and the host's, whatever name it claimed (which
   * lane a made-up name hashes in: {@link hostFailing}).
   */
  failed(r: AddressRecord, host: string): void {
    const now = this.#now();
    r.failures++;
    r.last = now;
    const failures = this.#hostFailures(host) + 1;
    this.#byHost.delete(host); // Kept in order of last failure: the oldest goes first.
    this.#byHost.set(host, { failures, last: now });
    if (this.#byHost.size > this.#options.maxAddresses) {
      this.#byHost.delete(this.#byHost.keys().next().value!);
    }
  }

  /** Whether `host` holds its most hellos before their refusal (its cap: maxHostHeld). */
  hostFlooded(host: string): boolean {
    return this.held(host) >= this.#options.maxHostHeld;
  }

  /** Whether hellos of `host` failed lately, whatever they claimed. */
  hostFailing(host: string): boolean {
    return this.#hostFailures(host) > 0;
  }

  /** Recent failures of hellos from `host`, whatever they claimed. */
  #hostFailures(host: string): number {
    const seen = this.#byHost.get(host);
    return seen !== undefined && this.#now() - seen.last <= this.#options.forgetMs
      ? seen.failures
      : 0;
  }

  /** Holds a refused hello of `host` for `ms` (or until its connection closes), counted. */
  async hold(host: string, ms: number, closed: Promise<unknown>): Promise<void> {
    this.#held.set(host, this.held(host) + 1);
    try {
      await untilOrClosed(ms, closed);
    } finally {
      const left = this.held(host) - 1;
      if (left > 0) this.#held.set(host, left);
      else this.#held.delete(host);
    }
  }

  /** Forgets record `key` once nothing is in progress and nothing failed. */
  release(key: string, r: AddressRecord): void {
    if (r.busy === 0 && r.failures === 0) this.#map.delete(key);
  }

  /** The record of an address and user (made if missing), its failures forgotten once stale. */
  get(key: string, host: string): AddressRecord {
    let r = this.#map.get(key);
    if (r !== undefined && r.failures > 0 && this.#now() - r.last > this.#options.forgetMs) {
      r.failures = 0;
    }
    if (r === undefined) {
      r = { host, failures: 0, last: 0, busy: 0 };
      this.#map.set(key, r);
      if (this.#map.size > this.#options.maxAddresses) this.#evict();
    }
    return r;
  }

  /** Forgets the address idle longest (its record is dropped; it keeps what it holds). */
  #evict(): void {
    let oldest: string | undefined;
    let at = Infinity;
    for (const [key, r] of this.#map) {
      if (r.busy === 0 && r.last < at) [oldest, at] = [key, r.last];
    }
    if (oldest !== undefined) this.#map.delete(oldest);
  }
}

/** Waits `ms`, or less when `closed` resolves first (the dialer has gone: nobody to answer). */
function untilOrClosed(ms: number, closed: Promise<unknown>): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    closed.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

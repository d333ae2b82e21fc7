/**
 * One backoff and one abortable sleep for everything that retries: the
 * redialers (wire/redial.ts, the balancer's server links, the binders'
 * watch and registration loops) and the listener's accept loop.
 */

/**
 * Resolves after `ms`, or at once when `signal` aborts (never rejects, so a
 * loop that sleeps between tries ends by checking its signal, not by catching).
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}

/**
 * A sleep that can be cut short from outside without ending the loop that
 * sleeps: `wake()` ends the current (or next) nap, as when a connection
 * drops and should be redialed now rather than at the next check.
 */
export class Nap {
  #wake: AbortController | undefined;

  /** Resolves after `ms`, or at once on `wake()` or when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    const wake = this.#wake = new AbortController();
    return sleep(ms, signal === undefined ? wake.signal : AbortSignal.any([wake.signal, signal]));
  }

  /** Ends the nap in progress, if any. */
  wake(): void {
    this.#wake?.abort();
  }
}

/** Options of a Backoff. */
export interface BackoffOptions {
  /** First wait (ms). */
  min: number;
  /** Longest wait (ms). */
  max: number;
  /**
   * Each wait is spread by ± this fraction (0.2: 80% to 120%), so many
   * clients that lost the same server do not all come back in step. Default 0.
   */
  jitter?: number;
}

/**
 * Exponential backoff: waits of min, 2 × min, 4 × min … up to max, each
 * spread by the jitter; `reset()` after a success starts again from min.
 */
export class Backoff {
  /** First wait (ms). */
  readonly min: number;
  /** Longest wait (ms). */
  readonly max: number;
  #jitter: number;
  #next: number;

  /**
   * A backoff from `options`.
   * @param options first and longest wait, and the jitter
   */
  constructor(options: BackoffOptions) {
    this.min = options.min;
    this.max = options.max;
    this.#jitter = options.jitter ?? 0;
    this.#next = options.min;
  }

  /** The wait `next()` will return next, before jitter (ms). */
  get current(): number {
    return this.#next;
  }

  /** The wait before the next try (ms); the one after it doubles, up to max. */
  next(): number {
    const base = this.#next;
    this.#next = Math.min(base * 2, this.max);
    return this.#jitter === 0 ? base : base * (1 - this.#jitter + Math.random() * 2 * this.#jitter);
  }

  /** A success: the next wait is min again. */
  reset(): void {
    this.#next = this.min;
  }
}

/**
 * Whether an accept failed because its connection was gone before it was
 * taken (reset or aborted in the listen queue: Deno reads the peer's
 * address after accept4, which then fails ENOTCONN). That is the client's
 * business and used up only that connection, so the next accept goes at
 * once: backing off on it let 50 resets a second hold every accept to one a
 * second (hostile44c H-C1). The backoff is for the process's own limits
 * (EMFILE, ENFILE, ENOBUFS).
 */
export function goneBeforeAccept(err: unknown): boolean {
  return err instanceof Deno.errors.NotConnected ||
    err instanceof Deno.errors.ConnectionAborted ||
    err instanceof Deno.errors.ConnectionReset;
}

/**
 * The retry budget of the balancer's failover (forward.ts): how many
 * requests may be sent again after their backend died.
 */

/**
 * Limits retries to a share of recent traffic so that a dying cluster is
 * not hammered with replays: every request deposits `ratio` of a retry,
 * `minPerSecond` retries a second are always allowed (a quiet balancer can
 * still fail over), and the balance never exceeds `max`. The token bucket of
 * Finagle's RetryBudget and Envoy's retry budget.
 */
export class RetryBudget {
  readonly ratio: number;
  readonly minPerSecond: number;
  readonly max: number;
  #tokens: number;
  #last: number;
  #now: () => number;

  constructor(
    options: { ratio?: number; minPerSecond?: number; max?: number; now?: () => number } = {},
  ) {
    this.ratio = options.ratio ?? 0.2;
    this.minPerSecond = options.minPerSecond ?? 10;
    this.max = Math.max(options.max ?? 1000, this.minPerSecond);
    this.#now = options.now ?? (() => performance.now());
    this.#tokens = this.minPerSecond;
    this.#last = this.#now();
  }

  /** Retries allowed now. */
  get balance(): number {
    this.#refill();
    return this.#tokens;
  }

  /** A new request arrived. */
  deposit(): void {
    this.#tokens = Math.min(this.max, this.#tokens + this.ratio);
  }

  /** Takes one retry. @returns false when the budget is spent. */
  withdraw(): boolean {
    this.#refill();
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  #refill(): void {
    const now = this.#now();
    const add = ((now - this.#last) / 1000) * this.minPerSecond;
    this.#last = now;
    this.#tokens = Math.min(this.max, this.#tokens + add);
  }
}

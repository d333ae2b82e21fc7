/**
 * Rates from counters: which counters of a role's `sys.stats` make its key
 * rate (requests/s, messages/s, lookups/s), the rate between two samples of
 * one process, and a bounded history for charts. Pure: no sockets, no
 * timers; times are given.
 */

/** A counter of a role shown as a rate. */
export interface RateSpec {
  /** The member of `sys.stats` (a count that only grows while the process lives). */
  counter: string;
  /** How it reads: `requests/s`. */
  unit: string;
}

/**
 * Each role's rates, its key rate first. The launcher's knowledge of roles'
 * counters is kept here (waits.ts keeps what it knows of their readiness).
 * A role not listed (client, producer, consumer: they do not listen, so
 * nothing can ask them) has no rate. A server's `requests` count every call
 * it answered, `sys.*` included (its balancer's health checks, and the
 * launcher's own polls).
 */
export const ROLE_RATES: Readonly<Record<string, readonly RateSpec[]>> = {
  server: [{ counter: "requests", unit: "requests/s" }, { counter: "errors", unit: "errors/s" }],
  balancer: [{ counter: "requests", unit: "requests/s" }, {
    counter: "retries",
    unit: "retries/s",
  }],
  broker: [
    { counter: "messages_in", unit: "messages/s" },
    { counter: "messages_out", unit: "deliveries/s" },
  ],
  binder: [
    { counter: "lookups", unit: "lookups/s" },
    { counter: "registrations", unit: "registrations/s" },
  ],
};

/** The rates a role has (none for a role whose counters are not known). */
export function ratesOf(role: string): readonly RateSpec[] {
  return Object.hasOwn(ROLE_RATES, role) ? ROLE_RATES[role] : [];
}

/** One answer of a process, as the rate needs it. */
export interface CounterSample {
  /** When it was taken (ms, any one clock). */
  at: number;
  /** The process's own `uptime_ms`, which tells a restarted process from the same one. */
  uptimeMs?: number;
  stats: Record<string, unknown>;
}

function countIn(stats: Record<string, unknown>, key: string): number | undefined {
  const value = stats[key];
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : undefined;
}

/**
 * Per second, how much `counter` grew from `before` to `after`; undefined
 * when it cannot be told: no earlier sample, a counter missing, a new
 * process (its uptime went back, or its counter did), or no time between.
 */
export function rateBetween(
  before: CounterSample | undefined,
  after: CounterSample,
  counter: string,
): number | undefined {
  if (before === undefined) return undefined;
  const a = countIn(before.stats, counter);
  const b = countIn(after.stats, counter);
  if (a === undefined || b === undefined || b < a) return undefined;
  if (before.uptimeMs !== undefined && after.uptimeMs !== undefined) {
    if (after.uptimeMs < before.uptimeMs) return undefined;
  }
  const seconds = (after.at - before.at) / 1000;
  if (!(seconds > 0)) return undefined;
  return (b - a) / seconds;
}

/** `12.3/s`-style text: three significant figures at most, no needless decimals. */
export function formatRate(rate: number | null | undefined): string {
  if (rate === null || rate === undefined) return "-";
  if (rate === 0) return "0";
  if (rate >= 100) return String(Math.round(rate));
  if (rate >= 10) return rate.toFixed(1).replace(/\.0$/, "");
  return rate.toFixed(2).replace(/\.?0+$/, "") || "0";
}

/**
 * A fixed number of (time, value) points, the oldest dropped first: the
 * last minutes of one figure of one instance. `null` is a gap (the instance
 * was down, or nobody watched).
 */
export class History {
  readonly capacity: number;
  #times: number[] = [];
  #values: (number | null)[] = [];

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  push(at: number, value: number | null): void {
    this.#times.push(at);
    this.#values.push(value);
    if (this.#times.length > this.capacity) {
      // Amortised: cut a batch at once rather than shifting every time.
      const extra = this.#times.length - this.capacity;
      const cut = Math.max(extra, Math.floor(this.capacity / 8));
      this.#times.splice(0, cut);
      this.#values.splice(0, cut);
    }
  }

  /** The time of the newest point, if any. */
  get last(): number | undefined {
    return this.#times[this.#times.length - 1];
  }

  get length(): number {
    return this.#times.length;
  }

  /** Copies of the points, oldest first. */
  points(): { times: number[]; values: (number | null)[] } {
    return { times: [...this.#times], values: [...this.#values] };
  }
}

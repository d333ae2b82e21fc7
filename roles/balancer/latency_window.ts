/** The latencies of a backend's last answers (backends.ts), for `balancer.backends`. */

/** The latencies of the last `size` answers, for percentiles on demand. */
export class LatencyWindow {
  readonly size: number;
  /** Grows with use up to `size`: a backend that served little (a worker passing by) keeps little. */
  #ring: Float64Array;
  #next = 0;
  #count = 0;

  constructor(size = 1024) {
    this.size = size;
    this.#ring = new Float64Array(Math.min(size, 16));
  }

  add(ms: number): void {
    if (this.#next === this.#ring.length && this.#ring.length < this.size) {
      // Full and still growing: the oldest is at 0, so the order holds.
      const grown = new Float64Array(Math.min(this.size, this.#ring.length * 4));
      grown.set(this.#ring);
      this.#ring = grown;
    }
    if (this.#next === this.#ring.length) this.#next = 0;
    this.#ring[this.#next++] = ms;
    if (this.#count < this.#ring.length) this.#count++;
  }

  /** p50, p90, p99 and max of the window, in ms (zeros when empty). */
  percentiles(): { p50: number; p90: number; p99: number; max: number } {
    const n = this.#count;
    if (n === 0) return { p50: 0, p90: 0, p99: 0, max: 0 };
    const sorted = this.#ring.slice(0, n).sort();
    const at = (q: number) => round3(sorted[Math.min(n - 1, Math.ceil(q * n) - 1)]);
    return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: round3(sorted[n - 1]) };
  }
}

function round3(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

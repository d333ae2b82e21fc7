/**
 * A clock for a fixed arrival rate that wakes the main thread within about
 * 0.1 ms of each scheduled time.
 *
 * Timers cannot do it: `setTimeout(fn, 1)` fires 1–2 ms late here, and
 * spinning on the main thread (setImmediate, MessageChannel) starves socket
 * reads, so answers would be timed late instead. So a worker thread sleeps in
 * `Atomics.wait` (a futex with a timeout, precise to tens of µs) and posts a
 * tick a little before each scheduled time; the main thread stays idle in the
 * event loop between ticks, where answers wake it as fast as a tick does.
 * The worker does not spin: at 10,000 req/s a spinning thread took a core
 * that the client and the server needed (start lag p50 0.5–2 ms against
 * 0.05–0.2 ms without, on this 2-core machine).
 *
 * The worker's code is a string run from a blob URL, so a compiled `dist`
 * (which cannot read its sources) runs it too.
 */

const WORKER_SOURCE = `
self.onmessage = (event) => {
  const { shared, t0, interval, count } = event.data;
  // [0]: stop when not 0; [1]: 1 while a tick is posted and not yet taken;
  // [2]: how early to post (µs), the main thread's wake-up delay.
  const flags = new Int32Array(shared);
  // t0 is on the main thread's clock; performance.now() differs per thread.
  const base = t0 - performance.timeOrigin;
  for (let i = 0; i < count; i++) {
    const early = Atomics.load(flags, 2) / 1000;
    const post = base + i * interval - early;
    const sleep = post - performance.now();
    if (sleep > 0 && Atomics.wait(flags, 0, 0, sleep) !== "timed-out") break;
    if (Atomics.load(flags, 0) !== 0) break;
    // One tick at a time: the main thread starts everything due when it takes
    // one, so more would only queue up behind it and delay its reads.
    if (Atomics.compareExchange(flags, 1, 0, 1) === 0) self.postMessage([i, early]);
  }
  self.close();
};
self.postMessage("ready");
`;

/** The most a tick is posted early, and so the most the main thread spins (ms). */
const MAX_EARLY_MS = 0.3;

/**
 * Ticks at `t0 + i × interval` for i = 0..count-1, until stopped.
 *
 * Waking the main thread takes time (about 0.1 ms here when it was idle), so
 * the worker posts each tick that much early, as measured on the last ticks,
 * and the main thread spins the rest (at most {@link MAX_EARLY_MS}, during
 * which it reads nothing; at high rates it is awake anyway and the measured
 * delay, so the spin, is near zero).
 */
export class Ticker {
  #worker: Worker;
  #shared = new Int32Array(new SharedArrayBuffer(12));
  #url: string;
  /** Moving average of the main thread's wake-up delay (ms). */
  #delay = 0.05;
  /** The first tick, on this thread's `performance.now()` clock. */
  t0 = 0;
  intervalMs = 0;

  private constructor(worker: Worker, url: string) {
    this.#worker = worker;
    this.#url = url;
  }

  /**
   * Starts a worker, then ticks from 1 ms after it is ready. Ticks that come
   * while one is still waiting to be taken are merged into it, so `onTick`
   * should do everything that is due by now, not one thing.
   */
  static async start(
    schedule: { intervalMs: number; count: number },
    onTick: () => void,
  ): Promise<Ticker> {
    const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "text/javascript" }));
    const worker = new Worker(url, { type: "module" });
    const ticker = new Ticker(worker, url);
    await new Promise<void>((resolve, reject) => {
      worker.onmessage = () => resolve();
      worker.onerror = (event) => {
        event.preventDefault();
        reject(new Error(`Ticker thread failed: ${event.message}`));
      };
    });
    worker.onmessage = (event: MessageEvent<[number, number]>) => {
      ticker.#onTick(event.data[0], event.data[1]);
      onTick();
    };
    ticker.t0 = performance.now() + 1;
    ticker.intervalMs = schedule.intervalMs;
    Atomics.store(ticker.#shared, 2, Math.round(ticker.#delay * 1000));
    worker.postMessage({
      shared: ticker.#shared.buffer,
      t0: performance.timeOrigin + ticker.t0,
      interval: schedule.intervalMs,
      count: Number.isFinite(schedule.count) ? schedule.count : Number.MAX_SAFE_INTEGER,
    });
    return ticker;
  }

  /** Learns the wake-up delay from tick `index`, posted `early` ms early, and waits out the rest. */
  #onTick(index: number, early: number): void {
    Atomics.store(this.#shared, 1, 0);
    const due = this.t0 + index * this.intervalMs;
    let now = performance.now();
    this.#delay += 0.05 * (now - (due - early) - this.#delay);
    const next = Math.min(MAX_EARLY_MS, Math.max(0, this.#delay));
    Atomics.store(this.#shared, 2, Math.round(next * 1000));
    while (now < due && due - now <= MAX_EARLY_MS) now = performance.now();
  }

  /** Stops ticking (a sleeping worker wakes at once) and ends the worker. */
  stop(): void {
    Atomics.store(this.#shared, 0, 1);
    Atomics.notify(this.#shared, 0);
    this.#worker.terminate();
    URL.revokeObjectURL(this.#url);
  }
}

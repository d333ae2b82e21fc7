/**
 * Which of a subscription's queued deliveries have a row on disk
 * (journal.ts): without `--mqtt-queue-qos0` a QoS 0 delivery queued for a
 * connected session (its window full) waits in memory only, its row
 * neither written nor deleted (hostile review 41b X1: 50 connected
 * sessions whose window was full wrote 77 MB/s of rows put then deleted,
 * and cut an honest QoS 0 flow from 237,095 to 3,123 msgs/s). Kept as runs
 * in queue order: one run while every delivery has a row.
 */
export class QueueRows {
  /** Runs, oldest first from `#first`: n > 0, n deliveries with a row; n < 0, −n without. */
  #runs: number[] = [];
  #first = 0;
  /** Deliveries counted here: those queued and not yet seen to leave. */
  count = 0;
  /** Whether the last delivery {@link take} took had a row. */
  lastHadRow = false;

  /** A delivery was queued, with a row or not. */
  push(row: boolean): void {
    this.count++;
    const runs = this.#runs;
    const last = runs.length > this.#first ? runs[runs.length - 1] : 0;
    if (row ? last > 0 : last < 0) runs[runs.length - 1] += row ? 1 : -1;
    else runs.push(row ? 1 : -1);
  }

  /** The oldest `n` deliveries left the queue: how many of them had a row. */
  take(n: number): number {
    n = Math.min(n, this.count);
    this.count -= n;
    const runs = this.#runs;
    let rows = 0;
    while (n > 0) {
      const run = runs[this.#first];
      const size = Math.abs(run);
      const taken = Math.min(size, n);
      n -= taken;
      if (run > 0) rows += taken;
      this.lastHadRow = run > 0;
      if (taken === size) this.#first++;
      else runs[this.#first] = run > 0 ? run - taken : run + taken;
    }
    if (this.#first === runs.length) {
      runs.length = 0;
      this.#first = 0;
    } else if (this.#first > 1024 && this.#first * 2 > runs.length) {
      this.#runs = runs.slice(this.#first);
      this.#first = 0;
    }
    return rows;
  }
}

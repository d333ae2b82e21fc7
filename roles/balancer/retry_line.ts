/**
 * The retries' line (forward.ts): requests sent again after their backend
 * failed with them, waiting for another. Bounded by what was in flight, so
 * never refused; counted in bytes; each keeps the backend it failed on, to
 * go elsewhere. Deadlines grow along the line, so the expired are at its head.
 */
import { WaitQueue } from "./wait_queue.ts";

export class RetryLine<J extends { queuedBytes: number; deadline: number }, B extends object>
  extends WaitQueue<J> {
  /** Bytes of the requests in the line. */
  bytes = 0;
  #avoid = new WeakMap<J, B>();

  constructor() {
    super(Infinity);
  }

  /** Appends `job` (its deadline and queuedBytes set), which failed on `backend`. */
  add(job: J, backend: B): void {
    this.#avoid.set(job, backend);
    this.bytes += job.queuedBytes;
    this.push(job);
  }

  /** The backend `job` failed on (undefined: not a retry). */
  avoid(job: J): B | undefined {
    return this.#avoid.get(job);
  }

  override shift(): J | undefined {
    const job = super.shift();
    if (job !== undefined) {
      this.bytes -= job.queuedBytes;
      job.queuedBytes = 0;
    }
    return job;
  }

  /** Takes the jobs whose deadline is at or before `now` into `expired`. */
  expire(now: number, expired: J[]): void {
    for (let job = this.peek(); job !== undefined && job.deadline <= now; job = this.peek()) {
      expired.push(this.shift()!);
    }
  }
}

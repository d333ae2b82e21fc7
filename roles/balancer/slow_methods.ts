/**
 * Whether a backend out for timeouts may just be slow (hostile45a K-A1).
 * A client's `sleep`s past `--timeout`, replayed on fakes that answer them
 * at once, take a real worker out for its answers; its late answers then
 * show it alive (worker_sources.ts `idle`, hostile44a H-A3), but only once
 * they come: sleeps longer than 10 s past `--timeout` left it silent for
 * that long, and a fake of the attacker's took its `--max-workers` slot.
 * A fake that served a task and then holds every one (hostile43a A3) is
 * as silent. What tells them apart while nothing comes is the method: the
 * fake holds what it answered at once before (`add`), the real worker a
 * method it never answered in time. A request of such a method that timed
 * out is taken as still running until the longest a built-in operation
 * runs (`sleep`'s bound, 60 s) from its send; after that, only answers
 * (late ones too) speak for it.
 */
import { MAX_SLEEP_MS } from "../../clients/contracts/mod.ts";

/** Methods remembered per backend: past that, a new one counts as answered (no reprieve). */
const MAX_METHODS = 32;

export class SlowMethods {
  /** Methods it answered with a result in time. */
  #resulted = new Set<string>();
  /**
   * Until when it may still be running a request that timed out on it, of
   * a method it never answered with a result in time (performance.now() ms).
   */
  until = -Infinity;

  /** The method of its last result (a run of one method costs a compare, not a lookup). */
  #last = "";

  /** It answered `method` with a result in time. */
  resulted(method: string): void {
    if (method === this.#last) return;
    this.#last = method;
    if (this.#resulted.size < MAX_METHODS) this.#resulted.add(method);
  }

  /** A request of `method` sent at `sentAt` got no answer within its timeout. */
  timedOut(method: string, sentAt: number): void {
    if (this.#resulted.has(method) || this.#resulted.size >= MAX_METHODS) return;
    this.until = Math.max(this.until, sentAt + MAX_SLEEP_MS);
  }
}

/**
 * The sources of the client connections (a peer address, or an
 * authenticated user: shares.ts), and which of them are busy: a source
 * with requests in the balancer (on the backends or waiting), or another
 * that went idle within LIGHT_GRACE_MS. The connections of a source count
 * together only while another source is busy (shares.ts).
 */
import { LIGHT_GRACE_MS } from "./share_limits.ts";
import { SourceShare } from "./slots.ts";

export class SourceBook {
  /** Sources with requests in the balancer (on the backends or waiting). */
  busy = 0;
  #sources = new Map<string, SourceShare>();
  /** The two sources that last went idle, and when (another within the grace counts as busy). */
  #idle: [SourceShare | undefined, number, SourceShare | undefined, number] = [
    undefined,
    -Infinity,
    undefined,
    -Infinity,
  ];
  #now: () => number;

  constructor(now: () => number) {
    this.#now = now;
  }

  /** The source named `name`, with one connection more. */
  join(name: string): SourceShare {
    let source = this.#sources.get(name);
    if (source === undefined) {
      source = new SourceShare(name);
      this.#sources.set(name, source);
    }
    source.connections++;
    return source;
  }

  /** A connection of `source` is forgotten (idle): the source too, with its last. */
  leave(source: SourceShare): void {
    if (--source.connections > 0) return;
    this.#sources.delete(source.key);
    const idle = this.#idle;
    if (idle[0] === source) idle[0] = undefined;
    if (idle[2] === source) idle[2] = undefined;
  }

  /** Whether a source other than `source` has requests in, or had within the grace. */
  othersBusy(source: SourceShare): boolean {
    const mine = source.inflight + source.waiting > 0 ? 1 : 0;
    if (this.busy > mine) return true;
    const idle = this.#idle;
    const other = idle[0] !== source ? idle[1] : idle[3];
    return other > -Infinity && this.#now() - other < LIGHT_GRACE_MS;
  }

  /** `source` has nothing in the balancer since `now`. */
  wentIdle(source: SourceShare, now: number): void {
    this.busy--;
    const idle = this.#idle;
    // Keeps the last two distinct sources, newest first.
    if (idle[0] !== source) {
      idle[2] = idle[0];
      idle[3] = idle[1];
      idle[0] = source;
    }
    idle[1] = now;
  }
}

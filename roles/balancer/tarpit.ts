/**
 * A client connection whose request was refused at once for what it would
 * grow to (a MessagePack request past the frame as JSON, msgpack_job.ts) is
 * not read for a while, longer each time its source is refused so within
 * FORGET_MS: 100 ms, 200 ms … up to MAX_MS (HAProxy's tarpit holds a denied
 * request likewise). Refused at once and read again at once, 8 such clients
 * sent 115 frames of 900 KB a second, a third of the balancer's time, where
 * a request of that size that is forwarded waits for its share (hostile46a
 * G8). Only the refused connection is paused; its source's others are read.
 */
import type { Peer } from "../../wire/mod.ts";

/** The first pause (ms). */
export const TARPIT_FIRST_MS = 100;
/** The longest pause (ms): the default `--queue-timeout`, what a held request of that size waited. */
export const TARPIT_MAX_MS = 3000;
/** A source refused nothing for this long starts again from the first pause (ms). */
const FORGET_MS = 10_000;
/** Most sources remembered (the oldest refused is forgotten first). */
const KEPT = 4096;

interface Record {
  refusals: number;
  at: number;
}

export class Tarpit {
  #bySource = new Map<string, Record>();
  #now: () => number;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /**
   * Pauses reading `peer`, of `source`, for its source's next pause.
   * @returns the pause (ms)
   */
  hold(peer: Peer, source: string): number {
    const now = this.#now();
    let r = this.#bySource.get(source);
    if (r !== undefined && now - r.at > FORGET_MS) r = undefined;
    this.#bySource.delete(source); // kept in the order of their last refusal
    if (r === undefined) r = { refusals: 0, at: now };
    r.refusals++;
    r.at = now;
    this.#bySource.set(source, r);
    if (this.#bySource.size > KEPT) this.#bySource.delete(this.#bySource.keys().next().value!);
    const ms = Math.min(TARPIT_MAX_MS, TARPIT_FIRST_MS * 2 ** Math.min(r.refusals - 1, 16));
    const conn = peer.conn;
    conn.pauseReading();
    const timer = setTimeout(() => {
      if (!peer.isClosed) conn.resumeReading();
    }, ms);
    Deno.unrefTimer(timer);
    return ms;
  }
}

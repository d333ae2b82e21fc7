/**
 * A client connection whose request was refused at once for what it would
 * grow to (a MessagePack request past the frame as JSON, msgpack_job.ts) is
 * not read for a while, longer each time that connection is refused so
 * within FORGET_MS: 100 ms, 1 s, then MAX_MS (HAProxy's tarpit holds a
 * denied request likewise). Refused at once and read again at once, 8 such
 * clients sent 115 frames of 900 KB a second, a third of the balancer's
 * time, where a request of that size that is forwarded waits for its share
 * (hostile46a G8). Only the refused connection is paused; its source's
 * others are read.
 *
 * The growing pause is the connection's own (review N10: it was its
 * source's, so a legit client sharing an attacker's address paid up to 3 s
 * for one request too large as JSON): a fresh connection pays the first
 * pause. A source holds at most HELD_PER_SOURCE paused connections: past
 * that, the connection just refused is closed (never one paused for an
 * earlier refusal: review h48b V2), so opening connections to start each
 * from the first pause ties up no more of the balancer than that. A
 * connection refused again while paused is paused once, for its new pause.
 */
import type { Peer } from "../../wire/mod.ts";

/** The first pause (ms). */
export const TARPIT_FIRST_MS = 100;
/**
 * Each pause of a connection is this many times its last: 100 ms, 1 s, 3 s. Counted a source, the
 * 8 connections of one attacker shared one count (28 refusals in ~6 s); counted a connection and
 * doubled, each climbed alone (56, and a legit client's p99 beside them 6-10× its own against
 * 2-3×); a tenfold climb gives a legit connection's one refusal 100 ms and the 8 about 32.
 */
export const TARPIT_GROWTH = 10;
/** The longest pause (ms): the default `--queue-timeout`, what a held request of that size waited. */
export const TARPIT_MAX_MS = 3000;
/** A connection refused nothing for this long starts again from the first pause (ms). */
const FORGET_MS = 10_000;
/** Most connections of one source paused at once. */
export const HELD_PER_SOURCE = 16;

/** Sources whose refusals are remembered at once, at most. */
const SOURCES_KEPT = 4096;

/** The pause after `count` refusals: 100 ms, 1 s, then 3 s. */
function pauseAfter(count: number): number {
  return Math.min(TARPIT_MAX_MS, TARPIT_FIRST_MS * TARPIT_GROWTH ** Math.min(count - 1, 8));
}

interface Refusals {
  count: number;
  at: number;
}

interface Held {
  peer: Peer;
  source: string;
  timer?: ReturnType<typeof setTimeout>;
}

export class Tarpit {
  #byPeer = new WeakMap<Peer, Refusals>();
  /** A connection's pause while it is paused: one a connection (review h48b V1). */
  #heldPeer = new WeakMap<Peer, Held>();
  #held = new Map<string, Set<Held>>();
  /** Each source's refusals (early()); forgotten FORGET_MS after its last. */
  #bySource = new Map<string, Refusals>();
  #now: () => number;
  /** Connections closed for their source's cap (for tests and stats). */
  closed = 0;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /**
   * Pauses reading `peer`, of `source`, for its next pause. Refused again while paused (two
   * refused frames of one read), its one pause is extended, never paused twice: the reader
   * counts its pauses, so a second would never be resumed (review h48b V1).
   * @returns the pause (ms); 0 for a connection closed, or closed now for its source's cap
   */
  hold(peer: Peer, source: string): number {
    if (peer.isClosed) return 0;
    const now = this.#now();
    let r = this.#byPeer.get(peer);
    if (r === undefined || now - r.at > FORGET_MS) {
      r = { count: 0, at: now };
      this.#byPeer.set(peer, r);
    }
    r.count++;
    r.at = now;
    const ms = pauseAfter(r.count);
    this.#noteSource(source, now);
    const paused = this.#heldPeer.get(peer);
    if (paused !== undefined) {
      clearTimeout(paused.timer); // Still in its source's set: counted once.
      this.#arm(paused, ms);
      return ms;
    }
    return this.#pause(peer, source, ms);
  }

  /**
   * A connection of `source` begins a frame that may be refused (too large as JSON): when its
   * source was refused within FORGET_MS, it is paused before the frame's body is read, for the
   * pause of the source's refusals so far (review h48b V5: a client dialing afresh for each
   * request was read at full speed, its pause coming after the refusal, when it had closed).
   * @returns the pause (ms), 0 for none
   */
  early(peer: Peer, source: string): number {
    const s = this.#bySource.get(source);
    if (s === undefined || peer.isClosed || this.#heldPeer.has(peer)) return 0;
    if (this.#now() - s.at > FORGET_MS) return 0;
    return this.#pause(peer, source, pauseAfter(s.count));
  }

  /** Pauses `peer` (not paused now) for `ms`; past its source's cap, closes it. */
  #pause(peer: Peer, source: string, ms: number): number {
    let held = this.#held.get(source);
    if (held === undefined) this.#held.set(source, held = new Set());
    if (held.size >= HELD_PER_SOURCE) {
      // Past the cap the connection just refused goes, never one paused for an earlier refusal
      // (review h48b V2: an attacker's fresh refusals closed a legit paused connection).
      this.closed++;
      peer.close();
      return 0;
    }
    const entry: Held = { peer, source };
    peer.conn.pauseReading();
    this.#heldPeer.set(peer, entry);
    held.add(entry);
    this.#arm(entry, ms);
    void peer.closed.then(() => this.#release(entry)); // Gone: no longer held.
    return ms;
  }

  /** How many connections of `source` are paused now. */
  heldOf(source: string): number {
    return this.#held.get(source)?.size ?? 0;
  }

  /** Counts a refusal of `source`; sources refused nothing for FORGET_MS are forgotten. */
  #noteSource(source: string, now: number): void {
    if (this.#bySource.size >= SOURCES_KEPT) {
      for (const [k, v] of this.#bySource) if (now - v.at > FORGET_MS) this.#bySource.delete(k);
    }
    let s = this.#bySource.get(source);
    if (s === undefined || now - s.at > FORGET_MS) {
      if (this.#bySource.size >= SOURCES_KEPT) return; // A flood of sources: early() skips the new.
      this.#bySource.set(source, s = { count: 0, at: now });
    }
    s.count++;
    s.at = now;
  }

  /** Resumes `entry`'s connection after `ms`, once. */
  #arm(entry: Held, ms: number): void {
    entry.timer = setTimeout(() => {
      if (!this.#release(entry)) return;
      if (!entry.peer.isClosed) entry.peer.conn.resumeReading();
    }, ms);
    Deno.unrefTimer(entry.timer);
  }

  /** @returns whether `entry` was still held (then it is released now) */
  #release(entry: Held): boolean {
    clearTimeout(entry.timer);
    if (this.#heldPeer.get(entry.peer) !== entry) return false;
    this.#heldPeer.delete(entry.peer);
    const held = this.#held.get(entry.source);
    held?.delete(entry);
    if (held?.size === 0) this.#held.delete(entry.source);
    return true;
  }
}

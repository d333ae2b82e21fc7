/**
 * Admission of the peer's requests on one connection: how many are being
 * handled (the connection's own limit and a listener-wide budget), and the
 * frames that wait, unread further, until one finishes.
 */
import type { FramedConn } from "./conn.ts";

/** Default limit of requests being handled across one listener's connections. */
export const DEFAULT_MAX_IN_FLIGHT_TOTAL = 65_536;
/** Default limit of requests from one peer handled at once. */
export const DEFAULT_MAX_IN_FLIGHT = 4096;
/**
 * Requests every connection may have in flight whatever the listener's
 * budget says: the budget bounds a listener at limit + MIN_SHARE × connections.
 */
export const MIN_SHARE = 4;

/**
 * Requests being handled across every connection of a listener. Limits per
 * connection alone let N connections hold N × maxInFlight requests (each
 * with its timer, params and promise); past `limit`, no connection starts
 * another until the total is back under 90% of it.
 */
export class InFlightBudget {
  /** Requests being handled now, across the listener. */
  inFlight = 0;
  /** Requests past which no connection starts another. */
  readonly limit: number;
  #waiting = new Set<() => void>();

  /**
   * A budget of `limit` requests.
   * @param limit requests past which no connection starts another
   */
  constructor(limit: number) {
    this.limit = limit;
  }

  /** Whether the budget is spent. */
  get full(): boolean {
    return this.inFlight >= this.limit;
  }

  /** Calls `retry` once the budget has room again (unless cancelled first). */
  wait(retry: () => void): void {
    this.#waiting.add(retry);
  }

  /** Forgets a `wait()` (its connection closed). */
  cancel(retry: () => void): void {
    this.#waiting.delete(retry);
  }

  /** One request finished. */
  give(): void {
    this.inFlight--;
    if (this.#waiting.size > 0 && this.inFlight < this.limit * 0.9) {
      const waiting = [...this.#waiting];
      this.#waiting.clear();
      for (const retry of waiting) retry();
    }
  }
}

/** How many of the peer's requests run at once (see PeerOptions). */
export interface AdmissionLimits {
  /**
   * Most requests from the peer handled at once (answers still pending);
   * at the limit the requests behind wait unread and the connection stops
   * reading until one finishes.
   */
  maxInFlight?: number;
  /** Requests being handled across many peers (a listener's), bounded together. */
  budget?: InFlightBudget;
}

/**
 * The requests of one connection's peer being handled, and the frames held
 * behind one that may not start yet. Holding pauses the connection's
 * reading, so at most about one read's worth waits here; `process` (the
 * Peer's) is given the held frames again, in order, when there is room: a
 * few at a time (about as many as may start), so that a request finishing
 * costs work for the frames it lets through, not for all that wait.
 */
export class Admission {
  #conn: FramedConn;
  #maxInFlight: number;
  #budget: InFlightBudget | undefined;
  #process: (frames: Uint8Array[]) => void;
  #handling = 0;
  /** Frames that arrived behind a request that could not start: copies, in order, from `#head`. */
  #stash: Uint8Array[] | undefined;
  #head = 0;
  /** While a part of the stash is being processed: the frames of it held again. */
  #givenBack: Uint8Array[] | undefined;
  /** Retries the stash when the budget has room (one closure per connection, made on first need). */
  #retry: (() => void) | undefined;
  /** Whether the stash holds one pause of the reading (see FramedConn.pauseReading). */
  #paused = false;
  #idleWaiters: (() => void)[] | undefined;
  /** Holds asked by the owner (see `block`). */
  #blocks = 0;

  constructor(
    conn: FramedConn,
    limits: AdmissionLimits,
    process: (frames: Uint8Array[]) => void,
  ) {
    this.#conn = conn;
    this.#maxInFlight = limits.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    this.#budget = limits.budget;
    this.#process = process;
  }

  /** Requests being handled now. */
  get handling(): number {
    return this.#handling;
  }

  /**
   * Whether frames are held: whatever arrives now waits behind them. While
   * held frames are being processed again, whether some of them were held
   * again (what follows them must wait too).
   */
  get holding(): boolean {
    if (this.#givenBack !== undefined) return this.#givenBack.length > 0;
    return this.#stash !== undefined;
  }

  /** No request is being handled and none is waiting to start. */
  get isIdle(): boolean {
    return this.#handling === 0 && this.#stash === undefined;
  }

  /** Frames held now. */
  get held(): number {
    return this.#stash === undefined ? 0 : this.#stash.length - this.#head;
  }

  /**
   * Whether a request may start now: under the connection's own limit, and
   * either under the listener's budget or within the few every connection
   * is always granted (so one heavy client exhausting the budget throttles
   * itself, not a light one probing sys.stats).
   */
  mayStart(): boolean {
    return this.#blocks === 0 && this.#handling < this.#maxInFlight &&
      (this.#handling < MIN_SHARE || !(this.#budget?.full ?? false));
  }

  /**
   * Keeps `frames` (from a request that may not start yet on) for later and
   * stops reading until there is room. Frames are views of the read buffer:
   * they are copied (frames of the stash given back while it is processed
   * are copies already, and go back to its head).
   */
  hold(frames: Uint8Array[]): void {
    if (this.#givenBack !== undefined) {
      for (const f of frames) this.#givenBack.push(f);
      return;
    }
    const stash = this.#stash ??= [];
    for (const f of frames) stash.push(f.slice());
    if (!this.#paused) {
      this.#paused = true;
      this.#conn.pauseReading();
    }
    if (this.#budget?.full) this.#budget.wait(this.#retry ??= () => this.#release());
  }

  /** Whether the owner holds the input (see `block`): every frame waits, not only requests. */
  get blocked(): boolean {
    return this.#blocks > 0;
  }

  /**
   * The owner has as much work from this peer as it takes (e.g. a broker's
   * fan-out backlog): from the next frame on, everything it sent waits,
   * held in order, and reading stops, until as many `unblock()`.
   */
  block(): void {
    this.#blocks++;
  }

  unblock(): void {
    if (this.#blocks === 0 || --this.#blocks > 0) return;
    if (this.#givenBack === undefined && this.#stash !== undefined) this.#release();
  }

  /** A request is being handled (its answer comes later). */
  started(): void {
    this.#handling++;
    if (this.#budget !== undefined) this.#budget.inFlight++;
  }

  /** A request that was being handled has its answer. */
  handled(): void {
    this.#handling--;
    this.#budget?.give();
    // While the stash is being processed, that loop goes on by itself.
    if (this.#givenBack !== undefined) return;
    if (this.#stash !== undefined) this.#release();
    else this.#maybeIdle();
  }

  /** Calls `fn` once no request is being handled or waiting (at once if none is). */
  whenIdle(fn: () => void): void {
    if (this.isIdle) fn();
    else (this.#idleWaiters ??= []).push(fn);
  }

  /** The connection closed: nothing held will run. */
  close(): void {
    this.#stash = undefined;
    this.#head = 0;
    if (this.#retry !== undefined) this.#budget?.cancel(this.#retry);
  }

  /** Requests that may start now (at least 1: the loop calling it checked mayStart). */
  #room(): number {
    let room = this.#maxInFlight - this.#handling;
    if (this.#budget !== undefined && this.#handling >= MIN_SHARE) {
      room = Math.min(room, this.#budget.limit - this.#budget.inFlight);
    }
    return Math.max(1, Math.min(room, RELEASE_CHUNK));
  }

  /**
   * Handles held frames while there is room, a part at a time from the
   * head; frames held again go back to the head. Reading resumes once none
   * are left.
   */
  #release(): void {
    if (this.#givenBack !== undefined) return;
    while (this.#stash !== undefined && this.mayStart() && !this.#conn.isClosed) {
      const stash = this.#stash;
      const start = this.#head;
      const end = Math.min(stash.length, start + this.#room());
      const given: Uint8Array[] = this.#givenBack = [];
      try {
        this.#process(stash.slice(start, end)); // may hold some of them again
      } finally {
        this.#givenBack = undefined;
      }
      if (this.#stash !== stash) break; // closed meanwhile
      // What was held again goes back before the rest, in order.
      const head = end - given.length;
      for (let i = 0; i < given.length; i++) stash[head + i] = given[i];
      this.#head = head;
      if (head === stash.length) {
        this.#stash = undefined;
        this.#head = 0;
      } else if (head === start) {
        break; // nothing could start after all: wait for the next answer
      } else if (head > COMPACT_AT && head * 2 > stash.length) {
        this.#stash = stash.slice(head);
        this.#head = 0;
      }
    }
    if (this.#stash === undefined) {
      if (this.#paused) {
        this.#paused = false;
        this.#conn.resumeReading();
      }
      this.#maybeIdle();
    } else if (this.#budget?.full) {
      this.#budget.wait(this.#retry ??= () => this.#release());
    }
  }

  #maybeIdle(): void {
    if (this.isIdle && this.#idleWaiters !== undefined) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = undefined;
      for (const w of waiters) w();
    }
  }
}

/** Most held frames given back to `process` at once. */
const RELEASE_CHUNK = 256;
/** Frames done at the head of the stash past which it is compacted. */
const COMPACT_AT = 1024;

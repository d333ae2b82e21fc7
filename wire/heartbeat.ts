/**
 * One timer per process for the housekeeping of every connection
 * (heartbeats, dead peers, stalled writes, frames that never complete),
 * instead of one timer per connection: 10,000 idle connections then cost
 * one wake-up per tick rather than 10,000 timer callbacks, and no timer
 * object each.
 */

/** Something the ticker visits on every tick. */
export interface Tickable {
  /** The longest gap between two visits this connection tolerates (ms). */
  readonly tickMs: number;
  /**
   * Does this connection's housekeeping. `elapsed` is the time since the
   * last tick, capped at two periods: when this process itself stalls
   * (CPU starvation, a long GC), the gap is not the peer's silence: its
   * bytes may be waiting unread in the socket. `wall` is that time
   * uncapped: what this side owes by the clock (a ping) goes by it.
   */
  tick(elapsed: number, wall: number): void;
}

/** Bounds of the tick period (ms). */
const MIN_TICK_MS = 5;
const MAX_TICK_MS = 250;

class Ticker {
  #members = new Set<Tickable>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #period = MAX_TICK_MS;
  #lastTick = 0;

  add(member: Tickable): void {
    this.#members.add(member);
    const wanted = clampTick(member.tickMs);
    if (this.#timer === undefined || wanted < this.#period) this.#arm(wanted);
  }

  delete(member: Tickable): void {
    this.#members.delete(member);
    if (this.#members.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #arm(period: number): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#period = period;
    this.#lastTick = performance.now();
    const timer = setInterval(() => this.#tick(), period);
    // Housekeeping alone never keeps a process alive.
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  #tick(): void {
    const now = performance.now();
    const wall = now - this.#lastTick;
    const elapsed = Math.min(wall, 2 * this.#period);
    this.#lastTick = now;
    let wanted = MAX_TICK_MS;
    // A member may close (and leave the set) during its own tick: iterating a
    // Set while deleting the current entry is safe.
    for (const member of this.#members) {
      member.tick(elapsed, wall);
      if (member.tickMs < wanted) wanted = member.tickMs;
    }
    wanted = clampTick(wanted);
    // Slow down again once the connections that wanted fast ticks are gone.
    if (this.#members.size > 0 && wanted > this.#period * 2) this.#arm(wanted);
  }
}

function clampTick(ms: number): number {
  return Math.min(MAX_TICK_MS, Math.max(MIN_TICK_MS, Math.floor(ms)));
}

/** The process's one ticker. */
export const ticker: Ticker = new Ticker();

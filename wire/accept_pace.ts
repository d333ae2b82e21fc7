/**
 * New connections of a source its owner marks (the balancer: one whose
 * refused connections close and dial again, roles/balancer/pressure.ts)
 * taken at a bounded pace, before anything of theirs is read (hostile41a
 * W8's rest): a token bucket per such source, {@link PACE_PER_S} a second
 * (a burst of as many). A connection that finds no token waits for one,
 * unread, in its source's line (at most {@link PARKED_PER_SOURCE}: a
 * newcomer puts the oldest out; at most {@link WAIT_MS}); one put out is
 * refused OVERLOADED and closed, having cost an accept and a close.
 *
 * Before, such a source's every new connection was read once (its hello
 * and what came with it: ~15 requests refused or shed each), and 40
 * non-readers that closed and dialed again once they blocked made ~400 new
 * connections a second: ~5,800 refusals a second. Now at most
 * PACE_PER_S of its connections a second are read at all.
 *
 * Every other source is taken at once, whatever its pace: every client of a
 * test or of `dist up` on one machine dials from one address. One that
 * shares a paced source's address (behind one NAT) dials at that pace
 * too, in turn with the others: HAProxy's `src_conn_rate` rule refuses
 * every connection of the address past the rate, Envoy's connection rate
 * limits are per listener (per address only through a rate limit service).
 */
import { DistError } from "./errors.ts";
import { encodeFrame } from "./frame.ts";
import { refusal } from "./handshake.ts";
import { sharedError } from "./shared_error.ts";

/** New connections of a paced source taken a second (and the burst). */
export const PACE_PER_S = 50;
/** Connections of a paced source waiting for a token, at most. */
export const PARKED_PER_SOURCE = 64;
/** Longest a connection waits for a token (ms). */
export const WAIT_MS = 2000;
/** Connections waiting over every source, at most (then a newcomer of a paced source is refused). */
const PARKED_MOST = 1024;
/** How often the waiting connections are looked at (ms). */
const TICK_MS = 20;

/** A connection waiting for its source's token. */
interface Parked {
  raw: Deno.Conn;
  at: number;
  go: (taken: boolean) => void;
}

/** A paced source's bucket and line. */
interface Bucket {
  tokens: number;
  at: number;
  line: Parked[];
}

/** What {@link AcceptPace} counts for `sys.stats`. */
export interface PaceStats {
  /** Connections of paced sources that waited for a token (since start). */
  paced_waited: number;
  /** Connections of paced sources refused at accept, unread (since start). */
  paced_refused: number;
}

export class AcceptPace {
  readonly #paced: (source: string) => string | undefined;
  readonly #tls: boolean;
  readonly #buckets = new Map<string, Bucket>();
  #parked = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #waited = 0;
  #refused = 0;
  /** The refusal's frame, written once per message. */
  #frame: { err: DistError; bytes: Uint8Array } | undefined;

  /**
   * @param paced what a source's new connections are paced as now (itself, or a group of
   *   sources such as its network, whose bucket they share); undefined: not paced
   * @param tls whether the port speaks TLS (nothing can be said before its handshake: just closed)
   */
  constructor(paced: (source: string) => string | undefined, tls: boolean) {
    this.#paced = paced;
    this.#tls = tls;
  }

  /** Its figures, for `sys.stats`. */
  get stats(): PaceStats {
    return { paced_waited: this.#waited, paced_refused: this.#refused };
  }

  /**
   * Whether `raw`, just accepted from `source`, may be read now: true at
   * once unless its source is paced and has no token; else resolves when it
   * gets one (true), or is refused and closed (false).
   */
  admit(source: string, raw: Deno.Conn): boolean | Promise<boolean> {
    let b = this.#buckets.get(source);
    if (b === undefined) {
      const as = this.#paced(source);
      if (as === undefined) return true;
      source = as;
      b = this.#buckets.get(as);
      if (b === undefined) {
        b = { tokens: PACE_PER_S, at: performance.now(), line: [] };
        this.#buckets.set(as, b);
        this.#start();
      }
    }
    this.#fill(b, performance.now());
    if (b.line.length === 0 && b.tokens >= 1) {
      b.tokens--;
      return true;
    }
    if (this.#parked >= PARKED_MOST && b.line.length === 0) {
      this.#refuse(raw, source);
      return false;
    }
    this.#waited++;
    return new Promise((go) => {
      b.line.push({ raw, at: performance.now(), go });
      this.#parked++;
      if (b.line.length > PARKED_PER_SOURCE || this.#parked > PARKED_MOST) this.#out(b, source);
    });
  }

  #fill(b: Bucket, now: number): void {
    b.tokens = Math.min(PACE_PER_S, b.tokens + (now - b.at) * PACE_PER_S / 1000);
    b.at = now;
  }

  /** Refuses the oldest waiting connection of `b`. */
  #out(b: Bucket, source: string): void {
    const p = b.line.shift()!;
    this.#parked--;
    this.#refuse(p.raw, source);
    p.go(false);
  }

  #start(): void {
    this.#timer ??= setInterval(() => this.#tick(), TICK_MS);
  }

  /** Gives tokens to the oldest waiting, refuses those that waited WAIT_MS, forgets idle buckets. */
  #tick(): void {
    const now = performance.now();
    for (const [source, b] of this.#buckets) {
      this.#fill(b, now);
      while (b.line.length > 0 && b.tokens >= 1) {
        b.tokens--;
        this.#parked--;
        b.line.shift()!.go(true);
      }
      while (b.line.length > 0 && now - b.line[0].at >= WAIT_MS) this.#out(b, source);
      // A full bucket with nobody waiting is as good as none: asked again at the next accept.
      if (b.line.length === 0 && b.tokens >= PACE_PER_S) this.#buckets.delete(source);
    }
    if (this.#buckets.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  /** Says OVERLOADED (not on TLS: nothing can be said before its handshake) and closes. */
  #refuse(raw: Deno.Conn, source: string): void {
    this.#refused++;
    const err = sharedError(
      "OVERLOADED",
      `Too many new connections from ${source}: its connections refused requests and dialed ` +
        `again, so it may open ${PACE_PER_S} a second`,
    );
    if (this.#tls) {
      close(raw);
      return;
    }
    if (this.#frame?.err !== err) {
      const text = JSON.stringify(refusal(err).message);
      this.#frame = { err, bytes: encodeFrame(new TextEncoder().encode(text)) };
    }
    raw.write(this.#frame.bytes).catch(() => {}).finally(() => close(raw));
  }
}

function close(raw: Deno.Conn): void {
  try {
    raw.close();
  } catch {
    // Closed already.
  }
}

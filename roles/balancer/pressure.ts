/**
 * Backpressure between the balancer's clients and its backends (hostile32
 * X5), by the connections' high-water mark (4 MiB by default) at both ends:
 * - a client that has not read more than that of its answers gets no more
 *   of its requests sent ({@link Pressure.held}): a non-reader slows only
 *   itself (its requests wait in the queue and fail after
 *   `--queue-timeout`, and the write timeout cuts it off);
 * - a backend whose connection holds more than that of unwritten requests
 *   takes no more until they drain ({@link Pressure.checkBacklog}), so what
 *   waits for a slow backend waits in the fair queue, and the balancer
 *   never cuts its own backend connection as a slow consumer;
 * - a client told OVERLOADED is not read for a moment, and then, until it
 *   takes its answers, only while its source's refused connections (those
 *   that closed for a while after) hold few enough ({@link Pressure.backOff}).
 * Backend connections themselves are read whatever output waits (wire
 * keepReading, set by links.ts): their answers are what drain the clients.
 */
import {
  countNetRedial,
  forgetMembers,
  REDIAL_FORGET_MS,
  REDIAL_REFUSALS,
  redialingNet,
  REDIALS,
} from "./redial_nets.ts";
import { drainTarget, type Peer, stalledLoad, unsentBytes } from "../../wire/mod.ts";
import { pipelinedHello } from "../../wire/handshake.ts";
import { askIfDue, askPeer, type ProofHolder, unanswered } from "../../wire/read_proof.ts";
import type { Backend } from "./backends.ts";
import { UNREAD_BYTES } from "./share_limits.ts";
import { clientSource } from "../../auth/mod.ts";

/** What each client connection's answers to the balancer's requests have shown (wire/read_proof.ts). */
const proofs = new WeakMap<Peer, ProofHolder>();

/**
 * How long a client may leave the balancer's request unanswered, given
 * UNREAD_BYTES past its last answer, before it counts as leaving its
 * answers unread (the broker's queue groups wait as long).
 */
const ANSWER_STALL_MS = 25;

/**
 * Whether a client connection leaves its answers unread (allowance.ts): its
 * socket holds more than UNREAD_BYTES its peer has not acknowledged, and
 * the peer acknowledged nothing for a while (wire's stalledLoad); or it
 * leaves unanswered the `sys.ping` sent behind its answers (wire's
 * read_proof.ts, asked here when due) for ANSWER_STALL_MS with UNREAD_BYTES
 * given past its last answer. The kernel's word alone let a client that
 * sets a 4 MiB SO_RCVBUF and never reads pass for a reader until 8 MiB of
 * answers sat unread (hostile39a P2: it took the whole bulk allowance); an
 * answer says its client read every byte before it.
 */
export function unread(flow: object): boolean {
  const peer = flow as Peer, conn = peer.conn;
  if (conn === undefined) return false; // not a connection: nothing to ask
  if (stalledLoad(conn, UNREAD_BYTES, true) > 0) return true;
  let holder = proofs.get(peer);
  if (holder === undefined) proofs.set(peer, holder = {});
  const p = askIfDue(
    holder,
    conn,
    conn.pendingBytes,
    (id, answered) => askPeer(peer, id, answered),
  );
  return unanswered(p, conn.bytesOut, UNREAD_BYTES, ANSWER_STALL_MS);
}

/** How long a client told OVERLOADED is not read (ms; see Pressure.backOff). */
export const OVERLOAD_BACKOFF_MS = 100;

/**
 * Bytes of output the connections of one source told OVERLOADED may have
 * been given together since, before they are no longer read until they
 * take their answers (see Pressure.backOff): a connection's default
 * high-water mark (4 MiB) and its socket's send buffer (up to tcp_wmem's
 * 4 MiB on Linux), what a `dist server` holds for one client before its
 * backpressure stops reading it.
 */
export const REFUSED_OUTPUT_BYTES = 8 * 1024 * 1024;

/**
 * How long what a refused connection was given still counts for its
 * source once it closed (ms): REFUSED_OUTPUT_BYTES of it is forgotten in
 * this time (see Pressure.backOff).
 */
export const FORGET_MS = 10_000;

/** The refused connections are looked at this often (ms): a pause ends 100-125 ms after it began. */
const SWEEP_MS = 25;

/**
 * Longest time between two looks at the socket of a refused connection
 * whose unacknowledged output does not fall (ms; see Pressure.backOff).
 */
const MAX_LOOK_MS = 2000;

/** A connection told OVERLOADED (see Pressure.backOff). */
interface Refused {
  /** The connection; undefined once it closed (what it was given is then forgotten over time). */
  flow: Peer | undefined;
  /** Its source (itself when it has none). */
  source: unknown;
  /** Its output (written and pending) when it was refused. */
  since: number;
  /** Bytes of output it was given since, as of its last look. */
  holds: number;
  /** Whether its reading is paused by backOff now, and since when (performance.now()). */
  paused: boolean;
  pausedAt: number;
  /** When its socket is looked at next (performance.now()), and the wait after that (ms). */
  lookAt: number;
  lookEvery: number;
  /** Its socket's unacknowledged bytes at the last look. */
  unsent: number;
  /** Its requests refused since. */
  refusals: number;
  /** Its address's source when its source is a user's. */
  address: string | undefined;
}

/** What Pressure counts for `sys.stats`. */
export interface PressureStats {
  /** Client connections told OVERLOADED and looked at until they take their answers. */
  refused_watched: number;
  /** Looks at those connections' sockets (a kernel read each) since start. */
  refused_looks: number;
  /** Bytes given to refused connections of a source that closed, still counted for it. */
  refused_closed_bytes: number;
  /** Sources whose refused connections close and dial again (see REDIALS). */
  redialing_sources: number;
}

export class Pressure {
  /** Sends what waits (the dispatcher's `pump`). */
  #wake: () => void;
  /** Client connections held with a wake-up waiting on their output. */
  #held = new WeakSet<Peer>();
  /** Client connections told OVERLOADED that have not shown since that they take their answers. */
  #refused = new Map<Peer, Refused>();
  /** Those by source, each source's in the order they were refused, closed ones included. */
  #bySource = new Map<unknown, Set<Refused>>();
  #sourceOf: ((flow: object) => string | undefined) | undefined;
  /** The sweep over #bySource (see #sweep), while it holds any. */
  #sweeping: ReturnType<typeof setInterval> | undefined;
  #sweptAt = 0;
  /** Per source: its refused connections that closed owing answers (see REDIALS), as forgotten so far. */
  #redials = new Map<unknown, number>();
  /** When each address last redialed, while it counts for its network (redial_nets.ts). */
  #netMembers = new Map<unknown, number>();
  #looks = 0;
  #closedBytes = 0;

  /**
   * @param wake sends what waits (the dispatcher's `pump`)
   * @param sourceOf a client connection's source (undefined: its own)
   */
  constructor(wake: () => void, sourceOf?: (flow: object) => string | undefined) {
    this.#wake = wake;
    this.#sourceOf = sourceOf;
  }

  /** Its figures for `sys.stats`. */
  get stats(): PressureStats {
    return {
      refused_watched: this.#refused.size,
      refused_looks: this.#looks,
      refused_closed_bytes: Math.round(this.#closedBytes),
      redialing_sources: [...this.#redials.values()].filter((n) => n > REDIALS).length,
    };
  }

  /**
   * A new client connection, its hello done and what it sent with it
   * taken: one of a source that redials (see REDIALS) that wrote requests
   * behind its hello before its welcome (no dist client does) is not read
   * further until its source has stopped, as if refused (see backOff). Any
   * other is read as usual (its first refusal pauses it likewise): an
   * honest client behind the same address, once in (the listener takes
   * such a source's new connections at a pace, wire/accept_pace.ts).
   */
  arrived(flow: Peer): void {
    if (this.#redials.size === 0 || flow.isClosed || !pipelinedHello(flow.conn)) return;
    const source = this.#sourceOf?.(flow);
    if (source === undefined || this.pacedAs(source) === undefined) return;
    this.backOff(flow);
    // One that goes before it is read again redials too.
    this.#refused.get(flow)!.refusals = REDIAL_REFUSALS;
  }

  /**
   * How the listener paces a redialing source (wire/accept_pace.ts): as itself or its network
   * ({@link netOf}); undefined: it does not redial. (A user's redials count for its address too.)
   */
  pacedAs(source: unknown): string | undefined {
    return this.netOf(source) ??
      ((this.#redials.get(source) ?? 0) > REDIALS ? String(source) : undefined);
  }

  /** The network of `source` while that redials and `source` with it (redial_nets.ts). */
  netOf(source: unknown): string | undefined {
    return redialingNet(this.#redials, this.#netMembers, source, performance.now());
  }

  /**
   * Whether client `flow` owes more unread answers than it may (drainTarget:
   * its high-water mark, or its share while the process holds too much
   * output): then its requests wait, and the dispatcher is woken once it
   * has read enough (or closed).
   */
  held(flow: Peer): boolean {
    const conn = flow.conn;
    const target = drainTarget(conn.pendingBytes, conn.highWater);
    if (target < 0) return false;
    if (!this.#held.has(flow)) {
      this.#held.add(flow);
      conn.drained(target).then(() => {
        this.#held.delete(flow);
        this.#wake();
      });
    }
    return true;
  }

  /**
   * Client `flow` was told OVERLOADED (the queue is full, or its requests
   * waited it out): it is not read for OVERLOAD_BACKOFF_MS, and what it
   * sends meanwhile waits in its socket. Refusing is cheap per request but
   * not per byte: 8 connections sending 1 MB requests to a full queue were
   * read at line rate (1.1 GB in 5 s), the balancer's event loop had a read
   * ready on each at every turn, and the runtime then went seconds without
   * taking up its other sockets' input (backends' answers, other clients'
   * pings): backends were cut for frame and heartbeat timeouts.
   *
   * Then, until it has taken every answer (none waits in the process nor
   * unacknowledged in its socket, wire's unsentBytes; see below), it is
   * read again only while it and the
   * connections of its source refused before it (and not done since) were
   * given at most REFUSED_OUTPUT_BYTES of output together since they were
   * refused. A refused request frees its
   * slot for the next, so 40 connections that pipeline small requests and
   * never read were refused ~60,000 requests a second, each parsed and
   * answered into a socket nobody drains (hostile39a P9). Left unread until
   * they had taken their answers, as stop 39 had it, a client that writes
   * all its requests before it reads any answer stalled for good once its
   * answers filled its socket (5,000 echoes of 2 KB past `--queue 50`:
   * stuck, where a `dist server` answers them all in 0.2-0.6 s). Now one
   * such client is read on about as far as a server reads it, and 40
   * non-readers of one source are refused that much together, then left
   * unread. Output given, not output unacknowledged: a client's kernel
   * acknowledges what fits its receive buffer unread (8 MiB with SO_RCVBUF).
   * Counted in the order they were refused, not all together: two
   * non-readers of one address that reconnect after each reset spent the
   * source's 8 MiB again and again, and an honest write-all client of the
   * same address refused before them was never read again (hostile40c V6:
   * 0 of 5,000 answers in 30 s). A newer connection can no longer stop an
   * older one; an older non-reader still stops the newer ones until it
   * goes (its write timeout cuts it).
   *
   * What a connection that closed was given since its refusal still
   * counts for its source, for the connections refused after it closed
   * (not those refused before: V6 stands), forgotten at
   * REFUSED_OUTPUT_BYTES per FORGET_MS. And a source whose connections,
   * refused again and again, close more than REDIALS times in a few
   * seconds redials: its refused connections are read again only once it
   * stopped (not when their kernel took their answers: a receive buffer
   * with room proves no reading), and its new connections are not read past
   * their hello's read (arrived). Counted per open connection only, 40
   * non-readers of one address that closed and dialed again once paused
   * were each read on afresh, ~250 requests refused or shed per connection,
   * and a client of another address fell from 7,400-17,900 to 73-647 calls
   * a second (hostile41a W8). Its socket is looked at (a kernel read) 100 ms
   * after a refusal, then twice as late each time its peer's
   * unacknowledged bytes did not fall, up to MAX_LOOK_MS: 2,000 refused
   * connections that kept a few KB unacknowledged were each looked at ten
   * times a second for good, a timer and a read each (W7: 19-24 % of a
   * core, 5-7 % before 5021851).
   */
  backOff(flow: Peer): void {
    if (flow.isClosed) return;
    let r = this.#refused.get(flow);
    const now = performance.now();
    if (r === undefined) {
      const since = flow.conn.bytesOut + flow.conn.pendingBytes;
      r = {
        flow,
        source: this.#sourceOf?.(flow) ?? flow,
        since,
        holds: 0,
        paused: false,
        pausedAt: 0,
        lookAt: 0,
        lookEvery: 0,
        unsent: Infinity,
        refusals: 0,
        address: undefined,
      };
      const address = clientSource(undefined, flow.conn.remoteHost);
      if (address !== r.source) r.address = address;
      this.#refused.set(flow, r);
      const same = this.#bySource.get(r.source);
      if (same === undefined) this.#bySource.set(r.source, new Set([r]));
      else same.add(r);
      this.#sweep0(now);
    }
    r.refusals++;
    // Refused (again): its socket is looked at soon.
    r.lookEvery = OVERLOAD_BACKOFF_MS;
    r.lookAt = now + OVERLOAD_BACKOFF_MS;
    if (r.paused) return;
    r.paused = true;
    r.pausedAt = now;
    flow.conn.pauseReading();
  }

  /**
   * Looks at every refused connection (see backOff), a source's in the
   * order they were refused: one that took its answers is done; one paused
   * for OVERLOAD_BACKOFF_MS is read again while it and those of its source
   * refused before it (closed ones' share included) hold at most
   * REFUSED_OUTPUT_BYTES. One timer for them all.
   */
  #sweep(): void {
    const now = performance.now();
    const elapsed = now - this.#sweptAt;
    const forget = elapsed * REFUSED_OUTPUT_BYTES / FORGET_MS;
    this.#sweptAt = now;
    this.#closedBytes = 0;
    for (const [source, n] of this.#redials) {
      const left = n - elapsed / REDIAL_FORGET_MS;
      if (left > 0) this.#redials.set(source, left);
      else this.#redials.delete(source);
    }
    forgetMembers(this.#netMembers, now);
    for (const [source, same] of this.#bySource) {
      let total = 0;
      let unforgotten = forget;
      /** Those that closed since the last sweep. */
      let closed: Refused[] | undefined;
      /** The closed one just before (none between it and this one). */
      let before: Refused | undefined;
      const redialing = this.pacedAs(source) !== undefined;
      for (const r of same) {
        const flow = r.flow;
        if (flow !== undefined && flow.isClosed) {
          this.#refused.delete(flow);
          r.flow = undefined;
          same.delete(r);
          // Its own source: nobody comes after it.
          if (source === flow) continue;
          if (r.refusals >= REDIAL_REFUSALS) {
            // Twice REDIALS at most: a source that stopped is read again within seconds.
            for (const s of r.address === undefined ? [source] : [source, r.address]) {
              this.#redials.set(s, Math.min(2 * REDIALS, (this.#redials.get(s) ?? 0) + 1));
            }
            countNetRedial(this.#redials, this.#netMembers, r.address ?? source, now);
          }
          // It counts for those refused after it closed, not before (see backOff).
          (closed ??= []).push(r);
          continue;
        }
        if (r.flow === undefined) {
          // The source's closed ones forget REFUSED_OUTPUT_BYTES per FORGET_MS together, oldest first.
          const took = Math.min(unforgotten, r.holds);
          r.holds -= took;
          unforgotten -= took;
          if (r.holds <= 0) {
            same.delete(r);
            continue;
          }
          this.#closedBytes += r.holds;
          total += r.holds;
          // Closed ones in a row count as one (as many as those still open, at most).
          if (before !== undefined) {
            before.holds += r.holds;
            same.delete(r);
          } else before = r;
          continue;
        }
        // A source that redials is not done: its kernel's room for answers proves no reading.
        if (this.#done(r, r.flow, now, redialing)) {
          same.delete(r);
          continue;
        }
        before = undefined;
        total += r.holds;
        if (
          r.paused && total <= REFUSED_OUTPUT_BYTES && !redialing &&
          now - r.pausedAt >= OVERLOAD_BACKOFF_MS
        ) {
          r.paused = false;
          r.flow.conn.resumeReading();
        }
      }
      if (closed !== undefined) {
        for (const r of closed) {
          if (before !== undefined) before.holds += r.holds;
          else same.add(before = r);
        }
      }
      if (same.size === 0) this.#bySource.delete(source);
    }
    if (this.#bySource.size === 0 && this.#redials.size === 0) {
      clearInterval(this.#sweeping);
      this.#sweeping = undefined;
    }
  }

  /** Starts the sweep (see #sweep) unless it runs. */
  #sweep0(now: number): void {
    if (this.#sweeping !== undefined) return;
    this.#sweptAt = now;
    this.#sweeping = setInterval(() => this.#sweep(), SWEEP_MS);
  }

  /**
   * Whether refused `r` (on `flow`) took every answer: none waits in the
   * process nor unacknowledged in its socket (wire's unsentBytes, a kernel
   * read: only when its look is due, sooner while what its peer has not
   * acknowledged falls, up to MAX_LOOK_MS apart while it does not). Then it
   * is read as any other. Counts what it was given since it was refused.
   */
  #done(r: Refused, flow: Peer, now: number, redialing: boolean): boolean {
    const conn = flow.conn;
    r.holds = conn.bytesOut + conn.pendingBytes - r.since;
    if (redialing || conn.pendingBytes > 0 || now < r.lookAt) return false;
    this.#looks++;
    const unsent = unsentBytes(conn);
    if (unsent === 0) {
      this.#refused.delete(flow);
      if (r.paused) conn.resumeReading();
      return true;
    }
    r.lookEvery = unsent < r.unsent ? OVERLOAD_BACKOFF_MS : Math.min(2 * r.lookEvery, MAX_LOOK_MS);
    r.unsent = unsent;
    r.lookAt = now + r.lookEvery;
    return false;
  }

  /** After a send to `backend` on `peer`: a connection holding too much takes no more until it drains. */
  checkBacklog(backend: Backend, peer: Peer): void {
    const conn = peer.conn;
    if (conn.pendingBytes <= conn.highWater || backend.backlogged) return;
    backend.backlogged = true;
    conn.drained(conn.highWater / 2).then(() => {
      backend.backlogged = false;
      this.#wake();
    });
  }
}

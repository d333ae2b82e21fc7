/**
 * The socket side of backends: a {@link ServerLink} keeps a connection to a
 * `--backends` server (redialing with backoff) and health-checks it; a
 * {@link WorkerLink} health-checks a worker that dialed in. Both only
 * report what they see to the backend's health rules (backends.ts).
 */
import { type Address, canonicalHost } from "../../config/mod.ts";
import {
  Backoff,
  CloseReason,
  dial,
  type DialOptions,
  DistError,
  keepReading,
  Nap,
  type Peer,
} from "../../wire/mod.ts";
import { isDescriptorShortage } from "../../wire/descriptors.ts";
import type { Backend, Transition } from "./backends.ts";
import { cut, dialLines } from "./log.ts";
import { probeSleep } from "./sleep_check.ts";

/** What forwarding needs of a backend's link. */
export interface Link {
  /** The connection requests go on, while there is one. */
  readonly peer: Peer | undefined;
}

export interface LinkOptions {
  /** Time between health checks (`--check-interval`), ms. */
  checkIntervalMs: number;
  /**
   * Told of every change of state (to log it, unless `quiet`, and to send
   * waiting requests).
   */
  report: (t: Transition | undefined, quiet?: boolean) => void;
}

/** Longest wait between two dials of a server that stays down (ms). */
export const MAX_REDIAL_MS = 32_000;
/**
 * For this long after a server went down it is dialed every check interval,
 * so one that restarts quickly is back within rise × interval; after that
 * the wait doubles up to MAX_REDIAL_MS, so a dead host is not hammered.
 */
export const FAST_REDIAL_MS = 5_000;
/**
 * A connection that drops sooner than this after it opened (a server that
 * accepts and hangs up) counts as a failed dial: it is dialed again with
 * the backoff, not at once (ms).
 */
export const STABLE_MS = 1_000;
/** A `sleep` probe of a binder's instance every this many health checks (sleep_check.ts). */
const PROBE = 10;

/**
 * One health check: `sys.ping` with the check interval as timeout.
 * @returns the reason of a miss, or undefined when it answered
 */
async function ping(peer: Peer, timeoutMs: number): Promise<string | undefined> {
  try {
    await peer.call("sys.ping", undefined, { timeout: timeoutMs });
    return undefined;
  } catch (err) {
    const e = DistError.from(err);
    return `${e.code}: ${cut(e.message)}`;
  }
}

/**
 * Watches `peer`'s answers to requests never sent (CallTable.onStray): past
 * the backend's bound (backends.ts onStray) the backend is out, which is
 * reported (one budgeted line), and the connection closed.
 */
function closeOnStrays(
  backend: Backend,
  peer: Peer,
  report: LinkOptions["report"],
  closed?: () => void,
): void {
  // Alive, if slow (verify.ts); a late answer keeps no worker name (workers.ts, hostile40c V1).
  peer.onLateAnswer = () => {
    backend.lateAnswers++;
    backend.lateAt = performance.now();
  };
  peer.onStrayAnswer = (bytes) => {
    const t = backend.onStray(bytes);
    if (t === undefined) return;
    peer.onStrayAnswer = undefined;
    report(t);
    peer.close(CloseReason.ProtocolError);
    closed?.();
  };
}

/**
 * Keeps a connection to one server: dials at start and at once again after
 * a connection that was up for STABLE_MS drops; while it stays unreachable
 * (or its connections drop as soon as they open), every check interval for
 * FAST_REDIAL_MS, then with a wait doubling up to 32 s (1 s, 2 s, … 32 s
 * with the default interval); while connected, pings it every check
 * interval.
 */
export class ServerLink implements Link {
  readonly backend: Backend;
  readonly address: Address;
  #peer: Peer | undefined;
  #dial: DialOptions;
  #options: LinkOptions;
  #stopped = false;
  #abort = new AbortController();
  #nap = new Nap();
  #loop: Promise<void> | undefined;
  /** Wait before the next dial after a failure. */
  #backoff: Backoff;
  /** Failures in a row (failed dials and short-lived connections). */
  #failures = 0;
  /** Since when the server has had no stable connection (performance.now()). */
  #downSince = performance.now();
  /** Why the last connection dropped, when it did within STABLE_MS. */
  #shortDrop: string | undefined;
  /** Health checks passed (every PROBE-th, from the first, brings a sleep probe). */
  #checks = 0;

  /** The servers connected, by the far end of their connections (shared by a ServerSet). */
  #attached: Map<string, ServerLink> | undefined;

  /** @param options `attached`: the links of one set by the address they reached (see #attach) */
  constructor(
    backend: Backend,
    address: Address,
    options: LinkOptions & { dial: DialOptions; attached?: Map<string, ServerLink> },
  ) {
    this.backend = backend;
    this.address = address;
    this.#dial = options.dial;
    this.#options = options;
    this.#attached = options.attached;
    const interval = options.checkIntervalMs;
    this.#backoff = new Backoff({ min: interval, max: Math.max(MAX_REDIAL_MS, interval) });
    backend.link = this;
  }

  get peer(): Peer | undefined {
    return this.#peer;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** Stops dialing and checking, and closes the connection. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#abort.abort();
    this.#nap.wake();
    await this.#loop;
    this.#peer?.close();
  }

  async #run(): Promise<void> {
    const interval = this.#options.checkIntervalMs;
    while (!this.#stopped) {
      if (this.#peer === undefined) {
        const dropped = this.#shortDrop;
        if (dropped !== undefined) {
          this.#shortDrop = undefined;
          await this.#failed(dropped, true);
          if (this.#stopped) break;
        }
        try {
          this.#attach(
            await dial(this.address, {
              ...this.#dial,
              connectTimeoutMs: Math.max(interval, 1000),
              signal: this.#abort.signal,
            }),
          );
        } catch (err) {
          if (this.#stopped) break;
          if (isDescriptorShortage(err)) {
            await this.#noDescriptor(err);
            continue;
          }
          const why = cut(err instanceof Error ? err.message : String(err));
          const t = this.backend.onLost(`cannot connect: ${why}`);
          this.#options.report(t);
          await this.#failed(`unreachable: ${why}`, t === undefined);
        }
        continue;
      }
      await this.#nap.sleep(interval);
      const peer = this.#peer;
      if (peer === undefined || this.#stopped) continue;
      const miss = await ping(peer, interval);
      if (this.#peer !== peer) continue; // lost meanwhile: already reported
      // An instance anyone may have registered shows now and then that it runs sleep as asked.
      if (
        miss === undefined && this.backend.source !== "backends" && this.#checks++ % PROBE === 0
      ) {
        probeSleep(peer, this.backend);
      }
      this.#options.report(
        miss === undefined ? this.backend.onCheckPassed() : this.backend.onCheckFailed(miss),
      );
    }
  }

  /**
   * One more failure in a row: says so (the first and every tenth, when
   * `say` and nothing else was logged; within the budget of such lines,
   * dialLines), waits the backoff, and lengthens it once the server has
   * been down for FAST_REDIAL_MS.
   */
  async #failed(why: string, say: boolean): Promise<void> {
    if (this.#failures++ % 10 === 0 && say) {
      dialLines.warn("Backend {backend} {why}; next try in {ms} ms", {
        backend: this.backend.name,
        why,
        ms: Math.round(this.#backoff.current),
      });
    }
    await this.#nap.sleep(this.#backoff.current);
    if (performance.now() - this.#downSince > FAST_REDIAL_MS) this.#backoff.next(); // lengthens it
  }

  /**
   * A dial failed for want of a file descriptor (EMFILE, ENFILE): this
   * process's shortage, not the server's, so it counts nowhere against it
   * (no failure, no longer backoff); dialed again after a check interval.
   */
  async #noDescriptor(err: unknown): Promise<void> {
    dialLines.warn(
      "Backend {backend} not dialed: this host has no descriptor or local port left ({error}); " +
        "not counted against it, next try in {ms} ms",
      {
        backend: this.backend.name,
        error: cut(err instanceof Error ? err.message : String(err)),
        ms: this.#options.checkIntervalMs,
      },
    );
    await this.#nap.sleep(this.#options.checkIntervalMs);
  }

  /**
   * One server, one backend: the address its connection reached (in its one
   * spelling) is held by one link at a time. Spellings of an address are
   * one key already (addresses.ts), but host names resolve: `localhost`, or
   * any name of an attacker's wildcard DNS, registered at an open binder,
   * reached a server that was a backend already (review45 R7's rest).
   * @throws {DistError} BAD_REQUEST (the connection closed) when another link holds it
   */
  #claim(peer: Peer): void {
    const attached = this.#attached;
    if (attached === undefined) return;
    let a: Deno.NetAddr;
    try {
      a = peer.conn.conn.remoteAddr as Deno.NetAddr;
    } catch {
      return; // no address to say (the transport's): nothing to compare
    }
    if (typeof a?.hostname !== "string") return;
    const at = `${canonicalHost(a.hostname)}:${a.port}`;
    const holder = attached.get(at);
    if (holder !== undefined && holder !== this && holder.#peer?.canCall === true) {
      peer.close();
      const why = `the same server as ${holder.backend.name}`;
      if (this.backend.state === "down") this.backend.reason = why; // shown while it stays down
      throw new DistError("BAD_REQUEST", why);
    }
    attached.set(at, this);
    peer.closed.then(() => {
      if (attached.get(at) === this) attached.delete(at);
    });
  }

  #attach(peer: Peer): void {
    if (this.#stopped) {
      peer.close();
      return;
    }
    if (peer.remote.role === "balancer" && this.backend.source !== "backends") {
      // An instance of a service is a server: a balancer there (this one under another spelling of
      // its address, or its pair) sends each request round again, and again (hostile45a K-A5: 16
      // registrations of the balancer's own port cut its clients to 0.05x). `--backends` may name
      // a balancer on purpose (tiers); a binder's instance, registered by anyone, may not.
      peer.close();
      throw new DistError("BAD_REQUEST", `${peer.remote.name} is a balancer, not a server`);
    }
    this.#claim(peer);
    this.#peer = peer;
    // Its answers drain the clients: never stop reading them (wire/inbound.ts).
    keepReading(peer.conn.conn);
    closeOnStrays(this.backend, peer, this.#options.report);
    this.backend.peerName = peer.remote.name;
    const upAt = performance.now();
    peer.closed.then((reason) => {
      if (this.#peer !== peer) return;
      this.#peer = undefined;
      this.#options.report(this.backend.onLost(`connection closed (${reason})`));
      const now = performance.now();
      if (now - upAt >= STABLE_MS) {
        // A real connection dropped: dial again at once, with a fresh backoff.
        this.#backoff.reset();
        this.#failures = 0;
        this.#downSince = now;
      } else {
        this.#shortDrop = `connection dropped ${Math.round(now - upAt)} ms after it opened ` +
          `(${reason})`;
      }
      this.#nap.wake();
    });
    this.#options.report(this.backend.onConnected());
  }
}

/** A registered worker: pinged every check interval until its connection closes. */
export class WorkerLink implements Link {
  readonly backend: Backend;
  readonly peer: Peer;
  #nap = new Nap();
  #stopped = false;

  /** @param options `onStrays`: called once its connection was closed for answers to requests never sent */
  constructor(backend: Backend, peer: Peer, options: LinkOptions & { onStrays?: () => void }) {
    this.backend = backend;
    this.peer = peer;
    backend.link = this;
    backend.peerName = peer.remote.name;
    keepReading(peer.conn.conn);
    // What it is sent is bounded (tasks: its high-water mark and a frame), its own requests'
    // answers not: four that pipelined sys.ping and never read held 64 MiB each (hostile44a H-A6).
    const conn = peer.conn;
    conn.maxOutbound = Math.min(conn.maxOutbound, 2 * conn.highWater + conn.maxFrame);
    closeOnStrays(backend, peer, options.report, options.onStrays);
    // Not logged: the registration is (sources.ts).
    options.report(backend.onConnected(), true);
    peer.closed.then(() => {
      this.#stopped = true;
      this.#nap.wake();
    });
    this.#run(options);
  }

  async #run(options: LinkOptions): Promise<void> {
    const interval = options.checkIntervalMs;
    while (!this.#stopped) {
      await this.#nap.sleep(interval);
      if (this.#stopped) break;
      const miss = await ping(this.peer, interval);
      if (this.#stopped) break;
      options.report(
        miss === undefined ? this.backend.onCheckPassed() : this.backend.onCheckFailed(miss),
      );
    }
  }
}

/**
 * The socket side of backends: a {@link ServerLink} keeps a connection to a
 * `--backends` server (redialing with backoff) and health-checks it; a
 * {@link WorkerLink} health-checks a worker that dialed in. Both only
 * report what they see to the backend's health rules (backends.ts).
 */
import { getLogger } from "@logtape/logtape";
import type { Address } from "../../config/mod.ts";
import { dial, type DialOptions, DistError, type Peer } from "../../wire/mod.ts";
import type { Backend, Transition } from "./backends.ts";

const log = getLogger(["dist", "balancer"]);

/** What forwarding needs of a backend's link. */
export interface Link {
  /** The connection requests go on, while there is one. */
  readonly peer: Peer | undefined;
}

export interface LinkOptions {
  /** Time between health checks (`--check-interval`), ms. */
  checkIntervalMs: number;
  /** Told of every change of state (to log it and send waiting requests). */
  report: (t: Transition | undefined) => void;
}

/** Longest wait between two dials of a server that stays down (ms). */
export const MAX_REDIAL_MS = 32_000;
/**
 * For this long after a server went down it is dialed every check interval,
 * so one that restarts quickly is back within rise × interval; after that
 * the wait doubles up to MAX_REDIAL_MS, so a dead host is not hammered.
 */
export const FAST_REDIAL_MS = 5_000;

/** Resolves after `ms`, or at once when `wake` is called. */
class Nap {
  #wake: (() => void) | undefined;

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }

  wake(): void {
    this.#wake?.();
  }
}

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
    return `${e.code}: ${e.message}`;
  }
}

/**
 * Keeps a connection to one server: dials at start and at once again after
 * a drop; while it stays unreachable, every check interval for
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

  constructor(backend: Backend, address: Address, options: LinkOptions & { dial: DialOptions }) {
    this.backend = backend;
    this.address = address;
    this.#dial = options.dial;
    this.#options = options;
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
    let backoff = interval;
    let failures = 0;
    let downSince = performance.now();
    while (!this.#stopped) {
      if (this.#peer === undefined) {
        try {
          this.#attach(
            await dial(this.address, {
              ...this.#dial,
              connectTimeoutMs: Math.max(interval, 1000),
              signal: this.#abort.signal,
            }),
          );
          backoff = interval;
          failures = 0;
          downSince = Infinity;
          continue;
        } catch (err) {
          if (this.#stopped) break;
          const why = err instanceof Error ? err.message : String(err);
          const t = this.backend.onLost(`cannot connect: ${why}`);
          this.#options.report(t);
          if (t === undefined && failures++ % 10 === 0) {
            log.warn("Backend {backend} unreachable: {why}; next try in {ms} ms", {
              backend: this.backend.name,
              why,
              ms: Math.round(backoff),
            });
          }
          downSince = Math.min(downSince, performance.now());
          await this.#nap.sleep(backoff);
          if (performance.now() - downSince > FAST_REDIAL_MS) {
            backoff = Math.min(backoff * 2, Math.max(MAX_REDIAL_MS, interval));
          }
          continue;
        }
      }
      await this.#nap.sleep(interval);
      const peer = this.#peer;
      if (peer === undefined || this.#stopped) continue;
      const miss = await ping(peer, interval);
      if (this.#peer !== peer) continue; // lost meanwhile: already reported
      this.#options.report(
        miss === undefined ? this.backend.onCheckPassed() : this.backend.onCheckFailed(miss),
      );
    }
  }

  #attach(peer: Peer): void {
    if (this.#stopped) {
      peer.close();
      return;
    }
    this.#peer = peer;
    this.backend.peerName = peer.remote.name;
    peer.closed.then((reason) => {
      if (this.#peer !== peer) return;
      this.#peer = undefined;
      this.#options.report(this.backend.onLost(`connection closed (${reason})`));
      this.#nap.wake(); // redial at once
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

  constructor(backend: Backend, peer: Peer, options: LinkOptions) {
    this.backend = backend;
    this.peer = peer;
    backend.link = this;
    backend.peerName = peer.remote.name;
    options.report(backend.onConnected());
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

import { DistError } from "./errors.ts";
import { CloseReason } from "./conn.ts";
import { dial, type DialOptions } from "./net.ts";
import type { Peer } from "./peer.ts";
import { Backoff, sleep } from "./backoff.ts";
import { cut, log } from "./_log.ts";

/**
 * A connection that lived at least this long was a real one: when it drops,
 * redial at once with the backoff reset. One that dropped sooner (a peer
 * that accepts and hangs up, two workers evicting each other) counts as a
 * failure, so a flapping peer is dialed with backoff, not a thousand times a second.
 */
const STABLE_MS = 1000;

/**
 * Where a Redialer dials when the address is not fixed (a service's
 * instances, found through binders): asked before every dial.
 */
export interface AddressSource {
  /**
   * The address to dial next. A DistError thrown here fails the dial as a
   * refused connection would (told to `onDialError`, then the backoff).
   * `connectTimeoutMs`, when given, bounds this dial instead of the option's.
   */
  next(signal: AbortSignal): Promise<{ host: string; port: number; connectTimeoutMs?: number }>;
  /**
   * The address `next()` gave could not be dialed (`wasUp` false), or its
   * connection dropped (`wasUp` true).
   * @returns true when the next address may be dialed at once, without the
   * backoff (another instance of a service after one refused the dial, or
   * hung up before answering anything)
   */
  failed(address: { host: string; port: number }, err: DistError, wasUp: boolean): boolean | void;
}

/** Options of a Redialer: those of `dial()`, plus the backoff and hooks. */
export interface RedialOptions extends DialOptions {
  /** First wait after a failure (ms); doubles up to `maxBackoffMs`. */
  minBackoffMs?: number;
  /** Longest wait between tries (ms). */
  maxBackoffMs?: number;
  /** Runs on every new connection before it counts as up (e.g. to register). */
  onConnect?: (peer: Peer) => void | Promise<void>;
  /** Told why each connection that was up dropped. */
  onDisconnect?: (reason: CloseReason) => void;
  /**
   * A dial (or `onConnect`) failed, before the backoff; calling `stop()`
   * here ends the loop (a caller that must connect the first time or fail).
   */
  onDialError?: (err: DistError) => void;
  /**
   * Log failed dials (the first, then every tenth) as warnings; false when
   * `onDialError` says it in the caller's own words (default true).
   */
  logFailures?: boolean;
}

/**
 * Keeps one connection to an address up: dials, and when the connection
 * fails, dials again after an exponential backoff with jitter (100 ms,
 * 200 ms, … up to 5 s by default) until stopped. A connection that drops
 * after being up for a while is redialed at once; one that drops within
 * STABLE_MS counts as a failure.
 */
export class Redialer {
  #address: { host: string; port: number };
  #source: AddressSource | undefined;
  #options: RedialOptions;
  #peer: Peer | undefined;
  #stopped = false;
  /** Callers of ready(): given the peer once up, or the error when stopped. */
  #waiters: ((outcome: Peer | DistError) => void)[] = [];
  #loop: Promise<void> | undefined;
  /** Aborted by stop(), so a dial in progress ends at once. */
  #abort = new AbortController();
  /** Consecutive failed dials; 0 while connected. */
  failures = 0;
  /** Consecutive connections that dropped within STABLE_MS (for the log). */
  #shortDrops = 0;

  /**
   * A redialer of `address`, or of the addresses a source gives in turn.
   * @param address where to dial, or an {@link AddressSource} asked before each dial
   * @param options how (see RedialOptions); call `start()` to begin
   */
  constructor(address: { host: string; port: number } | AddressSource, options: RedialOptions) {
    if ("next" in address) {
      this.#source = address;
      this.#address = { host: "", port: 0 };
    } else {
      this.#address = address;
    }
    this.#options = options;
  }

  /** Where it dials (with a source: the address dialed last; port 0 before the first). */
  get address(): { host: string; port: number } {
    return this.#address;
  }

  /** The connected peer, if any. */
  get peer(): Peer | undefined {
    return this.#peer && !this.#peer.isClosed ? this.#peer : undefined;
  }

  /** Starts dialing in the background (once). */
  start(): this {
    this.#loop ??= this.#run();
    return this;
  }

  /**
   * Resolves with a connected peer, waiting up to `timeoutMs` for one.
   * @throws {DistError} UNAVAILABLE when none is up in time or when stopped.
   */
  ready(timeoutMs: number): Promise<Peer> {
    const current = this.peer;
    if (current) return Promise.resolve(current);
    if (this.#stopped) return Promise.reject(new DistError("UNAVAILABLE", "Dialer stopped"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(
          new DistError(
            "UNAVAILABLE",
            `No connection to ${this.address.host}:${this.address.port} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      const waiter = (outcome: Peer | DistError) => {
        clearTimeout(timer);
        if (outcome instanceof DistError) reject(outcome);
        else resolve(outcome);
      };
      this.#waiters.push(waiter);
    });
  }

  /** Stops redialing and closes the current connection. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#abort.abort();
    const stopped = new DistError("UNAVAILABLE", "Dialer stopped");
    for (const w of this.#waiters.splice(0)) w(stopped);
    this.#peer?.close(CloseReason.Shutdown);
    await this.#loop;
  }

  async #run(): Promise<void> {
    const backoff = new Backoff({
      min: this.#options.minBackoffMs ?? 100,
      max: this.#options.maxBackoffMs ?? 5000,
      jitter: 0.2,
    });
    while (!this.#stopped) {
      let peer: Peer | undefined;
      let sourced = false;
      let atOnce = false;
      try {
        let connectTimeoutMs = this.#options.connectTimeoutMs;
        if (this.#source !== undefined) {
          const next = await this.#source.next(this.#abort.signal);
          this.#address = { host: next.host, port: next.port };
          connectTimeoutMs = next.connectTimeoutMs ?? connectTimeoutMs;
          sourced = true;
        }
        peer = await dial(this.#address, {
          ...this.#options,
          connectTimeoutMs,
          signal: this.#abort.signal,
        });
        if (this.#stopped) {
          peer.close(CloseReason.Shutdown);
          break;
        }
        await this.#options.onConnect?.(peer);
        if (this.#stopped) {
          // stop() came while it was being set up: it closed no connection, so close this one.
          peer.close(CloseReason.Shutdown);
          break;
        }
        if (peer.isClosed) throw new DistError("UNAVAILABLE", "Connection closed while setting up");
        this.#peer = peer;
        this.failures = 0;
        for (const w of this.#waiters.splice(0)) w(peer);
        const upAt = performance.now();
        const reason = await peer.closed;
        this.#peer = undefined;
        if (this.#stopped) break;
        const lived = performance.now() - upAt;
        const next = this.#source?.failed(
          this.#address,
          peer.reported ?? new DistError("UNAVAILABLE", `Connection lost (${reason})`),
          true,
        );
        this.#options.onDisconnect?.(reason);
        // The source searches on at once (its instance hung up before answering anything).
        if (next === true) continue;
        if (lived >= STABLE_MS) {
          log.info("Connection to {addr} lost ({reason}); redialing", {
            addr: `${this.address.host}:${this.address.port}`,
            reason,
          });
          this.#shortDrops = 0;
          backoff.reset();
          continue; // a real connection dropped: dial again at once
        }
        // Dropped right after it opened: back off as after a failure.
        this.#shortDrops++;
        if (this.#shortDrops === 1 || this.#shortDrops % 10 === 0) {
          log.warn(
            "Connection to {addr} dropped {ms} ms after it opened ({reason}); " +
              "retrying in {wait} ms",
            {
              addr: `${this.address.host}:${this.address.port}`,
              ms: Math.round(lived),
              reason,
              wait: Math.round(backoff.current),
            },
          );
        }
      } catch (err) {
        peer?.close(CloseReason.HandshakeFailed); // onConnect failed: don't leak the socket
        this.failures++;
        if (sourced) {
          atOnce = this.#source!.failed(this.#address, DistError.from(err), false) === true;
        }
        this.#options.onDialError?.(DistError.from(err));
        if (this.#stopped) break;
        const logged = this.#options.logFailures ?? true;
        if (logged && (this.failures === 1 || this.failures % 10 === 0)) {
          log.warn("Cannot reach {addr}: {error}; retrying in {ms} ms", {
            addr: `${this.address.host}:${this.address.port}`,
            error: cut(err instanceof Error ? err.message : String(err)),
            ms: Math.round(backoff.current),
          });
        }
      }
      if (!atOnce) await sleep(backoff.next(), this.#abort.signal);
    }
  }
}

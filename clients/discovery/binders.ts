/**
 * Talking to a list of binders: one is picked at random, kept while it
 * answers, and when it cannot be reached or does not answer in time the next
 * one in the list is tried, and so on round the list.
 */
import { getLogger } from "@logtape/logtape";
import { cut } from "../../wire/_log.ts";
import { formatAddress, parseAddress } from "../../config/mod.ts";
import {
  type CallOptions,
  checkResult,
  type Codec,
  type ConnSettings,
  dial,
  DistError,
  type Method,
  type Peer,
} from "../../wire/mod.ts";

const log = getLogger(["dist", "discovery"]);

/** Errors after which the next binder is tried: this one is down, stuck or full. */
const FAILOVER = new Set(["UNAVAILABLE", "TIMEOUT", "OVERLOADED"]);

/** How a {@link BinderClient} talks to binders. */
export interface BinderClientOptions {
  /** The binders, as "host:port". */
  binders: readonly string[];
  /** This process's role and name, told to the binders in the handshake. */
  role: string;
  /** This process's name, told to the binders. */
  name: string;
  /** The connections' codec (default JSON). */
  codec?: Codec;
  /** Frame limit, heartbeat… of the connections to binders. */
  conn?: ConnSettings;
  /** Timeout of each call, and of connecting (ms). */
  timeoutMs?: number;
  /** Where in the list to start, as a number in [0, 1) (default `Math.random`). */
  random?: () => number;
}

/** A notification from a binder, and which binder sent it. */
export type BinderNotification = (method: string, params: unknown, binder: string) => void;

/** Calls to a list of binders with failover. See the module comment. */
export class BinderClient {
  /** The binders, as "host:port". */
  readonly addresses: readonly string[];
  #options: BinderClientOptions;
  #current: number;
  #peers = new Map<string, Promise<Peer>>();
  #listeners = new Set<BinderNotification>();
  #closed = false;

  /** A client of `options.binders`; see {@link binders}. @ignore */
  constructor(options: BinderClientOptions) {
    if (options.binders.length === 0) throw new DistError("BAD_REQUEST", "No binders given");
    this.addresses = options.binders.map((b) => formatAddress(parseAddress(b)));
    this.#options = options;
    this.#current = Math.floor((options.random ?? Math.random)() * this.addresses.length) %
      this.addresses.length;
  }

  /** The binder tried first: the one that answered last (at first, one picked at random). */
  get current(): string {
    return this.addresses[this.#current];
  }

  /** Each call's timeout, and connecting's (ms): `timeoutMs` as given, else 2000. */
  get timeoutMs(): number {
    return this.#options.timeoutMs ?? 2000;
  }

  /** The binders, comma-separated, for messages. */
  get asked(): string {
    return this.addresses.join(", ");
  }

  /**
   * Calls `method` (a binder contract's) on the current binder, then on the
   * next ones while a binder is unreachable, times out or is overloaded.
   * With `until` (a `performance.now()` time) the whole call ends by then:
   * each binder left gets its share of the time left (at least 500 ms, or
   * what is left), so one that hangs does not take it all (h47 Q19).
   * @throws {DistError} the binder's own error (NOT_FOUND, BAD_REQUEST…),
   *   UNAVAILABLE when no binder answered (in time), INTERNAL for a malformed answer
   */
  async call<N extends string, P, R>(
    method: Method<N, P, R>,
    params: NoInfer<P>,
    options: CallOptions & { until?: number } = {},
  ): Promise<R> {
    let last: DistError | undefined;
    const { until, ...callOptions } = options;
    const n = this.addresses.length;
    let late = "";
    for (let i = 0; i < n; i++) {
      const index = (this.#current + i) % n;
      const address = this.addresses[index];
      let timeout = callOptions.timeout ?? this.timeoutMs;
      if (until !== undefined) {
        const left = until - performance.now();
        if (left <= 0) {
          late = " in time";
          break;
        }
        timeout = Math.ceil(Math.min(timeout, Math.max(left / (n - i), Math.min(left, 500))));
      }
      try {
        const peer = await this.#connect(address, timeout);
        const r = await peer.request(method.name, params, { ...callOptions, timeout });
        this.#moveTo(index);
        return checkResult(method, r.result, r.by);
      } catch (err) {
        const e = DistError.from(err);
        if (options.signal?.aborted) throw e;
        if (!FAILOVER.has(e.code)) {
          this.#moveTo(index); // it answered (NOT_FOUND, BAD_REQUEST…): it is up
          throw e;
        }
        last = e;
        log.debug("Binder {binder} failed ({code}: {message}); trying the next", {
          binder: address,
          code: e.code,
          message: cut(e.message),
        });
      }
    }
    throw new DistError("UNAVAILABLE", `No binder answered${late} (asked ${this.asked})`, {
      cause: last,
    });
  }

  /**
   * A connection to the current binder (or, failing that, to the next ones),
   * for a caller that sends several requests on it, such as a watch.
   * @throws {DistError} UNAVAILABLE when no binder can be reached
   * @ignore
   */
  async connection(): Promise<{ peer: Peer; address: string }> {
    const timeout = this.timeoutMs;
    for (let i = 0; i < this.addresses.length; i++) {
      const index = (this.#current + i) % this.addresses.length;
      try {
        const peer = await this.#connect(this.addresses[index], timeout);
        this.#moveTo(index);
        return { peer, address: this.addresses[index] };
      } catch {
        // Down: try the next one.
      }
    }
    throw new DistError("UNAVAILABLE", `No binder reachable (asked ${this.asked})`);
  }

  /** Calls `listener` with every notification any binder sends. @returns unsubscribe */
  onNotification(listener: BinderNotification): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Closes every connection; later calls fail with UNAVAILABLE. */
  close(): void {
    this.#closed = true;
    for (const p of this.#peers.values()) p.then((peer) => peer.close(), () => {});
    this.#peers.clear();
  }

  #moveTo(index: number): void {
    if (index === this.#current) return;
    log.info("Now using binder {binder}", { binder: this.addresses[index] });
    this.#current = index;
  }

  /** The open connection to `address`, dialing it if there is none (one dial at a time). */
  #connect(address: string, timeoutMs: number): Promise<Peer> {
    if (this.#closed) return Promise.reject(new DistError("UNAVAILABLE", "Binder client closed"));
    const open = this.#peers.get(address);
    if (open !== undefined) {
      // A dial in progress, or a peer: reuse it unless it has closed since.
      const usable = open.then((peer) => peer.isClosed ? undefined : peer, () => undefined);
      return usable.then((peer) => peer ?? this.#dial(address, timeoutMs, open));
    }
    return this.#dial(address, timeoutMs, undefined);
  }

  #dial(address: string, timeoutMs: number, stale: Promise<Peer> | undefined): Promise<Peer> {
    // Another caller may have replaced the stale entry meanwhile: use theirs.
    const now = this.#peers.get(address);
    if (now !== undefined && now !== stale) return now;
    const o = this.#options;
    const dialing = dial(parseAddress(address), {
      ...o.conn,
      role: o.role,
      name: o.name,
      codec: o.codec,
      timeoutMs,
      connectTimeoutMs: timeoutMs,
      onNotification: (method, params) => {
        for (const l of this.#listeners) l(method, params, address);
      },
    });
    this.#peers.set(address, dialing);
    dialing.catch(() => {
      if (this.#peers.get(address) === dialing) this.#peers.delete(address);
    });
    return dialing;
  }
}

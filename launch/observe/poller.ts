/**
 * Asks instances for `sys.stats` at a steady pace over kept connections,
 * only while someone watches: a dashboard page, `dist status --watch` (or,
 * later, a metrics scrape). One connection per instance, dialed when first
 * needed and again after it drops (at most once a round), closed a while
 * after the last watcher has gone. Rounds never overlap: a slow instance
 * delays nobody but itself (each call is bounded by the timeout), and the
 * next round starts an interval after the previous one started, or at once
 * when it took longer.
 */
import { parseAddress } from "../../config/mod.ts";
import { sys } from "../../clients/contracts/mod.ts";
import {
  call,
  type Credentials,
  dial,
  DistError,
  type Peer,
  type TlsSettings,
} from "../../wire/mod.ts";

/** Something to poll: its name (what it must answer as) and where it is now. */
export interface PollTarget {
  name: string;
  /** Where it listens now; undefined while unknown (port 0 before it said) or never. */
  address(): string | undefined;
  /** What to prove who the poller is with, where the instance asks. */
  credentials?: Credentials;
  /** The CA the instance's certificate is checked against, when it speaks TLS. */
  tls?: TlsSettings;
}

/** What asking one instance gave. */
export interface PollResult {
  /** When the answer (or the failure) came (ms since the epoch). */
  at: number;
  ok: boolean;
  /** Its sys.stats, when ok. */
  stats?: Record<string, unknown>;
  /** Why it did not answer, when not ok. */
  error?: string;
  /** Something answered on its port, but as another name (when not ok). */
  impostor?: string;
}

/** How a {@link StatsPoller} polls. */
export interface PollerOptions {
  /** Time between the starts of two rounds (ms). */
  intervalMs: number;
  /** Bound of one dial plus call (ms). */
  timeoutMs: number;
  /** How long connections are kept after the last watcher left (ms). */
  lingerMs?: number;
  /** The name this process gives in handshakes. */
  clientName?: string;
}

/** How long an answer out of turn is given again rather than asked anew (ms). */
const FRESH_MS = 500;

/** One instance's kept connection. */
interface Link {
  address?: string;
  peer?: Peer;
}

/** Polls `sys.stats` of a set of instances while watched. See the module comment. */
export class StatsPoller {
  #targets: PollTarget[];
  #options: Required<PollerOptions>;
  #links = new Map<string, Link>();
  #latest = new Map<string, PollResult>();
  /** Questions out of turn under way, by instance. */
  #asking = new Map<string, Promise<PollResult>>();
  #listeners = new Set<(results: ReadonlyMap<string, PollResult>) => void>();
  #watchers = 0;
  #loop?: Promise<void>;
  /** Wakes the loop's wait between rounds (on the last release, or close). */
  #wake?: () => void;
  #linger?: ReturnType<typeof setTimeout>;
  #closed = false;
  /** Rounds done, for tests and the metrics' own figures. */
  rounds = 0;

  constructor(targets: PollTarget[], options: PollerOptions) {
    this.#targets = targets;
    this.#options = {
      lingerMs: 5000,
      clientName: `dist-up-${Deno.pid}`,
      ...options,
    };
  }

  /** Whether anyone watches. */
  get watched(): boolean {
    return this.#watchers > 0;
  }

  /** The last result of each instance polled so far. */
  get latest(): ReadonlyMap<string, PollResult> {
    return this.#latest;
  }

  /** Called after each round with every instance's latest result. */
  onRound(listener: (results: ReadonlyMap<string, PollResult>) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Starts polling (if nobody watched yet); the returned function stops
   * this watcher's share (once; later calls do nothing).
   */
  watch(): () => void {
    if (this.#closed) return () => {};
    this.#watchers++;
    clearTimeout(this.#linger);
    this.#linger = undefined;
    this.#loop ??= this.#run();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.#watchers > 0) return;
      this.#wake?.();
      this.#linger = setTimeout(() => this.#dropLinks(), this.#options.lingerMs);
    };
  }

  async #run(): Promise<void> {
    try {
      while (this.#watchers > 0 && !this.#closed) {
        const started = performance.now();
        await this.#round();
        const left = this.#options.intervalMs - (performance.now() - started);
        if (left > 0 && this.#watchers > 0 && !this.#closed) await this.#nap(left);
      }
    } finally {
      this.#loop = undefined;
      // A watcher that came as the loop was ending.
      if (this.#watchers > 0 && !this.#closed) this.#loop = this.#run();
    }
  }

  #nap(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }

  async #round(): Promise<void> {
    await Promise.all(this.#targets.map(async (t) => this.#latest.set(t.name, await this.#ask(t))));
    this.rounds++;
    for (const listener of this.#listeners) {
      try {
        listener(this.#latest);
      } catch {
        // A listener's bug must not stop the others or the polling.
      }
    }
  }

  /**
   * Asks one instance now, out of turn (a page asking for its sys.stats).
   * Questions at the same time share one, and an answer younger than
   * {@link FRESH_MS} is given again: each used to dial the instance, so any
   * local process could make the launcher hammer an instance with
   * connections, handshakes and credential checks through the dashboard.
   */
  async pollOne(name: string): Promise<PollResult | undefined> {
    const target = this.#targets.find((t) => t.name === name);
    if (target === undefined || this.#closed) return undefined;
    const last = this.#latest.get(name);
    if (last !== undefined && Date.now() - last.at < FRESH_MS) return last;
    let asking = this.#asking.get(name);
    if (asking === undefined) {
      asking = this.#ask(target).then((result) => {
        this.#latest.set(name, result);
        return result;
      }).finally(() => this.#asking.delete(name));
      this.#asking.set(name, asking);
    }
    return await asking;
  }

  async #ask(target: PollTarget): Promise<PollResult> {
    const address = target.address();
    if (address === undefined) return { at: Date.now(), ok: false, error: "Not listening" };
    let link = this.#links.get(target.name);
    if (link === undefined) this.#links.set(target.name, link = {});
    const { timeoutMs } = this.#options;
    try {
      if (link.peer === undefined || link.peer.isClosed || link.address !== address) {
        link.peer?.close();
        link.peer = undefined;
        link.address = address;
        const peer = await dial(parseAddress(address), {
          role: "launcher",
          name: this.#options.clientName,
          connectTimeoutMs: timeoutMs,
          timeoutMs,
          credentials: target.credentials,
          tls: target.tls,
        });
        if (peer.remote.name !== target.name) {
          peer.close();
          return {
            at: Date.now(),
            ok: false,
            error: `${address} answers as ${peer.remote.name}`,
            impostor: peer.remote.name,
          };
        }
        if (this.#closed || this.#watchers === 0 && this.#linger === undefined) {
          // Nobody watches (a question out of turn), or closed meanwhile: keep nothing.
          try {
            return await this.#stats(peer);
          } finally {
            peer.close();
          }
        }
        link.peer = peer;
        return await this.#stats(peer);
      }
      return await this.#stats(link.peer);
    } catch (err) {
      return { at: Date.now(), ok: false, error: DistError.from(err).message };
    }
  }

  async #stats(peer: Peer): Promise<PollResult> {
    const stats = await call(peer, sys.methods.stats, {}, { timeout: this.#options.timeoutMs });
    return { at: Date.now(), ok: true, stats };
  }

  #dropLinks(): void {
    this.#linger = undefined;
    if (this.#watchers > 0) return;
    for (const link of this.#links.values()) link.peer?.close();
    this.#links.clear();
  }

  /** Stops polling and closes every connection. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#linger);
    this.#wake?.();
    await this.#loop;
    for (const link of this.#links.values()) link.peer?.close();
    this.#links.clear();
  }
}

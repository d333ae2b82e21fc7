/**
 * Where backends come from, mixed freely in one pool:
 * - {@link ServerSet}: servers the balancer dials, given by `--backends` or
 *   found through binders (`--service NAME --binders …`, kept current with
 *   `binder.watch`);
 * - {@link WorkerRegistry}: workers that dial the worker port and call
 *   `worker.register {name, capacity}`.
 */
import { type Address, parseAddress } from "../../config/mod.ts";
import { type DialOptions, DistError, type Peer } from "../../wire/mod.ts";
import { type BinderClient, type ServiceWatch, watchService } from "../../clients/discovery/mod.ts";
import { binder } from "../../clients/contracts/mod.ts";
import { bindersFrom } from "../_flags.ts";
import type { WorkerRegistration } from "../../clients/contracts/mod.ts";
import { Backend, type HealthRules, type Pool } from "./backends.ts";
import { type Outlier, REMEMBER_MAX, REMEMBER_MS } from "./outlier.ts";
import { type LinkOptions, ServerLink, WorkerLink } from "./links.ts";
import { backendLines, cut, workerLines } from "./log.ts";
import { StrayBench } from "./stray_bench.ts";
import { clientSource } from "../../auth/mod.ts";

/** Longest a server that left its service may take to finish its requests (ms). */
const DRAIN_MS = 30_000;
/**
 * How long an instance from the binders that never answered keeps its place
 * while others wait for one past `--max-backends` (ms); also how often they
 * are looked at.
 */
export const ROTATE_MS = 5_000;
/** Most `binder.report_down` in flight from one `--service`. */
const MAX_REPORTS = 64;
/** Least time between two log lines about the cap, per source (ms). */
const CAP_LOG_MS = 10_000;

export interface SourceOptions extends LinkOptions {
  pool: Pool;
  rules: HealthRules;
  /** Most requests in flight on one server, and on one worker whatever it declares. */
  maxInflight: number;
  /** Most workers registered at once (`--max-workers`). */
  maxWorkers?: number;
  /** Most servers dialed from the binders, per service (`--max-backends`). */
  maxBackends?: number;
}

interface ServerEntry {
  link: ServerLink;
  source: string;
  /** When it was added (performance.now()). */
  added: number;
}

/** The servers the balancer dials, by address, whatever named them. */
export class ServerSet {
  #options: SourceOptions & { dial: DialOptions };
  #links = new Map<string, ServerEntry>();
  #draining = new Set<Promise<void>>();
  /** Per capped source: instances left out (past `--max-backends`), and when that was said. */
  #left = new Map<string, { count: number; logged: number }>();

  constructor(options: SourceOptions & { dial: DialOptions }) {
    this.#options = options;
  }

  get size(): number {
    return this.#links.size;
  }

  /**
   * Starts dialing `text` ("host:port") unless it is already a backend.
   * @throws {UsageError} for an address that is not one
   */
  add(text: string, source: string): void {
    this.#add(parseAddress(text), source);
  }

  #add(address: Address, source: string): void {
    const key = `${address.host}:${address.port}`;
    if (this.#links.has(key)) return;
    const o = this.#options;
    const backend = new Backend("server", key, { capacity: o.maxInflight, rules: o.rules });
    backend.source = source;
    o.pool.add(backend);
    const link = new ServerLink(backend, address, o);
    this.#links.set(key, { link, source, added: performance.now() });
    link.start();
  }

  /**
   * Makes the servers of `source` exactly `addresses`: new ones are dialed;
   * those gone take no new requests, finish theirs (within 30 s), then are
   * dropped. Servers of other sources are left alone. With `capped` (a
   * service from the binders), at most `--max-backends` are dialed: those
   * already dialed keep their place (a flood of new addresses cannot push a
   * live server out), and one that never answered gives its place after
   * {@link ROTATE_MS} to one left out, so a real server registered after a
   * flood of dead addresses is reached in time. O(addresses) per call.
   */
  sync(source: string, addresses: readonly string[], capped = false): string[] {
    const wanted = new Map<string, Address>();
    for (const text of addresses) {
      let address: Address;
      try {
        address = parseAddress(text);
      } catch (err) {
        // One bad entry (a binder's data) must not keep the others out.
        backendLines.warn("Skipped {address} of {source}: {error}", {
          address: cut(text),
          source,
          error: cut((err as Error).message),
        });
        continue;
      }
      wanted.set(`${address.host}:${address.port}`, address);
    }
    const now = performance.now();
    const stale: string[] = [];
    let have = 0;
    for (const [key, entry] of this.#links) {
      if (entry.source !== source) continue;
      if (!wanted.has(key)) {
        this.#links.delete(key);
        this.#drop(entry.link, `no longer an instance of ${source}`);
        continue;
      }
      have++;
      const b = entry.link.backend;
      if (b.state !== "up" && b.peerName === "" && now - entry.added >= ROTATE_MS) stale.push(key);
    }
    const max = capped ? this.#options.maxBackends ?? Infinity : Infinity;
    const waiting: Address[] = [];
    for (const [key, address] of wanted) {
      if (this.#links.has(key)) continue;
      if (have < max) {
        this.#add(address, source);
        have++;
      } else waiting.push(address);
    }
    // Places of instances that never answered go to those left out, oldest first.
    let rotated = 0;
    const gaveUp: string[] = [];
    for (const key of stale) {
      if (rotated >= waiting.length) break;
      const entry = this.#links.get(key)!;
      this.#links.delete(key);
      this.#drop(entry.link, "never answered; its place goes to another instance", false);
      // Those left out are taken in turn: the list's order is the binder's, the same each time.
      this.#add(waiting[this.#turn++ % waiting.length], source);
      rotated++;
      gaveUp.push(key);
    }
    this.#noteLeftOut(source, max, waiting.length, rotated, now);
    return gaveUp;
  }

  /** Instances of `source` left out past `--max-backends` at its last sync. */
  leftOut(source: string): number {
    return this.#left.get(source)?.count ?? 0;
  }

  #turn = 0;

  #noteLeftOut(source: string, max: number, count: number, rotated: number, now: number): void {
    const left = this.#left.get(source);
    if (count === 0) {
      if (left !== undefined) {
        this.#left.delete(source);
        backendLines.info("{source}: every instance is dialed again ({max} at most)", {
          source,
          max,
        });
      }
      return;
    }
    if (left !== undefined && now - left.logged < CAP_LOG_MS) {
      left.count = count;
      return;
    }
    this.#left.set(source, { count, logged: now });
    backendLines.warn(
      "{source}: {count} instance(s) left out: {max} dialed at most (--max-backends); " +
        "those already dialed keep their place, {rotated} that never answered gave theirs up",
      { source, count, max, rotated },
    );
  }

  /** Stops every link, and waits for those draining. */
  async stop(): Promise<void> {
    const links = [...this.#links.values()].map((e) => e.link);
    this.#links.clear();
    await Promise.all([...links.map((l) => l.stop()), ...this.#draining]);
  }

  #drop(link: ServerLink, why: string, log = true): void {
    const backend = link.backend;
    this.#options.pool.remove(backend);
    if (log) {
      backendLines.info("Backend {backend} ({peer}) removed: {why}", {
        backend: backend.name,
        peer: backend.peerName,
        why,
      });
    }
    const drained = (async () => {
      const end = performance.now() + DRAIN_MS;
      while (backend.inflight > 0 && performance.now() < end) {
        await new Promise((r) => setTimeout(r, 20));
      }
      await link.stop();
    })();
    this.#draining.add(drained);
    drained.finally(() => this.#draining.delete(drained));
  }
}

/**
 * `--service NAME --binders …`: every live instance of the service, kept
 * current through a `binder.watch` (moving to another binder when one dies).
 * Lists that arrive in one burst are applied once (the latest), and at most
 * `--max-backends` instances are dialed (see {@link ServerSet.sync}).
 */
export class ServiceSource {
  readonly service: string;
  #binders: BinderClient;
  #watch: ServiceWatch;
  #latest: string[] | undefined;
  #applying: ReturnType<typeof setTimeout> | undefined;
  #rotation: ReturnType<typeof setInterval>;
  #logged = -Infinity;
  #count = -1;
  #reporting = 0;

  constructor(
    service: string,
    options: { servers: ServerSet; binderOptions: Parameters<typeof bindersFrom>[0]; name: string },
  ) {
    this.service = service;
    const source = `service ${service}`;
    const { servers } = options;
    const apply = () => {
      this.#applying = undefined;
      const list = this.#latest ?? [];
      this.#sayCount(list.length);
      this.#report(servers.sync(source, list, true));
    };
    this.#binders = bindersFrom(options.binderOptions, { role: "balancer", name: options.name });
    this.#watch = watchService(this.#binders, service, (instances) => {
      this.#latest = instances.map((i) => `${i?.host}:${i?.port}`);
      // A burst of lists: the latest is applied once, on the next turn.
      this.#applying ??= setTimeout(apply, 0);
    });
    // Instances that never answered give their places to those left out, even with no change.
    this.#rotation = setInterval(() => {
      if (this.#applying === undefined && servers.leftOut(source) > 0) apply();
      else this.#sayCount(this.#latest?.length ?? 0);
    }, ROTATE_MS / 2);
  }

  /** Live instances as last told by the binders. */
  get instances(): number {
    return this.#watch.instances.length;
  }

  async stop(): Promise<void> {
    clearInterval(this.#rotation);
    clearTimeout(this.#applying);
    this.#applying = undefined;
    await this.#watch.stop();
    this.#binders.close();
  }

  /**
   * Reports instances that never answered and gave up their places to the
   * binders (`binder.report_down`: the binder checks them and forgets the
   * dead), so a flood of dead addresses drains instead of going round;
   * {@link MAX_REPORTS} at once at most, the others left for a later turn.
   */
  #report(addresses: string[]): void {
    if (addresses.length === 0 || this.#reporting >= MAX_REPORTS) return;
    const ids = new Map(this.#watch.instances.map((i) => [`${i?.host}:${i?.port}`, i?.id]));
    for (const address of addresses) {
      if (this.#reporting >= MAX_REPORTS) return;
      const id = ids.get(address);
      if (id === undefined) continue;
      this.#reporting++;
      this.#binders.call(binder.methods.report_down, { id }, { timeout: 5000 })
        .catch(() => {}) // the binder is gone or busy: the instance comes round again
        .finally(() => this.#reporting--);
    }
  }

  /** "Service S: N instance(s)", when N changed, every 10 s at most while it keeps changing. */
  #sayCount(n: number): void {
    if (n === this.#count) return;
    const now = performance.now();
    if (now - this.#logged < CAP_LOG_MS) return;
    this.#logged = now;
    this.#count = n;
    backendLines.info("Service {service}: {n} instance(s) from the binders", {
      service: this.service,
      n,
    });
  }
}

/**
 * Workers registered on the worker port, one backend per connection, one
 * connection per name. A second registration under a name whose worker is
 * live (its connection open, in rotation) is refused with BAD_REQUEST, so
 * two workers given the same `--name` do not evict each other for ever: the
 * second keeps retrying (with its backoff) and takes the name over once the
 * first is gone. A holder that is out of rotation (missed health checks, or
 * its side of the connection ended) is taken for a dead connection that
 * was not noticed yet: its connection is closed and the newcomer takes over.
 */
export class WorkerRegistry {
  #options: SourceOptions;
  #byPeer = new Map<Peer, Backend>();
  #byName = new Map<string, Peer>();
  /** The backoff of workers that left backed off, by name, and when they left (outlier.ts). */
  #gone = new Map<string, { outlier: Outlier; at: number }>();
  /** Sources whose worker was closed for answers to requests never sent (stray_bench.ts). */
  readonly #bench = new StrayBench();

  constructor(options: SourceOptions) {
    this.#options = options;
  }

  get size(): number {
    return this.#byPeer.size;
  }

  /**
   * `worker.register {name, capacity}` on `peer`'s connection.
   * @throws {DistError} BAD_REQUEST for bad params, a second registration on
   * one connection, or a name a live worker holds
   */
  register(reg: WorkerRegistration, peer: Peer): { registered: string; capacity: number } {
    const { name } = reg;
    const o = this.#options;
    // A worker's own word is no reason to hold more than a server may.
    const capacity = Math.min(reg.capacity ?? 1, o.maxInflight);
    if (this.#byPeer.has(peer)) {
      throw new DistError("BAD_REQUEST", `Already registered as ${this.#byPeer.get(peer)!.name}`);
    }
    // A source whose worker was closed for stray answers waits before registering again (stray_bench.ts).
    const source = clientSource(peer.identity?.user, peer.conn.remoteHost);
    const benched = this.#bench.refusal(source);
    if (benched !== undefined) {
      workerLines.warn("Worker {name} from {addr} refused: {why}", {
        name,
        addr: peer.conn.remoteAddress,
        why: benched.message,
      });
      throw benched;
    }
    const holder = this.#byName.get(name);
    const max = o.maxWorkers ?? Infinity;
    if (holder === undefined && this.#byPeer.size >= max) {
      workerLines.warn(
        "Worker {name} from {addr} refused: {max} workers registered (--max-workers)",
        {
          name,
          addr: peer.conn.remoteAddress,
          max,
        },
      );
      throw new DistError(
        "OVERLOADED",
        `This balancer takes at most ${max} workers (--max-workers), and has them all`,
      );
    }
    if (holder !== undefined) {
      const held = this.#byPeer.get(holder)!;
      const user = holder.identity?.user;
      if (holder.canCall && user !== peer.identity?.user) {
        // Whatever its state: a name is its user's while its connection lasts
        // (any client can make a worker look down, with slow requests).
        workerLines.warn("Worker {name} from {addr} refused: the name is held by user {user}", {
          name,
          addr: peer.conn.remoteAddress,
          user,
        });
        throw new DistError("BAD_REQUEST", `Worker name ${name} is held by another user's worker`);
      }
      if (holder.canCall && held.state === "up") {
        workerLines.warn("Worker {name} from {addr} refused: the name is held by {holder}", {
          name,
          addr: peer.conn.remoteAddress,
          holder: held.address,
        });
        throw new DistError(
          "BAD_REQUEST",
          `Worker name ${name} is taken by a live worker at ${held.address}; ` +
            "give each worker its own --name",
        );
      }
      workerLines.warn(
        "Worker {name} registered again: closing its previous connection ({state}: {reason})",
        { name, state: held.state, reason: held.reason },
      );
      this.#forget(holder);
      holder.close();
    }
    const backend = new Backend("worker", peer.conn.remoteAddress, {
      capacity,
      rules: o.rules,
      outlier: this.#kept(name),
    });
    backend.name = name;
    backend.source = "worker port";
    this.#byPeer.set(peer, backend);
    this.#byName.set(name, peer);
    o.pool.add(backend);
    workerLines.info("Worker {name} registered from {addr} (capacity {capacity})", {
      name,
      addr: backend.address,
      capacity,
    });
    new WorkerLink(backend, peer, { ...o, onStrays: () => this.#bench.strayed(source, name) });
    peer.closed.then((reason) => {
      if (this.#forget(peer)) workerLines.info("Worker {name} left ({reason})", { name, reason });
    });
    return { registered: name, capacity };
  }

  /** Drops `peer`'s registration. @returns false if it had none (any more). */
  #forget(peer: Peer): boolean {
    const backend = this.#byPeer.get(peer);
    if (backend === undefined) return false;
    this.#byPeer.delete(peer);
    if (this.#byName.get(backend.name) === peer) this.#byName.delete(backend.name);
    this.#options.pool.remove(backend);
    if (backend.outlier.backedOff) {
      const gone = this.#gone;
      gone.delete(backend.name);
      gone.set(backend.name, { outlier: backend.outlier, at: performance.now() });
      if (gone.size > REMEMBER_MAX) gone.delete(gone.keys().next().value!);
    }
    return true;
  }

  /** The backoff `name` left with, within REMEMBER_MS (undefined: a fresh start). */
  #kept(name: string): Outlier | undefined {
    const kept = this.#gone.get(name);
    if (kept === undefined) return undefined;
    this.#gone.delete(name);
    return performance.now() - kept.at < REMEMBER_MS ? kept.outlier : undefined;
  }
}

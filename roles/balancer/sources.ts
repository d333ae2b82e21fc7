/**
 * Where backends come from, mixed freely in one pool:
 * - {@link ServerSet}: servers the balancer dials, given by `--backends` or
 *   found through binders (`--service NAME --binders …`, kept current with
 *   `binder.watch`);
 * - {@link WorkerRegistry}: workers that dial the worker port and call
 *   `worker.register {name, capacity}`.
 */
import { type Address, formatAddress, parseAddress } from "../../config/mod.ts";
import { canonical, instanceAddress, instanceKey } from "./addresses.ts";
import type { DialOptions } from "../../wire/mod.ts";
import { type BinderClient, type ServiceWatch, watchService } from "../../clients/discovery/mod.ts";
import { binder } from "../../clients/contracts/mod.ts";
import { bindersFrom } from "../_flags.ts";
import { Backend, type HealthRules, type Pool } from "./backends.ts";
import { type LinkOptions, ServerLink } from "./links.ts";
import { backendLines, cut } from "./log.ts";
import { Bench, byRegistrant, type Held, holdFor, judge, TICK_MS, TRIALS } from "./places.ts";
import { provenUp } from "./trials.ts";

export { WorkerRegistry } from "./workers.ts";

/** Longest a server that left its service may take to finish its requests (ms). */
const DRAIN_MS = 30_000;
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

interface ServerEntry extends Held {
  link: ServerLink;
  source: string;
  /** Who registered it, as the binders tell ("" when they do not). */
  registrant: string;
}

/** An instance to dial. */
interface Wanted {
  key: string;
  address: Address;
  registrant: string;
}

/** The servers the balancer dials, by address, whatever named them. */
export class ServerSet {
  #options: SourceOptions & { dial: DialOptions };
  #links = new Map<string, ServerEntry>();
  #draining = new Set<Promise<void>>();
  /** Per capped source: instances left out (past `--max-backends`), and when that was said. */
  #left = new Map<string, { count: number; logged: number }>();
  /** Instances that held requests they never answered while others waited (places.ts). */
  #bench = new Bench();
  /** Its links by the address their connections reached: one server, one backend (links.ts). */
  #attached = new Map<string, ServerLink>();

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
    const address = canonical(parseAddress(text));
    this.#add({ key: formatAddress(address), address, registrant: "" }, source, performance.now());
  }

  #add({ key, address, registrant }: Wanted, source: string, now: number): void {
    if (this.#links.has(key)) return;
    const o = this.#options;
    const backend = new Backend("server", key, { capacity: o.maxInflight, rules: o.rules });
    backend.source = source;
    backend.registrant = registrant;
    o.pool.add(backend);
    const link = new ServerLink(backend, address, { ...o, attached: this.#attached });
    this.#links.set(key, { link, source, registrant, added: now });
    this.#bench.dialed(key, now);
    link.start();
  }

  /**
   * Makes the servers of `source` exactly `addresses`: new ones are dialed;
   * those gone take no new requests, finish theirs (within 30 s), then are
   * dropped. Servers of other sources are left alone. With `capped` (a
   * service from the binders), at most `--max-backends` are dialed, and
   * while there are more instances than that a place is kept by serving
   * (places.ts): one that holds requests it does not answer, or fails them
   * all, is dropped and benched, one that stays down gives its place to one
   * waiting, and at most TRIALS that have answered nothing are dialed at
   * once, those never dialed first; the pool is guarded meanwhile (tried
   * backends first, trials for the others: policies.ts). A flood of new
   * addresses cannot push a serving server out, and a real server
   * registered after a flood of dead or fake ones is reached in time.
   * `registrants` (by the index of `addresses`) say who registered each
   * (binder `registrant`): those waiting are then dialed a registrant at a
   * time in turn, and one with none dialed takes the place of an idle
   * untried one of a registrant with more. O(addresses) per call,
   * O(n log n) while pressed.
   * @returns addresses that never answered their hello and gave up a place
   */
  sync(
    source: string,
    addresses: readonly string[],
    capped = false,
    registrants: readonly (string | undefined)[] = [],
  ): string[] {
    const wanted = new Map<string, Wanted>();
    for (let i = 0; i < addresses.length; i++) {
      const text = addresses[i];
      let address: Address;
      try {
        address = canonical(parseAddress(text));
      } catch (err) {
        // One bad entry (a binder's data) must not keep the others out.
        backendLines.warn("Skipped {address} of {source}: {error}", {
          address: cut(text),
          source,
          error: cut((err as Error).message),
        });
        continue;
      }
      const key = formatAddress(address);
      // Spellings of one address are one backend (the first one's registrant): review45 R7.
      if (!wanted.has(key)) wanted.set(key, { key, address, registrant: registrants[i] ?? "" });
    }
    const now = performance.now();
    const max = capped ? this.#options.maxBackends ?? Infinity : Infinity;
    const pressed = wanted.size > max;
    this.#guard(source, pressed);
    const mine: [string, ServerEntry][] = [];
    for (const [key, entry] of this.#links) {
      if (entry.source !== source) continue;
      if (wanted.has(key)) mine.push([key, entry]);
      else {
        this.#links.delete(key);
        this.#drop(entry.link, `no longer an instance of ${source}`);
      }
    }
    if (!pressed) {
      for (const w of wanted.values()) this.#add(w, source, now);
      this.#noteLeftOut(source, max, { count: 0, rotated: 0, benched: 0, resting: 0 }, now);
      return [];
    }
    return this.#press(source, wanted, mine, max, now);
  }

  /** {@link sync} while `source` has more instances than `max`. */
  #press(
    source: string,
    wanted: Map<string, Wanted>,
    mine: [string, ServerEntry][],
    max: number,
    now: number,
  ): string[] {
    let hold: number | undefined;
    // While one that answered is in rotation, untried ones hold trials, judged by trials.ts.
    const holdMs = () =>
      hold ??= provenUp(this.#options.pool)
        ? Infinity
        : holdFor(mine.map(([, e]) => e.link.backend));
    let have = 0;
    let tried = 0;
    const untried: string[] = [];
    const stale: string[] = [];
    let benched = 0;
    for (const [key, entry] of mine) {
      const b = entry.link.backend;
      const verdict = judge(b, entry, now, holdMs);
      if (verdict === "bench") {
        // Its requests go elsewhere now: it had its chance to answer one.
        this.#links.delete(key);
        this.#drop(entry.link, "", false, false);
        this.#bench.add(key, now);
        benched++;
        continue;
      }
      if (b.served > 0) this.#bench.forget(key);
      have++;
      if (verdict === "stale") stale.push(key);
      else if (verdict === "tried") tried++;
      else untried.push(key);
    }
    // Instances dialed by registrant.
    const dialed = new Map<string, number>();
    for (const [key, entry] of mine) {
      if (this.#links.get(key) === entry) {
        dialed.set(entry.registrant, (dialed.get(entry.registrant) ?? 0) + 1);
      }
    }
    let waiting: Wanted[] = [];
    let resting = 0;
    for (const w of wanted.values()) {
      if (this.#links.has(w.key)) continue;
      if (this.#bench.has(w.key, now)) resting++;
      else waiting.push(w);
    }
    waiting = byRegistrant(this.#bench.order(waiting), this.#last.get(source));
    // Places of those down go to those waiting.
    const gaveUp: string[] = [];
    let rotated = 0;
    for (const key of stale) {
      if (rotated >= waiting.length) break;
      const entry = this.#links.get(key)!;
      this.#unlink(key, entry, dialed);
      if (entry.link.backend.peerName === "") gaveUp.push(key);
      rotated++;
      have--;
    }
    // Untried ones past the trials' room, idle, make room (as a flood begins).
    const room = Math.max(TRIALS, tried);
    for (let i = untried.length - 1; i >= 0 && untried.length > room; i--) {
      const entry = this.#links.get(untried[i])!;
      if (entry.link.backend.inflight > 0) continue;
      this.#unlink(untried[i], entry, dialed);
      untried.splice(i, 1);
      have--;
    }
    for (const w of waiting) {
      if (have >= max || untried.length >= room) {
        // Full: a registrant with none dialed takes an idle untried place of one with more.
        if ((dialed.get(w.registrant) ?? 0) > 0) continue;
        const i = untried.findLastIndex((key) => {
          const e = this.#links.get(key)!;
          return e.link.backend.inflight === 0 && (dialed.get(e.registrant) ?? 0) > 1;
        });
        if (i < 0) break;
        this.#unlink(untried[i], this.#links.get(untried[i])!, dialed);
        untried.splice(i, 1);
        have--;
      }
      this.#add(w, source, now);
      dialed.set(w.registrant, (dialed.get(w.registrant) ?? 0) + 1);
      this.#last.set(source, w.registrant);
      untried.push(w.key);
      have++;
    }
    this.#noteLeftOut(
      source,
      max,
      { count: wanted.size - have - resting, rotated, benched, resting },
      now,
    );
    return gaveUp;
  }

  /** Drops `key` (it goes without being benched), counted out of `dialed`. */
  #unlink(key: string, entry: ServerEntry, dialed: Map<string, number>): void {
    this.#links.delete(key);
    this.#drop(entry.link, "", false);
    dialed.set(entry.registrant, (dialed.get(entry.registrant) ?? 1) - 1);
  }

  /** Per pressed source: the registrant of the instance dialed last (places.ts byRegistrant). */
  #last = new Map<string, string>();

  /** Sources with more instances than places: the pool is guarded while there is one. */
  #pressed = new Set<string>();

  #guard(source: string, pressed: boolean): void {
    if (pressed) this.#pressed.add(source);
    else this.#pressed.delete(source);
    this.#options.pool.guarded = this.#pressed.size > 0;
  }

  /** Instances of `source` not dialed at its last sync: left out past `--max-backends`, or benched. */
  leftOut(source: string): number {
    return this.#left.get(source)?.count ?? 0;
  }

  #noteLeftOut(
    source: string,
    max: number,
    counts: { count: number; rotated: number; benched: number; resting: number },
    now: number,
  ): void {
    const { count, rotated, benched, resting } = counts;
    const left = this.#left.get(source);
    if (count + resting === 0) {
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
      left.count = count + resting;
      return;
    }
    this.#left.set(source, { count: count + resting, logged: now });
    backendLines.warn(
      "{source}: {count} instance(s) left out: {max} dialed at most (--max-backends); " +
        "a place is kept by serving: {rotated} down gave theirs up, {benched} that held or failed requests " +
        "without answering one were dropped, {resting} are benched for that",
      { source, count, max, rotated, benched, resting },
    );
  }

  /** Stops every link, and waits for those draining. */
  async stop(): Promise<void> {
    const links = [...this.#links.values()].map((e) => e.link);
    this.#links.clear();
    await Promise.all([...links.map((l) => l.stop()), ...this.#draining]);
  }

  /** Removes `link`'s backend; it finishes its requests first (within 30 s) unless `drain` is false. */
  #drop(link: ServerLink, why: string, log = true, drain = true): void {
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
      const end = drain ? performance.now() + DRAIN_MS : 0;
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
  /** Who registered each of #latest (binder `registrant`), when told. */
  #registrants: (string | undefined)[] = [];
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
      this.#report(servers.sync(source, list, true, this.#registrants));
    };
    this.#binders = bindersFrom(options.binderOptions, { role: "balancer", name: options.name });
    this.#watch = watchService(this.#binders, service, (instances) => {
      this.#latest = instances.map(instanceAddress);
      this.#registrants = instances.map((i) =>
        typeof i?.registrant === "string" ? i.registrant : undefined
      );
      // A burst of lists: the latest is applied once, on the next turn.
      this.#applying ??= setTimeout(apply, 0);
    });
    // While some are left out, those that do not serve give their places up, even with no change.
    this.#rotation = setInterval(() => {
      if (this.#applying === undefined && servers.leftOut(source) > 0) apply();
      else this.#sayCount(this.#latest?.length ?? 0);
    }, TICK_MS);
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
   * Reports instances that did not serve and gave up their places to the
   * binders (`binder.report_down`: the binder checks them and forgets the
   * dead), so a flood of dead addresses drains instead of going round;
   * {@link MAX_REPORTS} at once at most, the others left for a later turn.
   */
  #report(addresses: string[]): void {
    if (addresses.length === 0 || this.#reporting >= MAX_REPORTS) return;
    const ids = new Map(this.#watch.instances.map((i) => [instanceKey(i), i?.id]));
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

/**
 * `binder.watch {service}`: connections that watch a service get a
 * `binder.changed {service, instances}` notification with the full list of
 * live instances whenever its membership changes (an instance added, removed,
 * or its meta changed; not on renewals). Changes made in one turn of the
 * event loop are sent as one notification per service, and while changes
 * keep coming, notifications go out at most every {@link NOTIFY_EVERY_MS}:
 * a burst of registrations (thousands a second, hostile34 Z5) costs each
 * watcher a few whole lists a second, not one per registration.
 */
import type { Entry } from "./registry.ts";
import type { Instance } from "../../clients/contracts/mod.ts";

/** What a watcher needs of a connection (a wire Peer). */
export interface WatchConn {
  notify(method: string, params?: unknown): boolean;
  readonly closed: Promise<unknown>;
}

/** Most services one connection may watch. */
export const MAX_WATCHES_PER_CONN = 10_000;
/**
 * Watches of a connection granted even when the binder is at its
 * `--max-watches`: a flood of watches over many connections cannot keep a
 * client that watches a few services out (and the bound stays
 * max-watches + this × max-connections).
 */
export const RESERVED_WATCHES_PER_CONN = 16;
/** Least time between two flushes of changes while changes keep coming (ms). */
export const NOTIFY_EVERY_MS = 100;
/** Default of `--max-watches`: watches in all, across connections. */
export const DEFAULT_MAX_WATCHES = 100_000;

/** Why {@link Watchers.add} refused a watch. */
export type WatchRefusal = "connection" | "binder";

/** Whether a change of an entry changes what watchers of its service see. */
export function isVisibleChange(entry: Entry, previous: Entry | undefined): boolean {
  const wasLive = previous !== undefined && previous.removed === undefined;
  const isLive = entry.removed === undefined;
  if (wasLive !== isLive) return true;
  if (!isLive || previous === undefined || previous.meta === entry.meta) return false;
  return JSON.stringify(previous.meta) !== JSON.stringify(entry.meta);
}

/** The watchers of every service. */
export class Watchers {
  /** Notifications sent. */
  sent = 0;
  /** Notifications that could not be encoded (a list larger than a frame). */
  failed = 0;
  #byService = new Map<string, Set<WatchConn>>();
  #byConn = new Map<WatchConn, Set<string>>();
  #pending = new Set<string>();
  #list: (service: string) => Instance[] | undefined;
  #max: number;
  #total = 0;
  #scheduled: "turn" | ReturnType<typeof setTimeout> | undefined;
  #lastFlush = -Infinity;

  /**
   * @param list the live instances of a service, as watchers see them
   *   (undefined: too many for a frame, nothing is sent)
   * @param max watches in all (`--max-watches`), past each connection's reserved ones
   */
  constructor(list: (service: string) => Instance[] | undefined, max = DEFAULT_MAX_WATCHES) {
    this.#list = list;
    this.#max = max;
  }

  /** The binder-wide bound (`--max-watches`). */
  get max(): number {
    return this.#max;
  }

  /** Watchers in all (a connection watching two services counts twice). */
  get count(): number {
    return this.#total;
  }

  /**
   * Starts sending changes of `service` to `conn` (until it closes).
   * @returns undefined when granted, else who is at its bound: the
   *   connection (MAX_WATCHES_PER_CONN) or the binder (`--max-watches`)
   */
  add(conn: WatchConn, service: string): WatchRefusal | undefined {
    let services = this.#byConn.get(conn);
    if (services === undefined) {
      this.#byConn.set(conn, services = new Set());
      conn.closed.then(() => this.#forget(conn));
    }
    if (services.has(service)) return undefined;
    if (services.size >= MAX_WATCHES_PER_CONN) return "connection";
    // A watch costs 0.4 to 1.5 KB: without a bound across connections, a peer
    // opening many could grow the binder without limit.
    if (services.size >= RESERVED_WATCHES_PER_CONN && this.#total >= this.#max) return "binder";
    services.add(service);
    this.#total++;
    let conns = this.#byService.get(service);
    if (conns === undefined) this.#byService.set(service, conns = new Set());
    conns.add(conn);
    return undefined;
  }

  /** Stops sending changes of `service` to `conn`. */
  remove(conn: WatchConn, service: string): boolean {
    const had = this.#byConn.get(conn)?.delete(service) ?? false;
    if (!had) return false;
    this.#total--;
    const conns = this.#byService.get(service);
    conns?.delete(conn);
    if (conns?.size === 0) this.#byService.delete(service);
    return true;
  }

  /** Notes that `service` changed; watchers hear of it at the end of this turn. */
  changed(service: string): void {
    if (!this.#byService.has(service)) return;
    this.#pending.add(service);
    if (this.#scheduled !== undefined) return;
    const wait = this.#lastFlush + NOTIFY_EVERY_MS - performance.now();
    if (wait <= 0) {
      this.#scheduled = "turn";
      queueMicrotask(() => this.#flush());
    } else this.#scheduled = setTimeout(() => this.#flush(), wait);
  }

  /** Drops the changes not sent yet (the binder is stopping). */
  stop(): void {
    if (this.#scheduled !== undefined && this.#scheduled !== "turn") clearTimeout(this.#scheduled);
    this.#scheduled = undefined;
    this.#pending.clear();
  }

  #flush(): void {
    if (this.#scheduled === undefined) return; // stopped
    this.#scheduled = undefined;
    this.#lastFlush = performance.now();
    const services = [...this.#pending];
    this.#pending.clear();
    for (const service of services) {
      const conns = this.#byService.get(service);
      if (conns === undefined) continue;
      const instances = this.#list(service);
      if (instances === undefined) {
        this.failed += conns.size;
        continue;
      }
      const params = { service, instances };
      for (const conn of conns) {
        try {
          if (conn.notify("binder.changed", params)) this.sent++;
        } catch {
          // FRAME_TOO_LARGE: the watcher can still ask binder.list; counted in sys.stats.
          this.failed++;
        }
      }
    }
  }

  #forget(conn: WatchConn): void {
    for (const service of [...this.#byConn.get(conn) ?? []]) this.remove(conn, service);
    this.#byConn.delete(conn);
  }
}

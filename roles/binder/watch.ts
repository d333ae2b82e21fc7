/**
 * `binder.watch {service}`: connections that watch a service get a
 * `binder.changed {service, instances}` notification with the full list of
 * live instances whenever its membership changes (an instance added, removed,
 * or its meta changed; not on renewals). Changes made in one turn of the
 * event loop are sent as one notification per service, and while changes
 * keep coming, notifications go out at most every {@link NOTIFY_EVERY_MS}:
 * a burst of registrations (thousands a second, hostile34 Z5) costs each
 * watcher a few whole lists a second, not one per registration.
 *
 * A watch needs only the newest list (as a Consul blocking query or a
 * Eureka delta does): a notification is encoded once per codec and the same
 * bytes go to every watcher, and a watcher whose connection has not taken
 * its last list (more than {@link WATCH_SLACK} bytes still queued) gets no
 * more until it has: the newest list of each service waits for it, replacing
 * the one before, never queued behind it. A watcher that never reads thus
 * holds one list in its output at most, until the write deadline cuts it as
 * any slow consumer (hostile35 H5: 40 such watchers and one change every
 * 50 ms took the binder from 104 to 965 MiB in 24 s, one encoding each).
 */
import type { Entry } from "./registry.ts";
import type { Instance } from "../../clients/contracts/mod.ts";
import { type Codec, OutBuffer } from "../../wire/mod.ts";

/** What a watcher needs of a connection's output (a wire FramedConn). */
export interface WatchOutput {
  /** Queues frames already encoded. @returns false when closed */
  sendRaw(bytes: Uint8Array): boolean;
  /** Resolves once at most `bytes` are queued (or the connection closed). */
  drained(bytes?: number): Promise<void>;
  /** Largest frame the connection sends. */
  readonly maxFrame: number;
}

/** What a watcher needs of a connection (a wire Peer). */
export interface WatchConn {
  readonly codec: Codec;
  readonly conn: WatchOutput;
  readonly closed: Promise<unknown>;
}

/**
 * Output a watcher's connection may still have queued and be sent another
 * list at once: past it, the newest list waits until the output drains to it.
 */
export const WATCH_SLACK = 64 * 1024;

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

/** A watching connection: its services, and the lists waiting for its output to drain. */
interface Watcher {
  services: Set<string>;
  /** The newest list of each service not sent yet (shared bytes, whole frames). */
  waiting: Map<string, Uint8Array>;
  /** A list was sent and the output has not drained to WATCH_SLACK since. */
  busy: boolean;
}

/** The watchers of every service. */
export class Watchers {
  /** Notifications sent. */
  sent = 0;
  /** Notifications that could not be encoded (a list larger than a frame). */
  failed = 0;
  /** Lists that replaced one a watcher had not been sent yet (it was not reading). */
  replaced = 0;
  #byService = new Map<string, Set<WatchConn>>();
  #byConn = new Map<WatchConn, Watcher>();
  #pending = new Set<string>();
  #list: (service: string) => Instance[] | undefined;
  #max: number;
  #maxFrame: number;
  #total = 0;
  #scheduled: "turn" | ReturnType<typeof setTimeout> | undefined;
  #lastFlush = -Infinity;

  /**
   * @param list the live instances of a service, as watchers see them
   *   (undefined: too many for a frame, nothing is sent)
   * @param max watches in all (`--max-watches`), past each connection's reserved ones
   * @param maxFrame largest frame a notification may be (bytes)
   */
  constructor(
    list: (service: string) => Instance[] | undefined,
    max = DEFAULT_MAX_WATCHES,
    maxFrame = 1024 * 1024,
  ) {
    this.#list = list;
    this.#max = max;
    this.#maxFrame = maxFrame;
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
    let watcher = this.#byConn.get(conn);
    if (watcher === undefined) {
      this.#byConn.set(conn, watcher = { services: new Set(), waiting: new Map(), busy: false });
      conn.closed.then(() => this.#forget(conn));
    }
    const services = watcher.services;
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
    const watcher = this.#byConn.get(conn);
    if (watcher === undefined || !watcher.services.delete(service)) return false;
    watcher.waiting.delete(service);
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
        for (const conn of [...conns]) this.#tooLarge(conn, service);
        continue;
      }
      // One encoding per codec, shared by every watcher of that codec.
      const frames = new Map<Codec, Uint8Array | undefined>();
      const message = { method: "binder.changed", params: { service, instances } };
      for (const conn of conns) {
        let frame = frames.get(conn.codec);
        if (!frames.has(conn.codec)) {
          frames.set(conn.codec, frame = this.#encode(conn.codec, message));
        }
        // FRAME_TOO_LARGE: the watcher can still ask binder.list; counted in sys.stats.
        if (frame === undefined || frame.length - 4 > conn.conn.maxFrame) {
          this.failed++;
          this.#tooLarge(conn, service);
        } else this.#deliver(conn, service, frame);
      }
    }
  }

  /**
   * Ends the watch of `service` by `conn`, whose list no longer fits a frame,
   * and says so with `binder.too_large {service}` (hostile36 J6): the watcher
   * pages the list with `binder.list` instead of keeping its last one.
   */
  #tooLarge(conn: WatchConn, service: string): void {
    if (!this.remove(conn, service)) return;
    const frame = this.#encode(conn.codec, { method: "binder.too_large", params: { service } });
    if (frame !== undefined) conn.conn.sendRaw(frame);
  }

  /** The whole frame of `message` in `codec`, or undefined when it cannot be encoded. */
  #encode(codec: Codec, message: unknown): Uint8Array | undefined {
    const out = new OutBuffer(0);
    try {
      codec.writeFrame(out, message, this.#maxFrame);
    } catch {
      return undefined;
    }
    return out.bytes.slice(0, out.length);
  }

  /** Sends `frame` to `conn` now if it took its last list, else keeps it as the newest waiting. */
  #deliver(conn: WatchConn, service: string, frame: Uint8Array): void {
    const watcher = this.#byConn.get(conn);
    if (watcher === undefined) return;
    if (watcher.busy) {
      if (watcher.waiting.has(service)) this.replaced++;
      watcher.waiting.delete(service); // re-added last: the oldest waiting goes first
      watcher.waiting.set(service, frame);
      return;
    }
    this.#send(conn, watcher, frame);
  }

  #send(conn: WatchConn, watcher: Watcher, frame: Uint8Array): void {
    if (!conn.conn.sendRaw(frame)) return;
    this.sent++;
    watcher.busy = true;
    conn.conn.drained(WATCH_SLACK).then(() => {
      watcher.busy = false;
      if (this.#byConn.get(conn) !== watcher) return; // closed meanwhile
      const next = watcher.waiting.entries().next();
      if (next.done) return;
      watcher.waiting.delete(next.value[0]);
      this.#send(conn, watcher, next.value[1]);
    });
  }

  #forget(conn: WatchConn): void {
    const watcher = this.#byConn.get(conn);
    for (const service of [...watcher?.services ?? []]) this.remove(conn, service);
    this.#byConn.delete(conn);
  }
}

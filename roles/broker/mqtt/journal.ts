/**
 * What a persistent session owes its client, on disk (`--data-dir`):
 * `DIR/mqtt.db`, table `queued`. Each delivery waiting in one of its
 * subscriptions' queues is a row (the PUBLISH as queued, packet id 0),
 * written when it is queued and deleted when it leaves the queue — sent,
 * or dropped by the queue's bound (drop-oldest, counted in
 * `session_dropped`). Each QoS 1 or 2 delivery in flight is a row too,
 * from when it is sent until it is acknowledged. A restarted broker puts
 * them back (persist.ts): in-flight ones are sent again with DUP when the
 * client returns, queued ones wait in their subscriptions' queues under
 * the same bound as before.
 *
 * A row's key is JSON `[client id, filter, n]`: `n` orders a queue's rows
 * (each subscription numbers its own from a base of its own, so a filter
 * subscribed again never meets its old rows) and in-flight rows (filter
 * ""), whose value is the packet id in 2 bytes, then the PUBLISH as sent
 * (none: PUBREC came, PUBREL is owed).
 *
 * A subscription's queue is a FIFO that only loses its oldest, so its rows
 * need no marks: the live ones are the last `sub.queued` numbered, and
 * the rest are deleted when the queue is next looked at (when a delivery
 * leaves it, and once per turn after deliveries were queued).
 */
import type { Store } from "../../../store/mod.ts";
import { parseJson } from "../../../wire/mod.ts";
import { Message, type Subscription } from "../subscriber.ts";
import type { InflightWindow } from "./inflight.ts";
import { keptPublishPasses } from "./properties.ts";

export const QUEUED = "queued";

/** Room of numbers for one subscription's rows (2^32: more than a queue holds). */
const QUEUE_SPAN = 2 ** 32;

interface Range {
  filter: string;
  /** The first row still on disk, and the next to write: rows [head, tail). */
  head: number;
  tail: number;
}

export class SessionJournal {
  readonly #store: Store;
  readonly #clientId: string;
  /** Finds the MQTT filter of a subscription (the session's map, searched once per subscription). */
  readonly #filterOf: (sub: Subscription) => string | undefined;
  #queues = new Map<Subscription, Range>();
  /** In flight: the row number of each packet id. */
  #inflight = new Map<number, number>();
  #nextInflight = 0;
  #bases = 0;
  #trimQueued = false;

  constructor(store: Store, clientId: string, filterOf: (sub: Subscription) => string | undefined) {
    this.#store = store;
    this.#clientId = clientId;
    this.#filterOf = filterOf;
  }

  #key(filter: string, n: number): string {
    return JSON.stringify([this.#clientId, filter, n]);
  }

  /** `record` was queued by `sub` (copied: it is the caller's scratch). */
  queued(sub: Subscription, record: Uint8Array): void {
    let range = this.#queues.get(sub);
    if (range === undefined) {
      const filter = this.#filterOf(sub);
      if (filter === undefined) return;
      const base = ++this.#bases * QUEUE_SPAN;
      range = { filter, head: base, tail: base };
      this.#queues.set(sub, range);
    }
    this.#store.put(QUEUED, this.#key(range.filter, range.tail++), record.slice());
    if (!this.#trimQueued) {
      // Deliveries queued now may push the oldest out (drop-oldest): their rows go at the turn's end.
      this.#trimQueued = true;
      queueMicrotask(this.#trimAll);
    }
  }

  readonly #trimAll = (): void => {
    this.#trimQueued = false;
    for (const sub of this.#queues.keys()) this.left(sub);
  };

  /** Deliveries left `sub`'s queue (sent or dropped): their rows are deleted. */
  left(sub: Subscription): void {
    const range = this.#queues.get(sub);
    if (range === undefined) return;
    const live = range.tail - (sub.cancelled ? 0 : sub.queued);
    while (range.head < live) this.#store.delete(QUEUED, this.#key(range.filter, range.head++));
  }

  /** `sub` is gone (unsubscribed, or its session ended): its rows go. */
  forget(sub: Subscription): void {
    const range = this.#queues.get(sub);
    if (range === undefined) return;
    range.tail = Math.max(range.tail, range.head);
    while (range.head < range.tail) {
      this.#store.delete(QUEUED, this.#key(range.filter, range.head++));
    }
    this.#queues.delete(sub);
  }

  /** A delivery went out with packet `id` (`bytes`: the PUBLISH; none: PUBREL is owed). */
  sent(id: number, bytes: Uint8Array | undefined): void {
    let n = this.#inflight.get(id);
    if (n === undefined) this.#inflight.set(id, n = this.#nextInflight++);
    const row = new Uint8Array(2 + (bytes?.length ?? 0));
    row[0] = id >> 8;
    row[1] = id & 0xff;
    if (bytes !== undefined) row.set(bytes, 2);
    this.#store.put(QUEUED, this.#key("", n), row);
  }

  /** Packet `id` was acknowledged (PUBACK, PUBCOMP): its row goes. */
  acked(id: number): void {
    const n = this.#inflight.get(id);
    if (n === undefined) return;
    this.#inflight.delete(id);
    this.#store.delete(QUEUED, this.#key("", n));
  }

  /** The session ended: every row it has goes. */
  clear(): void {
    for (const sub of [...this.#queues.keys()]) this.forget(sub);
    for (const id of [...this.#inflight.keys()]) this.acked(id);
  }
}

/** One row read back: whose, which queue ("" in flight), its place, its bytes. */
export interface QueuedRow {
  clientId: string;
  filter: string;
  n: number;
  bytes: Uint8Array;
}

/**
 * The rows of `queued`, each session's in order (in flight first, then
 * each queue's oldest first); rows that cannot be read are in `bad`.
 */
export function readQueued(store: Store): { rows: QueuedRow[]; bad: string[] } {
  const rows: QueuedRow[] = [];
  const bad: string[] = [];
  for (const [key, value] of store.rows(QUEUED)) {
    try {
      const [clientId, filter, n] = parseJson(key) as unknown[];
      if (
        typeof clientId !== "string" || typeof filter !== "string" || !Number.isInteger(n) ||
        !(value instanceof Uint8Array)
      ) throw new Error("Not a queued row");
      rows.push({ clientId, filter, n: n as number, bytes: value });
    } catch {
      bad.push(key);
    }
  }
  rows.sort((a, b) =>
    a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : (a.filter === "" ? 0 : 1) -
        (b.filter === "" ? 0 : 1) || a.n - b.n
  );
  return { rows, bad };
}

/** A delivery read back from disk, as it was queued: the queue takes it as it is (encode()). */
export class QueuedRecord {
  constructor(readonly bytes: Uint8Array) {}
}

/** A session as a restart puts its deliveries back. */
export interface RestoringSession {
  /** Its protocol: 4 or 5. */
  readonly version: number;
  subscriptions(): { get(filter: string): Subscription | undefined };
  readonly inflight: InflightWindow;
  readonly journal: SessionJournal | undefined;
}

/**
 * Puts back what waited for the sessions or was in flight (the rows are
 * written anew as they are queued again); rows of no session or no
 * subscription, unreadable, or holding what the client would refuse
 * (keptPublishPasses), are deleted and counted in `dropped`.
 */
export function restoreQueued(
  store: Store,
  sessionOf: (clientId: string) => RestoringSession | undefined,
): { restored: number; dropped: number } {
  const { rows, bad } = readQueued(store);
  for (const key of bad) store.delete(QUEUED, key);
  // Deleted first: the rows written as they are queued again may take the same keys.
  for (const r of rows) store.delete(QUEUED, JSON.stringify([r.clientId, r.filter, r.n]));
  let restored = 0;
  for (const r of rows) {
    const session = sessionOf(r.clientId);
    if (session === undefined || r.bytes.length < 2) continue;
    const v5 = session.version === 5;
    if (r.filter === "") {
      // In flight: the packet id, then the PUBLISH as sent (none: PUBREL owed).
      const id = (r.bytes[0] << 8) | r.bytes[1];
      const bytes = r.bytes.length > 2 ? r.bytes.slice(2) : undefined;
      // What its client refuses (kept before the check: hostile review 38 L1) is dropped.
      if (bytes !== undefined && !keptPublishPasses(bytes, v5)) continue;
      session.inflight.restore(id, bytes);
      session.journal?.sent(id, bytes);
    } else {
      const sub = session.subscriptions().get(r.filter);
      if (sub === undefined || !keptPublishPasses(r.bytes, v5)) continue;
      // Away, the session is full: the delivery is queued, under the queue's bound.
      sub.deliver(new Message("", new QueuedRecord(r.bytes)));
    }
    restored++;
  }
  return { restored, dropped: rows.length - restored + bad.length };
}

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
import { setImmediate } from "node:timers";
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

  /**
   * Rows read back from an earlier run hold numbers up to `inflight` (in
   * flight) and `queued` (in queues): this session's new rows take higher
   * ones, so the old ones can be read and deleted one at a time.
   */
  numberAfter(inflight: number, queued: number): void {
    this.#nextInflight = Math.max(this.#nextInflight, inflight + 1);
    this.#bases = Math.max(this.#bases, Math.floor(queued / QUEUE_SPAN));
  }

  /**
   * `record` was queued by `sub`: copied when it is the caller's scratch,
   * taken as it is when `kept` (a row read back, which nothing changes).
   */
  queued(sub: Subscription, record: Uint8Array, kept = false): void {
    let range = this.#queues.get(sub);
    if (range === undefined) {
      const filter = this.#filterOf(sub);
      if (filter === undefined) return;
      const base = ++this.#bases * QUEUE_SPAN;
      range = { filter, head: base, tail: base };
      this.#queues.set(sub, range);
    }
    this.#store.put(
      QUEUED,
      this.#key(range.filter, range.tail++),
      kept ? record : turnRows.copy(this.#store, record),
    );
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

  /**
   * A delivery went out with packet `id` (`bytes`: the PUBLISH, kept in
   * flight; none: PUBREL is owed). The row is made when the store commits,
   * in one buffer all rows share: a copy of each kept packet left for the
   * collector made RSS grow 2.6 times what was counted (hostile review 38b M3).
   */
  sent(id: number, bytes: Uint8Array | undefined): void {
    let n = this.#inflight.get(id);
    if (n === undefined) this.#inflight.set(id, n = this.#nextInflight++);
    this.#store.put(QUEUED, this.#key("", n), () => inflightRow(id, bytes));
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

/** The most {@link TurnRows} holds: when full, the store commits, and it is used again. */
const TURN_ROWS_MAX = 8 * 1024 * 1024;

/**
 * Where the rows queued wait for the store's commit, which runs once the
 * turn is over (setImmediate), or at once when this is full, and writes
 * each one before it makes the next (a failed commit keeps copies): one
 * buffer, used again commit after commit, grown up to {@link TURN_ROWS_MAX}
 * and kept. A copy of each queued delivery left for the collector made RSS
 * grow 2.4–2.6 times what was counted (hostile review 38b M3: the
 * allocator keeps the freed 900 KB blocks).
 */
class TurnRows {
  #buffer = new Uint8Array(64 * 1024);
  #used = 0;
  #resetting = false;
  /** The stores with rows in it (one: a broker's `mqtt.db`). */
  #stores = new Set<Store>();

  /** A row of `store` as its commit writes it, taken from `record` now. */
  copy(store: Store, record: Uint8Array): Uint8Array | (() => Uint8Array) {
    if (record.length > TURN_ROWS_MAX) return record.slice();
    if (this.#used + record.length > TURN_ROWS_MAX) {
      for (const s of this.#stores) s.flush();
      this.#used = 0;
    }
    this.#stores.add(store);
    const end = this.#used + record.length;
    if (end > this.#buffer.length) {
      // The rows already copied keep the old buffer until the commit.
      this.#buffer = new Uint8Array(
        Math.min(TURN_ROWS_MAX, Math.max(2 * this.#buffer.length, end)),
      );
    }
    const buffer = this.#buffer;
    const at = this.#used;
    buffer.set(record, at);
    this.#used = end;
    if (!this.#resetting) {
      this.#resetting = true;
      // After the store's commit, scheduled by this turn's first write (made once this returns).
      queueMicrotask(() => setImmediate(this.#reset));
    }
    return () => buffer.subarray(at, end);
  }

  readonly #reset = (): void => {
    this.#resetting = false;
    this.#used = 0;
    this.#stores.clear();
  };
}

const turnRows = new TurnRows();

/** Where in-flight rows are made, one at a time (the store writes each before it makes the next). */
let rowScratch = new Uint8Array(1024);

/** The row of packet `id` in flight: the id in 2 bytes, then the PUBLISH (a view of {@link rowScratch}). */
function inflightRow(id: number, bytes: Uint8Array | undefined): Uint8Array {
  const size = 2 + (bytes?.length ?? 0);
  if (size > rowScratch.length) {
    rowScratch = new Uint8Array(size);
    // Past 64 KiB it is let go once this commit is over: one big packet would hold its size.
    if (size > 65_536) queueMicrotask(() => rowScratch = new Uint8Array(1024));
  }
  const row = rowScratch;
  row[0] = id >> 8;
  row[1] = id & 0xff;
  if (bytes !== undefined) row.set(bytes, 2);
  return row.subarray(0, size);
}

/** A row's key read back: whose, which queue ("" in flight), its place. */
export interface QueuedKey {
  key: string;
  clientId: string;
  filter: string;
  n: number;
}

/**
 * The keys of `queued`, each session's in order (in flight first, then
 * each queue's oldest first), its values read one at a time by the caller;
 * keys that cannot be read are in `bad`.
 */
export function readQueuedKeys(store: Store): { keys: QueuedKey[]; bad: string[] } {
  const keys: QueuedKey[] = [];
  const bad: string[] = [];
  for (const key of store.keys(QUEUED)) {
    try {
      const [clientId, filter, n] = parseJson(key) as unknown[];
      if (typeof clientId !== "string" || typeof filter !== "string" || !Number.isInteger(n)) {
        throw new Error("Not a queued row");
      }
      keys.push({ key, clientId, filter, n: n as number });
    } catch {
      bad.push(key);
    }
  }
  keys.sort((a, b) =>
    a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : (a.filter === "" ? 0 : 1) -
        (b.filter === "" ? 0 : 1) || a.n - b.n
  );
  return { keys, bad };
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
  const { keys, bad } = readQueuedKeys(store);
  const highest = new Map<string, { inflight: number; queued: number }>();
  for (const r of keys) {
    const h = highest.get(r.clientId) ?? { inflight: -1, queued: 0 };
    if (r.filter === "") h.inflight = Math.max(h.inflight, r.n);
    else h.queued = Math.max(h.queued, r.n);
    highest.set(r.clientId, h);
  }
  for (const [clientId, h] of highest) {
    sessionOf(clientId)?.journal?.numberAfter(h.inflight, h.queued);
  }
  let restored = 0;
  // Read a row at a time (hostile review 38b M3: every row read at once, and a copy of each in
  // flight, took RSS to 2.9 times what the restored sessions were counted at).
  for (const r of keys) {
    const session = sessionOf(r.clientId);
    const value = session === undefined ? undefined : store.reads.read(QUEUED, r.key);
    // Deleted first: the rows written as they are queued again may take the same keys.
    store.delete(QUEUED, r.key);
    if (session === undefined || !(value instanceof Uint8Array) || value.length < 2) continue;
    const v5 = session.version === 5;
    if (r.filter === "") {
      // In flight: the packet id, then the PUBLISH as sent (none: PUBREL owed), kept in the row.
      const id = (value[0] << 8) | value[1];
      const bytes = value.length > 2 ? value.subarray(2) : undefined;
      // What its client refuses (kept before the check: hostile review 38 L1) is dropped.
      if (bytes !== undefined && !keptPublishPasses(bytes, v5)) continue;
      session.inflight.restore(id, bytes);
      session.journal?.sent(id, bytes);
    } else {
      const sub = session.subscriptions().get(r.filter);
      if (sub === undefined || !keptPublishPasses(value, v5)) continue;
      // Away, the session is full: the delivery is queued, under the queue's bound.
      sub.deliver(new Message("", new QueuedRecord(value)));
    }
    restored++;
  }
  for (const key of bad) store.delete(QUEUED, key);
  return { restored, dropped: keys.length - restored + bad.length };
}

/**
 * What a persistent session owes its client, on disk (`--data-dir`):
 * `DIR/mqtt.db`, table `deliveries`. Each delivery waiting in one of its
 * subscriptions' queues is a row (the PUBLISH as queued, packet id 0),
 * written when it is queued and deleted when it leaves the queue — sent,
 * or dropped by the queue's bound (drop-oldest, counted in
 * `session_dropped`). Each QoS 1 or 2 delivery in flight is a row too,
 * from when it is sent until it is acknowledged. A restarted broker puts
 * them back (journal_restore.ts): in-flight ones are sent again with DUP when the
 * client returns, queued ones wait in their subscriptions' queues under
 * the same bound as before.
 *
 * A row's key is `session/subscription/place`, numbers in base 36: the
 * session's number (its row in `sessions` holds it), the subscription's (0: in flight) and the row's place
 * in its queue (zero-padded: the keys of a queue sort in its order). Before
 * (hostile review 39b Q4), a key was JSON `[client id, filter, n]`: with
 * a 1,000-byte client id 1 MiB of queued deliveries took 1.26 GB of disk
 * and a 27 s restart. In-flight rows hold the packet id in 2 bytes, then
 * the PUBLISH as sent (none: PUBREC came, PUBREL is owed). A restarted
 * broker gives each session a new number: the rows read back are written
 * anew under it as they are queued again, and the old ones deleted once
 * every copy is written (journal_restore.ts).
 *
 * Each subscription is a row of table `subscriptions`, written when it is
 * made and deleted when it goes (hostile review 39b Q14: the session's row
 * listed them all and was written whole at each change, 3.9 MB a SUBSCRIBE
 * beside 2,000 filters of 1,000 bytes): key `session/subscription` (base
 * 36, the subscription's number zero-padded), value JSON `[filter,
 * options]`. The session number there is the session's first
 * ({@link SessionJournal.subsAt}, its row holds it): a restart does not
 * write them again.
 *
 * A subscription's queue is a FIFO that only loses its oldest, so its rows
 * need no marks: the live ones are the last `sub.queued` numbered, and
 * the rest are deleted when the queue is next looked at (when a delivery
 * leaves it, and once per turn after deliveries were queued).
 */
import { setImmediate } from "node:timers";
import type { Store } from "../../../store/mod.ts";
import type { Subscription } from "../subscriber.ts";
import { QueueRows } from "./queue_rows.ts";
import { deliveryKey, subscriptionKey } from "./journal_keys.ts";

// The keys' vocabulary lives in journal_keys.ts; importers of this module keep working.
export {
  deliveryKey,
  isSessionNo,
  MAX_SESSION_NO,
  readDeliveryKey,
  readSubscriptionKey,
  subscriptionKey,
  subscriptionNumber,
} from "./journal_keys.ts";

/** Where rows are (session number / subscription number / place: see the module comment). */
export const DELIVERIES = "deliveries";

/** Where subscriptions are (session number / subscription number: see the module comment). */
export const SUBSCRIPTIONS = "subscriptions";

/**
 * The packet ids of a persistent session's QoS 2 publishes awaiting PUBREL
 * (keys as {@link subscriptionKey}, under the session's `subsAt`, the id
 * for the number; no value): read back at a restart, a resend of one is
 * answered PUBREC, not routed again (hostile review 42b Z3).
 */
export const QOS2_IN = "qos2_in";

/**
 * What a queued delivery's row costs on disk beyond the delivery's bytes
 * (its key in the table and in the key index, SQLite's cell and page
 * overhead: 51 bytes measured for 5-byte deliveries), counted in its queue
 * (Sink.recordCost), so that max-pending bounds the disk too.
 */
export const ROW_BYTES = 64;

interface Range {
  /** The subscription's number in the session's rows (its row in `subscriptions` has it). */
  sub: number;
  /** The first row still on disk, and the next to write: rows [head, tail). */
  head: number;
  tail: number;
  /** Which of its queued deliveries have a row (QoS 0 without `--mqtt-queue-qos0` has none). */
  rows: QueueRows;
}

/**
 * Rows of a queue that go at once past which they are deleted in the
 * background (Store.deleteRange), when they were dropped in bulk (a trim,
 * a subscription or session gone): one delete per row on the event loop
 * held it 8–14 s for 180 MB (hostile review 41b X4).
 */
const RANGE_FROM = 64;

export class SessionJournal {
  readonly #store: Store;
  /** The session's number: its rows' keys begin with it (its row on disk holds it). */
  readonly no: number;
  /** The filter of a subscription of the session (none: it has no such subscription). */
  readonly #filterOf: (sub: Subscription) => string | undefined;
  /**
   * The session number its subscriptions' rows are under: its first (the
   * session's row holds it), kept across restarts.
   */
  subsAt: number;
  #queues = new Map<Subscription, Range>();
  /** In flight: the row number of each packet id. */
  #inflight = new Map<number, number>();
  #nextInflight = 0;
  #nextSub = 1;
  #trimQueued = false;
  /** A subscription being replaced by one of its filter (see forget). */
  #replaced: { sub: Subscription; filter: string } | undefined;
  /** Set while a hold of this task's output waits for its commit to be asked (sentOnce). */
  #holding = false;
  /**
   * At a restart, the numbers its rows are under, being copied to `no`, and
   * those of rows left over (copied before, or an unfinished copy), to
   * delete: its row on disk lists them until the restart is over, in case
   * the broker dies meanwhile (journal_restore.ts).
   */
  copying: number[] | undefined;
  copied: number[] | undefined;

  constructor(store: Store, no: number, filterOf: (sub: Subscription) => string | undefined) {
    this.#store = store;
    this.no = this.subsAt = no;
    this.#filterOf = filterOf;
  }

  /**
   * The number of `sub`'s rows, given now if it has none: its row (its
   * filter, its options as they are now) is then written, before any row
   * of its deliveries (at SUBSCRIBE).
   */
  numberOf(sub: Subscription): number {
    return this.#range(sub).sub;
  }

  /**
   * A subscription read back keeps its number `n` (its rows read back name
   * it; none: given one), its row written again when `write` (a row of
   * an older broker listed it in the session's row).
   */
  adopt(sub: Subscription, n: number | undefined, write: boolean): void {
    n ??= this.#nextSub;
    this.#queues.set(sub, { sub: n, head: 0, tail: 0, rows: new QueueRows() });
    this.#nextSub = Math.max(this.#nextSub, n + 1);
    if (write) this.#writeSub(sub, n);
  }

  #range(sub: Subscription): Range {
    let range = this.#queues.get(sub);
    if (range !== undefined) return range;
    const replaced = this.#replaced;
    this.#replaced = undefined;
    const old = replaced === undefined ? undefined : this.#queues.get(replaced.sub);
    if (old !== undefined && replaced!.filter === this.#filterOf(sub)) {
      // In place of the one it replaced (forget): its number, its places after the old ones.
      this.#queues.delete(replaced!.sub);
      range = { sub: old.sub, head: old.tail, tail: old.tail, rows: new QueueRows() };
    } else range = { sub: this.#nextSub++, head: 0, tail: 0, rows: new QueueRows() };
    this.#queues.set(sub, range);
    this.#writeSub(sub, range.sub);
    return range;
  }

  /** `sub`'s options changed (a SUBSCRIBE of its filter again): its row written again. */
  rewrite(sub: Subscription): void {
    const range = this.#queues.get(sub);
    if (range === undefined) this.#range(sub);
    else this.#writeSub(sub, range.sub);
  }

  /** `sub`'s retained values have all gone out: its row loses its mark (see #writeSub). */
  snapshotDone(sub: Subscription): void {
    const range = this.#queues.get(sub);
    if (range !== undefined) this.#writeSub(sub, range.sub);
  }

  /**
   * `sub`'s row (numbered `n`): its filter and options, and a mark (1) while its retained
   * values are still going out, so that a restart sends them again (hostile46b M-B7: the rest
   * of them was lost, 52 of 500 sent).
   */
  #writeSub(sub: Subscription, n: number): void {
    const filter = this.#filterOf(sub);
    if (filter === undefined) return;
    const options = sub.data as number;
    const row = JSON.stringify(sub.snapshotting ? [filter, options, 1] : [filter, options]);
    this.#store.put(SUBSCRIPTIONS, subscriptionKey(this.subsAt, n), row);
  }

  /**
   * `record` was queued by `sub`: copied when it is the caller's scratch,
   * taken as it is when `kept` (a row read back, which nothing changes);
   * with no row when not `row` (it waits in memory only: queue_rows.ts).
   */
  queued(sub: Subscription, record: Uint8Array, kept = false, row = true): void {
    // (Numbered at SUBSCRIBE: the rare one that is not is numbered, its row written, here.)
    const range = this.#range(sub);
    range.rows.push(row);
    if (row) {
      this.#store.put(
        DELIVERIES,
        deliveryKey(this.no, range.sub, range.tail++),
        kept ? record : turnRows.copy(this.#store, record),
      );
    }
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

  /**
   * Deliveries left `sub`'s queue (sent or dropped): their rows are deleted
   * (`bulk`: dropped by a trim, in the background when many). Returns
   * whether the last to leave had a row.
   */
  left(sub: Subscription, bulk = false): boolean {
    const range = this.#queues.get(sub);
    if (range === undefined) return false;
    const gone = range.rows.count - (sub.cancelled ? 0 : sub.queued);
    if (gone <= 0) return false;
    this.#drop(range, range.head + range.rows.take(gone), bulk);
    return range.rows.lastHadRow;
  }

  /** Deletes the rows of `range` before `to`: many dropped in `bulk`, in the background. */
  #drop(range: Range, to: number, bulk: boolean): void {
    if (bulk && to - range.head >= RANGE_FROM) {
      const key = (n: number) => deliveryKey(this.no, range.sub, n);
      this.#store.deleteRange(DELIVERIES, key(range.head), key(to));
      range.head = to;
    }
    while (range.head < to) {
      this.#store.delete(DELIVERIES, deliveryKey(this.no, range.sub, range.head++));
    }
  }

  /**
   * A QoS 0 delivery that left a queue (its row deleted: `left`) was put in
   * `out`: it goes out once that delete is committed, with every other
   * write of this task (a SIGKILL before the commit would send it again
   * at the next start: twice, where QoS 0 is at most once; hostile review
   * 39b Q12). One hold per task.
   */
  sentOnce(out: { hold(until: Promise<unknown>): void }): void {
    if (this.#holding) return;
    this.#holding = true;
    const { promise, resolve } = Promise.withResolvers<void>();
    out.hold(promise);
    queueMicrotask(() => {
      this.#holding = false;
      // Every delete of this task is written by now: the commit asked for covers them all.
      // Committed, not synced, as a PUBACK waits (40a T3): a SIGKILL keeps what is committed, and
      // under `always` every commit is synced. Waiting for the sync held each PUBREL round trip
      // for an fdatasync: a window-1 QoS 2 drain 3.6 times slower (hostile review 42b Z6).
      this.#store.commit(false).then(resolve, resolve);
    });
  }

  /** `sub`, unsubscribed, drains what it queued (session.ts): its row goes now, its deliveries' later. */
  unlist(sub: Subscription): void {
    const range = this.#queues.get(sub);
    if (range !== undefined) {
      this.#store.delete(SUBSCRIPTIONS, subscriptionKey(this.subsAt, range.sub));
    }
  }

  /**
   * `sub` is gone (unsubscribed, or its session ended): its row and its
   * deliveries' go. One still under its filter in the session (`keepRow`)
   * is being replaced by a SUBSCRIBE of that filter: its row stays, written
   * over by the new one's (a kill between a delete and a put would lose the
   * subscription the client had).
   */
  forget(sub: Subscription, keepRow = this.#filterOf(sub) !== undefined): void {
    const range = this.#queues.get(sub);
    if (range === undefined) return;
    if (keepRow) this.#replaced = { sub, filter: this.#filterOf(sub)! };
    else this.#store.delete(SUBSCRIPTIONS, subscriptionKey(this.subsAt, range.sub));
    range.tail = Math.max(range.tail, range.head);
    this.#drop(range, range.tail, true);
    if (!keepRow) this.#queues.delete(sub);
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
    this.#store.put(DELIVERIES, deliveryKey(this.no, 0, n), () => inflightRow(id, bytes));
  }

  /** Packet `id` was acknowledged (PUBACK, PUBCOMP): its row goes. */
  acked(id: number): void {
    const n = this.#inflight.get(id);
    if (n === undefined) return;
    this.#inflight.delete(id);
    this.#store.delete(DELIVERIES, deliveryKey(this.no, 0, n));
  }

  /**
   * A QoS 2 PUBLISH with packet `id` was taken, PUBREL awaited: its row,
   * committed with its deliveries' rows before PUBREC goes (a SIGKILL
   * then lost the id, and the client's resend was routed again: a copy
   * twice to each subscriber, 103 of 52,277 over 8 kills with paho).
   */
  received(id: number): void {
    this.#store.put(QOS2_IN, subscriptionKey(this.subsAt, id), "");
  }

  /** PUBREL of `id`: its row goes; the commit PUBCOMP waits for (a kill before it: PUBREC again). */
  released(id: number): Promise<void> | undefined {
    const before = this.#store.written;
    this.#store.delete(QOS2_IN, subscriptionKey(this.subsAt, id));
    return this.#store.commitSince(before, false);
  }

  /**
   * The session ended: every row it has goes, each table's in one delete
   * in the background (a kill before it is over leaves rows of no session,
   * deleted at the next start). One subscription at a time, queues under
   * RANGE_FROM rows were deleted row by row on the loop: 8 sessions × 600
   * subscriptions × 63 rows ending together held PINGREQ 4 s (hostile
   * review 42b Z4).
   */
  clear(): void {
    const no = this.no.toString(36);
    const at = this.subsAt.toString(36);
    this.#store.deleteRange(DELIVERIES, `${no}/`, `${no}0`);
    this.#store.deleteRange(SUBSCRIPTIONS, `${at}/`, `${at}0`);
    this.#store.deleteRange(QOS2_IN, `${at}/`, `${at}0`);
    this.#queues.clear();
    this.#inflight.clear();
    this.#replaced = undefined;
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

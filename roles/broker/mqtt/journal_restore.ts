/**
 * A restart puts back what waited for the persistent sessions or was in
 * flight (journal.ts): each session's rows are read in key order, a page
 * of keys at a time and one value at a time, so what a restart holds
 * besides the deliveries put back is bounded (hostile review 39b Q4: every
 * key of the file was read at once, 853 MiB of RSS for 11 MiB counted).
 *
 * Each session takes a new number, and its rows are copied under it as
 * they are queued again; the old rows are deleted only once every
 * session's copies are written. A broker killed at any point of a restart
 * then finds every row once and in order (hostile review 39c R4: a row
 * was moved as a delete and a write, the store's own commit every 20,000
 * writes could fall between them, and a kill then lost it, one row in
 * 10,000; the rows a move left behind came back before those it moved).
 * What a kill leaves is read from each session's row and one mark:
 * - `copying`: the numbers its rows are under, being copied to its `no`;
 *   what is under `no` is an unfinished copy, deleted — unless the mark
 *   ({@link COPIED} in table `meta`, written once every copy is) covers
 *   `no`: then that copy is whole, and the rows under `copying` left over;
 * - `copied`: numbers whose rows are left over, deleted (not dropped).
 * A restart writes them (its sessions' rows) before its first copy, and
 * writes its sessions' rows without them once the old rows are deleted.
 * Rows of no session (a session dropped, unreadable, or ended before its
 * rows were), of no subscription, unreadable, or holding what the client
 * would refuse (keptPublishPasses) are deleted and counted in `dropped`.
 *
 * A file written before the rows were numbered (table `queued`, keys
 * JSON `[client id, filter, n]`) is read back the old way (all its keys
 * at once), each session's rows after its numbered ones, until a mark
 * says a restart copied them; then they are deleted.
 */
import type { Store } from "../../../store/mod.ts";
import { ONE_SEGMENT } from "../../../clients/contracts/mod.ts";
import { parseJson } from "../../../wire/mod.ts";
import { Message, type Subscription } from "../subscriber.ts";
import type { InflightWindow } from "./inflight.ts";
import {
  DELIVERIES,
  isSessionNo,
  QOS2_IN,
  readDeliveryKey,
  readSubscriptionKey,
  type SessionJournal,
  subscriptionNumber,
  SUBSCRIPTIONS,
} from "./journal.ts";
import { META, QUEUED, readSubscription, type SessionRow } from "./persist.ts";
import { keptPublishPasses } from "./properties.ts";

/** Keys read at a time. */
const KEYS_PAGE = 1000;
/** Subscriptions read at a time (a filter is at most 64 KiB). */
const SUBS_PAGE = 256;

/**
 * The mark in `meta` (JSON `[lo, hi]`): every copy of the restart that
 * numbered its sessions from `lo` to `hi` is written.
 */
export const COPIED = "copied";

/** A delivery read back from disk, as it was queued: the queue takes it as it is (encode()). */
export class QueuedRecord {
  constructor(readonly bytes: Uint8Array) {}
}

/** A session as a restart puts its deliveries back. */
export interface RestoringSession {
  readonly clientId: string;
  /** Its protocol: 4 or 5. */
  readonly version: number;
  subscriptions(): { get(filter: string): Subscription | undefined };
  /** Its subscriptions (none made for asking). */
  readonly subs: Iterable<Subscription>;
  /** Makes a subscription read back (filter, options). */
  restore(filter: string, data: number, snapshot?: boolean): void;
  readonly inflight: InflightWindow;
  readonly journal: SessionJournal | undefined;
  qos2In: Map<number, Promise<void> | null | undefined> | undefined;
  /** Its row on disk is to be written again. */
  save(): void;
}

/** A session read back: where its rows are, and its subscriptions' numbers. */
export interface NumberedSession {
  session: RestoringSession;
  journal: SessionJournal;
  /** The numbers its rows are under, oldest first: copied under its new number. */
  sources: number[];
  /** Numbers of rows left over: deleted, not counted. */
  leftovers: number[];
  /** The filter of each subscription number. */
  subs: Map<number, string>;
}

/** The mark of a restart whose copies are all written (see {@link COPIED}), if there is one. */
export function copiedMark(store: Store): readonly [number, number] | undefined {
  const text = store.reads.read(META, COPIED);
  if (typeof text !== "string") return undefined;
  try {
    const [lo, hi] = parseJson(text) as unknown[];
    return isSessionNo(lo) && isSessionNo(hi) ? [lo as number, hi as number] : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A session read back, with where its row says its rows are (see the
 * module comment), listed in its row until the restart is over; none
 * without a journal.
 */
export function numberedSession(
  session: RestoringSession,
  row: SessionRow,
  subs: Map<number, string>,
  mark: readonly [number, number] | undefined,
): NumberedSession | undefined {
  const journal = session.journal;
  if (journal === undefined) return undefined;
  const no = row.no === undefined ? [] : [row.no];
  const copied = row.copied ?? [];
  const whole = row.copying === undefined ||
    (mark !== undefined && row.no !== undefined && row.no >= mark[0] && row.no <= mark[1]);
  // A row from before the copies (`from`): its restart moved the oldest rows first, under `no`.
  const [sources, leftovers] = whole
    ? [[...no, ...row.from ?? []], [...row.copying ?? [], ...copied]]
    : [row.copying!, [...no, ...copied]];
  journal.copying = sources;
  journal.copied = leftovers;
  return { session, journal, sources, leftovers, subs };
}

/**
 * The session numbers the rows of `table` (`deliveries`, `subscriptions`)
 * are under (one key index lookup per session).
 */
export function rowSessions(store: Store, table = DELIVERIES): number[] {
  const read = table === DELIVERIES ? readDeliveryKey : readSubscriptionKey;
  const numbers = new Set<number>();
  let after = "";
  for (;;) {
    const [key] = store.reads.keysBetween(table, after, "~", 1);
    if (key === undefined) return [...numbers];
    const parsed = read(key);
    if (parsed === undefined) {
      store.delete(table, key); // counted by no one: not a row of ours
      after = key;
      continue;
    }
    numbers.add(parsed.session);
    // Past every key of this session ('/' sorts before '0'): "5/…" < "50" < "50/…".
    after = `${parsed.session.toString(36)}0`;
  }
}

/**
 * Puts back each session's rows (`found`: the session numbers of rows on
 * disk, {@link rowSessions}; `mark`: {@link copiedMark} as the restart
 * began): copies them under its new number, oldest first, marks the
 * copies written, deletes the old rows (and those of no session), then
 * writes each session's row without them.
 */
export function restoreJournal(
  store: Store,
  found: readonly number[],
  sessions: readonly NumberedSession[],
  mark: readonly [number, number] | undefined,
): { restored: number; dropped: number } {
  let restored = 0;
  let dropped = 0;
  for (const owner of sessions) {
    for (const no of owner.sources) {
      forEachRow(store, no, (key) => {
        if (put(owner, key, store.reads.read(DELIVERIES, key))) restored++;
        else dropped++;
      });
    }
  }
  // Those of a file from before, after the numbered ones, unless a restart copied them already.
  if (mark === undefined) {
    const legacy = restoreLegacy(store, sessions);
    restored += legacy.restored;
    dropped += legacy.dropped;
  }
  let lo = Infinity;
  let hi = -Infinity;
  for (const { journal } of sessions) {
    lo = Math.min(lo, journal.no);
    hi = Math.max(hi, journal.no);
  }
  // Every copy is written before it: committed, it says they all are.
  if (sessions.length > 0) store.put(META, COPIED, JSON.stringify([lo, hi]));
  // The old rows: copied, left over, or of no session (dropped). The new numbers are never old.
  const done = new Set(sessions.map((s) => s.journal.no));
  for (const { sources, leftovers } of sessions) {
    for (const no of [...sources, ...leftovers]) {
      if (!done.has(no)) deleteRows(store, no);
      done.add(no);
    }
  }
  for (const no of found) if (!done.has(no)) dropped += deleteRows(store, no);
  for (const key of store.keys(QUEUED)) store.delete(QUEUED, key);
  for (const { session, journal } of sessions) {
    journal.copying = journal.copied = undefined;
    session.save();
  }
  if (mark !== undefined || sessions.length > 0) store.delete(META, COPIED);
  return { restored, dropped };
}

/** Calls `each` with every key of the rows of `table` under session number `no`, in order. */
function forEachRow(
  store: Store,
  no: number,
  each: (key: string) => void,
  table = DELIVERIES,
): void {
  const prefix = no.toString(36);
  for (let after = `${prefix}/`;;) {
    const keys = store.reads.keysBetween(table, after, `${prefix}0`, KEYS_PAGE);
    for (const key of keys) each(key);
    if (keys.length < KEYS_PAGE) return;
    after = keys[keys.length - 1];
  }
}

/** Deletes the rows of `table` under session number `no`; returns how many. */
export function deleteRows(store: Store, no: number, table = DELIVERIES): number {
  let n = 0;
  forEachRow(store, no, (key) => {
    store.delete(table, key);
    n++;
  }, table);
  return n;
}

/**
 * Puts back the subscriptions of `session` (read back from `row`), and
 * returns the filter of each number. Those of its rows in `subscriptions`
 * (under `row.subsAt`, a page of keys at a time); or, in a row of an older
 * broker, those the row lists: each then written as a row (under the
 * session's new number), before its row is written again without them (a
 * kill between leaves rows of no session, deleted at the next start).
 * A row that is not one, or names a filter again, is deleted.
 * @throws {Error} when a subscription cannot be made again (its session is unreadable)
 */
export function restoreSubscriptions(
  store: Store,
  session: RestoringSession,
  row: SessionRow,
): Map<number, string> {
  const subs = new Map<number, string>();
  const journal = session.journal;
  const restore = (
    filter: string,
    data: number,
    n: number | undefined,
    write: boolean,
    again = false,
  ) => {
    session.restore(filter, data, again);
    journal?.adopt(session.subscriptions().get(filter)!, n, write);
    if (n !== undefined) subs.set(n, filter);
  };
  if (row.subs !== undefined) {
    for (const [filter, data, n] of row.subs) restore(filter, data, n, true);
    return subs;
  }
  const at = row.subsAt;
  if (journal === undefined || at === undefined) return subs;
  journal.subsAt = at;
  const prefix = at.toString(36);
  for (let after = `${prefix}/`;;) {
    const rows = store.reads.rowsBetween(SUBSCRIPTIONS, after, `${prefix}0`, SUBS_PAGE);
    for (const [, key, value] of rows) {
      const n = subscriptionNumber(key, prefix);
      const sub = readSubscription(value);
      if (n === undefined || sub === undefined || session.subscriptions().get(sub[0])) {
        store.delete(SUBSCRIPTIONS, key);
      } else restore(sub[0], sub[1], n, false, sub[2]);
    }
    if (rows.length < SUBS_PAGE) break;
    after = rows[rows.length - 1][1];
  }
  return subs;
}

/**
 * The ids of `session`'s QoS 2 publishes awaiting PUBREL, read back (under
 * its `subsAt`): a resend is answered PUBREC (journal.ts QOS2_IN).
 */
export function restoreQos2In(store: Store, session: RestoringSession): void {
  const journal = session.journal;
  if (journal === undefined) return;
  const prefix = journal.subsAt.toString(36);
  forEachRow(store, journal.subsAt, (key) => {
    const id = subscriptionNumber(key, prefix) ?? 0;
    if (id > 0 && id < 65_536) (session.qos2In ??= new Map()).set(id, undefined);
    else store.delete(QOS2_IN, key);
  }, QOS2_IN);
}

/** Puts one row back; false when it is dropped. */
function put(owner: NumberedSession, key: string, value: unknown): boolean {
  const at = readDeliveryKey(key);
  if (at === undefined) return false;
  if (at.sub === 0) return restoreInflight(owner.session, value);
  const filter = owner.subs.get(at.sub);
  return filter !== undefined && restoreQueued(owner.session, filter, value);
}

/** A row in flight: the packet id, then the PUBLISH as sent (none: PUBREL owed), kept in the row. */
function restoreInflight(session: RestoringSession, value: unknown): boolean {
  if (!(value instanceof Uint8Array) || value.length < 2) return false;
  const id = (value[0] << 8) | value[1];
  const bytes = value.length > 2 ? value.subarray(2) : undefined;
  // What its client refuses (kept before the check: hostile review 38 L1) is dropped.
  if (bytes !== undefined && !keptPublishPasses(bytes, session.version === 5)) return false;
  session.inflight.restore(id, bytes, bytes && groupMemberFor(session, bytes));
  session.journal?.sent(id, bytes);
  return true;
}

/**
 * The session's queue group subscription a PUBLISH it had in flight is
 * taken to have come by: the first whose pattern covers its topic (the row
 * does not say which: hostile h47b N2, lost uncounted at the session's
 * expiry when none was); so at its expiry it goes to another member of
 * that group, or is counted dropped with none left (give_back.ts).
 */
function groupMemberFor(session: RestoringSession, packet: Uint8Array): Subscription | undefined {
  let at = 1;
  while (at < packet.length && (packet[at] & 0x80) !== 0) at++;
  at++;
  if (at + 2 > packet.length) return undefined;
  const end = at + 2 + ((packet[at] << 8) | packet[at + 1]);
  if (end > packet.length) return undefined;
  const topic = topicDecoder.decode(packet.subarray(at + 2, end)).split("/");
  for (const sub of session.subs) {
    if (sub.group !== undefined && covers(sub.segments, sub.exact, topic)) return sub;
  }
  return undefined;
}

const topicDecoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** Whether a pattern's segments cover a topic's (`+` one segment; not exact: what is below too). */
function covers(pattern: readonly string[], exact: boolean, topic: readonly string[]): boolean {
  if (exact ? topic.length !== pattern.length : topic.length < pattern.length) return false;
  // A `$` topic is reached only by naming its first segment (subscriptions.ts).
  if (topic[0].startsWith("$") && (pattern.length === 0 || pattern[0] === ONE_SEGMENT)) {
    return false;
  }
  return pattern.every((s, i) => s === ONE_SEGMENT || s === topic[i]);
}

/** A queued row: away, the session is full, so it is queued, under the queue's bound. */
function restoreQueued(session: RestoringSession, filter: string, value: unknown): boolean {
  const sub = session.subscriptions().get(filter);
  if (sub === undefined || !(value instanceof Uint8Array) || value.length < 2) return false;
  if (!keptPublishPasses(value, session.version === 5)) return false;
  sub.deliver(new Message("", new QueuedRecord(value)));
  return true;
}

/**
 * The rows of a file written before they were numbered (table `queued`):
 * all their keys read at once, as that version did, sorted by session,
 * in flight first, then each queue in order; each row put back (written
 * under the new numbering). They are deleted later (restoreJournal).
 */
function restoreLegacy(
  store: Store,
  sessions: readonly NumberedSession[],
): { restored: number; dropped: number } {
  const keys: { key: string; clientId: string; filter: string; n: number }[] = [];
  let dropped = 0;
  for (const key of store.keys(QUEUED)) {
    const parsed = parseLegacy(key);
    if (parsed === undefined) dropped++;
    else keys.push({ key, ...parsed });
  }
  keys.sort((a, b) =>
    a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : (a.filter === "" ? 0 : 1) -
        (b.filter === "" ? 0 : 1) || a.n - b.n
  );
  const byId = new Map(sessions.map(({ session }) => [session.clientId, session]));
  let restored = 0;
  for (const r of keys) {
    const session = byId.get(r.clientId);
    const value = session === undefined ? undefined : store.reads.read(QUEUED, r.key);
    const ok = session !== undefined &&
      (r.filter === "" ? restoreInflight(session, value) : restoreQueued(session, r.filter, value));
    if (ok) restored++;
    else dropped++;
  }
  return { restored, dropped };
}

function parseLegacy(key: string): { clientId: string; filter: string; n: number } | undefined {
  try {
    const [clientId, filter, n] = parseJson(key) as unknown[];
    if (typeof clientId !== "string" || typeof filter !== "string" || !Number.isInteger(n)) {
      return undefined;
    }
    return { clientId, filter, n: n as number };
  } catch {
    return undefined;
  }
}

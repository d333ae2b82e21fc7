/**
 * A restart puts back what waited for the persistent sessions or was in
 * flight (journal.ts): each session's rows are read in key order, a page
 * of keys at a time and one value at a time, so what a restart holds
 * besides the deliveries put back is bounded (hostile review 39b Q4: every
 * key of the file was read at once, 853 MiB of RSS for 11 MiB counted).
 * Each row is deleted as it is read and written anew under the session's
 * new number as it is queued again. Rows of no session (a session dropped,
 * unreadable, or ended before its rows were), of no subscription,
 * unreadable, or holding what the client would refuse (keptPublishPasses)
 * are deleted and counted in `dropped`.
 *
 * A file written before the rows were numbered (table `queued`, keys
 * JSON `[client id, filter, n]`) is read back the old way once (all its
 * keys at once) and its rows moved to the new table.
 */
import type { Store } from "../../../store/mod.ts";
import { parseJson } from "../../../wire/mod.ts";
import { Message, type Subscription } from "../subscriber.ts";
import type { InflightWindow } from "./inflight.ts";
import { DELIVERIES, readDeliveryKey, type SessionJournal } from "./journal.ts";
import { keptPublishPasses } from "./properties.ts";

/** The table of rows before they were numbered (read back once, then empty). */
export const QUEUED = "queued";

/** Keys read at a time. */
const KEYS_PAGE = 1000;

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
  /** Its row on disk is to be written again. */
  save(): void;
}

/** A session read back, the numbers its rows may be under (oldest first), its subscriptions'. */
export interface NumberedSession {
  session: RestoringSession;
  numbers: number[];
  /** The filter of each subscription number. */
  subs: Map<number, string>;
}

/** The session numbers the rows of `deliveries` are under (one key index lookup per session). */
export function rowSessions(store: Store): number[] {
  const numbers = new Set<number>();
  let after = "";
  for (;;) {
    const [key] = store.reads.keysBetween(DELIVERIES, after, "~", 1);
    if (key === undefined) return [...numbers];
    const parsed = readDeliveryKey(key);
    if (parsed === undefined) {
      store.delete(DELIVERIES, key); // counted by no one: not a row of ours
      after = key;
      continue;
    }
    numbers.add(parsed.session);
    // Past every key of this session ('/' sorts before '0'): "5/…" < "50" < "50/…".
    after = `${parsed.session.toString(36)}0`;
  }
}

/**
 * Puts back each session's rows (each of its numbers, oldest first; then
 * `moved` is told), and deletes those under numbers of `found` no session claims.
 */
export function restoreDeliveries(
  store: Store,
  found: readonly number[],
  sessions: readonly NumberedSession[],
  moved: (session: RestoringSession) => void,
): { restored: number; dropped: number } {
  let restored = 0;
  let dropped = 0;
  const claimed = new Set<number>();
  const each = (no: number, owner: NumberedSession | undefined) => {
    const prefix = no.toString(36);
    for (let after = `${prefix}/`;;) {
      const keys = store.reads.keysBetween(DELIVERIES, after, `${prefix}0`, KEYS_PAGE);
      for (const key of keys) {
        const value = owner === undefined ? undefined : store.reads.read(DELIVERIES, key);
        store.delete(DELIVERIES, key);
        if (owner !== undefined && value !== undefined && put(owner, key, value)) restored++;
        else dropped++;
      }
      if (keys.length < KEYS_PAGE) return;
      after = keys[keys.length - 1];
    }
  };
  for (const owner of sessions) {
    for (const no of owner.numbers) {
      claimed.add(no);
      each(no, owner);
    }
    moved(owner.session);
  }
  for (const no of found) if (!claimed.has(no)) each(no, undefined);
  return { restored, dropped };
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
  session.inflight.restore(id, bytes);
  session.journal?.sent(id, bytes);
  return true;
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
 * under the new numbering) and deleted.
 */
export function restoreLegacy(
  store: Store,
  sessionOf: (clientId: string) => RestoringSession | undefined,
): { restored: number; dropped: number } {
  const keys: { key: string; clientId: string; filter: string; n: number }[] = [];
  let dropped = 0;
  for (const key of store.keys(QUEUED)) {
    const parsed = parseLegacy(key);
    if (parsed === undefined) {
      store.delete(QUEUED, key);
      dropped++;
    } else keys.push({ key, ...parsed });
  }
  keys.sort((a, b) =>
    a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : (a.filter === "" ? 0 : 1) -
        (b.filter === "" ? 0 : 1) || a.n - b.n
  );
  let restored = 0;
  for (const r of keys) {
    const session = sessionOf(r.clientId);
    const value = session === undefined ? undefined : store.reads.read(QUEUED, r.key);
    store.delete(QUEUED, r.key);
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

/**
 * MQTT persistent sessions on disk (`--data-dir`): `DIR/mqtt.db`, a file
 * of its own beside the broker's retained values (`broker.db`), in the
 * same locked directory. Table `sessions`: client id → the session's row
 * (owner, protocol version, expiry, since when its client is away; see
 * MqttSession.row), written as sessions change (encoded when the store's
 * group commit runs). Table `subscriptions`: each subscription's filter
 * and options, a row each (journal.ts). Table `deliveries`: the deliveries waiting in their queues or in flight
 * (journal.ts; `qos2_in`: the ids of QoS 2 publishes awaiting PUBREL; `queued` holds those of a file from before they were
 * numbered, read back once: journal_restore.ts). Table `meta`: `alive`, the broker's last sign of life
 * (every few seconds while it has persistent sessions), and during a restart `copied` (every row
 * read back is written anew: journal_restore.ts). All are read back
 * before the MQTT port opens: a client that comes back after a restart
 * finds its session (CONNACK Session Present 1), its subscriptions, what
 * waited for it and what was in flight; a session whose client was
 * connected when the broker went counts as away since then (the stop, or
 * after a kill the last sign of life).
 */
import { type FsyncMode, Store } from "../../../store/mod.ts";
import { parseJson } from "../../../wire/mod.ts";
import { DELIVERIES, isSessionNo, QOS2_IN, SUBSCRIPTIONS } from "./journal.ts";
import { MAX_SESSION_EXPIRY_S } from "./session_cost.ts";
import { SUBSCRIPTION_ID } from "./delivery.ts";

/** Past the largest Subscription Identifier (2^28 - 1) with every option flag: no options value. */
const OPTIONS_END = 2 ** 28 * SUBSCRIPTION_ID;

export const MQTT_FILE = "mqtt.db";
export const SESSIONS = "sessions";
export const META = "meta";
/** The rows of a file from before they were numbered (read back once, then empty: journal_restore.ts). */
export const QUEUED = "queued";
/** How often the broker's last sign of life is written (ms). */
export const ALIVE_MS = 5_000;
/** The longest source a row keeps (an address, or `user ` and a user's name). */
export const MAX_SOURCE_LENGTH = 1024;

/** A session's row, as written by MqttSession.row(). */
export interface SessionRow {
  owner: string | null;
  /**
   * Whose it is for the away share (shares.ts shareSource of its client's
   * address, or its user): none in a row of an older broker (away.ts READ_BACK).
   */
  source?: string;
  version: number;
  /** Seconds kept after its client goes. */
  expiry: number;
  /** When its client went (ms since the epoch); null: connected when last written. */
  away: number | null;
  /**
   * Written by a broker before subscriptions had rows of their own (read
   * back, then written as rows): its subscriptions, MQTT filter, options
   * (the subscription's `data`), number of its rows.
   */
  subs?: [string, number, number?][];
  /** The session number its rows in `subscriptions` are under (journal.ts); none: it has none. */
  subsAt?: number;
  /** The number its rows on disk are under (journal.ts); none: it has none. */
  no?: number;
  /**
   * Written by a broker before the restart's copies (only read now): numbers
   * its rows were under before a restart, not all moved to `no` yet (the
   * oldest moved first, under `no`).
   */
  from?: number[];
  /** At a restart: numbers its rows are under, being copied to `no` (journal_restore.ts). */
  copying?: number[];
  /** At a restart: numbers of rows left over, to delete (journal_restore.ts). */
  copied?: number[];
}

/**
 * Opens `DIR/mqtt.db` (the directory is the broker's, locked already).
 * @throws {UsageError} as {@link Store} does
 */
export function openSessionStore(
  dir: string,
  options: { fsync: FsyncMode; moveCorruptAside: boolean; warn: (message: string) => void },
): Store {
  const path = `${dir.replace(/(?<=.)\/+$/, "")}/${MQTT_FILE}`;
  // An empty file (and no WAL) is a valid empty database: say it, as it was not made so by a
  // broker (mosquitto: "Persistence file is empty"; hostile review 39b Q6).
  if (sizeOf(path) === 0 && (sizeOf(`${path}-wal`) ?? 0) === 0) {
    options.warn(`${path} is empty: no MQTT session is read back (was it truncated?)`);
  }
  return new Store(path, {
    // QUEUED: the rows of a file from before they were numbered (read back once).
    tables: [SESSIONS, SUBSCRIPTIONS, DELIVERIES, META, QUEUED, QOS2_IN],
    // A publish writes a row per delivery: under always, one synced commit per turn, which its
    // PUBACK waits for (hostile review 39b Q3: 8,000 synced commits per publish stalled 17.7 s).
    // QUEUED: its rows are deleted at the restart that reads them back, not one synced commit each.
    // SUBSCRIPTIONS: a SUBSCRIBE of many filters is one commit, which its SUBACK waits for.
    // QOS2_IN: a QoS 2 PUBLISH's id is committed with its deliveries, once a turn.
    grouped: [DELIVERIES, QUEUED, SUBSCRIPTIONS, QOS2_IN],
    ...options,
  });
}

/** A file's size, or undefined when there is none. */
function sizeOf(path: string): number | undefined {
  try {
    return Deno.statSync(path).size;
  } catch {
    return undefined;
  }
}

/**
 * A row read back, checked.
 * @throws {Error} when it is not one
 */
export function readRow(text: string): SessionRow {
  const row = parseJson(text) as SessionRow;
  // Numbers within what a session can have (hostile review 39b Q6: an expiry of 1e15 ended the
  // session at once, an options value of 1e300 broke every PUBLISH to it, nothing logged; 40a T6:
  // a session number of 2^53 - 1 gave every later session one number).
  const ok = (row.owner === null || typeof row.owner === "string") &&
    (row.source === undefined ||
      typeof row.source === "string" && row.source.length <= MAX_SOURCE_LENGTH) &&
    (row.version === 4 || row.version === 5) && Number.isFinite(row.expiry) && row.expiry > 0 &&
    row.expiry <= MAX_SESSION_EXPIRY_S && (row.away === null || Number.isFinite(row.away)) &&
    (row.subs === undefined || Array.isArray(row.subs) &&
        row.subs.every(([f, d, n]) =>
          isSubscription(f, d) && (n === undefined || Number.isSafeInteger(n))
        )) &&
    [row.no, row.subsAt].every((n) => n === undefined || isSessionNo(n)) &&
    [row.from, row.copying, row.copied].every((list) =>
      list === undefined || Array.isArray(list) && list.every(isSessionNo)
    );
  if (!ok) throw new Error("Not a session row");
  return row;
}

/** Whether `filter` and `options` are a subscription's (its options within what a SUBSCRIBE gives). */
function isSubscription(filter: unknown, options: unknown): boolean {
  return typeof filter === "string" && Number.isInteger(options) && (options as number) >= 0 &&
    (options as number) < OPTIONS_END;
}

/**
 * A subscription's row read back (journal.ts): its filter, its options and whether its retained
 * values were still going out (a third element, 1), or undefined when it is not one.
 */
export function readSubscription(value: unknown): [string, number, boolean] | undefined {
  if (typeof value !== "string") return undefined;
  try {
    const row = parseJson(value);
    if (!Array.isArray(row) || !isSubscription(row[0], row[1])) return undefined;
    if (row.length === 2) return [row[0], row[1], false];
    return row.length === 3 && row[2] === 1 ? [row[0], row[1], true] : undefined;
  } catch {
    return undefined;
  }
}

/** The broker's last sign of life written by its previous run (ms since the epoch), if any. */
export function lastAlive(store: Store): number | undefined {
  for (const [key, text] of store.rows(META)) if (key === "alive") return Number(text) || undefined;
}

/**
 * Writes the sign of life now (a mark left by an earlier run would age
 * this run's sessions), then every ALIVE_MS while `busy()`.
 */
export function keepAlive(store: Store, busy: () => boolean): ReturnType<typeof setInterval> {
  store.put(META, "alive", String(Date.now()));
  const timer = setInterval(() => {
    if (busy()) store.put(META, "alive", String(Date.now()));
  }, ALIVE_MS);
  Deno.unrefTimer(timer);
  return timer;
}

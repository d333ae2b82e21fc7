/**
 * MQTT persistent sessions on disk (`--data-dir`): `DIR/mqtt.db`, table
 * `sessions` (client id → the session's row: owner, protocol version,
 * expiry, since when its client is away, its subscriptions with their
 * options; see MqttSession.row). A file of its own beside the broker's
 * retained values (`broker.db`), in the same locked directory. Rows are
 * written as sessions change (encoded when the store's group commit runs)
 * and read back before the MQTT port opens: a client that comes back after
 * a restart finds its session (CONNACK Session Present 1) and its
 * subscriptions, which took what was published while it was away. What
 * waited for it or was in flight at the restart is not kept.
 */
import { type FsyncMode, Store } from "../../../store/mod.ts";

export const MQTT_FILE = "mqtt.db";
export const SESSIONS = "sessions";

/** A session's row, as written by MqttSession.row(). */
export interface SessionRow {
  owner: string | null;
  version: number;
  /** Seconds kept after its client goes. */
  expiry: number;
  /** When its client went (ms since the epoch); null: connected when last written. */
  away: number | null;
  /** Its subscriptions: MQTT filter and options (the subscription's `data`). */
  subs: [string, number][];
}

/**
 * Opens `DIR/mqtt.db` (the directory is the broker's, locked already).
 * @throws {UsageError} as {@link Store} does
 */
export function openSessionStore(
  dir: string,
  options: { fsync: FsyncMode; moveCorruptAside: boolean; warn: (message: string) => void },
): Store {
  return new Store(`${dir.replace(/(?<=.)\/+$/, "")}/${MQTT_FILE}`, {
    tables: [SESSIONS],
    ...options,
  });
}

/**
 * A row read back, checked.
 * @throws {Error} when it is not one
 */
export function readRow(text: string): SessionRow {
  const row = JSON.parse(text) as SessionRow;
  const ok = (row.owner === null || typeof row.owner === "string") &&
    (row.version === 4 || row.version === 5) && Number.isFinite(row.expiry) && row.expiry > 0 &&
    (row.away === null || Number.isFinite(row.away)) && Array.isArray(row.subs) &&
    row.subs.every(([f, d]) => typeof f === "string" && Number.isInteger(d) && d >= 0);
  if (!ok) throw new Error("Not a session row");
  return row;
}

/**
 * The binder's registry on disk (`--data-dir`): every change of an entry
 * (a registration, a renewal, a removal, a peer's change merged) is written
 * to `DIR/binder.db` with the wall-clock time its lease ends, and a
 * collected tombstone is deleted. At start the entries are read back, so a
 * binder restarted alone answers at once with what was live; a lease that
 * ran out while it was down is not brought back (peers that still hold the
 * instance expire it on their own, or have a newer version of it).
 * Registrations, renewals and deregistrations are acknowledged once
 * committed (group commit: one per turn of the event loop).
 */
import {
  type DataFileOptions,
  openDataDir,
  type Opened,
  type StoreCounters,
} from "../../store/mod.ts";
import { parseJson } from "../../wire/mod.ts";
import { parseRecord, toRecord } from "./records.ts";
import type { Entry, Registry } from "./registry.ts";

const TABLE = "entries";
export const BINDER_FILE = "binder.db";

/** What `sys.stats` says of the store. */
export interface DurableStats extends StoreCounters {
  path: string;
  pending: number;
  size_bytes: number;
  /** Entries read back at start (live leases and tombstones). */
  restored: number;
  /** Rows that could not be read at start: warned of and kept (hostile47 Q10). */
  unreadable: number;
}

/** Rows warned of one by one at start; the rest are counted. */
const WARN_ROWS = 10;

export class DurableRegistry {
  readonly #opened: Opened;
  #restored = 0;
  #unreadable = 0;

  /**
   * Locks `dir`, opens its data file and reads it into `registry`, then
   * writes every later change of `registry`.
   * @throws {UsageError} as {@link openDataDir} does
   */
  constructor(
    registry: Registry,
    dir: string,
    options: DataFileOptions,
  ) {
    this.#opened = openDataDir(dir, BINDER_FILE, { tables: [TABLE], ...options });
    const store = this.#opened.store;
    const now = Date.now();
    for (const [id, value] of store.rows(TABLE)) {
      let incoming;
      try {
        const row = parseJson(String(value)) as { removed?: unknown; until: number };
        if (row === null || typeof row !== "object") throw new Error("not an object");
        if (row.removed === undefined && typeof row.until !== "number") {
          throw new Error(`"until" is not a number`);
        }
        const left = row.removed === undefined ? row.until - now : 0;
        if (!(left > 0 || row.removed !== undefined)) {
          store.delete(TABLE, id); // The lease ran out while the binder was down.
          continue;
        }
        incoming = parseRecord({ ...row, left_ms: Math.max(0, left) });
      } catch (err) {
        incoming = (err as Error).message;
      }
      if (typeof incoming === "string") {
        // A damaged row (a bit flip, a foreign writer) is said, counted and kept: a newer
        // version of its instance replaces it; deleting it lost the registration silently.
        if (++this.#unreadable <= WARN_ROWS) {
          options.warn(
            `${BINDER_FILE} row ${JSON.stringify(id.slice(0, 100))}: unreadable (` +
              `${incoming.slice(0, 200)}), kept until a newer version of it replaces it`,
          );
        }
        continue;
      }
      if (registry.restore(incoming)) this.#restored++;
      else store.delete(TABLE, id);
    }
    registry.onChange((entry) => this.#write(registry, entry));
    registry.onCollect((entry) => store.delete(TABLE, entry.id));
  }

  /** Resolves once every change so far is committed (rejects if that commit failed). */
  committed(): Promise<void> {
    return this.#opened.store.commit();
  }

  stats(): DurableStats {
    const store = this.#opened.store;
    return {
      path: store.path,
      pending: store.pending,
      size_bytes: store.sizeOnDisk(),
      restored: this.#restored,
      unreadable: this.#unreadable,
      ...store.counters,
    };
  }

  /** Commits what is pending and releases the directory. */
  close(): void {
    this.#opened.close();
  }

  #write(registry: Registry, entry: Entry): void {
    const left = registry.leftMs(entry);
    const row = {
      ...toRecord(entry, left),
      until: entry.removed === undefined ? Date.now() + left : 0,
    };
    this.#opened.store.put(TABLE, entry.id, JSON.stringify(row));
  }
}

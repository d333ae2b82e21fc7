/** The types of a data file's options, values and counters: see `store.ts`. */

/** When a commit is synced to disk: see the module comment of `store.ts`. */
export type FsyncMode = "always" | "batch" | "off";

export const FSYNC_MODES: readonly FsyncMode[] = ["always", "batch", "off"];

/** A value as stored. */
export type Value = string | Uint8Array;

/**
 * A row as read back a page at a time (see `reads.ts`): rowid, key, value,
 * and in a table with owners ({@link StoreOptions.owned}) its owner (null: none).
 */
export type Row = [number, string, Value, (string | null)?];

/** A value and who owns it, for a table with owners ({@link StoreOptions.owned}). */
export interface Owned {
  value: Value;
  owner: string;
}

/**
 * A value made when committed, not when written: a key written many times
 * in one turn is encoded once, as it is then (null: delete it). The store
 * writes each value before it makes the next: a view of a buffer the
 * writer reuses is fine.
 */
export type Deferred = () => Value | Owned | null;

export interface StoreOptions {
  fsync: FsyncMode;
  /** The tables the file holds (created when missing). */
  tables: readonly string[];
  /**
   * Those of `tables` whose rows may have an owner beside the value (a
   * column `owner`, NULL for none; added to a table made without it, whose
   * rows then have none).
   */
  owned?: readonly string[];
  /**
   * Those of `tables` whose writes under `always` are grouped as under
   * `batch`: one transaction per turn, synced as it commits, their writers
   * waiting for {@link Store.commit} before they answer (many writes per
   * request: a row per delivery of a publish).
   */
  grouped?: readonly string[];
  /** When the file cannot be opened: move it aside (`FILE.corrupt-TIME`) and start empty. */
  moveCorruptAside?: boolean;
  /** Told when a corrupt file was moved aside, and when commits work again after failing. */
  warn?: (message: string) => void;
  /** Told of failed commits and syncs (once per run of failures); `warn` when not given. */
  error?: (message: string) => void;
}

/** Counters for `sys.stats`. */
export interface StoreCounters {
  commits: number;
  /** Writes committed. */
  written: number;
  /** Commits that failed (full disk …) and rolled back. */
  failed: number;
  /** Pages given back by incremental vacuum. */
  vacuumed_pages: number;
  /** Under `batch`: syncs of the WAL (each covers every commit written before it began). */
  syncs: number;
}

/**
 * Opening a data file: set up (WAL, incremental vacuum, the sync mode),
 * checked (`quick_check`, that it is ours), and moved aside when corrupt;
 * and syncing a directory. Used by `store.ts`.
 */
import { DatabaseSync } from "node:sqlite";
import { UsageError } from "../config/mod.ts";
import type { StoreOptions } from "./types.ts";

/** Marks a file as ours (`PRAGMA application_id`): "dist" in ASCII. */
const APPLICATION_ID = 0x64697374;

/** Opens the file, sets it up and checks it: any problem throws. */
export function openChecked(
  path: string,
  options: Pick<StoreOptions, "fsync" | "tables" | "owned">,
): DatabaseSync {
  const db = new DatabaseSync(path);
  try {
    // Set before any table exists, so deletes can give pages back (incremental vacuum). Only
    // when not set yet: setting it writes, and a file on a full disk must open (hostile 40a T10).
    const vacuum = db.prepare("PRAGMA auto_vacuum").get() as { auto_vacuum: number };
    if (vacuum.auto_vacuum !== 2) db.exec("PRAGMA auto_vacuum = INCREMENTAL");
    const mode = db.prepare("PRAGMA journal_mode = WAL").get() as { journal_mode: string };
    if (mode.journal_mode !== "wal") throw new Error(`cannot use WAL mode (${mode.journal_mode})`);
    // Under batch, commits are written unsynced and the WAL is synced off the loop, with the
    // store's own synced checkpoints in place of SQLite's (see the module comment).
    db.exec(`PRAGMA synchronous = ${options.fsync === "always" ? "FULL" : "OFF"}`);
    if (options.fsync === "batch") db.exec("PRAGMA wal_autocheckpoint = 0");
    db.exec("PRAGMA journal_size_limit = 4194304");
    const check = db.prepare("PRAGMA quick_check").all() as { quick_check: string }[];
    if (check.length !== 1 || check[0].quick_check !== "ok") {
      throw new Error(check.map((r) => r.quick_check).slice(0, 3).join("; "));
    }
    const app = (db.prepare("PRAGMA application_id").get() as { application_id: number })
      .application_id;
    const empty = (db.prepare("SELECT count(*) AS n FROM sqlite_schema").get() as { n: number })
      .n === 0;
    if (app !== APPLICATION_ID && !(app === 0 && empty)) {
      throw new Error("not a dist data file");
    }
    if (app === 0) db.exec(`PRAGMA application_id = ${APPLICATION_ID}`);
    for (const table of options.tables) {
      const owned = options.owned?.includes(table) === true;
      db.exec(
        `CREATE TABLE IF NOT EXISTS ${quoteName(table)} ` +
          `(k TEXT PRIMARY KEY NOT NULL, v BLOB NOT NULL${owned ? ", owner TEXT" : ""})`,
      );
      if (owned) addOwners(db, table);
    }
    return db;
  } catch (err) {
    try {
      db.close();
    } catch {
      // Closing a file that failed to open: nothing more to say.
    }
    if (err instanceof NotCorrupt) throw err;
    // A full disk or an I/O error (no room for the WAL or its index) says nothing of the file.
    if (notCorrupt(err)) throw new NotCorrupt(errorText(err), { cause: err });
    throw new Error(errorText(err), { cause: err });
  }
}

/**
 * SQLite's primary result codes of an I/O error and a full disk, and their
 * texts (the errors of exec carry no code).
 */
const NOT_CORRUPT = new Map([[10, "disk I/O error"], [13, "database or disk is full"]]);

function notCorrupt(err: unknown): boolean {
  const code = ((err as { errcode?: number }).errcode ?? 0) % 256;
  return NOT_CORRUPT.has(code) || [...NOT_CORRUPT.values()].includes(errorText(err));
}

/**
 * A data file that could not be opened now, but not for being corrupt (a
 * full disk; no room to give it this version's schema): never moved aside.
 */
class NotCorrupt extends Error {}

function errorText(err: unknown): string {
  return (err as { errstr?: string }).errstr ?? (err as Error).message;
}

/**
 * Gives `table` its owner column if it was made without one (by a version
 * without owners): its rows then have none (NULL). Only the schema changes.
 */
function addOwners(db: DatabaseSync, table: string): void {
  const columns = db.prepare(`PRAGMA table_info(${quoteName(table)})`).all() as { name: string }[];
  if (columns.some((c) => c.name === "owner")) return;
  try {
    db.exec(`ALTER TABLE ${quoteName(table)} ADD COLUMN owner TEXT`);
  } catch (err) {
    throw new NotCorrupt(`cannot add the owner column to table ${table}: ${errorText(err)}`, {
      cause: err,
    });
  }
}

/**
 * Opens the file with {@link openChecked}; when that fails, moves it aside
 * and starts empty if `moveCorruptAside` is set, else refuses.
 * @throws {UsageError} `Cannot open PATH: …`
 */
export function openOrMoveAside(
  path: string,
  options: StoreOptions,
  warn: (message: string) => void,
): DatabaseSync {
  try {
    return openChecked(path, options);
  } catch (err) {
    const why = (err as Error).message;
    // Nothing to move aside: the file opens once there is room.
    if (err instanceof NotCorrupt) throw new UsageError(`Cannot open ${path}: ${why}`);
    if (!options.moveCorruptAside) {
      throw new UsageError(
        `Cannot open ${path}: ${why}: move it away, or give --move-corrupt-aside ` +
          `to have it renamed and start empty`,
      );
    }
    const aside = moveAside(path);
    warn(`Cannot open ${path}: ${why}: moved it to ${aside} and started empty`);
    try {
      return openChecked(path, options);
    } catch (again) {
      throw new UsageError(`Cannot open ${path}: ${(again as Error).message}`);
    }
  }
}

/** Syncs a directory (the names in it): a new file's entry survives a power cut. */
export async function syncDirectory(path: string): Promise<void> {
  const dir = await Deno.open(path, { read: true });
  try {
    await dir.syncData();
  } finally {
    dir.close();
  }
}

/** Renames the file (and its WAL and index) to `PATH.corrupt-TIME`; returns the new name. */
export function moveAside(path: string): string {
  const aside = `${path}.corrupt-${new Date().toISOString().replaceAll(":", "-")}`;
  for (const suffix of ["", "-wal", "-shm"]) {
    try {
      Deno.renameSync(path + suffix, aside + suffix);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) {
        throw new UsageError(`Cannot move ${path}${suffix} aside: ${(err as Error).message}`);
      }
    }
  }
  return aside;
}

/** A table name as SQL (double-quoted, quotes doubled). */
export function quoteName(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A data file's size with its WAL (bytes). */
export function sizeWithWal(path: string): number {
  let total = 0;
  for (const suffix of ["", "-wal"]) {
    try {
      total += Deno.statSync(path + suffix).size;
    } catch {
      // No WAL right now.
    }
  }
  return total;
}

/**
 * Most pages one vacuum gives back (8 MiB): the rest at the next. After a
 * bulk drop, 60,000 rows' pages given back at once held the loop 0.7–0.8 s
 * (hostile review 41b X4).
 */
const VACUUM_PAGES = 2048;

/** Gives free pages back once they are a quarter of the file: how many. */
export function vacuum(db: DatabaseSync): number {
  try {
    const free = (db.prepare("PRAGMA freelist_count").get() as { freelist_count: number })
      .freelist_count;
    const pages = (db.prepare("PRAGMA page_count").get() as { page_count: number }).page_count;
    if (free < 256 || free * 4 < pages) return 0;
    // Stepped to the end (exec would free one page): each step frees a page.
    db.prepare(`PRAGMA incremental_vacuum(${VACUUM_PAGES})`).all();
    return Math.min(free, VACUUM_PAGES);
  } catch {
    // Vacuum is tidiness; a full disk can refuse it, and the next commit tells.
    return 0;
  }
}

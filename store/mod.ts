/**
 * @module
 * Durable state below the roles: a locked data directory (`data_dir.ts`)
 * holding data files of key-value tables in SQLite with group commit
 * (`store.ts`; opened, checked and moved aside by `open.ts`; read back by
 * `reads.ts`; its options, values and counters typed in `types.ts`), and the
 * options that choose them (`--data-dir`, `--fsync`, `--move-corrupt-aside`),
 * shared by the roles that keep state.
 */
import { defineOptions } from "../config/mod.ts";
import { DataDir } from "./data_dir.ts";
import { Store } from "./store.ts";
import type { FsyncMode } from "./types.ts";

export { DataDir } from "./data_dir.ts";
export { MAX_BATCH, Store } from "./store.ts";
export type { TableReads } from "./reads.ts";
export {
  type Deferred,
  FSYNC_MODES,
  type FsyncMode,
  type Owned,
  type Row,
  type StoreCounters,
  type StoreOptions,
  type Value,
} from "./types.ts";

/** The options of a role that can keep its state in a data directory. */
export const STORE_OPTIONS = defineOptions({
  dataDir: {
    type: "string",
    path: "write",
    keep: ["auto"],
    description: "Keep state in this directory (created if missing, locked while in use); " +
      "without it, state is in memory only",
    metavar: "DIR",
  },
  moveCorruptAside: {
    type: "boolean",
    description: "When the data file cannot be opened, rename it (FILE.corrupt-TIME) and " +
      "start empty instead of refusing to start",
    default: false,
  },
});

/** `--fsync`, for the roles whose acknowledgements wait for the disk. */
export const FSYNC_OPTION = defineOptions({
  fsync: {
    type: "choice",
    description: "When a commit reaches the disk: always (each write), batch (each group " +
      "commit), off (when the system flushes)",
    choices: ["always", "batch", "off"],
    default: "batch",
  },
});

/** How a role opens its data file: from its `--fsync` and `--move-corrupt-aside`. */
export interface DataFileOptions {
  fsync: FsyncMode;
  moveCorruptAside: boolean;
  /** What the store has to warn about (a file moved aside). */
  warn: (message: string) => void;
  /** Failed commits and syncs (a full disk); `warn` when not given. */
  error?: (message: string) => void;
}

/**
 * A role's data file options from its parsed options, the store's warnings
 * going to its logger.
 */
export function storeOptions(
  options: { fsync: FsyncMode; moveCorruptAside: boolean },
  log: {
    warn(template: string, props: { message: string }): void;
    error(template: string, props: { message: string }): void;
  },
): DataFileOptions {
  return {
    fsync: options.fsync,
    moveCorruptAside: options.moveCorruptAside,
    warn: (message) => log.warn("{message}", { message }),
    error: (message) => log.error("{message}", { message }),
  };
}

/** A data directory and its one data file, opened together (and closed together). */
export interface Opened {
  dir: DataDir;
  store: Store;
  close(): void;
}

/**
 * Locks `dir` and opens `DIR/FILE`.
 * @throws {UsageError} when the directory is held by another process or the
 *   file cannot be opened (see {@link Store})
 */
export function openDataDir(
  dir: string,
  file: string,
  options: DataFileOptions & { tables: readonly string[]; owned?: readonly string[] },
): Opened {
  const data = DataDir.open(dir);
  let store: Store;
  try {
    store = new Store(data.file(file), options);
  } catch (err) {
    data.close();
    throw err;
  }
  return {
    dir: data,
    store,
    close() {
      try {
        store.close();
      } finally {
        data.close();
      }
    },
  };
}

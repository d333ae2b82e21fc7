/**
 * The thread that runs the stores' synced checkpoints (checkpoints.ts), one
 * for the process: a connection of its own to each store's file,
 * `synchronous = FULL` (SQLite syncs the WAL before it copies it into the
 * file, and the file after), a PASSIVE checkpoint per request. It only
 * copies what the WAL holds: it writes no row.
 */
import { DatabaseSync } from "node:sqlite";
import { parentPort } from "node:worker_threads";
import type { FromCheckpointer, ToCheckpointer } from "./checkpoints.ts";

const port = parentPort!;
/** Each store's connection, by the store's number. */
const files = new Map<number, DatabaseSync>();

port.on("message", (m: ToCheckpointer) => {
  if (m.type === "close") {
    try {
      files.get(m.store)?.close();
    } finally {
      files.delete(m.store);
      Atomics.store(m.closed, 0, 1);
      Atomics.notify(m.closed, 0);
    }
    return;
  }
  let error: string | undefined;
  try {
    let db = files.get(m.store);
    if (db === undefined) {
      db = new DatabaseSync(m.path);
      files.set(m.store, db);
      db.exec("PRAGMA synchronous = FULL");
    }
    db.prepare("PRAGMA wal_checkpoint(PASSIVE)").get();
  } catch (err) {
    error = (err as Error).message;
  }
  port.postMessage({ type: "done", store: m.store, error } satisfies FromCheckpointer);
});

/**
 * A store's synced checkpoints under `batch` (store.ts): once the WAL
 * passes {@link CHECKPOINT_BYTES}, it is copied into the file with both
 * synced, as SQLite does on its own with `synchronous = FULL`, so the WAL
 * can then be reused safely. On the event loop each took 50–330 ms at load
 * 10 (two syncs and the copy) and ran several times a second under a flood
 * of queued QoS 1 (hostile review 41b X4's rest), so it runs on a thread of
 * its own (checkpoint_worker.ts) with its own connection to the file: WAL
 * lets a second connection checkpoint while this one reads and writes.
 *
 * The WAL starts over only at a write after a checkpoint that copied all of
 * it, so under a steady flood every checkpoint would end behind the commits
 * made meanwhile and the WAL would grow for good. So a checkpoint has two
 * passes: the first copies the WAL while the store goes on committing; if
 * it committed meanwhile, a second copies what those commits added while
 * the store holds its commits (the writes wait in memory, as for a sync;
 * a short wait: only what came during the first). Commits the store cannot
 * hold back (past MAX_BATCH writes, a flush) may land even then: past
 * {@link LOOP_BYTES} of WAL the checkpoint runs on the loop, as before.
 */
import type { DatabaseSync } from "node:sqlite";
import { Worker } from "node:worker_threads";
import type { FsyncMode, StoreCounters } from "./types.ts";

/** What a store's checkpoints need of it. */
interface CheckpointedStore {
  readonly path: string;
  readonly fsync: FsyncMode;
  readonly counters: StoreCounters;
}

/** The WAL size past which a synced checkpoint runs (after a sync). */
export const CHECKPOINT_BYTES = 4 * 1024 * 1024;
/**
 * The WAL size past which the checkpoint runs on the loop (see the module
 * comment): one commit of MAX_BATCH queued 1,000-byte deliveries makes
 * about 25 MiB of WAL.
 */
const LOOP_BYTES = 64 * 1024 * 1024;

/** What a store tells the checkpoint thread. */
export type ToCheckpointer =
  | { type: "checkpoint"; store: number; path: string }
  | { type: "close"; store: number; closed: Int32Array };
/** What the thread answers a checkpoint. */
export type FromCheckpointer = { type: "done"; store: number; error?: string };

/**
 * Longest a pass may take before the thread is given up for good (from
 * then on on the loop), so that a thread that never answers cannot hold
 * the store's commits.
 */
const PASS_LIMIT_MS = 10_000;

/** Longest close() waits for the thread to finish a checkpoint and close the store's connection (ms). */
const CLOSE_WAIT_MS = 10_000;

/**
 * The process's checkpoint thread, made by the first store under `batch`
 * (starting it held the loop ~120 ms under load: better at open than in a
 * flood); null when it cannot run (then on the loop).
 */
let thread: Worker | null | undefined;
/** Each store's end of a checkpoint, by its number. */
const ends = new Map<number, (error?: string) => void>();
let stores = 0;

function checkpointThread(): Worker | null {
  if (thread !== undefined) return thread;
  try {
    const worker = new Worker(new URL("./checkpoint_worker.ts", import.meta.url));
    worker.unref();
    worker.on("message", (m: FromCheckpointer) => ends.get(m.store)?.(m.error));
    worker.on("error", (err: Error) => {
      // A thread that cannot run: checkpoints on the loop from now on.
      thread = null;
      void worker.terminate();
      for (const end of [...ends.values()]) end(err.message);
    });
    thread = worker;
  } catch {
    thread = null;
  }
  return thread;
}

/** Runs the checkpoints of one store (see the module comment). */
export class Checkpoints {
  readonly #path: string;
  readonly #db: DatabaseSync;
  readonly #done: () => void;
  readonly #commits: () => number;
  readonly #no = ++stores;
  /** The pass running on the thread (0: none); the store's commits when the first began. */
  #pass = 0;
  #commitsAt = 0;
  /** Whether the thread has a connection to this store's file (closed with it). */
  #opened = false;

  /** `done` is called once a second pass has ended (the store commits again). */
  constructor(store: CheckpointedStore, db: DatabaseSync, done: () => void) {
    this.#path = store.path;
    this.#db = db;
    this.#commits = () => store.counters.commits;
    this.#done = done;
    if (store.fsync === "batch") checkpointThread();
  }

  /** Whether the store holds its commits (a second pass runs on the thread). */
  get running(): boolean {
    return this.#pass === 2;
  }

  /** After a sync of the WAL (`wal`; none before the first): a checkpoint, if the WAL is past CHECKPOINT_BYTES. */
  after(wal: Deno.FsFile | undefined): void {
    if (this.#pass !== 0 || wal === undefined) return;
    let size: number;
    try {
      size = wal.statSync().size;
    } catch {
      return;
    }
    if (size < CHECKPOINT_BYTES) return;
    if (size >= LOOP_BYTES || !this.#start(1)) checkpointOnLoop(this.#db);
  }

  /** Waits for a pass running on the thread, then has it close its connection to the file. */
  close(): void {
    this.#end();
    const worker = thread;
    if (!this.#opened || worker == null) return;
    this.#opened = false;
    const closed = new Int32Array(new SharedArrayBuffer(4));
    worker.postMessage({ type: "close", store: this.#no, closed } satisfies ToCheckpointer);
    Atomics.wait(closed, 0, 0, CLOSE_WAIT_MS);
  }

  /** Starts a pass on the thread: false when there is none. */
  #start(pass: number): boolean {
    const worker = checkpointThread();
    if (worker === null) return false;
    this.#pass = pass;
    this.#opened = true;
    if (pass === 1) this.#commitsAt = this.#commits();
    // Held by the process while a pass runs (a second holds the store's commits).
    if (ends.size === 0) worker.ref();
    const limit = setTimeout(() => {
      if (thread === worker) thread = null;
      void worker.terminate();
      this.#passed(pass, "no answer");
    }, PASS_LIMIT_MS);
    Deno.unrefTimer(limit);
    ends.set(this.#no, (error) => {
      clearTimeout(limit);
      this.#passed(pass, error);
    });
    worker.postMessage(
      { type: "checkpoint", store: this.#no, path: this.#path } satisfies ToCheckpointer,
    );
    return true;
  }

  /**
   * A pass ended: a second one if the store committed during the first
   * (a failed one, a full disk, is tried again after a later sync; until
   * one works the WAL grows, and is still replayed at open).
   */
  #passed(pass: number, error: string | undefined): void {
    this.#end();
    if (pass === 1 && error === undefined && this.#commits() !== this.#commitsAt) {
      if (this.#start(2)) return;
    }
    if (pass === 2) this.#done();
  }

  #end(): void {
    this.#pass = 0;
    if (ends.delete(this.#no) && ends.size === 0) thread?.unref();
  }
}

/** A synced checkpoint on the loop (the thread's fallback, and past LOOP_BYTES). */
export function checkpointOnLoop(db: DatabaseSync): void {
  try {
    db.exec("PRAGMA synchronous = FULL");
    try {
      db.prepare("PRAGMA wal_checkpoint(PASSIVE)").get();
    } finally {
      db.exec("PRAGMA synchronous = OFF");
    }
  } catch {
    // As on the thread: tried again after the next sync.
  }
}

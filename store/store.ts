/**
 * One data file: key-value tables in SQLite (`node:sqlite`, WAL mode) with
 * group commit. Writes (`put`, `delete`) go to memory at once, so the
 * caller's state and the file's differ only by what is pending; `commit()`
 * resolves once a transaction covering every write made so far is on disk
 * (as `fsync` defines "on disk"), or rejects if that transaction failed.
 *
 * - `always`: every write its own transaction, synced before `put` returns
 *   (a StoreOptions.grouped table's: one a turn, synced as it commits);
 * - `batch`: one transaction for everything written in the same turn of
 *   the event loop (at most {@link MAX_BATCH} writes: more are committed at
 *   once), written to the WAL on the loop without a sync; the WAL is then
 *   synced off the loop (`fdatasync` on a thread of the runtime's pool), and
 *   `commit()` resolves once a sync that started after its transaction
 *   ended is done. While one sync runs, later transactions go on being
 *   written, and the next sync covers them all (group commit). SQLite's
 *   own checkpoints are off here (with `synchronous = OFF` they would copy
 *   the WAL into the file without syncing it, then reuse the WAL): the
 *   store checkpoints itself, synced, on a thread of its own, once the WAL
 *   passes {@link CHECKPOINT_BYTES} (checkpoints.ts);
 * - `off`: batches as `batch`, never synced: the operating system writes
 *   them when it likes.
 *
 * A failed commit (a full disk) rolls back, so the file keeps its last
 * committed state; the writes it held stay pending (unless newer ones
 * replaced them) and are tried again after {@link RETRY_MS}, and only then
 * (writes meanwhile wait, a deferred value made at once: hostile review 40a
 * T10, past {@link MAX_BATCH} pending each write retried the whole backlog). Deletes leave free pages that incremental vacuum gives
 * back to the file system, so the file stays near the live data. A range
 * of keys is deleted in the background, a bounded number of rows a commit
 * (`deleteRange`, ranges.ts).
 */
import type { DatabaseSync } from "node:sqlite";
import { dirname } from "node:path";
import { openOrMoveAside, sizeWithWal, syncDirectory, vacuum } from "./open.ts";
import { Checkpoints } from "./checkpoints.ts";
import { SharedCommits } from "./shared_commits.ts";
import { setImmediate } from "node:timers";
import { DistError } from "../wire/mod.ts";
import { TableReads } from "./reads.ts";
import { dropPendingIn, RangeDeletes } from "./ranges.ts";
import { keepDeferred, kept, TableWrites, type Written } from "./writes.ts";
import type { Deferred, FsyncMode, Owned, StoreCounters, StoreOptions, Value } from "./types.ts";

/** Most writes in one batch: past this many a commit runs at once. */
export const MAX_BATCH = 20_000;
export { CHECKPOINT_BYTES } from "./checkpoints.ts";
/** Between two commits of range deletes alone (ms): the loop's other work goes first. */
const RANGE_GAP_MS = 20;
/** After a failed commit, how soon the pending writes are tried again (ms). */
export const RETRY_MS = 1000;

interface Waiter {
  /** Resolved once the writes up to this sequence number are durable (or only committed). */
  upTo: number;
  synced: boolean;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** A data file: see the module comment. */
export class Store {
  readonly path: string;
  readonly fsync: FsyncMode;
  readonly counters: StoreCounters = {
    commits: 0,
    written: 0,
    failed: 0,
    vacuumed_pages: 0,
    syncs: 0,
  };
  #db: DatabaseSync;
  #tables = new Map<string, TableWrites>();
  /** Tables whose writes are committed once per turn under `always` too (StoreOptions.grouped). */
  readonly #grouped: ReadonlySet<string>;
  /** Reads of what is committed (what is pending: {@link isPending}). */
  readonly reads: TableReads;
  /** Ranges being deleted in the background ({@link deleteRange}). */
  readonly #ranges: RangeDeletes;
  /** Pending writes by table and key (null: a delete), in the order first written. */
  #pending = new Map<string, Map<string, Written>>();
  #pendingCount = 0;
  /**
   * Writes made so far; how many of them are in SQLite (or were failed);
   * how many are durable (or were failed); how many the running WAL sync
   * covers (under `batch`).
   */
  #seq = 0;
  #committed = 0;
  #done = 0;
  #syncing: number | undefined;
  /** Under `batch`: the WAL, opened at the first commit, for syncing it off the loop. */
  #wal: Deno.FsFile | undefined;
  #waiters: Waiter[] = [];
  #scheduled = false;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #rangeTimer: ReturnType<typeof setTimeout> | undefined;
  #lastError: Error | undefined;
  #warn: (message: string) => void;
  #error: (message: string) => void;
  #closed = false;
  /** The last failed sync's message (warned once per run of failures). */
  #lastSyncError: string | undefined;
  /** Set by close(): no more syncs off the loop (close syncs what is left itself). */
  #closing = false;
  readonly #shared = new SharedCommits(this);
  /** Under `batch`: the synced checkpoints; no commit is scheduled while one runs. */
  readonly #checkpoints: Checkpoints;

  /**
   * Opens (or creates) the file at `path` and checks it.
   * @throws {UsageError} `Cannot open PATH: …` when it is not a readable data
   *   file, unless `moveCorruptAside` is set
   */
  constructor(path: string, options: StoreOptions) {
    this.path = path;
    this.fsync = options.fsync;
    this.#warn = options.warn ?? (() => {});
    this.#error = options.error ?? this.#warn;
    this.#db = openOrMoveAside(path, options, this.#warn);
    this.#grouped = new Set(options.grouped ?? []);
    for (const table of options.tables) {
      this.#tables.set(table, new TableWrites(this.#db, table, options.owned?.includes(table)));
      this.#pending.set(table, new Map());
    }
    this.reads = new TableReads(this.#db, path, options.tables, options.owned ?? []);
    this.#ranges = new RangeDeletes(this.#db);
    this.#checkpoints = new Checkpoints(this, this.#db, () => this.#schedule());
  }

  /** Every row of `table` as committed (pending writes are not seen), in the order stored. */
  rows(table: string): Generator<[string, Value]> {
    return this.reads.allRows(table);
  }

  /** Every key of `table` as committed, in the order stored (values read one at a time). */
  keys(table: string): Generator<string> {
    return this.reads.allKeys(table);
  }

  /** Whether `key` of `table` has a write not committed yet (what the file holds of it is stale). */
  isPending(table: string, key: string): boolean {
    return this.#pendingCount > 0 && this.#pending.get(table)?.has(key) === true;
  }

  /**
   * Sets `key` of `table` (durable once {@link commit} resolves), with its
   * owner when given as {@link Owned} (kept in a table with owners only).
   */
  put(table: string, key: string, value: Value | Owned | Deferred): void {
    this.#write(table, key, value);
  }

  /** Removes `key` of `table` (durable once {@link commit} resolves). */
  delete(table: string, key: string): void {
    this.#write(table, key, null);
  }

  /**
   * Removes the rows of `table` whose keys are in [`from`, `to`), in the
   * background: ranges.ts's bounded number of rows in each commit, from
   * this turn's on. Pending writes in the range are dropped now; the caller
   * writes no key of the range later. {@link commit} does not wait for it
   * (a kill before it is over leaves the rows not deleted yet), nor does
   * {@link isPending} see it; {@link close} finishes it.
   */
  deleteRange(table: string, from: string, to: string): void {
    const ops = this.#pending.get(table);
    if (ops === undefined) throw new Error(`Store ${this.path} has no table ${table}`);
    if (this.#closed) throw new DistError("UNAVAILABLE", "Store closed");
    if (ops.size > 0) this.#pendingCount -= dropPendingIn(ops, from, to);
    this.#ranges.add(table, from, to);
    this.#schedule();
  }

  /**
   * Commits what is pending now, in this turn (as past {@link MAX_BATCH}
   * writes): for a writer whose deferred values are views of a buffer it
   * wants back.
   */
  flush(): void {
    // While failing, nothing pending is a view of the writer's buffer (see #write).
    if (this.#pendingCount > 0 && this.#retry === undefined) this.#commitNow();
  }

  /** Writes made so far (committed or not): unchanged, a caller made none meanwhile. */
  get written(): number {
    return this.#seq;
  }

  /** Whether the last commit failed and writes wait for its retry (a full disk). */
  get failing(): boolean {
    return this.#lastError !== undefined && this.#pendingCount > 0;
  }

  /** Writes not committed yet. */
  get pending(): number {
    return this.#pendingCount;
  }

  /**
   * Resolves once every write made so far is committed: on disk as the
   * fsync mode says, or with `synced` false once in a committed
   * transaction (the WAL: a process crash keeps it; under `batch` its sync
   * follows, a power cut before it loses it).
   * @throws {DistError} UNAVAILABLE when the commit covering them failed
   */
  commit(synced = true): Promise<void> {
    if ((synced ? this.#done : this.#committed) >= this.#seq) {
      return this.#lastError === undefined || this.#pendingCount === 0
        ? Promise.resolve()
        : Promise.reject(this.#lastError);
    }
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#waiters.push({ upTo: this.#seq, synced, resolve, reject });
    this.#schedule();
    return promise;
  }

  /**
   * Commits what was written since `since` (an earlier {@link written}), or
   * nothing (undefined): as {@link commit}(`synced`), run in this turn when
   * `now` ({@link flush}); one promise shared, marked handled (shared_commits.ts).
   */
  commitSince(since: number, synced = true, now = false): Promise<void> | undefined {
    if (this.#seq === since) return undefined;
    if (now) this.flush();
    return this.#shared.commit(synced);
  }

  /** Commits what is pending now (at shutdown), then closes the file. */
  close(): void {
    if (this.#closed) return;
    clearTimeout(this.#retry);
    this.#closing = true;
    this.#checkpoints.close();
    if (this.#pendingCount > 0 || this.#committed < this.#seq) this.#commitNow();
    while (this.#ranges.pending && this.#lastError === undefined) this.#commitNow();
    clearTimeout(this.#retry);
    this.#closed = true;
    this.#wal?.close();
    let synced = this.fsync !== "batch";
    try {
      // Under batch, with FULL the checkpoint syncs the WAL first: every commit is then durable.
      if (this.fsync === "batch") this.#db.exec("PRAGMA synchronous = FULL");
      this.#db.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get();
      synced = true;
    } catch {
      // A checkpoint is tidiness: the WAL is replayed at the next open anyway.
    }
    if (synced) this.#release(this.#committed, undefined);
    for (const w of this.#waiters) w.reject(new DistError("UNAVAILABLE", "Store closed"));
    this.#waiters = [];
    this.#db.close();
  }

  /** The file's size with its WAL (bytes). */
  sizeOnDisk(): number {
    return sizeWithWal(this.path);
  }

  #write(table: string, key: string, value: Written): void {
    if (this.#closed) throw new DistError("UNAVAILABLE", "Store closed");
    const ops = this.#pending.get(table);
    if (ops === undefined) throw new Error(`Store ${this.path} has no table ${table}`);
    this.#seq++;
    if (value === null && ops.get(key) != null && this.reads.row(table, key) === undefined) {
      // A put never written, then its delete: nothing to write (hostile review 40b U4: while
      // failing, a bounded queue's drop-oldest churn otherwise kept a put and a delete each).
      ops.delete(key);
      this.#pendingCount--;
      return;
    }
    if (!ops.has(key)) this.#pendingCount++;
    if (this.#retry !== undefined) {
      // Failing: kept for the retry (see the module comment), made now.
      ops.set(key, typeof value === "function" ? kept(value()) : value);
      return;
    }
    ops.set(key, value);
    const now = this.fsync === "always" && !this.#grouped.has(table);
    if (now || this.#pendingCount >= MAX_BATCH) this.#commitNow();
    else this.#schedule();
  }

  #schedule(): void {
    // While failing, the retry (#failed) commits.
    if (this.#scheduled || this.#closed || this.#retry !== undefined) return;
    this.#scheduled = true;
    // setImmediate runs after this turn's I/O callbacks: every frame read in this turn is in.
    setImmediate(() => {
      this.#scheduled = false;
      // Its end schedules (checkpoints.ts); what waits for it may not stay views of a writer's buffer.
      if (this.#checkpoints.running) return keepDeferred(this.#pending);
      if (this.#pendingCount > 0 || this.#committed < this.#seq || this.#ranges.pending) {
        this.#commitNow();
      } else if (this.fsync === "batch") this.#sync(); // After a failed sync: try again.
    });
  }

  /**
   * The next rows of the range deletes, in a later turn: a timer, where
   * setImmediate after setImmediate held the sockets out of every turn.
   */
  #later(): void {
    if (this.#closed || this.#retry !== undefined || this.#rangeTimer !== undefined) return;
    this.#rangeTimer = setTimeout(() => {
      this.#rangeTimer = undefined;
      if (!this.#scheduled && !this.#checkpoints.running) this.#commitNow();
    }, RANGE_GAP_MS);
    Deno.unrefTimer(this.#rangeTimer);
  }

  #commitNow(): void {
    if (this.#closed) return;
    clearTimeout(this.#retry);
    this.#retry = undefined;
    const batch = this.#pending;
    const count = this.#pendingCount;
    const upTo = this.#seq;
    this.#pending = new Map([...batch.keys()].map((t) => [t, new Map()]));
    this.#pendingCount = 0;
    let failure: Error | undefined;
    if (count > 0 || this.#ranges.pending) {
      try {
        this.#db.exec("BEGIN IMMEDIATE");
        for (const [table, ops] of batch) {
          this.#tables.get(table)!.run(ops);
        }
        const ranges = this.#ranges.run();
        this.#db.exec("COMMIT");
        this.#ranges.done(ranges);
        this.counters.commits++;
        this.counters.written += count;
        if (this.#lastError !== undefined) this.#warn(`Writing to ${this.path} again`);
        this.#lastError = undefined;
      } catch (err) {
        failure = this.#failed(err, batch);
      }
    }
    this.#committed = upTo;
    if (failure === undefined && this.counters.commits % 64 === 0) {
      this.counters.vacuumed_pages += vacuum(this.#db);
    }
    if (failure !== undefined || this.fsync !== "batch" || this.#closed) {
      this.#done = upTo;
      this.#release(upTo, failure);
    } else {
      this.#release(upTo, undefined, false);
      this.#sync();
    }
    if (this.#ranges.pending && !this.#scheduled) this.#later();
  }

  /**
   * Settles the waiters whose writes are all up to `upTo` (with `synced`
   * false: those not waiting for a sync): rejected with `failure` if given.
   */
  #release(upTo: number, failure: Error | undefined, synced = true): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) {
      if (w.upTo > upTo || (!synced && w.synced)) this.#waiters.push(w);
      else if (failure !== undefined) w.reject(failure);
      else w.resolve();
    }
  }

  /**
   * Under `batch`: syncs the WAL off the loop, unless a sync runs already
   * (then the next one starts when it ends), and releases the waiters the
   * sync covers.
   */
  #sync(): void {
    if (this.#syncing !== undefined || this.#closing || this.#committed <= this.#done) return;
    const upTo = this.#committed;
    this.#syncing = upTo;
    let syncs: Promise<void>[];
    try {
      // Only the WAL is opened here: closing any descriptor of the database file (or -shm)
      // would drop this process's fcntl locks on it, SQLite's included.
      const first = this.#wal === undefined;
      this.#wal ??= Deno.openSync(this.path + "-wal", { read: true });
      syncs = [this.#wal.syncData()];
      // The WAL's name in its directory: SQLite syncs the directory itself only when it syncs.
      if (first) syncs.push(syncDirectory(dirname(this.path)));
    } catch (err) {
      this.#synced(upTo, err);
      return;
    }
    Promise.all(syncs).then(() => this.#synced(upTo, undefined), (err) => this.#synced(upTo, err));
  }

  #synced(upTo: number, err: unknown): void {
    this.#syncing = undefined;
    if (this.#closed) return;
    this.counters.syncs++;
    if (err !== undefined) {
      // The transactions are in SQLite but maybe not on disk, and a later sync that works may
      // not say so (the kernel can drop the pages it failed to write): every request since the
      // last good sync is refused (a retry writes it again), nothing is counted durable, and
      // the next sync is tried with the next commit or request.
      this.counters.failed++;
      const failure = new DistError(
        "UNAVAILABLE",
        `Cannot sync ${this.path}: ${(err as Error).message}`,
        { cause: err },
      );
      if (this.#lastSyncError !== failure.message) this.#error(failure.message);
      this.#lastSyncError = failure.message;
      this.#release(this.#committed, failure);
      return;
    }
    this.#lastSyncError = undefined;
    this.#done = Math.max(this.#done, upTo);
    this.#release(upTo, undefined);
    this.#checkpoints.after(this.#wal);
    this.#sync();
  }

  /** Rolls back, keeps the batch's writes pending (behind newer ones), and says why. */
  #failed(err: unknown, batch: Map<string, Map<string, Written>>): Error {
    try {
      this.#db.exec("ROLLBACK");
    } catch {
      // SQLite may have rolled back on its own already (SQLITE_FULL does).
    }
    this.counters.failed++;
    for (const [table, ops] of batch) {
      const now = this.#pending.get(table)!;
      for (const [key, written] of ops) {
        if (!now.has(key)) {
          now.set(key, typeof written === "function" ? kept(written()) : written);
          this.#pendingCount++;
        }
      }
    }
    const why = (err as { errstr?: string }).errstr ?? (err as Error).message;
    const error = new DistError("UNAVAILABLE", `Cannot store: ${why} (${this.path})`, {
      cause: err,
    });
    if (this.#lastError === undefined) {
      this.#error(`${error.message}: retrying every second, kept in memory meanwhile`);
    }
    this.#lastError = error;
    this.#retry = setTimeout(() => this.#commitNow(), RETRY_MS);
    Deno.unrefTimer(this.#retry);
    return error;
  }
}

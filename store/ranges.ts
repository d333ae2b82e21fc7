/**
 * Deletes of key ranges made in the background (Store.deleteRange): a
 * bounded number of rows in each commit, the rest in the next turn's. A
 * store delete runs SQLite's b-tree work for each row (25–30 µs a
 * 1,000-byte row here): 180 MB of queued deliveries dropped at once, a
 * delete per row, held the event loop 8–14 s (hostile review 41b X4).
 * Used by `store.ts`.
 */
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { quoteName } from "./open.ts";

/** Most rows the range deletes take in one commit (about 15 ms of SQLite's work, idle). */
export const RANGE_ROWS = 500;

interface Range {
  table: string;
  /** The first key still to delete, and the end (not deleted). */
  from: string;
  to: string;
}

interface Statements {
  /** The key `RANGE_ROWS` rows on from a key, before an end. */
  next: StatementSync;
  del: StatementSync;
}

/** Ranges still to delete, oldest first. */
export class RangeDeletes {
  readonly #db: DatabaseSync;
  #ranges: Range[] = [];
  /** Each range by its table and end: a range that begins there is merged into it. */
  #byEnd = new Map<string, Range>();
  #statements = new Map<string, Statements>();

  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /** Whether rows are still to delete. */
  get pending(): boolean {
    return this.#ranges.length > 0;
  }

  /** The rows of `table` with keys in [`from`, `to`) are to go. */
  add(table: string, from: string, to: string): void {
    if (from >= to) return;
    const before = this.#byEnd.get(endKey(table, from));
    if (before !== undefined) {
      // Contiguous with one not done yet (a queue's next rows): one range.
      this.#byEnd.delete(endKey(table, from));
      before.to = to;
      this.#byEnd.set(endKey(table, to), before);
      return;
    }
    const range = { table, from, to };
    this.#ranges.push(range);
    this.#byEnd.set(endKey(table, to), range);
  }

  /**
   * In the open transaction: deletes up to {@link RANGE_ROWS} rows of the
   * oldest ranges. Returns what to record once the transaction is
   * committed ({@link done}): a failed one deleted nothing.
   */
  run(): [Range, string][] {
    const progress: [Range, string][] = [];
    let left = RANGE_ROWS;
    for (const range of this.#ranges) {
      if (left <= 0) break;
      const s = this.#statementsOf(range.table);
      const next = s.next.get(range.from, range.to, left - 1) as { k: string } | undefined;
      const until = next === undefined ? range.to : next.k;
      const changes = s.del.run(range.from, until).changes;
      left -= Number(changes);
      progress.push([range, until]);
      // A range ended at `until` when `next` was found: its last row stays for the next commit.
      if (next !== undefined) break;
    }
    return progress;
  }

  /** The transaction of {@link run}'s `progress` was committed. */
  done(progress: [Range, string][]): void {
    for (const [range, until] of progress) range.from = until;
    while (this.#ranges.length > 0 && this.#ranges[0].from >= this.#ranges[0].to) {
      const range = this.#ranges.shift()!;
      this.#byEnd.delete(endKey(range.table, range.to));
    }
  }

  #statementsOf(table: string): Statements {
    let s = this.#statements.get(table);
    if (s === undefined) {
      const t = quoteName(table);
      s = {
        next: this.#db.prepare(
          `SELECT k FROM ${t} WHERE k >= ? AND k < ? ORDER BY k LIMIT 1 OFFSET ?`,
        ),
        del: this.#db.prepare(`DELETE FROM ${t} WHERE k >= ? AND k < ?`),
      };
      this.#statements.set(table, s);
    }
    return s;
  }
}

/** Removes from `ops` (a table's pending writes) those of keys in [`from`, `to`). */
export function dropPendingIn(
  ops: Map<string, unknown>,
  from: string,
  to: string,
): number {
  let n = 0;
  for (const key of ops.keys()) {
    if (key >= from && key < to) {
      ops.delete(key);
      n++;
    }
  }
  return n;
}

function endKey(table: string, key: string): string {
  return `${table}\0${key}`;
}

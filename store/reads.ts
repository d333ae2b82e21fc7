/**
 * Reading a data file's tables back (committed rows only: pending writes
 * are the Store's): a page of rows at a time in the order stored, one key,
 * or a range of keys; each row with its owner in a table with owners. Used by `store.ts` (`Store.rows`, `Store.reads`).
 */
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { quoteName } from "./open.ts";
import type { Row, Value } from "./types.ts";

interface Statements {
  page: StatementSync;
  /** Prepared when first used: keys of a table whose values are read one at a time. */
  keys?: StatementSync;
  /** Prepared when first used: they serve lookups while a table is being read back. */
  get?: StatementSync;
  range?: StatementSync;
  between?: StatementSync;
  rowsBetween?: StatementSync;
}

/** Reads of the tables of one open data file. */
/** Rows (or keys) read at a time by allRows and allKeys. */
const ROWS_PAGE = 10_000;

export class TableReads {
  readonly #db: DatabaseSync;
  readonly #path: string;
  readonly #tables = new Map<string, Statements>();

  /** The columns read of each table: its owner too, in a table with owners. */
  readonly #columns = new Map<string, string>();

  constructor(
    db: DatabaseSync,
    path: string,
    tables: readonly string[],
    owned: readonly string[] = [],
  ) {
    this.#db = db;
    this.#path = path;
    for (const table of tables) {
      const columns = owned.includes(table) ? "rowid, k, v, owner" : "rowid, k, v";
      this.#columns.set(table, columns);
      // all() of a page is several times faster than iterate() row by row; rowid order reads
      // the table as it lies (key order went through the key index, a lookup per row: 7 times
      // slower on 100,000 rows).
      this.#tables.set(table, {
        page: arrays(db.prepare(
          `SELECT ${columns} FROM ${quoteName(table)} WHERE rowid > ? ORDER BY rowid LIMIT ?`,
        )),
      });
    }
  }

  /**
   * Up to `limit` rows of `table` after rowid `after`, in rowid order (a
   * table read back a page at a time: pass the last row's rowid). A key
   * written again moves to a higher rowid (`INSERT OR REPLACE`).
   */
  page(table: string, after: number, limit: number): Row[] {
    return this.#statements(table).page.all(after, limit) as unknown as Row[];
  }

  /** Up to `limit` keys of `table` after rowid `after`, in rowid order, each `[rowid, key]`. */
  keys(table: string, after: number, limit: number): [number, string][] {
    const s = this.#statements(table);
    s.keys ??= arrays(
      this.#db.prepare(
        `SELECT rowid, k FROM ${quoteName(table)} WHERE rowid > ? ORDER BY rowid LIMIT ?`,
      ),
    );
    return s.keys.all(after, limit) as unknown as [number, string][];
  }

  /** Up to `limit` keys of `table` between `after` and `before` (both excluded), in key order. */
  keysBetween(table: string, after: string, before: string, limit: number): string[] {
    const s = this.#statements(table);
    s.between ??= this.#db.prepare(
      `SELECT k FROM ${quoteName(table)} WHERE k > ? AND k < ? ORDER BY k LIMIT ?`,
    );
    return (s.between.all(after, before, limit) as { k: string }[]).map((r) => r.k);
  }

  /**
   * Up to `limit` rows of `table` whose keys are between `after` and
   * `before` (both excluded), in key order (a range read back a page at a
   * time: pass the last row's key).
   */
  rowsBetween(table: string, after: string, before: string, limit: number): Row[] {
    const s = this.#statements(table);
    s.rowsBetween ??= arrays(this.#db.prepare(
      `SELECT ${this.#columns.get(table)} FROM ${quoteName(table)} ` +
        "WHERE k > ? AND k < ? ORDER BY k LIMIT ?",
    ));
    return s.rowsBetween.all(after, before, limit) as unknown as Row[];
  }

  /** The value of `key` in `table`, if any. */
  read(table: string, key: string): Value | undefined {
    return this.row(table, key)?.[2];
  }

  /** The row of `key` in `table` (its owner too, in a table with owners), if any. */
  row(table: string, key: string): Row | undefined {
    const s = this.#statements(table);
    s.get ??= arrays(
      this.#db.prepare(`SELECT ${this.#columns.get(table)} FROM ${quoteName(table)} WHERE k = ?`),
    );
    return s.get.get(key) as unknown as Row | undefined;
  }

  /**
   * Rows of `table` whose key is `key` or begins with `key/`, at most
   * `limit`, in key order: one range of the key index, [`key`, `key0`) (keys
   * compare as bytes, and '0' follows '/'), so it also holds keys such as
   * `key-1` or `key.x` that sort between them.
   */
  under(table: string, key: string, limit: number): Row[] {
    const s = this.#statements(table);
    s.range ??= arrays(this.#db.prepare(
      `SELECT ${this.#columns.get(table)} FROM ${quoteName(table)} ` +
        "WHERE k >= ? AND k < ? ORDER BY k LIMIT ?",
    ));
    return s.range.all(key, `${key}0`, limit) as unknown as Row[];
  }

  #statements(table: string): Statements {
    const s = this.#tables.get(table);
    if (s === undefined) throw new Error(`Store ${this.#path} has no table ${table}`);
    return s;
  }

  /** Every row of `table` as committed, in the order stored, a page at a time (memory stays bounded). */
  *allRows(table: string): Generator<[string, Value]> {
    for (let after = 0;;) {
      const rows = this.page(table, after, ROWS_PAGE);
      for (const row of rows) yield [row[1], row[2]];
      if (rows.length < ROWS_PAGE) return;
      after = rows[rows.length - 1][0];
    }
  }

  /** Every key of `table` as committed, in the order stored, a page at a time. */
  *allKeys(table: string): Generator<string> {
    for (let after = 0;;) {
      const keys = this.keys(table, after, ROWS_PAGE);
      for (const row of keys) yield row[1];
      if (keys.length < ROWS_PAGE) return;
      after = keys[keys.length - 1][0];
    }
  }
}

/** Makes a statement return rows as arrays (types lag the runtime here). */
function arrays(statement: StatementSync): StatementSync {
  (statement as unknown as { setReturnArrays(on: boolean): void }).setReturnArrays(true);
  return statement;
}

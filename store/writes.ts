/** A table's writes as a commit runs them (used by `store.ts`). */
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { quoteName } from "./open.ts";
import type { Deferred, Owned, Value } from "./types.ts";

/** A write as pending: a value (owned or not), one made at commit, or a delete (null). */
export type Written = Value | Owned | Deferred | null;

/** A table's statements: its pending writes run in the open transaction. */
export class TableWrites {
  readonly #put: StatementSync;
  readonly #del: StatementSync;
  /** A table with owners' put of a value and its owner. */
  readonly #putOwned: StatementSync | undefined;

  constructor(db: DatabaseSync, table: string, owned = false) {
    const t = quoteName(table);
    this.#put = db.prepare(`INSERT OR REPLACE INTO ${t} (k, v) VALUES (?, ?)`);
    this.#del = db.prepare(`DELETE FROM ${t} WHERE k = ?`);
    this.#putOwned = owned
      ? db.prepare(`INSERT OR REPLACE INTO ${t} (k, v, owner) VALUES (?, ?, ?)`)
      : undefined;
  }

  /** Runs `ops` (key to write), in their order. */
  run(ops: Map<string, Written>): void {
    for (const [key, written] of ops) {
      const value = typeof written === "function" ? written() : written;
      if (value === null) this.#del.run(key);
      else if (typeof value === "string" || value instanceof Uint8Array) {
        this.#put.run(key, value);
      } else if (this.#putOwned !== undefined) this.#putOwned.run(key, value.value, value.owner);
      else this.#put.run(key, value.value);
    }
  }
}

/** A deferred value made: a copy (it may be a view of a buffer its writer uses again). */
export function kept(made: Value | Owned | null): Value | Owned | null {
  return made instanceof Uint8Array ? made.slice() : made;
}

/**
 * Makes every deferred write of `pending` now, as {@link kept} copies: for
 * a commit held past the turn (a checkpoint's pass, checkpoints.ts), since a
 * deferred value is a view of its writer's buffer, reused after the turn
 * (hostile43b B4: queued QoS 1 rows were written with the next turn's
 * deliveries' bytes, and PUBACKed messages were missing after a restart).
 */
export function keepDeferred(pending: Map<string, Map<string, Written>>): void {
  for (const ops of pending.values()) {
    for (const [key, value] of ops) if (typeof value === "function") ops.set(key, kept(value()));
  }
}

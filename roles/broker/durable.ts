/**
 * The broker's state on disk (`--data-dir`): the retained values, in
 * `DIR/broker.db`, table `retained` (topic → value). Every value set or
 * cleared, evictions by the byte budget included, is written (encoded when
 * its commit runs: a topic updated a thousand times in one turn is encoded
 * once), so the file holds what memory holds, within the same budget. At
 * start the values are read back before the port opens.
 *
 * A value that came as JSON text is kept as that text (a row of TEXT:
 * `SECONDS JSON`); any other (from MessagePack: binary, dates) as
 * MessagePack of `[seconds, value]` (a BLOB).
 *
 * MQTT persistent sessions (subscriptions, queued messages) are meant to
 * be more tables of the same file: add them to TABLES and read them back
 * beside the retained values.
 */
import { decode, encode } from "@msgpack/msgpack";
import { normalizeTopic } from "../../clients/contracts/mod.ts";
import { type FsyncMode, openDataDir, type Opened, type StoreCounters } from "../../store/mod.ts";
import type { BrokerCore } from "./core.ts";
import { RawJson } from "./raw_json.ts";
import type { Topic } from "./topics.ts";

const RETAINED = "retained";
const TABLES = [RETAINED] as const;
export const BROKER_FILE = "broker.db";

/** What `sys.stats` says of the store. */
export interface DurableStats extends StoreCounters {
  path: string;
  fsync: FsyncMode;
  pending: number;
  size_bytes: number;
  /** Retained values read back at start, and rows that could not be read (dropped). */
  restored: number;
  unreadable: number;
}

export class DurableBroker {
  readonly #opened: Opened;
  #restored = 0;
  #unreadable = 0;

  /**
   * Locks `dir`, opens its data file, puts its retained values back into
   * `core`, then writes every later change of them.
   * @throws {UsageError} as {@link openDataDir} does
   */
  constructor(
    core: BrokerCore,
    dir: string,
    options: { fsync: FsyncMode; moveCorruptAside: boolean; warn: (message: string) => void },
  ) {
    this.#opened = openDataDir(dir, BROKER_FILE, { tables: TABLES, ...options });
    const store = this.#opened.store;
    for (const [key, row] of store.rows(RETAINED)) {
      try {
        const name = normalizeTopic(key);
        let value: unknown;
        let at: number;
        if (typeof row === "string") {
          const cut = row.indexOf(" ");
          if (cut < 0) throw new Error("no space in a text row");
          at = Number(row.slice(0, cut));
          value = RawJson.fromText(row.slice(cut + 1));
        } else {
          [at, value] = decode(row) as [number, unknown];
        }
        if (!Number.isFinite(at)) throw new Error("bad time");
        core.restoreRetained(name, value, at);
        this.#restored++;
      } catch {
        this.#unreadable++;
        store.delete(RETAINED, key);
      }
    }
    core.retained.onWrite = (topic) => store.put(RETAINED, topic.name, () => encodeRow(topic));
  }

  /** Resolves once every change so far is committed (rejects if that commit failed). */
  committed(): Promise<void> {
    return this.#opened.store.commit();
  }

  stats(): DurableStats {
    const store = this.#opened.store;
    return {
      path: store.path,
      fsync: store.fsync,
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
}

/** The topic's retained value as a row, or null once it has none. */
function encodeRow(topic: Topic): string | Uint8Array | null {
  const entry = topic.retained;
  if (entry === undefined) return null;
  const value = entry.value;
  if (value instanceof RawJson) return `${entry.updatedAt} ${value.text}`;
  return encode([entry.updatedAt, value]);
}

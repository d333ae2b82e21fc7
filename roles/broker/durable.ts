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
 * MessagePack of `[seconds, value]` (a BLOB), a value that came as
 * MessagePack bytes (the fast path) wrapped as it came, not decoded.
 *
 * MQTT persistent sessions (subscriptions, queued messages) are meant to
 * be more tables of the same file: add them to TABLES and read them back
 * beside the retained values.
 */
import { decode, encode } from "@msgpack/msgpack";
import { MAX_TOPIC_DEPTH, MAX_TOPIC_LENGTH, normalizeTopic } from "../../clients/contracts/mod.ts";
import {
  type DataFileOptions,
  type FsyncMode,
  openDataDir,
  type Opened,
  type StoreCounters,
} from "../../store/mod.ts";
import type { BrokerCore } from "./core.ts";
import { RawJson, RawMsgpack } from "./raw_json.ts";
import type { Topic } from "./topics.ts";

/**
 * A normalised topic other than `/` (as normalizeTopic makes them): segments
 * without spaces, control characters or `+`, at most MAX_TOPIC_DEPTH.
 */
const NORMAL_TOPIC = new RegExp(`^(?:/[^\\s\\u0000-\\u001f\\u007f/+]+){1,${MAX_TOPIC_DEPTH}}$`);

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
  /** Restored topics not yet in the topic tree (placed in slices after the start). */
  unplaced: number;
}

/**
 * Restored topics placed in the tree per turn of the event loop after the
 * start: about 7 ms of work at load 7 (3.3 µs a topic), every client served
 * in between; a million take about 7 s of such turns.
 */
export const PLACE_PER_TURN = 2048;

export class DurableBroker {
  readonly #opened: Opened;
  readonly #core: BrokerCore;
  #placing: ReturnType<typeof setTimeout> | undefined;
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
    options: DataFileOptions,
  ) {
    this.#opened = openDataDir(dir, BROKER_FILE, { tables: TABLES, ...options });
    const store = this.#opened.store;
    for (const [key, row] of store.rows(RETAINED)) {
      try {
        // Names are written normalised: one pattern test, not the split of a full check.
        // A key stored normalised is unique (the table's key); one normalised here may
        // meet another row's name.
        const normal = key.length <= MAX_TOPIC_LENGTH && NORMAL_TOPIC.test(key);
        const name = normal ? key : normalizeTopic(key);
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
        core.restoreRetained(name, value, at, normal);
        this.#restored++;
      } catch {
        this.#unreadable++;
        store.delete(RETAINED, key);
      }
    }
    core.retained.onWrite = (topic) => store.put(RETAINED, topic.name, () => encodeRow(topic));
    // The restored topics' branches, a slice per turn once the port is open (a walk that
    // needs some sooner places them itself).
    const place = () => {
      this.#placing = core.placeRestored(PLACE_PER_TURN) ? setTimeout(place, 0) : undefined;
    };
    if (core.topics.unplaced > 0) this.#placing = setTimeout(place, 0);
    this.#core = core;
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
      unplaced: this.#core.topics.unplaced,
      ...store.counters,
    };
  }

  /** Commits what is pending and releases the directory. */
  close(): void {
    clearTimeout(this.#placing);
    this.#opened.close();
  }
}

/** The topic's retained value as a row, or null once it has none. */
function encodeRow(topic: Topic): string | Uint8Array | null {
  const value = topic.retained;
  if (value === undefined) return null;
  if (value instanceof RawJson) return `${topic.retainedAt} ${value.text}`;
  if (value instanceof RawMsgpack) {
    // [seconds, value] around the bytes as they came (a fixarray of 2): never decoded.
    const at = encode(topic.retainedAt);
    const bytes = value.bytes;
    const row = new Uint8Array(1 + at.length + bytes.length);
    row[0] = 0x92;
    row.set(at, 1);
    row.set(bytes, 1 + at.length);
    return row;
  }
  return encode([topic.retainedAt, value]);
}

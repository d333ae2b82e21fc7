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
 * MessagePack bytes (the fast path) wrapped as it came, not decoded. Its
 * user (who retained it, under `--users` or a client certificate; the
 * shared token's holders are `token`) is the row's `owner` column, NULL
 * for no one, and is its user's again when read back: that user's pool
 * and share of the budget, and other users' new topics pass it over (see
 * RetainedStore, topic_shares.ts). A file made before the column existed
 * gets it when opened (only the schema changes: its rows have no owner).
 *
 * At start the first {@link READ_BEFORE_LISTEN} rows are read back before
 * the port opens, and the rest after it, a page per turn of the event loop
 * (a million rows take seconds, most of it the collector's work on the
 * objects they become). Meanwhile the broker answers from what it holds
 * plus the file: the topic tree asks this class for a name it does not
 * hold (a publish, an exact lookup: one read of the key index) and for the
 * topics a walk may meet (a subscription, a listing: the range of their
 * prefix, or the whole file at once when the pattern begins with `+`, is
 * `/`, or covers more than {@link FETCH_UNDER_LIMIT} rows). What memory
 * holds is always newer than the file: a row whose topic is in memory, or
 * whose key has a write not committed yet, is skipped.
 *
 * MQTT persistent sessions (subscriptions, queued messages) are meant to
 * be more tables of the same file: add them to TABLES and read them back
 * beside the retained values.
 */
import { encode } from "@msgpack/msgpack";
import {
  MAX_TOPIC_DEPTH,
  MAX_TOPIC_LENGTH,
  normalizeTopic,
  ONE_SEGMENT,
  TOPIC_FORBIDDEN_CLASS,
} from "../../clients/contracts/mod.ts";
import {
  type DataFileOptions,
  type FsyncMode,
  openDataDir,
  type Opened,
  type Owned,
  type Row,
  type StoreCounters,
  type Value,
} from "../../store/mod.ts";
import { DistError, msgpackCodec } from "../../wire/mod.ts";
import { skipSpace, skipValue } from "../../wire/json_scan.ts";
import type { BrokerCore } from "./core.ts";
import { RawJson, RawMsgpack } from "./raw_json.ts";
import { MqttPayload } from "./mqtt/mapping.ts";
import { placeRestored, restoreRetained } from "./restore.ts";
import { checkValue, expiredValue } from "./values.ts";
import type { Topic, TopicSource } from "./topics.ts";

/**
 * A normalised topic other than `/` (as normalizeTopic makes them): segments
 * without spaces, control characters, non-characters (TOPIC_FORBIDDEN_CLASS)
 * or `+`, at most MAX_TOPIC_DEPTH. A row of another name is normalised, and
 * dropped when that refuses it (hostile review 38 L1: a topic written before
 * C1 controls and non-characters were refused).
 */
const NORMAL_TOPIC = new RegExp(`^(?:/[^${TOPIC_FORBIDDEN_CLASS}/+]+){1,${MAX_TOPIC_DEPTH}}$`, "u");

const RETAINED = "retained";
const TABLES = [RETAINED] as const;
export const BROKER_FILE = "broker.db";

/** What `sys.stats` says of the store. */
export interface DurableStats extends StoreCounters {
  path: string;
  fsync: FsyncMode;
  pending: number;
  size_bytes: number;
  /** Retained values read back so far, and rows that could not be read (dropped). */
  restored: number;
  unreadable: number;
  /** Whether rows are still being read back (after the port opened). */
  loading: boolean;
  /** Restored topics not yet in the topic tree (placed in slices after the start). */
  unplaced: number;
}

/** Rows read back before the port opens (the rest after: see the module comment). */
export const READ_BEFORE_LISTEN = 20_000;
/**
 * After the port opened, rows are read back in chunks of this many, for up
 * to {@link READ_TURN_MS} per turn of the event loop, every client served
 * in between.
 */
export const READ_CHUNK = 512;
export const READ_TURN_MS = 10;
/**
 * Most rows a subscription or a listing under a prefix reads back at once
 * while the file is read; past this many, the whole file is read then.
 */
export const FETCH_UNDER_LIMIT = 10_000;
/** Rows per page when the rest of the file is read at once. */
const READ_ALL_PAGE = 10_000;

/**
 * Restored topics placed in the tree per turn of the event loop after the
 * start: about 7 ms of work at load 7 (3.3 µs a topic), every client served
 * in between; a million take about 7 s of such turns.
 */
export const PLACE_PER_TURN = 2048;

/** How the broker's data file is opened and read back. */
export interface DurableOptions extends DataFileOptions {
  /** Rows read back before the constructor returns (default {@link READ_BEFORE_LISTEN}). */
  readBeforeListen?: number;
  /** Rows read back at a time after that (default {@link READ_CHUNK}). */
  readChunk?: number;
  /** Time given to reading per turn of the event loop (ms; default {@link READ_TURN_MS}). */
  readTurnMs?: number;
  /** Told once every row has been read back (not when all were read before the port opened). */
  onLoaded?: (restored: number, ms: number) => void;
}

export class DurableBroker implements TopicSource {
  readonly #opened: Opened;
  readonly #core: BrokerCore;
  readonly #options: DurableOptions;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #restored = 0;
  #unreadable = 0;
  /** The rowid of the last row read back in order; undefined once all were. */
  #after: number | undefined = 0;
  /** The topic whose value is being read back: its write to the file would only repeat the row. */
  #quiet: string | undefined;
  /** Whether reading went on after the constructor returned (the port opened meanwhile). */
  #background = false;
  readonly #started = performance.now();

  /**
   * Locks `dir`, opens its data file, puts its retained values back into
   * `core` (the first {@link READ_BEFORE_LISTEN} now, the rest in later
   * turns), then writes every later change of them.
   * @throws {UsageError} as {@link openDataDir} does
   */
  constructor(core: BrokerCore, dir: string, options: DurableOptions) {
    this.#opened = openDataDir(dir, BROKER_FILE, { tables: TABLES, owned: TABLES, ...options });
    this.#core = core;
    this.#options = options;
    const store = this.#opened.store;
    core.retained.onWrite = (topic) => {
      // A value being read back is not written again; one evicted at once is (a delete).
      if (topic.name !== this.#quiet || topic.retained === undefined) {
        store.put(RETAINED, topic.name, () => encodeRow(topic));
      }
    };
    let more: boolean;
    try {
      more = this.#readSome(options.readBeforeListen ?? READ_BEFORE_LISTEN);
    } catch (err) {
      this.#opened.close();
      throw this.#unreadableFile(err);
    }
    if (more) {
      this.#background = true;
      core.topics.source = this;
      this.#next(this.#readOn);
    } else this.#placeOn();
  }

  /** Whether rows are still being read back. */
  get loading(): boolean {
    return this.#after !== undefined;
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
      loading: this.loading,
      unplaced: this.#core.topics.unplaced,
      ...store.counters,
    };
  }

  /** Commits what is pending and releases the directory. */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#stopReading();
    this.#opened.close();
  }

  /** TopicSource: reads back the row of `name`, if the file holds it. */
  fetch(name: string): void {
    if (name.length > MAX_TOPIC_LENGTH || !NORMAL_TOPIC.test(name)) return;
    const store = this.#opened.store;
    if (store.isPending(RETAINED, name)) return;
    let row: Row | undefined;
    try {
      row = store.reads.row(RETAINED, name);
    } catch (err) {
      throw this.#unreadableFile(err);
    }
    if (row !== undefined) this.#restore(name, row[2], row[3]);
  }

  /** TopicSource: reads back the rows under the pattern's prefix, or all of them. */
  fetchUnder(pattern: readonly string[]): void {
    let prefix = "";
    for (const segment of pattern) {
      if (segment === ONE_SEGMENT) break;
      prefix += `/${segment}`;
    }
    let rows: Row[] = [];
    try {
      if (prefix !== "") {
        rows = this.#opened.store.reads.under(RETAINED, prefix, FETCH_UNDER_LIMIT + 1);
      }
      if (prefix === "" || rows.length > FETCH_UNDER_LIMIT) {
        this.#readSome(Infinity);
        return;
      }
    } catch (err) {
      throw this.#unreadableFile(err);
    }
    for (const row of rows) this.#restore(row[1], row[2], row[3]);
  }

  /**
   * Reads back up to `n` rows in rowid order; returns whether any are left.
   * Once none are, the tree stops asking and its placing begins.
   */
  #readSome(n: number): boolean {
    const store = this.#opened.store;
    while (this.#after !== undefined && n > 0) {
      const limit = Math.min(n, READ_ALL_PAGE);
      const rows = store.reads.page(RETAINED, this.#after, limit);
      for (const row of rows) this.#restore(row[1], row[2], row[3]);
      n -= rows.length;
      if (rows.length < limit) {
        this.#stopReading();
        if (this.#background) this.#options.onLoaded?.(this.#restored, this.#ms());
        return false;
      }
      this.#after = rows[rows.length - 1][0];
    }
    return this.#after !== undefined;
  }

  /** A turn's slice of the reading, then of the placing. */
  readonly #readOn = (): void => {
    const chunk = this.#options.readChunk ?? READ_CHUNK;
    const end = performance.now() + (this.#options.readTurnMs ?? READ_TURN_MS);
    let more: boolean;
    try {
      do more = this.#readSome(chunk); while (more && performance.now() < end);
    } catch (err) {
      this.#options.warn(
        `${this.#unreadableFile(err).message}: the rows not read yet are left out`,
      );
      this.#stopReading();
      more = false;
    }
    if (more) this.#next(this.#readOn);
    else this.#placeOn();
  };

  /** The restored topics' branches, a slice per turn (a walk that needs some places them itself). */
  readonly #placeOn = (): void => {
    if (this.#core.topics.unplaced === 0) this.#timer = undefined;
    else this.#next(() => placeRestored(this.#core, PLACE_PER_TURN) ? this.#placeOn() : undefined);
  };

  #next(step: () => void): void {
    // A timeout, not setImmediate: a chain of immediates keeps Deno from polling sockets for
    // dozens of turns (measured: 260 ms to accept a connection behind 2 ms turns).
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      step();
    }, 0);
  }

  #stopReading(): void {
    this.#after = undefined;
    if (this.#core.topics.source === this) this.#core.topics.source = undefined;
  }

  #ms(): number {
    return performance.now() - this.#started;
  }

  #unreadableFile(err: unknown): DistError {
    const why = (err as { errstr?: string }).errstr ?? (err as Error).message;
    return new DistError("UNAVAILABLE", `Cannot read ${this.#opened.store.path}: ${why}`, {
      cause: err,
    });
  }

  /**
   * Puts one row back, unless memory holds a newer state of its topic (the
   * topic, or a write of it not committed yet); an unreadable row is dropped.
   */
  #restore(key: string, row: Value, owner: string | null | undefined): void {
    const core = this.#core;
    const store = this.#opened.store;
    try {
      // Names are written normalised: one pattern test, not the split of a full check.
      const normal = key.length <= MAX_TOPIC_LENGTH && NORMAL_TOPIC.test(key);
      const name = normal ? key : normalizeTopic(key);
      if (core.topics.peek(name) !== undefined || store.isPending(RETAINED, name)) return;
      let value: unknown;
      let at: number;
      if (typeof row === "string") {
        const cut = row.indexOf(" ");
        if (cut < 0) throw new Error("no space in a text row");
        at = Number(row.slice(0, cut));
        value = RawJson.fromText(checkedText(row.slice(cut + 1)));
      } else {
        // (Not the library's decode: it drops a long string's leading U+FEFF, hostile review 40a T2.)
        const fields = msgpackCodec.decode(row) as unknown[];
        at = fields[0] as number;
        // [at, null, [payload, properties, expiry]]: an MQTT publish's payload as it came.
        value = fields.length === 3 ? MqttPayload.fromRow(fields[2]) : asStored(row, fields[1]);
      }
      if (!Number.isFinite(at)) throw new Error("bad time");
      // Ran out while the broker was down: sent to no one, so not kept (hostile review 37 K3).
      if (expiredValue(value)) return void store.delete(RETAINED, key);
      this.#quiet = name;
      try {
        // (A value of no one has NULL; anything but a name would be the file's damage.)
        const by = typeof owner === "string" && owner !== "" ? owner : undefined;
        restoreRetained(core, name, value, at, true, by);
      } finally {
        this.#quiet = undefined;
      }
      this.#restored++;
    } catch (err) {
      // Logged, the first few (a damaged file may have many).
      if (++this.#unreadable <= 10) {
        this.#options.warn(
          `retained ${key}: an unreadable row, dropped (${(err as Error).message})`,
        );
      }
      store.delete(RETAINED, key);
    }
  }
}

/** A publish's value sits at depth 2 of its frame (`params` of the message): as the wire reads it. */
const VALUE_DEPTH = 2;
const encoder = new TextEncoder();
let scratch = new Uint8Array(4096);

/**
 * A text row's JSON, checked as the wire checks a publish's value (one
 * value, valid, nested at most as deep as a publish may be): a row a bit
 * flip or another writer spoiled was served as it was (hostile47 Q9:
 * invalid JSON to JSON subscribers, 100,000 levels to MessagePack ones).
 * @throws {Error} saying why it is not
 */
function checkedText(text: string): string {
  // Encoded into one buffer kept for every row (a read back is a million rows at most).
  if (scratch.length < text.length * 3) scratch = new Uint8Array(Math.max(4096, text.length * 3));
  const b = scratch.subarray(0, encoder.encodeInto(text, scratch).written);
  const start = skipSpace(b, 0);
  const end = start < b.length ? skipValue(b, start, VALUE_DEPTH) : -1;
  if (end < 0 || skipSpace(b, end) !== b.length) {
    throw new Error("not one JSON value a publish could carry (invalid, or nested too deep)");
  }
  return text;
}

/**
 * The value of a `[seconds, value]` row (checked, `decoded`) as the bytes it
 * was kept as, which a fast-path value's are as it came: not encoded again
 * from the decoded form, which puts integer-like keys first and a float32 as
 * a float64 (hostile review 40a T8: `{b, a, "2"}` came back `{"2", b, a}`
 * after a restart). A number too: decoded, -0 went out as `0` to JSON and MQTT
 * subscribers and an int64 as a float64 (hostile46b M-B4). A boolean or null stays decoded.
 */
function asStored(row: Uint8Array, decoded: unknown): unknown {
  if (decoded === null || typeof decoded === "boolean" || typeof decoded === "undefined") {
    return decoded;
  }
  if (typeof decoded !== "bigint") checkValue(decoded); // (what encoding it again refused)
  const at = numberBytes(row[1]);
  if (row[0] !== 0x92 || at < 0) throw new Error("not a [time, value] row");
  return RawMsgpack.kept(row.subarray(1 + at));
}

/** The length of the MessagePack number whose first byte is `b`; -1 for another type. */
function numberBytes(b: number): number {
  if (b < 0x80 || b >= 0xe0) return 1; // fixint
  if (b === 0xcc || b === 0xd0) return 2;
  if (b === 0xcd || b === 0xd1) return 3;
  if (b === 0xca || b === 0xce || b === 0xd2) return 5;
  if (b === 0xcb || b === 0xcf || b === 0xd3) return 9;
  return -1;
}

/** The topic's retained value as a row, with its user if it has one; null once it has none. */
function encodeRow(topic: Topic): Value | Owned | null {
  const value = encodeValue(topic);
  const owner = topic.retainedBy;
  return value === null || owner === undefined ? value : { value, owner };
}

/** The topic's retained value as stored, or null once it has none. */
function encodeValue(topic: Topic): Value | null {
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
  if (value instanceof MqttPayload) return encode([topic.retainedAt, null, value.toRow()]);
  return encode([topic.retainedAt, value]);
}

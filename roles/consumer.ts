/**
 * `dist consumer`: subscribes to a topic subtree and prints what arrives,
 * one `topic value` line per message (retained ones marked), or one JSON
 * object per line with `--json`. It resubscribes when the broker comes back
 * after a drop; Ctrl-C unsubscribes and exits 0.
 */
import { dialerCounters } from "../obs/mod.ts";
import { getLogger } from "@logtape/logtape";
import { defineOptions, type RoleOptions, UsageError } from "../config/mod.ts";
import { parseJson, type Peer, type RawDelivery } from "../wire/mod.ts";
import { cut } from "../wire/_log.ts";
import { defineRole, type RunContext, StdoutLines } from "./_role.ts";
import {
  broker,
  type Connection,
  type Message,
  normalizeTopic,
  POLICIES,
  type TopicList,
  TOPICS_DEFAULT_LIMIT,
} from "../clients/mod.ts";
import {
  BROKER_FLAG_HINTS,
  BROKER_OPTIONS,
  brokerConnection,
  firstConnectionOrStop,
} from "./_broker_link.ts";
import { formatValue, isPrintable, printableJson } from "./_printable.ts";

const log = getLogger(["dist", "consumer"]);

/** How long a last unsubscribe may take on the way out. */
const GOODBYE_MS = 1000;

const CONSUMER_OPTIONS = defineOptions({
  ...BROKER_OPTIONS,
  topic: {
    type: "string",
    description: "Topic (or pattern) to subscribe to",
    default: "/",
    short: "t",
    metavar: "TOPIC",
  },
  type: {
    type: "string",
    description: "The lab's form of --topic: --type currency is --topic /currency",
    metavar: "NAME",
  },
  group: {
    type: "string",
    description: "Queue group: consumers of one group share the messages",
    metavar: "G",
  },
  policy: {
    type: "choice",
    description: "What the broker does when this consumer falls behind",
    choices: POLICIES,
    default: "disconnect",
  },
  list: {
    type: "boolean",
    description: "Print the broker's topics under the subscription first",
    default: false,
  },
  count: {
    type: "integer",
    description: "Exit after N messages",
    min: 1,
    metavar: "N",
  },
  timeout: {
    type: "duration",
    description: "Timeout of connecting and of each request",
    default: 5000,
  },
});
type ConsumerOptions = RoleOptions<typeof CONSUMER_OPTIONS>;

export const consumer = defineRole({
  summary: "Subscribe to a topic subtree on a broker and print what arrives",
  flagHints: BROKER_FLAG_HINTS,
  usage: [
    "dist consumer [--broker HOST:PORT] [--topic /] [--group G] [--policy P] [--list] [--count N]",
    "dist consumer --type currency       the lab's form: the same as --topic /currency",
    "",
    "Prints `topic value` per message, `topic value (retained)` for retained values",
    '(--json: {"topic","value","retained"} per line). A subscription covers the topic\'s',
    "subtree; + matches one segment (/+/orange).",
  ],
  options: CONSUMER_OPTIONS,
  run: runConsumer,
});

function topicPattern(options: ConsumerOptions): string {
  if (options.type !== undefined && options.topic !== "/") {
    throw new UsageError("Give --topic or --type, not both");
  }
  // The lab's --type names a topic without its slash (currency); one given with it
  // (--type /, --type /telephony) is taken as it is.
  const type = options.type;
  const raw = type !== undefined ? (type.startsWith("/") ? type : `/${type}`) : options.topic;
  try {
    return normalizeTopic(raw, { pattern: true });
  } catch (err) {
    throw new UsageError(
      `--${options.type !== undefined ? "type" : "topic"}: ${(err as Error).message}`,
    );
  }
}

/** --group, checked. */
function groupOf(options: ConsumerOptions): string | undefined {
  const group = options.group;
  if (group !== undefined && (group === "" || group.length > 256)) {
    throw new UsageError("--group: a group name has 1 to 256 characters");
  }
  return group;
}

async function runConsumer(options: ConsumerOptions, ctx: RunContext): Promise<number> {
  const pause = new ReadPause();
  const stdout = ctx.stdout === undefined ? new StdoutLines(pause.backlog) : undefined;
  const pattern = topicPattern(options);
  const group = groupOf(options);
  const printer = new Printer(
    ctx.stdout ?? ((line: string) => stdout!.write(line)),
    options.json,
    options.count ?? Infinity,
  );
  dialerCounters(ctx.metrics?.registry, { received: () => printer.received });
  const conn = pause.conn = brokerConnection(options, {
    role: "consumer",
    waitForever: true,
    byteDeliveries: true,
  });
  // Any publisher makes new topics: worth a line only when debugging.
  conn.on(
    broker.events.topic_created,
    (p) => log.debug("New topic {topic}", { topic: cut(p.topic) }),
  );
  try {
    // No broker yet is said at once; the consumer keeps trying until one answers or Ctrl-C.
    if (await firstConnectionOrStop(conn, ctx.signal) === undefined) return 0;
    if (options.list) {
      printTopics(await listTopics(conn, pattern), options.json, (l) => printer.print(l));
    }
    const sub = await conn.subscribe(pattern, {
      group,
      policy: options.policy,
      raw: (d) => printer.raw(d),
      onSubscribed: (answer) =>
        log.info("Subscribed to {pattern}{group}: {n} topic(s) so far", {
          pattern,
          group: group === undefined ? "" : ` in group ${group}`,
          n: answer.topic_count,
        }),
    });
    // After the subscription's own hook, which subscribes again on a new connection.
    pause.holdNew(conn, () => stdout?.backlogged ?? false);
    const reading = (async () => {
      for await (const m of sub) printer.message(m);
    })();
    await new Promise<void>((resolve) => {
      if (ctx.signal.aborted) return resolve();
      ctx.signal.addEventListener("abort", () => resolve(), { once: true });
      printer.finished.then(resolve);
    });
    // Say goodbye (unsubscribe) rather than leave the broker to notice the close.
    await conn.drain(GOODBYE_MS);
    await reading;
    printer.flush();
    await stdout?.flushed();
    return 0;
  } finally {
    conn.close();
    await conn.closed();
  }
}

/**
 * Output to a reader slower than the broker (a paused terminal, a slow
 * pipe) must not block the event loop: heartbeats go on, and reading from
 * the broker pauses instead, so the broker's own slow-consumer policy
 * applies (and its SLOW_CONSUMER error is read once output moves again).
 */
class ReadPause {
  #paused: Peer | undefined;
  /** The connection whose reading pauses. */
  conn: Connection | undefined;

  /** Output backed up (reading pauses) or moving again (it resumes). */
  readonly backlog = (backlogged: boolean): void => {
    if (backlogged) {
      this.#paused = this.conn?.peer;
      this.#paused?.conn.pauseReading();
    } else {
      this.#paused?.conn.resumeReading();
      this.#paused = undefined;
    }
  };

  /** A new connection made while output is still backed up waits too. */
  holdNew(conn: Connection, backlogged: () => boolean): void {
    conn.onConnect((peer) => {
      if (!backlogged() || (this.#paused !== undefined && !this.#paused.isClosed)) return;
      this.#paused = peer;
      peer.conn.pauseReading();
    });
  }
}

/**
 * The consumer's output: a line per message, up to `--count`, the lines of
 * one read going out in one write. A value is printed on one line whatever
 * it holds: text with control characters as a JSON string (formatValue),
 * JSON with them escaped.
 */
class Printer {
  /** Messages printed (or, once the reader has gone, the limit). */
  received = 0;
  /** Resolves once `--count` messages are printed, or the reader has gone. */
  readonly finished: Promise<void>;
  #finish!: () => void;
  #out: (text: string) => void;
  #json: boolean;
  #limit: number;
  #pending: string[] = [];
  #textDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

  constructor(out: (text: string) => void, json: boolean, limit: number) {
    this.#out = out;
    this.#json = json;
    this.#limit = limit;
    this.finished = new Promise<void>((resolve) => this.#finish = resolve);
  }

  /** Queues a line, written with the others of this turn. */
  print(line: string): void {
    if (this.#pending.length === 0) queueMicrotask(() => this.flush());
    this.#pending.push(line);
  }

  /** Writes the lines queued, if any. */
  flush(): void {
    if (this.#pending.length === 0) return;
    const lines = this.#pending;
    this.#pending = [];
    try {
      this.#out(lines.join("\n"));
    } catch (err) {
      // Whoever read our output has gone (`| head`): nothing left to do.
      if (!(err instanceof Deno.errors.BrokenPipe)) throw err;
      this.received = this.#limit;
      this.#finish();
    }
  }

  /** A decoded message. */
  message(m: Message): void {
    if (this.received >= this.#limit) return;
    this.#counted(this.#line(m.topic, m.value, m.retained === true));
  }

  /**
   * A delivery read as bytes (on JSON, every delivery of this broker: a
   * MessagePack connection has only decoded ones, so the two ways never
   * interleave). Its value must be one JSON value (else false: the frame
   * goes to the ordinary decoder, which refuses it); in --json mode its
   * text goes out as it came when it is printable as it is.
   */
  raw(d: RawDelivery): boolean {
    if (this.received >= this.#limit) return true;
    let text: string;
    let value: unknown;
    try {
      text = this.#textDecoder.decode(d.value);
      value = parseJson(text);
    } catch {
      return false;
    }
    this.#counted(
      this.#json && isPrintable(text)
        ? `{"topic":${JSON.stringify(d.topic)},"value":${text},"retained":${d.retained}}`
        : this.#line(d.topic, value, d.retained),
    );
    return true;
  }

  #counted(line: string): void {
    this.received++;
    this.print(line);
    if (this.received >= this.#limit) this.#finish();
  }

  #line(topic: unknown, value: unknown, retained: boolean): string {
    return this.#json
      ? printableJson({ topic, value, retained })
      : `${formatValue(topic)} ${formatValue(value)}${retained ? " (retained)" : ""}`;
  }
}

/** Pages of `broker.topics` a `--list` reads at most (each a bounded piece of the broker's work). */
const LIST_PAGES = 16;

/**
 * Up to 1,000 topics under `prefix`: an answer cut short by the broker's
 * work bound is followed by the next pages (see `next`), at most LIST_PAGES.
 */
async function listTopics(conn: Connection, prefix: string): Promise<TopicList> {
  let listing = await conn.topics({ prefix });
  for (let page = 1; page < LIST_PAGES && listing.next !== undefined; page++) {
    const limit = TOPICS_DEFAULT_LIMIT - listing.topics.length;
    if (limit <= 0) break;
    const more = await conn.topics({ prefix, limit, after: listing.next });
    listing = { ...more, topics: [...listing.topics, ...more.topics] };
  }
  return listing;
}

/** The topic list, before the messages (the lab's consumer printed it first). */
function printTopics(
  listing: TopicList,
  json: boolean,
  print: (line: string) => void,
): void {
  if (json) {
    print(JSON.stringify(listing));
    return;
  }
  const width = Math.max(5, ...listing.topics.map((t) => t.topic.length));
  print(`${listing.topics.length}${listing.truncated ? "+" : ""} topic(s):`);
  for (const t of listing.topics) {
    print(
      `  ${t.topic.padEnd(width)}  ${t.retained ? "retained" : "        "}  ` +
        `${t.messages} message(s)  ${t.subscribers} subscriber(s)  last ${t.last_active}`,
    );
  }
}

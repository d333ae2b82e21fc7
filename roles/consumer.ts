/**
 * `dist consumer`: subscribes to a topic subtree and prints what arrives,
 * one `topic value` line per message (retained ones marked), or one JSON
 * object per line with `--json`. It resubscribes when the broker comes back
 * after a drop; Ctrl-C unsubscribes and exits 0.
 */
import { getLogger } from "@logtape/logtape";
import { type Options, UsageError } from "../config/mod.ts";
import { DistError, type Peer } from "../wire/mod.ts";
import { cut } from "../wire/_log.ts";
import { type Role, type RunContext, StdoutLines } from "./_role.ts";
import { normalizeTopic } from "../clients/contracts/mod.ts";
import {
  BROKER_FLAG_HINTS,
  BROKER_OPTION,
  brokerLink,
  deliveryFrames,
  firstConnectionOrStop,
  formatValue,
  isPrintable,
  printableJson,
} from "./_broker_link.ts";
import type { RawDelivery } from "../wire/mod.ts";

const log = getLogger(["dist", "consumer"]);

/** The slow-subscriber policies a consumer may ask the broker for. */
const POLICIES = ["disconnect", "drop-oldest", "latest"];
/** How long a last unsubscribe may take on the way out. */
const GOODBYE_MS = 1000;

export const consumer: Role = {
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
  options: {
    broker: BROKER_OPTION,
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
  },
  run: runConsumer,
};

interface TopicLine {
  topic: string;
  retained: boolean;
  messages: number;
  subscribers: number;
  last_active: string;
}

function topicPattern(options: Options): string {
  if (options.type !== undefined && options.topic !== "/") {
    throw new UsageError("Give --topic or --type, not both");
  }
  // The lab's --type names a topic without its slash (currency); one given with it
  // (--type /, --type /telephony) is taken as it is.
  const type = options.type as string | undefined;
  const raw = type !== undefined
    ? (type.startsWith("/") ? type : `/${type}`)
    : options.topic as string;
  try {
    return normalizeTopic(raw, { pattern: true });
  } catch (err) {
    throw new UsageError(
      `--${options.type !== undefined ? "type" : "topic"}: ${(err as Error).message}`,
    );
  }
}

async function runConsumer(options: Options, ctx: RunContext): Promise<number> {
  // Output to a reader slower than the broker (a paused terminal, a slow
  // pipe) must not block the event loop: heartbeats go on, and reading from
  // the broker pauses instead, so the broker's own slow-consumer policy
  // applies (and its SLOW_CONSUMER error is read once output moves again).
  let paused: Peer | undefined;
  const backlog = (backlogged: boolean) => {
    if (backlogged) {
      paused = link.peer;
      paused?.conn.pauseReading();
    } else {
      paused?.conn.resumeReading();
      paused = undefined;
    }
  };
  const stdout = ctx.stdout === undefined ? new StdoutLines(backlog) : undefined;
  const out = ctx.stdout ?? ((line: string) => stdout!.write(line));
  const pattern = topicPattern(options);
  const group = options.group as string | undefined;
  if (group !== undefined && (group === "" || group.length > 256)) {
    throw new UsageError("--group: a group name has 1 to 256 characters");
  }
  const json = options.json as boolean;
  const limit = (options.count as number | undefined) ?? Infinity;
  const timeout = options.timeout as number;
  let received = 0;
  let sid: number | undefined;
  let listed = false;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => finish = resolve);

  // Lines of one read go out in one write.
  let pending: string[] = [];
  const flush = () => {
    const lines = pending;
    pending = [];
    try {
      out(lines.join("\n"));
    } catch (err) {
      // Whoever read our output has gone (`| head`): nothing left to do.
      if (!(err instanceof Deno.errors.BrokenPipe)) throw err;
      received = limit;
      finish();
    }
  };
  const print = (line: string) => {
    if (pending.length === 0) queueMicrotask(flush);
    pending.push(line);
  };

  // A value is printed on one line whatever it holds: text with control
  // characters as a JSON string (formatValue), JSON with them escaped.
  const line = (topic: unknown, value: unknown, retained: boolean) =>
    json
      ? printableJson({ topic, value, retained })
      : `${formatValue(topic)} ${formatValue(value)}${retained ? " (retained)" : ""}`;
  const onMessage = (p: Record<string, unknown>) => {
    // One subscription per connection: no sid to check (the first deliveries
    // may even arrive before the subscribe answer has been read).
    if (received >= limit) return;
    received++;
    print(line(p.topic, p.value, p.retained === true));
    if (received >= limit) finish();
  };
  // The same for a delivery read as bytes. Its value must be one JSON value
  // (else the frame goes to the ordinary decoder, which refuses it); in
  // --json mode its text goes out as it came when it is printable as it is.
  const textDecoder = new TextDecoder("utf-8", { fatal: true });
  const onRaw = (d: RawDelivery): boolean => {
    if (received >= limit) return true;
    let text: string;
    let value: unknown;
    try {
      text = textDecoder.decode(d.value);
      value = JSON.parse(text);
    } catch {
      return false;
    }
    received++;
    print(
      json && isPrintable(text)
        ? `{"topic":${JSON.stringify(d.topic)},"value":${text},"retained":${d.retained}}`
        : line(d.topic, value, d.retained),
    );
    if (received >= limit) finish();
    return true;
  };

  const link = brokerLink(options, {
    role: "consumer",
    waitForever: true,
    rawFrames: deliveryFrames(onRaw),
    onNotification: (method, params) => {
      if (method === "broker.message") {
        if (typeof params === "object" && params !== null) {
          onMessage(params as Record<string, unknown>);
        }
      } else if (method === "broker.topic_created") {
        // Any publisher makes new topics: worth a line only when debugging.
        const topic = (params as { topic?: unknown } | undefined)?.topic;
        log.debug("New topic {topic}", { topic: cut(String(topic)) });
      } else {
        log.debug("Ignored a {method} notification from the broker", { method: cut(method) });
      }
    },
    onConnect: async (peer: Peer) => {
      if (options.list && !listed) {
        listed = true;
        printTopics(
          await peer.call("broker.topics", { prefix: pattern }, { timeout }) as {
            topics: TopicLine[];
            truncated: boolean;
          },
          json,
          print,
        );
      }
      const result = await peer.call("broker.subscribe", {
        topic: pattern,
        group,
        policy: options.policy,
      }, { timeout }) as { sid: number; topic_count: number };
      sid = result.sid;
      if (stdout?.backlogged && paused === undefined) {
        paused = peer; // output still backed up: this connection waits too
        peer.conn.pauseReading();
      }
      log.info("Subscribed to {pattern}{group}: {n} topic(s) so far", {
        pattern,
        group: group === undefined ? "" : ` in group ${group}`,
        n: result.topic_count,
      });
    },
  });
  try {
    // No broker yet is said at once; the consumer keeps trying until one answers or Ctrl-C.
    await firstConnectionOrStop(link, ctx.signal);
    await new Promise<void>((resolve) => {
      if (ctx.signal.aborted) return resolve();
      ctx.signal.addEventListener("abort", () => resolve(), { once: true });
      finished.then(resolve);
    });
    const peer = link.peer;
    if (peer !== undefined && sid !== undefined) {
      // Say goodbye rather than leave the broker to notice the close.
      await peer.call("broker.unsubscribe", { sid }, { timeout: GOODBYE_MS }).catch((err) =>
        log.debug("Unsubscribe failed: {error}", { error: DistError.from(err).message })
      );
    }
    if (pending.length > 0) flush();
    await stdout?.flushed();
    return 0;
  } finally {
    await link.stop();
  }
}

/** The topic list, before the messages (the lab's consumer printed it first). */
function printTopics(
  listing: { topics: TopicLine[]; truncated: boolean },
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

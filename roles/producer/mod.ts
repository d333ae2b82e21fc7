/**
 * @module
 * `dist producer`: publishes to a broker. Three modes: the original lab's
 * generators (`--type`, in `generators.ts`), given values (`--topic T
 * --value V`), and load (`--payload BYTES`, `--rate R`, in `load.ts`). This
 * file holds the option spec and picks the mode.
 */
import { dialerCounters } from "../../obs/mod.ts";
import { getLogger } from "@logtape/logtape";
import { defineOptions, formatAddress, type RoleOptions, UsageError } from "../../config/mod.ts";
import { DistError, type Peer, sleep } from "../../wire/mod.ts";
import { defineRole, type RunContext, writeStdout } from "../_role.ts";
import { type Connection, normalizeTopic } from "../../clients/mod.ts";
import {
  BROKER_FLAG_HINTS,
  BROKER_OPTIONS,
  brokerConnection,
  firstConnection,
  firstConnectionOrStop,
  parseValue,
} from "../_broker_link.ts";
import { formatValue } from "../_printable.ts";
import { GENERATOR_NAMES, GENERATORS, type Publication } from "./generators.ts";
import { formatLoadSummary, progressBar, type PublishCounts, runLoad } from "./load.ts";

const log = getLogger(["dist", "producer"]);

const PRODUCER_OPTIONS = defineOptions({
  ...BROKER_OPTIONS,
  type: {
    type: "choice",
    description: "Run one of the lab's generators",
    choices: GENERATOR_NAMES,
  },
  topic: { type: "string", description: "Topic to publish to", metavar: "TOPIC" },
  value: { type: "string", description: "Value to publish (JSON, or text)", metavar: "V" },
  count: {
    type: "integer",
    description:
      "Messages to publish; with --type, rounds of the generator (default: 1 with --value, " +
      "100000 in load, else no end)",
    min: 1,
    metavar: "N",
  },
  interval: {
    type: "duration",
    description: "Time between messages (default: the generator's, 1s with --value)",
  },
  retain: {
    type: "boolean",
    description: "Keep each value as its topic's retained value (--no-retain: don't)",
    default: true,
  },
  confirm: {
    type: "boolean",
    description: "Publish as requests, each answered once routed (else fire-and-forget)",
    default: false,
  },
  payload: {
    type: "integer",
    description: "Load mode: bytes of text in each message",
    min: 0,
    max: 64 * 1024 * 1024,
    metavar: "BYTES",
  },
  rate: {
    type: "number",
    description: "Load mode: messages per second (default: as fast as the broker takes them)",
    min: 0.001,
    metavar: "R",
  },
  timeout: {
    type: "duration",
    description: "Timeout of connecting and of each confirmation",
    default: 5000,
  },
});
type ProducerOptions = RoleOptions<typeof PRODUCER_OPTIONS>;

export const producer = defineRole({
  summary: "Publish to a broker: the lab's generators, given values, or a load",
  flagHints: BROKER_FLAG_HINTS,
  usage: [
    "dist producer --type currency|msg|telephony [--count N] [--interval D]",
    "dist producer --topic T --value V [--count N] [--interval D] [--no-retain] [--confirm]",
    "dist producer --topic T --payload BYTES [--count N] [--rate R] [--confirm]   (load)",
    "",
    "Generators (the original lab's):",
    ...GENERATOR_NAMES.map((name) => `  ${name.padEnd(10)} ${GENERATORS[name].about}`),
    "",
    'V is parsed as JSON when it is JSON (42, true, {"a":1}), else sent as text.',
    "Each published message is printed as `topic value` (--json: one object per line).",
  ],
  options: PRODUCER_OPTIONS,
  run: runProducer,
});

async function runProducer(options: ProducerOptions, ctx: RunContext): Promise<number> {
  const out = ctx.stdout ?? writeStdout;
  const { mode, topic } = checkFlags(options);
  // A generator runs until stopped: it waits for a broker as long. A one-shot
  // publish or a load gives up after --timeout.
  const generating = mode === "type";
  const conn = brokerConnection(options, { role: "producer", waitForever: generating });
  const counts: PublishCounts = { published: 0, failed: 0 };
  dialerCounters(ctx.metrics?.registry, {
    published: () => counts.published,
    publishFailed: () => counts.failed,
  });
  try {
    const peer = generating
      ? await firstConnectionOrStop(conn, ctx.signal)
      : await firstConnection(conn, options);
    if (peer === undefined) return 0; // stopped before any broker answered
    if (mode === "load") return await loadMode(peer, options, topic, ctx, counts);
    const generator = options.type === undefined ? undefined : GENERATORS[options.type];
    const value = options.value === undefined ? undefined : parseValue(options.value);
    const round = (): Publication[] => generator?.next(Math.random) ?? [{ topic: topic!, value }];
    const count = options.count ?? (generator ? Infinity : 1);
    const interval = options.interval ?? generator?.intervalMs ?? 1000;
    return await publishRounds(conn, peer, {
      round,
      count,
      interval,
      options,
      out,
      signal: ctx.signal,
      counts,
    });
  } finally {
    conn.close();
    await conn.closed();
  }
}

/**
 * The mode the flags ask for and the topic normalized, or a UsageError for
 * flags that do not go together (found before connecting).
 */
function checkFlags(options: ProducerOptions) {
  const load = options.payload !== undefined || options.rate !== undefined;
  const mode = load ? "load" : options.type !== undefined ? "type" : "value";
  if (options.type !== undefined && (options.topic !== undefined || load)) {
    throw new UsageError("--type runs a generator: give it without --topic, --payload or --rate");
  }
  if (mode === "value" && (options.topic === undefined || options.value === undefined)) {
    throw new UsageError(
      "Give --type currency|msg|telephony, --topic T --value V, or --topic T --payload BYTES",
    );
  }
  if (load && options.value !== undefined) {
    throw new UsageError("--value is for one message; load mode sends --payload BYTES of text");
  }
  let topic: string | undefined;
  if (options.topic !== undefined) {
    try {
      topic = normalizeTopic(options.topic);
    } catch (err) {
      throw new UsageError(`--topic: ${(err as Error).message}`);
    }
  }
  return { mode, topic };
}

/** Load mode: --count messages of --payload bytes, a progress bar on a terminal, the summary. */
async function loadMode(
  peer: Peer,
  options: ProducerOptions,
  topic: string | undefined,
  ctx: RunContext,
  counts: PublishCounts,
): Promise<number> {
  const out = ctx.stdout ?? writeStdout;
  const count = options.count ?? 100_000;
  const tty = Deno.stderr.isTerminal();
  const encoder = new TextEncoder();
  const summary = await runLoad(peer, {
    topic: topic ?? "/load",
    payload: options.payload ?? 128,
    count,
    rate: options.rate,
    retain: options.retain,
    confirm: options.confirm,
    timeout: options.timeout,
    signal: ctx.signal,
    counts,
    onProgress: tty
      ? (sent, ms) => Deno.stderr.writeSync(encoder.encode(progressBar(sent, count, ms)))
      : undefined,
  });
  if (tty) Deno.stderr.writeSync(encoder.encode("\n"));
  if (options.json) out(JSON.stringify(summary));
  else formatLoadSummary(summary).forEach((line) => out(line));
  return Object.keys(summary.errors).length === 0 && summary.sent === count ? 0 : 1;
}

/** What publishRounds is given: the rounds, how many and how often, where lines go. */
interface RoundsPlan {
  round: () => Publication[];
  count: number;
  interval: number;
  options: ProducerOptions;
  out: (line: string) => void;
  signal: AbortSignal;
  counts: PublishCounts;
}

/**
 * Publishes rounds of messages every `interval` until `count` rounds have
 * been tried (each message published or failed) or the signal fires. A message that fails is
 * logged and counted, never retried: the exit code says whether all went.
 */
async function publishRounds(conn: Connection, first: Peer, plan: RoundsPlan): Promise<number> {
  const publisher = new RoundPublisher(conn, first, plan);
  // --count counts rounds: a telephony round is its three operators, never part of them.
  let rounds = 0;
  while (rounds < plan.count && !plan.signal.aborted) {
    for (const { topic, value } of plan.round()) {
      if (plan.signal.aborted) break;
      await publisher.publish(topic, value);
    }
    if (++rounds < plan.count) await sleep(plan.interval, plan.signal);
  }
  await publisher.confirmSent();
  publisher.throwIfFailed();
  return 0;
}

/** Publishes the messages of publishRounds one at a time, and counts them. */
class RoundPublisher {
  #conn: Connection;
  #plan: RoundsPlan;
  #sent = 0;
  #failed = 0;
  #lastError: DistError | undefined;
  /** Fire-and-forget messages on `#peer` not yet known to have reached the broker. */
  #unconfirmed = 0;
  #peer: Peer | undefined;

  constructor(conn: Connection, first: Peer, plan: RoundsPlan) {
    this.#conn = conn;
    this.#peer = first;
    this.#plan = plan;
  }

  /**
   * Publishes one message (waiting up to --timeout for a broker); a failure
   * is logged and counted.
   * @throws {DistError} BAD_REQUEST: the same mistake would repeat for every message
   */
  async publish(topic: string, value: unknown): Promise<void> {
    const conn = this.#conn;
    const { retain, confirm, timeout } = this.#plan.options;
    const next = conn.peer ?? await conn.whenUp(timeout).catch(() => undefined);
    if (next !== this.#peer) this.#unconfirmed = 0; // what went on the old connection is past knowing
    this.#peer = next;
    if (next === undefined) {
      this.#fail(new DistError("UNAVAILABLE", `No broker at ${formatAddress(conn.address)}`));
      log.warn("No broker: message to {topic} not sent", { topic });
      return;
    }
    let deliveries: number | undefined;
    try {
      deliveries = (await conn.publish(topic, value, { retain, confirm, timeout }))?.deliveries;
      if (!confirm) this.#unconfirmed++;
    } catch (err) {
      const e = DistError.from(err);
      this.#fail(e);
      if (e.code === "BAD_REQUEST") {
        // The same mistake would repeat for every message: stop at once.
        throw new DistError(e.code, `Message to ${topic} not published: ${e.message}`);
      }
      log.warn("Message to {topic} not published: {code}: {message}", {
        topic,
        code: e.code,
        message: e.message,
      });
      return;
    }
    this.#sent++;
    this.#plan.counts.published++;
    this.#plan.out(publishedLine(this.#plan.options.json, topic, value, deliveries));
  }

  #fail(err: DistError): void {
    this.#failed++;
    this.#plan.counts.failed++;
    this.#lastError = err;
  }

  /**
   * Fire-and-forget messages: one round trip tells that the broker has read
   * (and routed) them all, or that it closed the connection instead.
   * @throws {DistError} when it did not answer
   */
  async confirmSent(): Promise<void> {
    const peer = this.#peer;
    if (peer === undefined || this.#unconfirmed === 0) return;
    try {
      await peer.call("sys.ping", undefined, { timeout: this.#plan.options.timeout });
    } catch (err) {
      const e = DistError.from(err);
      throw new DistError(
        e.code,
        `${this.#unconfirmed} message(s) sent without --confirm may not have reached the broker: ${e.message}`,
      );
    }
  }

  /** One line for the user, as `dist client` gives: exit 1 with the cause. */
  throwIfFailed(): void {
    const last = this.#lastError;
    if (last === undefined) return;
    const tried = this.#sent + this.#failed;
    throw new DistError(
      last.code,
      `${this.#failed} of ${tried} message(s) not published; the last: ${last.message}`,
    );
  }
}

/** What the producer prints for a message published: JSON with --json, else a line. */
function publishedLine(
  json: boolean,
  topic: string,
  value: unknown,
  deliveries: number | undefined,
): string {
  if (json) {
    return JSON.stringify(
      deliveries === undefined ? { topic, value } : { topic, value, deliveries },
    );
  }
  return `${topic} ${formatValue(value)}` +
    (deliveries === undefined ? "" : ` (${deliveries} deliver${deliveries === 1 ? "y" : "ies"})`);
}

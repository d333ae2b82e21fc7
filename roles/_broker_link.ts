/**
 * The connection to a broker that the producer and the consumer share: the
 * `--broker` option, and a link that stays up across broker restarts.
 */
import { getLogger } from "@logtape/logtape";
import {
  defineOptions,
  formatAddress,
  formatDuration,
  parseAddress,
  UsageError,
} from "../config/mod.ts";
import { cut } from "../wire/_log.ts";
import { DistError, parseJson, type Peer } from "../wire/mod.ts";
import { Connection } from "../clients/connection.ts";
import { type CommonOptions, connSettings } from "./_flags.ts";

/** Where producers and consumers find the broker unless told otherwise. */
export const DEFAULT_BROKER = "127.0.0.1:8000";

/** `--broker HOST:PORT` (in a topology file, an instance name: `broker = "broker"`). */
export const BROKER_OPTIONS = defineOptions({
  broker: {
    type: "address",
    description: "The broker to connect to",
    default: DEFAULT_BROKER,
    short: "b",
    ref: true,
    metavar: "HOST:PORT",
  },
});

/** What a producer's or consumer's user may try instead of `--broker`. */
export const BROKER_FLAG_HINTS: Record<string, string> = {
  "--port": "it dials the broker, it does not listen: give --broker HOST:PORT",
  "-p": "it dials the broker, it does not listen: give --broker HOST:PORT (or -b HOST:PORT)",
  "--host": "it dials the broker, it does not listen: give --broker HOST:PORT",
  "--connect": "give --broker HOST:PORT",
};

/** The flags a connection to the broker is made of. */
export type LinkFlags = CommonOptions & { readonly broker: string; readonly timeout: number };

export interface LinkOptions {
  role: string;
  /**
   * Whether the first connection is waited for until the process is stopped
   * (a consumer, a generator) rather than within `--timeout` (a one-shot
   * publish, a load): only the words of the "no broker" line depend on it.
   */
  waitForever?: boolean;
  /** Deliveries read as bytes (see the library's `byteDeliveries`). */
  byteDeliveries?: boolean;
}

/**
 * A library connection to `--broker` that is dialed again whenever it drops
 * (with backoff), so a producer or consumer outlives a broker restart; the
 * first refused dial is said at once, in words about the broker.
 */
export function brokerConnection(options: LinkFlags, link: LinkOptions): Connection {
  const address = parseAddress(options.broker);
  const where = formatAddress(address);
  const hint = options.broker === DEFAULT_BROKER
    ? " (is the broker up? give --broker HOST:PORT)"
    : "";
  const log = getLogger(["dist", link.role]);
  let failures = 0;
  return new Connection(address, {
    role: link.role,
    name: options.name ?? `${link.role}-${Deno.pid}`,
    codec: options.codec,
    timeout: options.timeout,
    connectTimeout: options.timeout,
    waitOnFirstConnect: true,
    byteDeliveries: link.byteDeliveries,
    wire: connSettings(options),
  }, {
    onConnect: () => {
      if (failures > 0) log.info("Connected to the broker at {where}", { where });
      failures = 0;
    },
    // The first refusal is said at once; then every tenth try.
    onDialError: (err) => {
      failures++;
      const why = cut(err.cause instanceof Error ? err.cause.message : err.message);
      if (failures === 1) {
        log.warn("No broker at {where} ({why}); retrying {until}{hint}", {
          where,
          why,
          until: link.waitForever ? "until one answers" : `for ${formatDuration(options.timeout)}`,
          hint,
        });
      } else if (failures % 10 === 0) {
        log.info("Still no broker at {where} after {n} tries ({why})", { where, n: failures, why });
      }
    },
  });
}

/** Longest a timer waits (about 24 days): "until stopped" in practice. */
const FOREVER_MS = 2 ** 31 - 1;

/**
 * The first connection of a link made with `waitForever`: retried until it
 * comes up, or undefined once `signal` stops the wait.
 */
export async function firstConnectionOrStop(
  conn: Connection,
  signal: AbortSignal,
): Promise<Peer | undefined> {
  if (signal.aborted) return undefined;
  let onAbort!: () => void;
  const stopped = new Promise<undefined>((resolve) => {
    onAbort = () => resolve(undefined);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([conn.whenUp(FOREVER_MS), stopped]);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/**
 * The first connection of a link, within `--timeout`.
 * @throws {DistError} UNAVAILABLE naming the broker (the connection is closed)
 */
export async function firstConnection(conn: Connection, options: LinkFlags): Promise<Peer> {
  try {
    return await conn.whenUp(options.timeout);
  } catch (err) {
    conn.close();
    await conn.closed();
    const where = formatAddress(conn.address);
    const hint = options.broker === DEFAULT_BROKER ? "; is the broker up? give --broker" : "";
    throw new DistError(
      "UNAVAILABLE",
      `No broker at ${where} within ${options.timeout} ms${hint}`,
      { cause: err },
    );
  }
}

/**
 * A value given on the command line: JSON when it parses as JSON, else the
 * text itself. A JSON number a double cannot hold as written (past 2^53:
 * `12345678901234567890`, or more digits than a double keeps) is refused
 * rather than sent rounded (h48 P6: every subscriber got
 * 12345678901234567000, retained): quoted, it is sent as text.
 * @throws {UsageError} for a number that would be rounded
 */
export function parseValue(text: string, flag = "--value"): unknown {
  let value: unknown;
  try {
    value = parseJson(text);
  } catch {
    return text;
  }
  const rounded = roundedNumber(text);
  if (rounded !== undefined) {
    const example = rounded.source === text.trim() ? ` ('${JSON.stringify(rounded.source)}')` : "";
    throw new UsageError(
      `${flag} ${text}: the number ${rounded.source} would be rounded to ${rounded.value} ` +
        `(a double keeps 15 to 17 digits, integers exactly to 2^53); quote it to send text${example}`,
    );
  }
  return value;
}

/** The first number of JSON text `text` that its double does not hold as written, if any. */
function roundedNumber(text: string): { source: string; value: number } | undefined {
  if (!/\d/.test(text)) return undefined;
  let found: { source: string; value: number } | undefined;
  JSON.parse(text, (_key, value, context?: { source?: string }) => {
    const source = context?.source;
    if (
      found === undefined && typeof value === "number" && source !== undefined &&
      decimal(source) !== decimal(String(value))
    ) {
      found = { source, value };
    }
    return value;
  });
  return found;
}

/** A number's text as `digits e exponent`, without leading or trailing zeros: equal for equal values. */
function decimal(text: string): string {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (m === null) return text; // Infinity: never equal to a number written
  let digits = m[2] + (m[3] ?? "");
  let exp = Number(m[4] ?? 0) - (m[3]?.length ?? 0);
  digits = digits.replace(/^0+/, "");
  if (digits === "") return "0";
  const trailing = digits.length - digits.replace(/0+$/, "").length;
  digits = digits.slice(0, digits.length - trailing);
  exp += trailing;
  return `${m[1]}${digits}e${exp}`;
}

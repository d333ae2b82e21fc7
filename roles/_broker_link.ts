/**
 * The connection to a broker that the producer and the consumer share: the
 * `--broker` option, and a link that stays up across broker restarts.
 */
import { getLogger } from "@logtape/logtape";
import { defineOptions, formatAddress, formatDuration, parseAddress } from "../config/mod.ts";
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

/** A value given on the command line: JSON when it parses as JSON, else the text itself. */
export function parseValue(text: string): unknown {
  try {
    return parseJson(text);
  } catch {
    return text;
  }
}

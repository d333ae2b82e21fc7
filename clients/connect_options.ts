/**
 * What `connect()` is given: the target when it is a service found
 * through binders, the options of the connection, and what the library's
 * own parts (serve, pubsub) add to it.
 */
import {
  type CodecName,
  type ConnSettings,
  type Credentials,
  DistError,
  type NotificationHandler,
  type Peer,
  type RawFrameHandler,
  type RequestHandler,
  type TlsSettings,
} from "../wire/mod.ts";
import type { BinderClient } from "./discovery/binders.ts";

/**
 * A service to connect to: each dial asks the binders for its next
 * instance (they hand them out in turn).
 */
export interface ServiceTarget {
  /**
   * The binders to ask: their addresses ("host:port"; a client for them is
   * opened with the connection's name, codec and credentials and closed
   * with it), or a {@link BinderClient} of your own (left open).
   */
  binders: readonly string[] | BinderClient;
  /** The service's name, as its servers registered it. */
  service: string;
  /**
   * How long each lookup waits for an instance to appear (ms, default 0:
   * none registered is NOT_FOUND at once).
   */
  wait?: number;
  /** Cuts a lookup's wait short (the connection stays open: see `signal` of the options). */
  waitSignal?: AbortSignal;
}

/** How `connect()` connects. */
export interface ConnectOptions {
  /** This program's name, told to the other side (default `client-PID`). */
  name?: string;
  /** The role told in the handshake (default `client`). */
  role?: string;
  /** Codec of the connection (default `json`). */
  codec?: CodecName;
  /** Timeout of a request that names none (ms, default 30 s). */
  timeout?: number;
  /** How long dialing and the handshake may take (ms, default 5 s). */
  connectTimeout?: number;
  /**
   * Keep dialing until the first connection is up (within `connectTimeout`)
   * instead of failing at the first refusal (default false).
   */
  waitOnFirstConnect?: boolean;
  /** Dial again when the connection drops (default true). */
  redial?: boolean;
  /** Aborting it closes the connection. */
  signal?: AbortSignal;
  /**
   * Read `broker.message` deliveries as bytes on a JSON connection (default
   * true): subscriptions with a `raw` handler get each value's text
   * unparsed, the others only the value parsed (while nothing else listens
   * to `broker.message`). False decodes every delivery whole.
   */
  byteDeliveries?: boolean;
  /**
   * What to prove who this program is with, where the other side asks
   * (`--token`/`--users` on it): a token, or a user and password.
   */
  credentials?: Credentials;
  /**
   * TLS (PEM text): `ca` dials in TLS, trusting only listeners whose
   * certificate it signed, for the host dialed; `cert` and `key` are shown
   * to a listener that requires a client certificate.
   */
  tls?: TlsSettings;
  /** Frame limit, heartbeat, liveness and write timeout of the connection. */
  wire?: ConnSettings;
}

/** What the library's own parts (serve, pubsub) add to a connection; not public. */
export interface LinkHooks {
  /** Runs on every connection before requests go out on it (subscribe again, register). */
  onConnect?: (peer: Peer) => void | Promise<void>;
  onRequest?: RequestHandler;
  onNotification?: NotificationHandler;
  rawFrames?: RawFrameHandler;
  /** Put in `by` of answers to requests served on this connection. */
  by?: string;
  /** Told of every failed dial, instead of the dialer's own log lines. */
  onDialError?: (err: DistError) => void;
}

/** The longest a timer waits (2^31-1 ms, about 24 days), as the CLI's durations. */
const MAX_MS = 2 ** 31 - 1;

/** Each number a connection may be given: its least and greatest value, and whether a whole one. */
const NUMBERS: Record<string, { min: number; max: number; integer?: boolean; ms?: boolean }> = {
  timeout: { min: 1, max: MAX_MS, ms: true },
  connectTimeout: { min: 1, max: MAX_MS, ms: true },
  wait: { min: 0, max: MAX_MS, ms: true },
  "wire.maxFrame": { min: 64, max: 64 * 1024 * 1024, integer: true },
  "wire.highWater": { min: 1, max: Number.MAX_SAFE_INTEGER, integer: true },
  "wire.maxOutbound": { min: 1, max: Number.MAX_SAFE_INTEGER, integer: true },
  "wire.heartbeatMs": { min: 0, max: MAX_MS, ms: true }, // 0: no heartbeats
  "wire.liveness": { min: 1, max: 1000, integer: true },
  "wire.timeoutMs": { min: 1, max: MAX_MS, ms: true },
  "wire.handshakeMs": { min: 1, max: MAX_MS, ms: true },
  "wire.maxInFlight": { min: 1, max: Number.MAX_SAFE_INTEGER, integer: true },
  "wire.writeTimeoutMs": { min: 1, max: MAX_MS, ms: true },
};

/**
 * Checks the options of `connect()`, `binders()` and `serve()` as the CLI
 * checks its flags: the library's often come from an application's own
 * configuration, where NaN, a negative number or a codec past the type gave
 * misleading errors (`timed out after NaN ms`, `exceeds the frame limit of
 * -1 bytes`) or none (`codec: "xml"` was JSON) (hostile47 Q23).
 * @throws {DistError} BAD_REQUEST naming the option
 */
export function checkConnectOptions<O extends ConnectOptions>(
  options: O,
  what: string,
  target?: unknown,
): O {
  const bad = (text: string) => new DistError("BAD_REQUEST", `${what}: ${text}`);
  if (options === null || typeof options !== "object") throw bad("options must be an object");
  const wait = typeof target === "object" && target !== null && "service" in target
    ? (target as ServiceTarget).wait
    : undefined;
  if (options.codec !== undefined && options.codec !== "json" && options.codec !== "msgpack") {
    throw bad(`codec must be "json" or "msgpack", got ${JSON.stringify(options.codec)}`);
  }
  for (const key of ["name", "role"] as const) {
    const value = options[key];
    if (value !== undefined && (typeof value !== "string" || value === "")) {
      throw bad(`${key} must be a non-empty string, got ${JSON.stringify(value)}`);
    }
  }
  const wire = (options.wire ?? {}) as Record<string, unknown>;
  if (wire === null || typeof wire !== "object") throw bad("wire must be an object");
  for (const [key, bounds] of Object.entries(NUMBERS)) {
    const value = key.startsWith("wire.")
      ? wire[key.slice(5)]
      : key === "wait"
      ? wait
      : (options as Record<string, unknown>)[key];
    if (value === undefined) continue;
    const ok = typeof value === "number" && Number.isFinite(value) &&
      value >= bounds.min && value <= bounds.max && (!bounds.integer || Number.isInteger(value));
    if (!ok) {
      const kind = bounds.ms
        ? `a duration from ${bounds.min} ms to ${bounds.max} ms`
        : `${bounds.integer ? "an integer" : "a number"} from ${bounds.min} to ${bounds.max}`;
      throw bad(
        `${key} must be ${kind}, got ${typeof value === "number" ? value : JSON.stringify(value)}`,
      );
    }
  }
  return options;
}

import { formatAddress, parseAddress } from "../../config/mod.ts";
import type { ClientOptions } from "./options.ts";
import { type CallOptions, DistError, type PeerInfo, type Response } from "../../wire/mod.ts";
import { Connection, type ConnectOptions } from "../../clients/connection.ts";
import type { Operation } from "../ops.ts";
import { connSettings } from "../_flags.ts";
import { formatValue, printableJson, printableText } from "../_printable.ts";

/**
 * What the modes send requests through: a library Connection to one address,
 * or to some instance of a service found through binders (`--service`:
 * `connect({ binders, service })`, which moves to another instance when one
 * fails; with `--random`, a discovery ServiceCaller asking the binders before
 * each request).
 */
export interface Caller {
  /** Sends a request by name; resolves with its result and `by`. */
  exchange(method: string, params?: unknown, options?: CallOptions): Promise<Response>;
  /** Whether requests may still be sent (false once the connection is lost). */
  readonly canCall: boolean;
  /** Who answers (the last server, once its connection is lost). */
  readonly remote?: PeerInfo;
  /** Calls waiting for an answer. */
  readonly pendingCalls?: number;
  close(): void;
}

/**
 * Options of a client mode: its flags, where its lines go, `signal` (start no
 * new request) and `cancel` (also give up on those in flight).
 */
export type ModeOptions = ClientOptions & {
  out: (line: string) => void;
  signal?: AbortSignal;
  cancel?: AbortSignal;
};

/** What one request came back with, as the client reports it. */
export interface Outcome {
  ok: boolean;
  result?: unknown;
  error?: { code: string; message: string };
  by?: string;
  ms: number;
}

/** Where the client connects by default: the balancer of the default topology. */
export const DEFAULT_CONNECT = "127.0.0.1:5556";

/**
 * Connects to the `--connect` address with the client's codec and heartbeat
 * settings. A refused connection says what to try.
 *
 * @throws {DistError} UNAVAILABLE or TIMEOUT when it cannot connect
 */
export async function connect(options: ClientOptions): Promise<Connection> {
  const address = parseAddress(options.connect ?? DEFAULT_CONNECT);
  try {
    return await dialAddress(address, options);
  } catch (err) {
    if (!(err instanceof DistError) || !(err.cause instanceof Deno.errors.ConnectionRefused)) {
      throw err;
    }
    const hint = options.connect === undefined || options.connect === DEFAULT_CONNECT
      ? "nothing listening; is the balancer up? give --connect HOST:PORT"
      : "nothing listening";
    throw new DistError("UNAVAILABLE", `Cannot connect to ${formatAddress(address)} (${hint})`, {
      cause: err,
    });
  }
}

/**
 * Connects to `address` as `--connect` would (codec, heartbeat, timeouts).
 * The connection is not dialed again when it drops: a batch or a benchmark
 * stops at a lost connection, and the shell opens another on its next
 * command ({@link Link}).
 * @throws {DistError} why the dial failed (its `cause` the socket's error)
 */
export function dialAddress(
  address: { host: string; port: number },
  options: ClientOptions,
): Promise<Connection> {
  // The failure is the caller's to say (it throws), not a log line's.
  return new Connection(address, { ...connectOptions(options), redial: false }, {
    onDialError: () => {},
  }).ready();
}

/** How the client's connections connect (codec, heartbeat, timeouts, credentials, TLS). */
export function connectOptions(options: ClientOptions): ConnectOptions {
  return {
    role: "client",
    name: options.name ?? `client-${Deno.pid}`,
    codec: options.codec,
    timeout: options.timeout,
    connectTimeout: options.timeout,
    wire: connSettings(options),
  };
}

/**
 * The connection of a session that outlives it: after it is lost, the next
 * {@link get} opens another (as redis-cli reconnects on the next command).
 */
export class Link {
  #caller: Caller;
  #open: () => Promise<Caller>;

  /** @param open opens a connection as the session's first was opened */
  constructor(caller: Caller, open: () => Promise<Caller>) {
    this.#caller = caller;
    this.#open = open;
  }

  /** The connection now (maybe a lost one; {@link get} replaces it). */
  get caller(): Caller {
    return this.#caller;
  }

  /** Whether the connection is gone: closed, or its read side ended. */
  get lost(): boolean {
    return !this.#caller.canCall;
  }

  /**
   * The connection, opened again if it was lost.
   * @throws {DistError} when it cannot connect
   */
  async get(): Promise<Caller> {
    if (!this.lost) return this.#caller;
    this.#caller.close();
    this.#caller = await this.#open();
    return this.#caller;
  }

  close(): void {
    this.#caller.close();
  }
}

/** "1 request in flight", "3 requests in flight", or undefined for none (or unknown). */
export function inFlight(callers: Iterable<Caller>): string | undefined {
  let n = 0;
  for (const caller of callers) n += caller.pendingCalls ?? 0;
  return n === 0 ? undefined : `${n} request${n === 1 ? "" : "s"} in flight`;
}

/**
 * Sends one request and describes the outcome; never throws. An abort of
 * `cancel` fails it at once (UNAVAILABLE, "Call aborted").
 */
export async function perform(
  peer: Caller,
  op: Operation,
  timeout: number,
  cancel?: AbortSignal,
): Promise<Outcome> {
  const t0 = performance.now();
  try {
    const res = await peer.exchange(op.method, op.params, { timeout, signal: cancel });
    return { ok: true, result: res.result, by: res.by, ms: round(performance.now() - t0) };
  } catch (err) {
    const e = DistError.from(err);
    return {
      ok: false,
      error: { code: e.code, message: e.message },
      ms: round(performance.now() - t0),
    };
  }
}

export function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** A result as a person reads it: numbers and text bare, anything else as JSON. */
export function formatResult(result: unknown): string {
  // A server's or worker's answer: never raw escapes or several lines on the terminal.
  return typeof result === "number" ? String(result) : formatValue(result);
}

/** The one-line JSON of an outcome: `{"ok":true,"result":7,"by":"server-5557","ms":0.21}`. */
export function outcomeJson(outcome: Outcome, extra?: Record<string, unknown>): string {
  return printableJson({ ...extra, ...outcome });
}

/** Distinct `by` names a tally keeps; later ones count as `others` (hostile h48 P9). */
export const BY_NAMES = 100;

/** Characters of a `by` a tally keeps (a longer one is cut, with "…"). */
export const BY_CHARS = 64;

/** A `by` as a tally keeps it: its first {@link BY_CHARS} characters, a pair never split. */
export function cutBy(by: string): string {
  if (by.length <= BY_CHARS) return by;
  const end = /[\uD800-\uDBFF]/.test(by[BY_CHARS - 1]) ? BY_CHARS - 1 : BY_CHARS;
  return by.slice(0, end) + "…";
}

/**
 * Answers counted by their `by`, bounded: a backend that answers under a
 * fresh name each time (a worker may write anything there) would otherwise
 * grow the client and its report with every request (hostile h48 P9: 688 MB
 * and a 42 MB `by:` line for 200,000 requests). The first {@link BY_NAMES}
 * names are kept, each cut to {@link BY_CHARS} characters; the rest are
 * counted as `others`.
 */
export class ByCount {
  readonly names = new Map<string, number>();
  others = 0;

  add(by: string): void {
    const n = this.names.get(by);
    if (n !== undefined) {
      this.names.set(by, n + 1);
      return;
    }
    const key = cutBy(by);
    const m = this.names.get(key);
    if (m !== undefined) this.names.set(key, m + 1);
    else if (this.names.size < BY_NAMES) this.names.set(key, 1);
    else this.others++;
  }

  /** The `by` and `by_others` fields of a `--json` summary. */
  toJson(): { by: Record<string, number>; by_others?: number } {
    return {
      by: Object.fromEntries(this.names),
      ...(this.others > 0 ? { by_others: this.others } : {}),
    };
  }
}

/**
 * Counts of `by` as `server-1 ×12, server-2 ×8` (then `others ×N`: those
 * past {@link BY_NAMES}). A `by` is the backend's own word (a worker may
 * write anything there): printable only (hostile44a H-A5).
 */
export function formatBy(by: Map<string, number>, others = 0): string {
  if (by.size === 0 && others === 0) return "none";
  // Most first; a tie in name order (server-2 before server-10), whatever answered first.
  const names = [...by]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0], "en", { numeric: true }))
    .map(([name, n]) => `${printableText(name)} ×${n}`);
  if (others > 0) names.push(`others ×${others}`);
  return names.join(", ");
}

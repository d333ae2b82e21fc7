import { formatAddress, parseAddress } from "../../config/mod.ts";
import type { ClientOptions } from "./options.ts";
import { codecByName, dial, DistError, type Peer, type Response } from "../../wire/mod.ts";
import type { Operation } from "../ops.ts";
import { connSettings } from "../_flags.ts";

/**
 * What the modes send requests through: a connection to one address (a
 * Peer), or to some instance of a service found through binders (`--service`:
 * a discovery ServiceCaller, which moves to another instance when one fails).
 */
export type Caller = Pick<Peer, "request" | "remote" | "canCall" | "close"> & {
  /** Calls waiting for an answer (a Peer's; undefined for a ServiceCaller). */
  readonly pendingCalls?: number;
};

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
 * Dials the `--connect` address with the client's codec and heartbeat
 * settings. A refused connection says what to try.
 *
 * @throws {DistError} UNAVAILABLE or TIMEOUT when it cannot connect
 */
export async function connect(options: ClientOptions): Promise<Peer> {
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

/** Dials `address` as `--connect` would (codec, heartbeat, timeouts). */
export function dialAddress(
  address: { host: string; port: number },
  options: ClientOptions,
): Promise<Peer> {
  return dial(address, {
    role: "client",
    name: options.name ?? `client-${Deno.pid}`,
    codec: codecByName(options.codec),
    ...connSettings(options),
    timeoutMs: options.timeout,
    connectTimeoutMs: options.timeout,
  });
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
    const res: Response = await peer.request(op.method, op.params, { timeout, signal: cancel });
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
  if (typeof result === "string") return result;
  if (typeof result === "number") return String(result);
  return JSON.stringify(result);
}

/** The one-line JSON of an outcome: `{"ok":true,"result":7,"by":"server-5557","ms":0.21}`. */
export function outcomeJson(outcome: Outcome, extra?: Record<string, unknown>): string {
  return JSON.stringify({ ...extra, ...outcome });
}

/** Counts of `by` as `server-1 ×12, server-2 ×8`. */
export function formatBy(by: Map<string, number>): string {
  if (by.size === 0) return "none";
  // Most first; a tie in name order (server-2 before server-10), whatever answered first.
  return [...by]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0], "en", { numeric: true }))
    .map(([name, n]) => `${name} ×${n}`).join(", ");
}

/**
 * Asking an instance how it is, over the wire: `sys.ping` for readiness,
 * `sys.stats` for `dist status`. Each probe is one short connection.
 */
import { parseAddress } from "../config/mod.ts";
import {
  type Credentials,
  dial,
  DistError,
  NOT_AUTHENTICATED,
  type TlsSettings,
} from "../wire/mod.ts";

/** What a probe got back. */
export type ProbeResult =
  | { ok: true; result: unknown; name: string }
  | {
    ok: false;
    reason: string;
    /** The name a dist listener gave, when it is not the one asked for. */
    name?: string;
    /**
     * Something accepted the connection (another process on the port, or
     * a dist listener that failed the call), as opposed to nothing there.
     */
    answered: boolean;
    /** A dist listener refused the launcher's credentials (or their absence) at the hello. */
    refused?: boolean;
    /** It ended by a timeout (of the connect or of the hello), not by the peer closing. */
    timedOut?: boolean;
  };

/**
 * Whether a dial failed before any connection was made: refused, no route,
 * or the connect itself timed out. Anything later (the handshake) means
 * something is listening.
 */
function connected(error: DistError): boolean {
  const cause = error.cause;
  const os = cause instanceof Error && Object.values(Deno.errors).some((e) => cause instanceof e);
  return !os && !/^Connect to \S+ timed out/.test(error.message) &&
    !/aborted$/i.test(error.message);
}

/**
 * Dials `address`, calls `method` and closes, all within `timeoutMs`.
 * Never throws: a failure is `{ ok: false, reason }`, with the name the
 * listener gave when it is not `options.name` (something else on the port).
 */
export async function probe(
  address: string,
  method: "sys.ping" | "sys.stats",
  options: {
    timeoutMs: number;
    signal?: AbortSignal;
    name?: string;
    credentials?: Credentials;
    tls?: TlsSettings;
  },
): Promise<ProbeResult> {
  let answered = false;
  try {
    const peer = await dial(parseAddress(address), {
      role: "launcher",
      name: `dist-up-${Deno.pid}`,
      connectTimeoutMs: options.timeoutMs,
      timeoutMs: options.timeoutMs,
      signal: options.signal,
      credentials: options.credentials,
      tls: options.tls,
    });
    answered = true;
    try {
      const name = peer.remote.name;
      if (options.name !== undefined && name !== options.name) {
        return { ok: false, reason: `${address} answers as ${name}`, name, answered };
      }
      const result = await peer.call(method, {}, { timeout: options.timeoutMs });
      return { ok: true, result, name: peer.remote.name };
    } finally {
      peer.close();
    }
  } catch (err) {
    const error = DistError.from(err);
    // Not a listener that did not authenticate ours (h46d D6): something else may hold the port.
    const refused = error.code === "UNAUTHORIZED" &&
      (error.data as { reason?: unknown } | undefined)?.reason !== NOT_AUTHENTICATED;
    return {
      ok: false,
      reason: error.message,
      answered: answered || connected(error),
      refused,
      timedOut: error.code === "TIMEOUT",
    };
  }
}

/**
 * Pings `address` until it answers as `name`, `signal` aborts or `deadline`
 * (a `performance.now()` time) passes. `wake` (when given) is awaited
 * between attempts and may resolve early, e.g. on a `Listening on` line.
 *
 * @returns true once ready; false on abort or deadline
 */
export async function waitReady(
  address: () => string | undefined,
  options: {
    name?: string;
    deadline: number;
    signal: AbortSignal;
    /** Resolves when it is worth trying again (default: after 50 ms). */
    wake?: (ms: number) => Promise<void>;
    /** Called once when something else answers on the address. */
    onImpostor?: (name: string) => void;
    /** What to prove who the launcher is with, where the instance asks. */
    credentials?: Credentials;
    /** The CA the instance's certificate is checked against, when it speaks TLS. */
    tls?: TlsSettings;
  },
): Promise<boolean> {
  const wake = options.wake ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
  let warned = false;
  while (!options.signal.aborted) {
    const left = options.deadline - performance.now();
    if (left <= 0) return false;
    const where = address();
    if (where !== undefined) {
      const answer = await probe(where, "sys.ping", {
        timeoutMs: Math.min(1000, Math.max(50, left)),
        signal: options.signal,
        name: options.name,
        credentials: options.credentials,
        tls: options.tls,
      });
      // A dist listener that checks credentials answered: it is up, though the
      // launcher holds none it takes (a users file and no token for dist up).
      if (answer.ok || answer.refused) return true;
      if (answer.name !== undefined && !warned) {
        warned = true;
        options.onImpostor?.(answer.name);
      }
    }
    await wake(Math.min(50, Math.max(0, options.deadline - performance.now())));
  }
  return false;
}

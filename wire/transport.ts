/**
 * The transport seam: the only code that opens sockets. It binds a port and
 * dials an address, in plain TCP or in TLS as the settings say, and hands
 * `net.ts` a `Deno.Conn` to frame; above it nothing knows which it is.
 *
 * Which TLS stack where (measured in bench/tls.ts and README "Security"):
 * - listener: `Deno.listen` and node's TLS per connection (tls_node.ts):
 *   the only way under Deno to verify client certificates, and the only
 *   one whose handshake deadline really frees the socket: closing a
 *   `Deno.listenTls` connection before its handshake ends waits for the
 *   handshake (a silent or dripping dialer held its socket for as long as
 *   it liked). `DIST_TLS_LISTENER=deno` picks `Deno.listenTls` for the
 *   benchmark's comparison (about 10 % faster, no such deadline);
 * - dialer: `Deno.connect` + `setNoDelay` + `Deno.startTls` (connectTls
 *   keeps Nagle on: 40 ms more per handshake); with a certificate of its own,
 *   `Deno.connectTls`, the only Deno call that presents one;
 * - dialers trust `--tls-ca` only: {@link exclusiveRoots} before the first dial.
 *
 * Every TLS handshake must finish within a deadline, else the connection is
 * closed (a dialer that connects and stalls holds nothing for long).
 */
import { DistError } from "./errors.ts";
import {
  dialsTls,
  exclusiveRoots,
  explainDialTls,
  listensTls,
  type TlsPeer,
  type TlsSettings,
} from "./tls.ts";
import { acceptNodeTls } from "./tls_node.ts";

/** A bound port (see {@link bindPort}). */
export interface PortListener {
  /** The address bound (the port that port 0 picked). */
  readonly addr: Deno.NetAddr;
  /** The next connection, not yet secured: give it to {@link secureAccepted}. */
  accept(): Promise<Deno.Conn>;
  /** Stops accepting. */
  close(): void;
}

/**
 * Binds `host:port`: TCP, or TLS when `tls` has a certificate and key.
 * @throws the runtime's error (AddrInUse, AddrNotAvailable, PermissionDenied)
 */
export function bindPort(host: string, port: number, tls?: TlsSettings): PortListener {
  // Only asked for when set: `reusePort` needs --unstable-net.
  const reuse = reusingPorts ? { reusePort: true } : {};
  if (!listensTls(tls) || !denoListener(tls)) {
    // node's TLS runs over plain TCP accepts (secureAccepted does the handshake).
    return Deno.listen({ hostname: host, port, ...reuse });
  }
  return Deno.listenTls({ hostname: host, port, cert: tls.cert, key: tls.key, ...reuse });
}

/** Whether this thread's ports are bound with SO_REUSEPORT (see {@link reusePorts}). */
let reusingPorts = false;

/**
 * Binds every later port of this thread with SO_REUSEPORT, so several
 * threads (`dist balancer --threads N`) accept on one port and the kernel
 * spreads the connections. Per thread: a Web Worker has its own copy.
 */
export function reusePorts(on: boolean): void {
  reusingPorts = on;
}

/** An accepted connection once secured. */
export interface Secured {
  conn: Deno.Conn;
  /** A mutual-TLS dialer's verified certificate. */
  peer?: TlsPeer;
  /** A mutual-TLS dialer refused (no certificate, unknown CA, expired): tell it, then close. */
  refused?: DistError;
}

/**
 * Finishes what an accepted connection needs before dist speaks on it:
 * Nagle off, and the TLS handshake (within `deadlineMs`).
 * @throws the handshake's failure, the connection closed (see explainListenTls)
 */
export async function secureAccepted(
  conn: Deno.Conn,
  tls: TlsSettings | undefined,
  deadlineMs: number,
): Promise<Secured> {
  if (!listensTls(tls)) {
    noDelay(conn);
    return { conn };
  }
  if (!denoListener(tls)) {
    noDelay(conn);
    return await acceptNodeTls(conn as Deno.TcpConn, tls, deadlineMs);
  }
  // A TlsConn has no setNoDelay: the listener side keeps Nagle (README, limits).
  await handshakeWithin(conn as Deno.TlsConn, deadlineMs);
  return { conn };
}

/** Whether a TLS listener is Deno's own (see the module's comment): only on request, never for mutual TLS. */
function denoListener(tls: TlsSettings): boolean {
  return tls.clientCa === undefined && Deno.env.get("DIST_TLS_LISTENER") === "deno";
}

/** What {@link connectPort} needs besides the address. */
export interface ConnectOptions {
  /** Connect plus TLS handshake must finish within this (ms). */
  timeoutMs: number;
  /** Aborting ends the connect at once (UNAVAILABLE). */
  signal?: AbortSignal;
}

/**
 * Connects to `host:port`: TCP, or TLS verified against `tls.ca` and the
 * host name when `tls` has a CA.
 * @throws {DistError} UNAVAILABLE (nothing listens; a TLS failure, said in
 * the words of the flags), TIMEOUT
 */
export async function connectPort(
  address: { host: string; port: number },
  tls: TlsSettings | undefined,
  options: ConnectOptions,
): Promise<Deno.Conn> {
  const where = hostPort(address.host, address.port);
  const started = performance.now();
  const limit = (what: string) => ({
    ms: Math.max(1, options.timeoutMs - (performance.now() - started)),
    message: `${what} ${where} timed out after ${options.timeoutMs} ms`,
    signal: options.signal,
  });
  const secure = dialsTls(tls);
  if (secure) await exclusiveRoots();
  const mutual = secure && tls.cert !== undefined && tls.key !== undefined;
  let conn: Deno.Conn;
  try {
    conn = await withTimeout<Deno.Conn>(
      mutual
        ? Deno.connectTls({
          hostname: address.host,
          port: address.port,
          caCerts: [tls.ca],
          cert: tls.cert,
          key: tls.key,
        })
        : Deno.connect({ hostname: address.host, port: address.port }),
      limit("Connect to"),
      (late) => late.close(),
    );
  } catch (err) {
    if (err instanceof DistError) throw err;
    throw new DistError("UNAVAILABLE", `Cannot connect to ${where}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (!secure) {
    noDelay(conn);
    return conn;
  }
  try {
    if (!mutual) {
      noDelay(conn);
      conn = await Deno.startTls(conn as Deno.TcpConn, {
        hostname: address.host,
        caCerts: [tls.ca],
      });
    }
    const tlsConn = conn as Deno.TlsConn;
    await withTimeout(tlsConn.handshake(), limit("TLS handshake with"), () => {});
    return conn;
  } catch (err) {
    try {
      conn.close();
    } catch {
      // Closed by the failure.
    }
    if (err instanceof DistError) throw err;
    const { text, failure } = explainDialTls(where, err);
    throw new DistError("UNAVAILABLE", text, { cause: err, data: { tls: failure } });
  }
}

/** A TLS connection's handshake, cut (the connection closed) after `ms`. */
async function handshakeWithin(conn: Deno.TlsConn, ms: number): Promise<void> {
  let late = false;
  const timer = setTimeout(() => {
    late = true;
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }, ms);
  try {
    await conn.handshake();
  } catch (err) {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
    if (late) throw new DistError("TIMEOUT", `TLS handshake not finished within ${ms} ms`);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

function noDelay(conn: Deno.Conn): void {
  try {
    (conn as Deno.TcpConn).setNoDelay(true);
  } catch {
    // Not a TCP socket option on this platform: latency only.
  }
}

/** "host:port" for messages, an IPv6 host in brackets ("[::1]:5557"), as users write it. */
export function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Settles like `promise`, or rejects with TIMEOUT after `limit.ms`
 * (UNAVAILABLE on abort); a value that arrives too late goes to `onLate`
 * to be released.
 */
export function withTimeout<T>(
  promise: Promise<T>,
  limit: { ms: number; message: string; signal?: AbortSignal },
  onLate: (value: T) => void,
): Promise<T> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = () => {
      settled = true;
      clearTimeout(timer);
      limit.signal?.removeEventListener("abort", onAbort);
    };
    const fail = (err: unknown) => {
      if (settled) return;
      settle();
      reject(err);
    };
    const onAbort = () => fail(new DistError("UNAVAILABLE", "Aborted"));
    const timer = setTimeout(() => fail(new DistError("TIMEOUT", limit.message)), limit.ms);
    limit.signal?.addEventListener("abort", onAbort, { once: true });
    if (limit.signal?.aborted) onAbort();
    promise.then((value) => {
      if (settled) return onLate(value);
      settle();
      resolve(value);
    }, fail);
  });
}

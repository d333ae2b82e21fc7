/**
 * The sockets under the L4 mode, behind one interface: libc's through FFI
 * where they can be had (raw.ts: Linux, IP literals), else Deno's (this
 * file). The proxy (mod.ts) sees connections, dials and splices only.
 */
import { formatAddress } from "../../../config/mod.ts";
import { Backoff, DistError, goneBeforeAccept, sleep } from "../../../wire/mod.ts";
import { bindPort, connectPort, type PortListener } from "../../../wire/transport.ts";
import { openRawTcp } from "../../../wire/raw_tcp.ts";
import { explainListenError } from "../../_listen.ts";
import { log } from "../log.ts";
import { type Ended, type EndReason, Splice, type SpliceHooks } from "./splice.ts";
import { RawIo } from "./raw.ts";

/** A client's connection, whichever sockets carry it. */
export interface ClientConn {
  /** Its address, by which it is counted (sources). */
  readonly host: string;
  /** `host:port`, for logs. */
  readonly remote: string;
  close(): void;
}

/** A connection dialed to a backend. */
export interface BackendConn {
  close(): void;
}

/** What a dial tells of how it went: one of the two, once (perhaps before `dial` returns). */
export interface DialHooks {
  dialed(conn: BackendConn): void;
  /** A DistError (UNAVAILABLE, TIMEOUT) as connectPort throws. */
  failed(err: unknown): void;
}

/** A client's connection and its backend's, bytes passed both ways (splice.ts says how). */
export interface Spliced {
  /** Resolves once both are closed and neither way reads or writes any more. */
  readonly done: Promise<Ended>;
  /** Bytes passed so far: from the client to the backend (up), and back (down). */
  readonly up: number;
  readonly down: number;
  /** Whether no byte went either way for the idle timeout. */
  readonly idle: boolean;
  /** Ends it now: both connections closed. */
  end(reason: EndReason): void;
}

/** A TCP balancer's sockets. */
export interface L4Io {
  /** Which sockets, for the log. */
  readonly kind: string;
  /** Where clients connect. */
  readonly addr: { hostname: string; port: number };
  /**
   * Hands each client connection to `take` until {@link closeListener};
   * `freed` may ask to wait before the next accept (descriptors.ts).
   */
  accept(take: (client: ClientConn) => void, freed: () => Promise<void> | undefined): Promise<void>;
  /**
   * Dials `address`; `hooks` are told how it went. `signal` (a check's)
   * aborts it where the sockets are Deno's (libc's dials end at {@link close}).
   */
  dial(
    address: { host: string; port: number },
    timeoutMs: number,
    hooks: DialHooks,
    signal?: AbortSignal,
  ): void;
  splice(client: ClientConn, backend: BackendConn, hooks: SpliceHooks): Spliced;
  closeListener(): void;
  /** Once every connection has ended. */
  close(): Promise<void>;
}

/**
 * The sockets for a balancer on `host:port` passing to `backends`: libc's
 * when every address is an IP literal and they can be had, else Deno's.
 * @throws {DistError} UNAVAILABLE when the port cannot be had (naming `--port`)
 */
export function openIo(
  host: string,
  port: number,
  backends: readonly { host: string; port: number }[],
): L4Io {
  const raw = openRawTcp();
  if (raw !== undefined && backends.every((b) => raw.address(b.host, b.port) !== undefined)) {
    const io = RawIo.listen(raw, host, port);
    // A name, or a port it could not have: Deno's bind says why in the flags' words.
    if (io !== undefined) return io;
  }
  return new DenoIo(bindTcp(host, port));
}

/** Binds the client port, a failure said in the words of the flags. */
function bindTcp(host: string, port: number): PortListener {
  try {
    return bindPort(host, port);
  } catch (err) {
    const where = formatAddress({ host, port });
    const wrapped = new DistError("UNAVAILABLE", `Cannot listen on ${where}: ${String(err)}`, {
      cause: err,
    });
    throw explainListenError(wrapped, "--port", host, port);
  }
}

class DenoClient implements ClientConn {
  readonly conn: Deno.TcpConn;
  readonly host: string;
  readonly remote: string;

  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    const a = conn.remoteAddr as Deno.NetAddr;
    this.host = a.hostname;
    this.remote = formatAddress({ host: a.hostname, port: a.port });
  }

  close(): void {
    close(this.conn);
  }
}

/** Deno's sockets: an op and a promise for every read, write, accept and connect. */
class DenoIo implements L4Io {
  readonly kind = "Deno's sockets";
  readonly #listener: PortListener;
  readonly addr: { hostname: string; port: number };
  #closed = false;

  constructor(listener: PortListener) {
    this.#listener = listener;
    this.addr = listener.addr as Deno.NetAddr;
  }

  async accept(take: (client: ClientConn) => void, freed: () => Promise<void> | undefined) {
    const backoff = new Backoff({ min: 5, max: 1000 });
    while (!this.#closed) {
      // Connections closed to make room free their descriptors once the event loop turns.
      const turn = freed();
      if (turn !== undefined) await turn;
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
        backoff.reset();
      } catch (err) {
        if (this.#closed || err instanceof Deno.errors.BadResource) break;
        if (goneBeforeAccept(err)) continue; // The client reset it in the queue.
        // Out of file descriptors and the like: wait a little, don't spin.
        log.warn("Accept failed: {error}; retrying in {ms} ms", {
          error: String(err),
          ms: backoff.current,
        });
        await sleep(backoff.next());
        continue;
      }
      noDelay(conn as Deno.TcpConn);
      take(new DenoClient(conn as Deno.TcpConn));
    }
  }

  dial(
    address: { host: string; port: number },
    timeoutMs: number,
    hooks: DialHooks,
    signal?: AbortSignal,
  ): void {
    connectPort(address, undefined, { timeoutMs, signal }).then(
      (conn) => hooks.dialed(conn),
      (err) => hooks.failed(err),
    );
  }

  splice(client: ClientConn, backend: BackendConn, hooks: SpliceHooks): Spliced {
    return new Splice((client as DenoClient).conn, backend as Deno.TcpConn, hooks);
  }

  closeListener(): void {
    this.#closed = true;
    this.#listener.close();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

function noDelay(conn: Deno.TcpConn): void {
  try {
    conn.setNoDelay(true);
  } catch {
    // Not a TCP option here: latency only.
  }
}

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Closed already.
  }
}

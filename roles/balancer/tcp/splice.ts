/**
 * One proxied connection: a client's connection and the one dialed to its
 * backend, bytes copied both ways as they are.
 *
 * - Backpressure: each way reads into its own buffer and reads again only
 *   once the other side's socket has taken every byte of it, so a side that
 *   does not read stops the other from being read (the kernel's buffers
 *   hold the rest), and memory per connection is two buffers.
 * - Buffers start at 1 KiB (many connections are idle) and double when a read
 *   fills one, up to {@link MAX_BUFFER}, so bulk transfers take few reads.
 * - Half-close: the end of one side's stream (EOF) becomes a shutdown of
 *   the other side's write half; the other way goes on until it ends too.
 * - Idle: every byte either way marks the connection active in the current
 *   {@link IdleClock} tick; no timer per connection or per chunk.
 */

/** Why a proxied connection ended (as nats-server's ClosedState: every close says why). */
export enum EndReason {
  /** Both sides ended their streams (EOF each way): the normal end. */
  Closed = "eof",
  /** Reading from or writing to the client failed (reset, broken pipe). */
  ClientError = "client_error",
  /** Reading from or writing to the backend failed (reset, killed). */
  BackendError = "backend_error",
  /** No byte either way for the idle timeout. */
  Idle = "idle",
  /** The balancer is stopping and its grace ran out. */
  Shutdown = "shutdown",
  /** The client had sent no byte yet and the balancer was full: closed to make room. */
  Evicted = "evicted",
}

/**
 * First buffer of each way: most connections sit idle with a read pending
 * into it (5,000 idle connections held 20 KiB of RSS each with 1 KiB, 29
 * KiB with 4 KiB); a busy one grows its buffers in a few reads.
 */
const FIRST_BUFFER = 1024;
/**
 * Largest buffer of each way, and the most a read takes: what a connection
 * stalled both ways holds (HAProxy's buffers are 16 KiB; this takes a 16
 * KiB answer with its headers in one read). Stop 42's 64 KiB made a
 * connection stalled both ways hold 94 to 147 KiB (hostile39a P3), about
 * 1.35 GiB at 9,637 connections; 20 KiB: 52.
 */
export const MAX_BUFFER = 20 * 1024;

/**
 * A coarse clock for idle timeouts: `tick` advances every `tickMs`; a
 * connection is idle once `ticks` ticks passed without a byte.
 */
export class IdleClock {
  tick = 0;
  readonly tickMs: number;
  /** Ticks without a byte after which a connection is idle. */
  readonly ticks: number;

  /** @param idleMs the idle timeout; 0: none, as HAProxy's `timeout client 0` (hostile39a P5) */
  constructor(idleMs: number) {
    // About 8 ticks per timeout: it fires within an eighth of it late.
    this.tickMs = idleMs === 0 ? 1000 : Math.min(1000, Math.max(10, Math.floor(idleMs / 8)));
    this.ticks = idleMs === 0 ? Infinity : Math.max(1, Math.ceil(idleMs / this.tickMs));
  }
}

/** What a splice is told of, as it happens (methods of one object: no closure a connection). */
export interface SpliceHooks {
  readonly clock: IdleClock;
  /** The client's first byte (once). */
  spoke(): void;
  /**
   * Its end (once), as `done` settles: both connections are closed and
   * neither way reads or writes any more. libc's sockets (raw_splice.ts)
   * are so at once; Deno lets a socket's descriptor go only once its
   * pending read settles.
   */
  ended(ended: Ended): void;
}

/** What a splice reports when it ends. */
export interface Ended {
  reason: EndReason;
  /** The error that ended it, if one did. */
  detail: string;
  /** Bytes from the client to the backend, and back. */
  up: number;
  down: number;
  ms: number;
}

export class Splice {
  readonly client: Deno.TcpConn;
  readonly backend: Deno.TcpConn;
  /** Bytes from the client passed to the backend. */
  up = 0;
  /** Bytes from the backend passed to the client. */
  down = 0;
  /** The clock tick of the last byte either way. */
  active: number;
  readonly started = performance.now();
  /**
   * Resolves once both connections are closed and both ways have stopped (their
   * reads and writes settled: only then has the runtime let go of the descriptors).
   */
  readonly done: Promise<Ended>;

  readonly #clock: IdleClock;
  #ways = 2;
  /** Pumps still running. */
  #pumps = 2;
  #ended: Ended | undefined;
  #resolve!: (ended: Ended) => void;
  readonly #hooks: SpliceHooks;
  #spoke = false;

  constructor(client: Deno.TcpConn, backend: Deno.TcpConn, hooks: SpliceHooks) {
    this.client = client;
    this.#hooks = hooks;
    this.backend = backend;
    this.#clock = hooks.clock;
    this.active = hooks.clock.tick;
    this.done = new Promise((resolve) => this.#resolve = resolve);
    this.#pump(client, backend, true).finally(() => this.#stopped());
    this.#pump(backend, client, false).finally(() => this.#stopped());
  }

  /** Whether no byte went either way for the idle timeout. */
  get idle(): boolean {
    return this.#clock.tick - this.active > this.#clock.ticks; // never early (H-C5)
  }

  /** Ends it now (idle, shutdown): both connections closed. */
  end(reason: EndReason): void {
    this.#finish(reason, "");
  }

  /** Copies `from` into `to` until `from` ends; `up` is the client-to-backend way. */
  async #pump(from: Deno.TcpConn, to: Deno.TcpConn, up: boolean): Promise<void> {
    let buf = new Uint8Array(FIRST_BUFFER);
    for (;;) {
      let n: number | null;
      try {
        n = await from.read(buf);
      } catch (err) {
        return this.#failed(up ? EndReason.ClientError : EndReason.BackendError, err);
      }
      if (n === null) break;
      this.active = this.#clock.tick;
      if (up && !this.#spoke) {
        this.#spoke = true;
        this.#hooks.spoke();
      }
      try {
        let off = 0;
        while (off < n) {
          off += await to.write(off === 0 && n === buf.length ? buf : buf.subarray(off, n));
        }
      } catch (err) {
        return this.#failed(up ? EndReason.BackendError : EndReason.ClientError, err);
      }
      if (up) this.up += n;
      else this.down += n;
      this.active = this.#clock.tick;
      if (n === buf.length && buf.length < MAX_BUFFER) {
        buf = new Uint8Array(Math.min(buf.length * 2, MAX_BUFFER));
      }
    }
    if (this.#ended !== undefined) return;
    // The other way ended already: both streams are read to their end, so
    // closing both (finish) sends each side its FIN; a shutdown first would
    // be one more op a connection for nothing (every HTTP `Connection:
    // close` ends so: one shutdown a connection, not two).
    if (this.#ways === 1) {
      this.#ways = 0;
      return this.#finish(EndReason.Closed, "");
    }
    // EOF: the other side sees the end of the stream, and may still answer.
    try {
      await to.closeWrite();
    } catch (err) {
      // NotConnected: the other side has gone already; its own way ends with it.
      if (!(err instanceof Deno.errors.NotConnected)) {
        return this.#failed(up ? EndReason.BackendError : EndReason.ClientError, err);
      }
    }
    if (--this.#ways === 0) this.#finish(EndReason.Closed, "");
  }

  #failed(reason: EndReason, err: unknown): void {
    // A read cut short by our own close is not news.
    if (this.#ended !== undefined) return;
    this.#finish(reason, err instanceof Error ? err.message : String(err));
  }

  #finish(reason: EndReason, detail: string): void {
    if (this.#ended !== undefined) return;
    const ended = this.#ended = {
      reason,
      detail,
      up: this.up,
      down: this.down,
      ms: performance.now() - this.started,
    };
    close(this.client);
    close(this.backend);
    if (this.#pumps === 0) this.#done(ended);
  }

  /** A way stopped: once both have, and it ended, it is done. */
  #stopped(): void {
    if (--this.#pumps === 0 && this.#ended !== undefined) this.#done(this.#ended);
  }

  #done(ended: Ended): void {
    this.#resolve(ended);
    this.#hooks.ended(ended);
  }
}

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Closed already.
  }
}

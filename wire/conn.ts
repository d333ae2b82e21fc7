import { DistError } from "./errors.ts";
import type { Codec } from "./codec.ts";
import { DEFAULT_MAX_FRAME, type OutBuffer } from "./frame.ts";
import { Outbound } from "./outbound.ts";
import { Inbound } from "./inbound.ts";
import { ticker } from "./heartbeat.ts";
import { Deadlines } from "./deadlines.ts";
import type { TlsPeer } from "./tls.ts";
import { type ConnHandler, InputHandoff } from "./handoff.ts";

export type { ConnHandler };

/** Appends whole frames to an output buffer (see FramedConn.sendWith). */
export interface FrameWriter {
  /** Appends whole frames to `out`; throws (having appended nothing) when it cannot. */
  writeFrames(out: OutBuffer): void;
}

/** Why a connection closed; every closed connection says which. */
export enum CloseReason {
  /** This side closed it on purpose. */
  Local = "local",
  /** The peer closed it (EOF) and everything owed to it was answered. */
  RemoteClosed = "remote_closed",
  ReadError = "read_error",
  WriteError = "write_error",
  FrameTooLarge = "frame_too_large",
  /** A frame began but did not complete within the frame deadline. */
  FrameTimeout = "frame_timeout",
  ProtocolError = "protocol_error",
  HandshakeFailed = "handshake_failed",
  /** The peer was silent for heartbeat × liveness. */
  HeartbeatTimeout = "heartbeat_timeout",
  /**
   * The peer does not take what we send: the outbound buffer passed its
   * maximum, or a write made no progress for the write timeout.
   */
  SlowConsumer = "slow_consumer",
  /** The listener refused it (connection limit). */
  Overloaded = "overloaded",
  /** The process is shutting down. */
  Shutdown = "shutdown",
}

/** Limits and deadlines of a FramedConn. */
export interface FramedConnOptions {
  /** Largest frame payload accepted from the peer. */
  maxFrame?: number;
  /**
   * Outbound bytes above which the connection stops reading from its peer
   * until the buffer drains to half of it (backpressure: pause the source).
   */
  highWater?: number;
  /** Outbound bytes above which the peer is cut off as a slow consumer. */
  maxOutbound?: number;
  /** A write that makes no progress for this long cuts the peer off (ms). */
  writeTimeoutMs?: number;
  /** A frame must be complete this long after its first byte arrived (ms). */
  frameTimeoutMs?: number;
  /** A set this connection belongs to while open (a listener's); it leaves it on close. */
  tracker?: Set<FramedConn>;
  /**
   * Who the transport proved the peer is: the subject (CN) of a TLS client
   * certificate the listener verified. The handshake's authenticator takes
   * it as the user when the hello carries no other credential.
   */
  peerIdentity?: string;
  /** A mutual-TLS dialer's verified certificate (set by the listener). */
  tlsPeer?: TlsPeer;
}

/**
 * A TCP or TLS connection carrying length-prefixed frames. Reads run in a loop that hands the
 * frames of each read to `onFrames`; writes queued in the same turn of the event loop are
 * coalesced into one write (started early at FLUSH_AT), with one write in flight at a time.
 *
 * Outbound policy: above `highWater` pending bytes the read loop pauses (so a peer that floods
 * requests without reading answers is slowed by TCP); above `maxOutbound`, or when a write makes
 * no progress for `writeTimeoutMs`, the connection is closed as a slow consumer.
 *
 * Deadlines (checked by the process's one ticker, see heartbeat.ts): a frame must complete within
 * `frameTimeoutMs` of its first byte; with `keepAlive`, a ping goes out after `heartbeat` of
 * silence from this side and a peer silent for heartbeat × liveness is dead.
 */
export class FramedConn {
  /** The socket. */
  readonly conn: Deno.Conn;
  /** Largest frame payload accepted from the peer. */
  readonly maxFrame: number;
  /** Pending output above which reading pauses. */
  readonly highWater: number;
  /** Pending output above which the peer is cut off as a slow consumer (an owner may lower it). */
  maxOutbound: number;
  /** Who the transport proved the peer is (see FramedConnOptions.peerIdentity). */
  readonly peerIdentity: string | undefined;
  /**
   * Who the dialer is, by its client certificate, verified by this
   * listener's `--tls-client-ca` (mutual TLS); undefined otherwise.
   */
  readonly tlsPeer: TlsPeer | undefined;
  /** Told a frame's length (its prefix) once it begins, not complete (not the handshake's). */
  onFrameBegun?: (length: number) => void;
  /** Who takes the input now: until someone attaches, a broken stream or EOF closes. */
  #input = new InputHandoff({
    onFrames: noop,
    onStreamError: (err) => this.close(CloseReason.ProtocolError, err),
    onEnd: () => this.close(CloseReason.RemoteClosed),
    onClose: noop,
  });
  #tracker: Set<FramedConn> | undefined;
  /** Set on every frame queued; the ticker clears it. */
  #sentSinceTick = false;
  #inbound: Inbound;
  #outbound: Outbound;
  #reading = false;
  #closeReason: CloseReason | undefined;
  #closed: Promise<CloseReason> | undefined;
  #closedResolve: ((reason: CloseReason) => void) | undefined;
  #deadlines: Deadlines;
  /** The codec pings are sent in, once keepAlive() has turned heartbeats on. */
  #pingCodec: Codec | undefined;

  /**

   * Wraps a connected socket; call `start()` to begin reading.
   * @param conn the socket (TCP or TLS)
   * @param options limits and deadlines
   */
  constructor(conn: Deno.Conn, options: FramedConnOptions = {}) {
    this.conn = conn;
    this.tlsPeer = options.tlsPeer;
    this.maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
    this.peerIdentity = options.peerIdentity;
    this.maxOutbound = options.maxOutbound ?? 64 * 1024 * 1024;
    this.highWater = Math.min(options.highWater ?? 4 * 1024 * 1024, this.maxOutbound);
    this.#deadlines = new Deadlines(options.writeTimeoutMs, options.frameTimeoutMs);
    this.#outbound = new Outbound(conn, this.highWater, (err) => {
      this.close(CloseReason.WriteError, err);
    });
    this.#inbound = new Inbound(conn, this, this.#outbound, {
      isClosed: () => this.#closeReason !== undefined,
      frames: (batch, buffers) => this.#input.handler.onFrames(batch, buffers),
      end: () => this.#input.handler.onEnd(),
      begun: (length) => this.onFrameBegun?.(length),
      failed: (err) => {
        if (err instanceof DistError) this.#input.handler.onStreamError(err);
        else this.close(CloseReason.ReadError, err);
      },
    });
    this.#tracker = options.tracker;
    this.#tracker?.add(this);
  }

  /** Bytes read from the peer. */
  get bytesIn(): number {
    return this.#inbound.bytesIn;
  }

  /** Bytes written to the peer. */
  get bytesOut(): number {
    return this.#outbound.bytesOut;
  }

  /**
   * The first bytes the peer sent (up to 64), kept until the handshake is
   * over, so that a peer that does not speak dist can be named by what it
   * sent; undefined before any byte arrived or once released.
   */
  get head(): Uint8Array | undefined {
    return this.#inbound.head;
  }

  /**
   * Hands the connection's input to `handler`. Input held since `hold()` is
   * given to it first, in order: frames, then a broken stream or EOF.
   */
  attach(handler: ConnHandler): void {
    this.#input.attach(handler, this);
  }

  /**
   * Keeps `frames` and the input that arrives from now on (copies of frames,
   * a broken stream, EOF) for the next `attach()`: what a dialer pipelines
   * behind its hello waits for the Peer. A close is not held: it happens.
   */
  hold(frames: readonly Uint8Array[] = []): void {
    this.#input.hold(frames);
  }

  /** Forgets the stream's first bytes (see `head`): the peer speaks dist. */
  releaseHead(): void {
    this.#inbound.releaseHead();
  }

  /**
   * Resolves with the reason once the connection is closed. Made on first
   * use: most connections are never awaited, and an idle one should cost
   * as little as possible.
   */
  get closed(): Promise<CloseReason> {
    if (this.#closed === undefined) {
      if (this.#closeReason !== undefined) this.#closed = Promise.resolve(this.#closeReason);
      else this.#closed = new Promise((resolve) => this.#closedResolve = resolve);
    }
    return this.#closed;
  }

  /** Whether the connection is closed. */
  get isClosed(): boolean {
    return this.#closeReason !== undefined;
  }

  /** Why it closed, once it has. */
  get closeReason(): CloseReason | undefined {
    return this.#closeReason;
  }

  /** Whether the peer has closed its side (EOF was read). */
  get readEnded(): boolean {
    return this.#inbound.ended;
  }

  /** Bytes queued or being written. */
  get pendingBytes(): number {
    return this.#outbound.pending;
  }

  /** The peer's address as `host:port` (for logs). */
  get remoteAddress(): string {
    try {
      const a = this.conn.remoteAddr as Deno.NetAddr;
      return a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
    } catch {
      return "unknown";
    }
  }

  /** The peer's host, without the port (the key of per-address limits). */
  get remoteHost(): string {
    try {
      return (this.conn.remoteAddr as Deno.NetAddr).hostname;
    } catch {
      return "unknown";
    }
  }

  /** Starts the read loop and the housekeeping (once). */
  start(): void {
    if (this.#reading || this.isClosed) return;
    this.#reading = true;
    ticker.add(this);
    this.#inbound.run();
  }

  /**
   * Turns on heartbeats: a `ping` notification (in `codec`) goes out after
   * `heartbeatMs` of silence from this side, the connection closes after
   * heartbeat × liveness of silence from the peer, and a frame must complete
   * within that same time.
   */
  keepAlive(heartbeatMs: number, liveness: number, codec: Codec): void {
    this.#deadlines.keepAlive(heartbeatMs, liveness);
    this.#pingCodec = codec;
    if (this.#reading && !this.isClosed) ticker.add(this); // re-adds to pick up the period
  }

  /** The longest gap between two ticks this connection tolerates. */
  get tickMs(): number {
    return this.#deadlines.tickMs;
  }

  /**
   * Housekeeping (see deadlines.ts), called by the ticker every tickMs or
   * more often with the time since the last tick. Traffic itself only sets
   * booleans.
   */
  tick(elapsed: number, wall = elapsed): void {
    if (this.#closeReason !== undefined) return;
    const input = this.#inbound;
    const out = this.#outbound;
    const waiting = input.paused || input.ended;
    const due = this.#deadlines.check(
      elapsed,
      input.takeReceived() || waiting,
      this.#sentSinceTick,
      out.writing,
      out.bytesOut,
      out.pending,
      input.buffered > 0 && !waiting ? input.framesIn : -1,
      wall,
    );
    this.#sentSinceTick = false;
    if (due === "ping") {
      this.send(this.#pingCodec!, PING);
      // Counted from now already: the next tick must not take the ping for output since.
      this.#sentSinceTick = false;
    } else if (due !== "none") {
      const err = this.#deadlines.error(due, this.pendingBytes, input.buffered);
      this.close(CLOSE_REASONS[due], err);
      return;
    }
    out.trim();
  }

  /**
   * Encodes `msg` with `codec` and queues it.
   * @returns false when the connection is closed (the message is dropped).
   * @throws {DistError} FRAME_TOO_LARGE or BAD_REQUEST from the codec.
   */
  send(codec: Codec, msg: unknown): boolean {
    if (this.#closeReason !== undefined) return false;
    codec.writeFrame(this.#outbound.buffer, msg, this.maxFrame);
    this.#queued();
    return this.#closeReason === undefined;
  }

  /**
   * Lets `writer` append whole frames straight to the output buffer (frames
   * built from bytes already encoded: the pass-through of passthrough.ts).
   * With `later` (many frames a turn: the broker's deliveries), they are
   * counted and their write started once a turn (see Outbound.later).
   * @returns false when the connection is closed (nothing is written).
   * @throws whatever `writeFrames` throws (it must then have appended nothing).
   */
  sendWith(writer: FrameWriter, later = false): boolean {
    if (this.#closeReason !== undefined) return false;
    writer.writeFrames(this.#outbound.buffer);
    if (later) this.#outbound.later(this.#countLater);
    else this.#queued();
    return this.#closeReason === undefined;
  }
  readonly #countLater = (): void => void (this.#closeReason === undefined && this.#queued());

  /** Queues raw bytes as they are (already framed, or deliberately not). */
  sendRaw(bytes: Uint8Array): boolean {
    if (this.#closeReason !== undefined) return false;
    const out = this.#outbound.buffer;
    out.reserve(bytes.length);
    out.bytes.set(bytes, out.length);
    out.length += bytes.length;
    this.#queued();
    return this.#closeReason === undefined;
  }

  #queued(): void {
    this.#sentSinceTick = true;
    if (!this.#outbound.queued(this.maxOutbound)) {
      this.close(
        CloseReason.SlowConsumer,
        new DistError("SLOW_CONSUMER", `Outbound buffer passed ${this.maxOutbound} bytes`),
      );
    }
  }

  /** Resolves once pending output is at most `bytes` (or the connection closed). */
  drained(bytes = 0): Promise<void> {
    return this.#outbound.drained(bytes);
  }

  /**
   * Stops reading from the peer (after the read in progress) until `resumeReading()`: the owner
   * has as much work from this peer as it takes. Pauses are counted (each call needs its own
   * resumeReading()), so two reasons to stop (a peer's limit, a listener's) never undo each other.
   */
  pauseReading(): void {
    this.#inbound.pause();
  }

  /** Undoes one `pauseReading()`; reading goes on once none is left. */
  resumeReading(): void {
    this.#inbound.resume();
  }

  /** Reads of up to 256 KiB rather than 64 KiB (see Inbound's WIDE_READ). */
  set wideReads(on: boolean) {
    this.#inbound.wideReads = on;
  }

  /** Whether reading is stopped, by backpressure or by `pauseReading()`. */
  get readingPaused(): boolean {
    return this.#inbound.paused;
  }

  /** Whether the read loop is paused by backpressure. */
  get paused(): boolean {
    return this.#inbound.backedUp;
  }

  /**
   * Closes the connection now; queued output not yet written is lost.
   * Idempotent: only the first reason counts.
   */
  close(reason: CloseReason = CloseReason.Local, err?: unknown): void {
    if (this.#closeReason !== undefined) return;
    this.#closeReason = reason;
    ticker.delete(this);
    this.#tracker?.delete(this);
    // First off raw_reads.ts's epoll, if there: the descriptor is closed next.
    this.#inbound.close();
    try {
      this.conn.close();
    } catch {
      // Already closed by the runtime: nothing left to release.
    }
    this.#outbound.close();
    this.#input.handler.onClose(reason, err);
    this.#closedResolve?.(reason);
  }

  /**
   * Says why, then hangs up: queues `farewell` (an error frame; if it cannot
   * be encoded, closing says enough), writes what is queued (waiting at most
   * `timeoutMs`), then closes with `reason`. The one way every side of the
   * wire ends a connection with a last word.
   */
  async closeWith(
    reason: CloseReason,
    err?: unknown,
    farewell?: { codec: Codec; message: unknown },
    timeoutMs = 1000,
  ): Promise<void> {
    if (this.#closeReason !== undefined) return;
    if (farewell !== undefined) {
      try {
        this.send(farewell.codec, farewell.message);
      } catch {
        // The farewell itself could not be encoded: closing says enough.
      }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.drained(0),
      new Promise<void>((resolve) => timer = setTimeout(resolve, timeoutMs)),
    ]);
    clearTimeout(timer);
    this.close(reason, err);
  }
}

function noop(): void {}

/** The heartbeat notification. */
const PING = { method: "ping" };

/** How each passed deadline closes the connection. */
const CLOSE_REASONS = {
  stalled: CloseReason.SlowConsumer,
  frame: CloseReason.FrameTimeout,
  silent: CloseReason.HeartbeatTimeout,
} as const;

import { DistError } from "./errors.ts";
import type { Codec } from "./codec.ts";
import { DEFAULT_MAX_FRAME, FrameDecoder, OutBuffer } from "./frame.ts";
import { ticker } from "./heartbeat.ts";
import { HEAD_BYTES } from "./foreign.ts";

/**
 * Who takes a connection's input: one at a time, handed over with
 * `FramedConn.attach()` (the handshake's, then the Peer's).
 */
export interface ConnHandler {
  /**
   * The frames of one read, in order: views valid only during the call (the
   * array is reused). Receiving a read's frames together lets a codec
   * decode them in one pass.
   */
  onFrames(frames: Uint8Array[]): void;
  /** The decoder rejected the stream (e.g. FRAME_TOO_LARGE): nothing more is read. */
  onStreamError(err: DistError): void;
  /** The peer closed its side (EOF): nothing more is read, answers may still be written. */
  onEnd(): void;
  /** The connection has closed (called once). */
  onClose(reason: CloseReason, err?: unknown): void;
}

/** Appends whole frames to an output buffer (see FramedConn.sendWith). */
export interface FrameWriter {
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

/** Default write deadline: a peer that takes no bytes for this long is cut off (nats-server's). */
export const DEFAULT_WRITE_TIMEOUT_MS = 10_000;
/** Default frame deadline before a Peer sets heartbeat × liveness. */
export const DEFAULT_FRAME_TIMEOUT_MS = 3_000;

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
}

/**
 * Queued output starts going out at once when it reaches this size (about
 * one Ethernet frame) instead of waiting for the end of the turn; what is
 * queued while that write is in flight is coalesced into the next one. The
 * peer then starts on the first answers while this side still produces the
 * rest: on loopback with 64 calls in flight this doubled throughput against
 * coalescing up to 32 KiB (bench/, median of 5 alternating runs).
 */
const FLUSH_AT = 1500;
/**
 * The read buffer starts small, doubles whenever a read fills it (up to
 * MAX_READ) and halves after SHRINK_AFTER reads in a row that used less than
 * an eighth of it: an idle connection costs a few KiB, a busy one reads 64
 * KiB at a time.
 */
const MIN_READ = 1024;
const MAX_READ = 64 * 1024;
const SHRINK_AFTER = 8;

/**
 * A TCP connection carrying length-prefixed frames. Reads run in a loop that
 * hands the frames of each read to `onFrames`; writes queued in the same turn
 * of the event loop are coalesced into one write (started early at FLUSH_AT),
 * with one write in flight at a time.
 *
 * Outbound policy: above `highWater` pending bytes the read loop pauses
 * (so a peer that floods requests without reading answers is slowed by TCP);
 * above `maxOutbound`, or when a write makes no progress for
 * `writeTimeoutMs`, the connection is closed as a slow consumer.
 *
 * Deadlines (checked by the process's one ticker, see heartbeat.ts): a frame
 * must complete within `frameTimeoutMs` of its first byte; with `keepAlive`,
 * a ping goes out after `heartbeat` of silence from this side and a peer
 * silent for heartbeat × liveness is dead.
 */
export class FramedConn {
  readonly conn: Deno.Conn;
  readonly maxFrame: number;
  readonly highWater: number;
  readonly maxOutbound: number;
  #handler: ConnHandler = this.#closingHandler();
  #tracker: Set<FramedConn> | undefined;
  /** Input that arrived while held (see hold()): copies of frames, then an error or EOF. */
  #held: Uint8Array[] | undefined;
  #heldError: DistError | undefined;
  /** The stream's first bytes (up to HEAD_BYTES), until a Peer is attached. */
  #head: Uint8Array | undefined;
  /** Set on every read; the ticker clears it. */
  #receivedSinceTick = false;
  /** Set on every frame queued; the ticker clears it. */
  #sentSinceTick = false;
  #bytesIn = 0;
  #bytesOut = 0;
  #framesIn = 0;

  #decoder: FrameDecoder;
  #out = new OutBuffer(0);
  #spare = new OutBuffer(0);
  #inflight = 0;
  #writing = false;
  #flushQueued = false;
  #paused = false;
  #readGate: Promise<void> | undefined;
  #openGate: (() => void) | undefined;
  #pauses = 0;
  /** What this connection counts in `processOutbound.pending`. */
  #accounted = 0;
  #reading = false;
  #readEnded = false;
  #closeReason: CloseReason | undefined;
  #drainWaiters: (() => void)[] | undefined;
  #closed: Promise<CloseReason> | undefined;
  #closedResolve: ((reason: CloseReason) => void) | undefined;
  // Housekeeping (see tick()).
  #writeTimeoutMs: number;
  #frameTimeoutMs: number;
  #heartbeatMs = 0;
  #liveness = 3;
  /** The codec pings are sent in, once keepAlive() has turned heartbeats on. */
  #pingCodec: Codec | undefined;
  // Ages accumulated tick by tick (see Tickable.tick), in ms.
  #quietRecv = 0;
  #quietSend = 0;
  #wroteSinceTick = false;
  #stalled = 0;
  #partialAge = -1;
  #partialFrames = 0;
  #tickMs = 0;

  constructor(conn: Deno.Conn, options: FramedConnOptions = {}) {
    this.conn = conn;
    this.maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
    this.maxOutbound = options.maxOutbound ?? 64 * 1024 * 1024;
    this.highWater = Math.min(options.highWater ?? 4 * 1024 * 1024, this.maxOutbound);
    this.#writeTimeoutMs = options.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS;
    this.#frameTimeoutMs = options.frameTimeoutMs ?? DEFAULT_FRAME_TIMEOUT_MS;
    this.#decoder = new FrameDecoder(this.maxFrame);
    this.#updateTickMs();
    this.#tracker = options.tracker;
    this.#tracker?.add(this);
  }

  /** Bytes read from the peer. */
  get bytesIn(): number {
    return this.#bytesIn;
  }

  /** Bytes written to the peer. */
  get bytesOut(): number {
    return this.#bytesOut;
  }

  /** Frames read from the peer. */
  get framesIn(): number {
    return this.#framesIn;
  }

  /**
   * The first bytes the peer sent (up to 64), kept until the handshake is
   * over, so that a peer that does not speak dist can be named by what it
   * sent; undefined before any byte arrived or once released.
   */
  get head(): Uint8Array | undefined {
    return this.#head;
  }

  /**
   * Hands the connection's input to `handler`. Input held since `hold()` is
   * given to it first, in order: frames, then a broken stream or EOF.
   */
  attach(handler: ConnHandler): void {
    this.#handler = handler;
    const held = this.#held;
    this.#held = undefined;
    if (held !== undefined) handler.onFrames(held);
    const err = this.#heldError;
    this.#heldError = undefined;
    if (this.isClosed) return;
    if (err !== undefined) handler.onStreamError(err);
    else if (this.#readEnded) handler.onEnd();
  }

  /**
   * Keeps `frames` and the input that arrives from now on (copies of frames,
   * a broken stream, EOF) for the next `attach()`: what a dialer pipelines
   * behind its hello waits for the Peer. A close is not held: it happens.
   */
  hold(frames: readonly Uint8Array[] = []): void {
    const onClose = this.#handler.onClose;
    const keep = (more: readonly Uint8Array[]) => {
      for (const f of more) (this.#held ??= []).push(f.slice());
    };
    keep(frames);
    this.#handler = {
      onFrames: keep,
      onStreamError: (err) => this.#heldError = err,
      onEnd: noop, // readEnded says it
      onClose,
    };
  }

  /** Forgets the stream's first bytes (see `head`): the peer speaks dist. */
  releaseHead(): void {
    this.#head = undefined;
  }

  /** Until someone attaches: a broken stream or EOF closes the connection. */
  #closingHandler(): ConnHandler {
    return {
      onFrames: noop,
      onStreamError: (err) => this.close(CloseReason.ProtocolError, err),
      onEnd: () => this.close(CloseReason.RemoteClosed),
      onClose: noop,
    };
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

  get isClosed(): boolean {
    return this.#closeReason !== undefined;
  }

  get closeReason(): CloseReason | undefined {
    return this.#closeReason;
  }

  /** Whether the peer has closed its side (EOF was read). */
  get readEnded(): boolean {
    return this.#readEnded;
  }

  /** Bytes queued or being written. */
  get pendingBytes(): number {
    return this.#out.length + this.#inflight;
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

  /** Starts the read loop and the housekeeping (once). */
  start(): void {
    if (this.#reading || this.isClosed) return;
    this.#reading = true;
    ticker.add(this);
    this.#readLoop();
  }

  /**
   * Turns on heartbeats: a `ping` notification (in `codec`) goes out after
   * `heartbeatMs` of silence from this side, the connection closes after
   * heartbeat × liveness of silence from the peer, and a frame must complete
   * within that same time.
   */
  keepAlive(heartbeatMs: number, liveness: number, codec: Codec): void {
    this.#heartbeatMs = heartbeatMs;
    this.#liveness = liveness;
    this.#pingCodec = codec;
    if (heartbeatMs > 0) this.#frameTimeoutMs = heartbeatMs * liveness;
    this.#updateTickMs();
    if (this.#reading && !this.isClosed) ticker.add(this); // re-adds to pick up the period
  }

  /** The longest gap between two ticks this connection tolerates. */
  get tickMs(): number {
    return this.#tickMs;
  }

  #updateTickMs(): void {
    const hb = this.#heartbeatMs > 0 ? this.#heartbeatMs : Infinity;
    this.#tickMs = Math.min(hb, this.#writeTimeoutMs, this.#frameTimeoutMs) / 4;
  }

  /**
   * Housekeeping, called by the ticker every tickMs or more often with the
   * time since the last tick (capped, so a stall of this process never
   * counts against the peer). Traffic itself only sets booleans.
   */
  tick(elapsed: number): void {
    if (this.#closeReason !== undefined) return;
    // While this side is not reading (backpressure, or EOF) the peer's pings
    // wait unread or cannot come: its silence proves nothing.
    const heard = this.#receivedSinceTick || this.readingPaused || this.#readEnded;
    this.#quietRecv = heard ? 0 : this.#quietRecv + elapsed;
    this.#quietSend = this.#sentSinceTick ? 0 : this.#quietSend + elapsed;
    this.#receivedSinceTick = this.#sentSinceTick = false;

    // A write in flight that took no bytes for the write timeout: the peer
    // does not read. Cut it off rather than hold its output forever.
    this.#stalled = !this.#writing || this.#wroteSinceTick ? 0 : this.#stalled + elapsed;
    this.#wroteSinceTick = false;
    if (this.#stalled >= this.#writeTimeoutMs) {
      this.close(
        CloseReason.SlowConsumer,
        new DistError(
          "SLOW_CONSUMER",
          `Peer took no bytes for ${Math.round(this.#stalled)} ms ` +
            `(write timeout ${this.#writeTimeoutMs} ms, ${this.pendingBytes} bytes pending)`,
        ),
      );
      return;
    }

    // A frame that has begun must complete in time: dribbling a byte now and
    // then does not keep a connection (slowloris).
    if (this.#decoder.buffered > 0 && !this.readingPaused && !this.#readEnded) {
      if (this.#partialAge < 0 || this.#partialFrames !== this.#framesIn) {
        this.#partialAge = 0;
        this.#partialFrames = this.#framesIn;
      } else if ((this.#partialAge += elapsed) >= this.#frameTimeoutMs) {
        this.close(
          CloseReason.FrameTimeout,
          new DistError(
            "TIMEOUT",
            `Frame incomplete ${Math.round(this.#partialAge)} ms after it began ` +
              `(${this.#decoder.buffered} bytes received; deadline ${this.#frameTimeoutMs} ms)`,
          ),
        );
        return;
      }
    } else {
      this.#partialAge = -1;
    }

    if (this.#heartbeatMs > 0) {
      if (this.#quietRecv >= this.#heartbeatMs * this.#liveness) {
        this.close(
          CloseReason.HeartbeatTimeout,
          new Error(
            `Peer silent for ${Math.round(this.#quietRecv)} ms ` +
              `(heartbeat ${this.#heartbeatMs} ms × ${this.#liveness})`,
          ),
        );
        return;
      }
      if (this.#quietSend >= this.#heartbeatMs) {
        this.send(this.#pingCodec!, PING);
        this.#quietSend = 0;
      }
    }

    // Between bursts a connection does not keep a burst's output buffers
    // (a ping fits in what release() keeps; the spare is for bursts only).
    if (!this.#writing) {
      this.#out.release();
      this.#spare.release(0);
    }
  }

  /**
   * Encodes `msg` with `codec` and queues it.
   * @returns false when the connection is closed (the message is dropped).
   * @throws {DistError} FRAME_TOO_LARGE or BAD_REQUEST from the codec.
   */
  send(codec: Codec, msg: unknown): boolean {
    if (this.#closeReason !== undefined) return false;
    codec.writeFrame(this.#out, msg, this.maxFrame);
    this.#queued();
    return this.#closeReason === undefined;
  }

  /**
   * Lets `writer` append whole frames straight to the output buffer (frames
   * built from bytes already encoded: the pass-through of passthrough.ts).
   * @returns false when the connection is closed (nothing is written).
   * @throws whatever `writeFrames` throws (it must then have appended nothing).
   */
  sendWith(writer: FrameWriter): boolean {
    if (this.#closeReason !== undefined) return false;
    writer.writeFrames(this.#out);
    this.#queued();
    return this.#closeReason === undefined;
  }

  /** Queues raw bytes as they are (already framed, or deliberately not). */
  sendRaw(bytes: Uint8Array): boolean {
    if (this.#closeReason !== undefined) return false;
    this.#out.reserve(bytes.length);
    this.#out.bytes.set(bytes, this.#out.length);
    this.#out.length += bytes.length;
    this.#queued();
    return this.#closeReason === undefined;
  }

  /** Brings this connection's share of `processOutbound.pending` up to date. */
  #account(): void {
    const now = this.#closeReason === undefined ? this.pendingBytes : 0;
    processOutbound.pending += now - this.#accounted;
    this.#accounted = now;
  }

  #queued(): void {
    this.#sentSinceTick = true;
    this.#account();
    if (this.pendingBytes > this.maxOutbound) {
      this.close(
        CloseReason.SlowConsumer,
        new DistError("SLOW_CONSUMER", `Outbound buffer passed ${this.maxOutbound} bytes`),
      );
      return;
    }
    if (this.#writing) return;
    if (this.#out.length >= FLUSH_AT) {
      this.flush();
    } else if (!this.#flushQueued) {
      this.#flushQueued = true;
      scheduleFlush(this);
    }
  }

  /** Starts writing what is queued (the end-of-turn flush; see scheduleFlush). */
  flush(): void {
    this.#flushQueued = false;
    if (this.#writing || this.#out.length === 0 || this.#closeReason !== undefined) return;
    this.#writeLoop();
  }

  async #writeLoop(): Promise<void> {
    this.#writing = true;
    this.#wroteSinceTick = true;
    try {
      while (this.#out.length > 0 && this.#closeReason === undefined) {
        const buf = this.#out;
        this.#out = this.#spare;
        this.#spare = buf;
        const len = buf.length;
        this.#inflight = len;
        let off = 0;
        while (off < len) {
          const n = await this.conn.write(buf.bytes.subarray(off, len));
          off += n;
          this.#bytesOut += n;
          this.#inflight = len - off;
          this.#wroteSinceTick = true;
          this.#account();
        }
        buf.reset();
        if (this.#drainWaiters !== undefined && this.pendingBytes <= this.highWater / 2) {
          this.#wakeDrainWaiters();
        }
      }
    } catch (err) {
      this.close(CloseReason.WriteError, err);
    } finally {
      this.#writing = false;
      this.#inflight = 0;
      if (this.#out.length === 0 || this.#closeReason !== undefined) this.#wakeDrainWaiters();
    }
  }

  #wakeDrainWaiters(): void {
    const waiters = this.#drainWaiters;
    if (waiters === undefined) return;
    this.#drainWaiters = undefined;
    for (const w of waiters) w();
  }

  /** Resolves once pending output is at most `bytes` (or the connection closed). */
  drained(bytes = 0): Promise<void> {
    if (this.pendingBytes <= bytes || this.#closeReason !== undefined) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.pendingBytes <= bytes || this.#closeReason !== undefined) resolve();
        else (this.#drainWaiters ??= []).push(check);
      };
      (this.#drainWaiters ??= []).push(check);
    });
  }

  async #readLoop(): Promise<void> {
    let buf = new Uint8Array(MIN_READ);
    let smallReads = 0;
    const decoder = this.#decoder;
    const batch: Uint8Array[] = [];
    try {
      while (this.#closeReason === undefined) {
        if (this.#readGate !== undefined) {
          await this.#readGate;
          continue;
        }
        if (this.pendingBytes > this.highWater) {
          this.#paused = true;
          await this.drained(this.highWater / 2);
          this.#paused = false;
          continue;
        }
        if (
          this.pendingBytes > OUTBOUND_SHARE && processOutbound.pending > processOutbound.highWater
        ) {
          // The process as a whole holds too much output: the connections
          // holding a real share of it stop making more until theirs drains.
          this.#paused = true;
          await this.drained(OUTBOUND_SHARE / 2);
          this.#paused = false;
          continue;
        }
        const n = await this.conn.read(buf);
        if (n === null) {
          if (this.#closeReason !== undefined) return;
          // The peer closed its side: what it sent is read; what we owe it
          // may still be written (the owner decides when to close).
          this.#readEnded = true;
          this.#handler.onEnd();
          return;
        }
        this.#receivedSinceTick = true;
        if (this.#bytesIn < HEAD_BYTES && this.#framesIn === 0) this.#keepHead(buf, n);
        this.#bytesIn += n;
        decoder.push(buf.subarray(0, n));
        let frame: Uint8Array | null;
        batch.length = 0;
        try {
          while ((frame = decoder.next()) !== null) batch.push(frame);
        } finally {
          // Frames before a broken length prefix are delivered before the error.
          this.#framesIn += batch.length;
          if (batch.length > 0 && this.#closeReason === undefined) this.#handler.onFrames(batch);
        }
        if (n === buf.length) {
          smallReads = 0;
          if (buf.length < MAX_READ) buf = new Uint8Array(buf.length * 2);
        } else if (n <= buf.length >> 3 && buf.length > MIN_READ) {
          if (++smallReads >= SHRINK_AFTER) {
            smallReads = 0;
            buf = new Uint8Array(buf.length >> 1);
          }
        } else {
          smallReads = 0;
        }
      }
    } catch (err) {
      if (this.#closeReason !== undefined) return; // a read cut short by our own close
      if (err instanceof DistError) this.#handler.onStreamError(err);
      else this.close(CloseReason.ReadError, err);
    }
  }

  /** Appends the first `n` bytes of `buf` to the head (see `head`). */
  #keepHead(buf: Uint8Array, n: number): void {
    const old = this.#head ?? EMPTY;
    const head = new Uint8Array(Math.min(HEAD_BYTES, old.length + n));
    head.set(old);
    head.set(buf.subarray(0, head.length - old.length), old.length);
    this.#head = head;
  }

  /**
   * Stops reading from the peer (after the read in progress) until
   * `resumeReading()`: the owner has as much work from this peer as it takes.
   * Pauses are counted: each call needs its own resumeReading(), so two
   * reasons to stop (a peer's own limit, a listener's budget) never undo
   * each other.
   */
  pauseReading(): void {
    if (this.#pauses++ === 0) this.#readGate = new Promise((resolve) => this.#openGate = resolve);
  }

  resumeReading(): void {
    if (this.#pauses === 0 || --this.#pauses > 0) return;
    this.#openReading();
  }

  #openReading(): void {
    const open = this.#openGate;
    this.#readGate = this.#openGate = undefined;
    open?.();
  }

  /** Whether reading is stopped, by backpressure or by `pauseReading()`. */
  get readingPaused(): boolean {
    return this.#paused || this.#readGate !== undefined;
  }

  /** Whether the read loop is paused by backpressure. */
  get paused(): boolean {
    return this.#paused;
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
    try {
      this.conn.close();
    } catch {
      // Already closed by the runtime: nothing left to release.
    }
    this.#out.release(0);
    this.#spare.release(0);
    this.#account();
    this.#wakeDrainWaiters();
    this.#pauses = 0;
    this.#openReading();
    this.#handler.onClose(reason, err);
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

  /** Writes what is queued (waiting at most `timeoutMs`), then closes (see closeWith). */
  closeAfterFlush(reason: CloseReason, err?: unknown, timeoutMs = 1000): Promise<void> {
    return this.closeWith(reason, err, undefined, timeoutMs);
  }
}

function noop(): void {}

const EMPTY = new Uint8Array(0);

/**
 * Output waiting to be written, across every connection of the process.
 * Each connection's own limits (highWater, maxOutbound) say nothing of how
 * many connections there are; past `highWater` here, a connection with
 * more than OUTBOUND_SHARE pending stops reading until it has drained.
 */
export const processOutbound = { pending: 0, highWater: 256 * 1024 * 1024 };
/** A connection's share of output above which the process-wide limit pauses it. */
const OUTBOUND_SHARE = 256 * 1024;

/** The heartbeat notification. */
const PING = { method: "ping" };

/**
 * Connections with output queued this turn, flushed together by one
 * microtask at the end of the turn (one closure for the process, not one
 * per connection).
 */
let toFlush: FramedConn[] = [];

function scheduleFlush(conn: FramedConn): void {
  if (toFlush.length === 0) queueMicrotask(flushQueued);
  toFlush.push(conn);
}

function flushQueued(): void {
  const conns = toFlush;
  toFlush = [];
  for (const conn of conns) conn.flush();
}

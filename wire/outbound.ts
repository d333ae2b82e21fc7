/**
 * The write side of a connection: frames queued in the same turn of the
 * event loop go out in one write (started early at a size: setFlushAt),
 * one write in flight at a time, with what waits counted for the whole
 * process.
 */
import { OutBuffer } from "./frame.ts";
import { NO_FD, rawSend } from "./raw_send.ts";
import type { RawSocket } from "./raw_reads.ts";

/**
 * Output waiting to be written, across every connection of the process.
 * Each connection's own limits (highWater, maxOutbound) say nothing of how
 * many connections there are; past `highWater` here, a connection with
 * more than OUTBOUND_SHARE pending stops reading until it has drained.
 */
export const processOutbound = { pending: 0, highWater: 256 * 1024 * 1024 };

/**
 * This isolate's share of the process's output when `count` isolates of one
 * process each count their own (a balancer's `--threads`: each took the
 * whole 256 MiB, hostile46a G1).
 */
export function shareOutbound(count: number): void {
  processOutbound.highWater = Math.ceil(256 * 1024 * 1024 / Math.max(1, count));
}
/** errno: the send buffer is full. */
const EAGAIN = 11;

/** A connection's share of output above which the process-wide limit pauses it. */
export const OUTBOUND_SHARE = 256 * 1024;

/**
 * Whether a connection owes its peer more output than it may, so that what
 * makes more of it (reading the peer's requests, forwarding them) must wait:
 * above its own `highWater`, or above OUTBOUND_SHARE while the process as a
 * whole holds more than `processOutbound.highWater`.
 * @returns the pending bytes to drain to before it may take more, or -1 when it may now
 */
export function drainTarget(pending: number, highWater: number): number {
  if (pending > highWater) return highWater / 2;
  if (pending > OUTBOUND_SHARE && processOutbound.pending > processOutbound.highWater) {
    return OUTBOUND_SHARE / 2;
  }
  return -1;
}

/**
 * Queued output starts going out at once when it reaches this size instead
 * of waiting for the end of the turn; what is queued while that write is in
 * flight is coalesced into the next one. Below it, a turn's output goes in
 * one write at the end of the turn (a microtask: no wait when nothing more
 * is coming). On loopback a write costs a syscall plus the peer's receive
 * path and wake-up, several µs here, so a turn's output is split only
 * when it is large: 8 KiB holds the batch of 16 to 64 small calls a
 * pipelining client or a server sends in one turn. At 1,500 bytes (one
 * Ethernet frame, the value before) a batch of 16 requests (1.9 KB) went in
 * two writes, and the balancer passed on the two pieces as two batches.
 * Alternating runs, c=64 over 4 connections through the balancer, load 2-6:
 * 1.14x the throughput, servers' CPU per request 5.84 -> 4.71 us, the
 * balancer's 6.31 -> 5.60 us; at 1,000 req/s the p50 is unchanged. A relay
 * sets it higher (see setFlushAt).
 */
let flushAt = 8 * 1024;

/**
 * Sets the size at which queued output goes out before the end of the turn,
 * for every connection of this process (isolate). The balancer raises it:
 * it passes on batches it did not make, and splitting one into two writes
 * costs a write and a read on each side of it, and splits the batch for the
 * next hop too.
 */
export function setFlushAt(bytes: number): void {
  flushAt = bytes;
}

/** The output of one connection. */
export class Outbound {
  #conn: Deno.Conn;
  /** Pending bytes at or under which waiters of `drained()` are woken during a burst. */
  #wakeAt: number;
  #onError: (err: unknown) => void;
  #out = new OutBuffer(0);
  #spare = new OutBuffer(0);
  #inflight = 0;
  #writing = false;
  #flushQueued = false;
  #closed = false;
  /** What this connection counts in `processOutbound.pending`. */
  #accounted = 0;
  #drainWaiters: (() => void)[] | undefined;
  #bytesOut = 0;
  #wrote = false;
  /** Holds not released yet (see `hold`): nothing is written while there are any. */
  #held = 0;
  /** The socket's descriptor for wire/raw_send.ts: -1 not known yet, NO_FD never. */
  #fd = -1;
  /** Writes started through the op (until the descriptor is known). */
  #flushes = 0;
  /**
   * Its socket on raw_reads.ts's epoll, once adopted: what `send` does not
   * take waits there for the socket to be writable (never through the op).
   */
  #socket: RawSocket | undefined;
  /** Where the buffer being written there (#spare) goes on from. */
  #sentTo = 0;

  /** `onError` gets a failed write's error (the connection is then closed). */
  constructor(conn: Deno.Conn, highWater: number, onError: (err: unknown) => void) {
    this.#conn = conn;
    this.#wakeAt = highWater / 2;
    this.#onError = onError;
  }

  /** Where frames are appended; then call `queued()`. */
  get buffer(): OutBuffer {
    return this.#out;
  }

  /** Bytes queued or being written. */
  get pending(): number {
    return this.#out.length + this.#inflight;
  }

  get bytesOut(): number {
    return this.#bytesOut;
  }

  /** The socket written to. */
  get conn(): Deno.Conn {
    return this.#conn;
  }

  /** The socket's descriptor once raw_send.ts knows it, else negative. */
  get fd(): number {
    return this.#fd;
  }

  /** Its socket cannot go on raw_reads.ts's epoll: it writes through the op from now on. */
  stayOnRuntime(): void {
    this.#fd = NO_FD;
  }

  /** Its socket is on raw_reads.ts's epoll (no write is in flight), or back on the runtime's: see #socket. */
  adopted(socket: RawSocket | undefined): void {
    this.#socket = socket;
  }

  /** Whether a write is in flight. */
  get writing(): boolean {
    return this.#writing;
  }

  /** Whether a write took bytes since the last call (the ticker's stall check). */
  tookBytes(): boolean {
    const wrote = this.#wrote;
    this.#wrote = false;
    return wrote;
  }

  /**
   * Frames were appended to `buffer`: starts writing them at flushAt, else
   * at the end of the turn.
   * @returns false, writing nothing, when pending output passes `max`.
   */
  queued(max: number): boolean {
    // Precondition: not closed (the connection queues nothing once it is).
    const pending = this.#out.length + this.#inflight;
    processOutbound.pending += pending - this.#accounted;
    this.#accounted = pending;
    if (pending > max) return false;
    if (this.#writing || this.#held > 0) return true;
    if (this.#out.length >= flushAt) {
      this.flush();
    } else if (!this.#flushQueued) {
      this.#flushQueued = true;
      scheduleFlush(this);
    }
    return true;
  }

  /**
   * Frames were appended to `buffer` that `count` (the connection's `queued`
   * check: against its bound, in the process's total, its write started)
   * counts at the end of the turn, once for all the frames appended in it
   * (FramedConn.sendWith with `later`: the broker's deliveries). They are in
   * the buffer at once, in order with every other frame, `pending` counts
   * them at once, and any other send counts them too. Per frame that saves
   * the count, and a subscriber gets a read's deliveries in one write
   * instead of one at flushAt and the rest behind it.
   */
  later(count: () => void): void {
    if (this.#countLater !== undefined) return;
    this.#countLater = count;
    if (toCount.length === 0) queueMicrotask(countQueued);
    toCount.push(this);
  }

  /** Set while frames appended in this turn wait to be counted (see `later`). */
  #countLater: (() => void) | undefined;

  /** Counts what was appended this turn (see `later`). */
  countLater(): void {
    const count = this.#countLater;
    this.#countLater = undefined;
    count?.();
  }

  /** Starts writing what is queued (the end-of-turn flush; see scheduleFlush). */
  flush(): void {
    this.#flushQueued = false;
    if (this.#writing || this.#held > 0 || this.#out.length === 0 || this.#closed) return;
    if (rawSend === undefined || this.#fd === NO_FD) {
      this.#writeLoop(0);
      return;
    }
    if (this.#fd < 0) {
      this.#fd = rawSend.fdOf(this.#conn, ++this.#flushes);
      if (this.#fd < 0) {
        this.#writeLoop(0);
        return;
      }
    }
    // One synchronous send; what it does not take goes on through the op.
    const len = this.#out.length;
    const n = rawSend.send(this.#fd, this.#out.bytes, len);
    if (n === len) {
      this.#bytesOut += n;
      this.#wrote = true;
      this.#out.reset();
      this.#account();
      this.#wake();
      return;
    }
    if (this.#socket !== undefined) return this.#rawRest(n);
    if (n > 0) {
      this.#bytesOut += n;
      this.#wrote = true;
    } else if (n !== -EAGAIN) this.#fd = NO_FD; // The op meets the error and says it.
    this.#writeLoop(Math.max(0, n));
  }

  /** An adopted socket took `n` of the buffer (or -errno): the rest waits for it to be writable. */
  #rawRest(n: number): void {
    if (n < 0 && n !== -EAGAIN) return this.#rawFailed(n);
    const buf = this.#out;
    this.#out = this.#spare;
    this.#spare = buf;
    this.#sentTo = Math.max(0, n);
    this.#bytesOut += this.#sentTo;
    this.#wrote = true;
    this.#writing = true;
    this.#inflight = buf.length - this.#sentTo;
    this.#account();
    this.#socket!.write(true);
  }

  /** The adopted socket takes output again: what waits goes on, as #writeLoop does through the op. */
  writable(): void {
    const socket = this.#socket;
    if (!this.#writing || socket === undefined) return;
    while (!this.#closed) {
      const buf = this.#spare;
      const len = buf.length;
      const from = this.#sentTo;
      if (from < len) {
        const n = rawSend!.send(this.#fd, buf.bytes.subarray(from), len - from);
        if (n === -EAGAIN) return;
        if (n < 0) return this.#rawFailed(n);
        this.#sentTo = from + n;
        this.#bytesOut += n;
        this.#wrote = true;
        this.#inflight = len - this.#sentTo;
        this.#account();
        if (this.#sentTo < len) return;
      }
      buf.reset();
      if (this.#drainWaiters !== undefined && this.pending <= this.#wakeAt) this.#wake();
      if (this.#out.length === 0 || this.#held > 0) break;
      // What was queued meanwhile goes next.
      this.#spare = this.#out;
      this.#out = buf;
      this.#sentTo = 0;
      this.#inflight = this.#spare.length;
    }
    this.#writing = false;
    this.#inflight = 0;
    socket.write(false);
    this.#account();
    if (this.#out.length === 0 || this.#closed) this.#wake();
  }

  #rawFailed(errno: number): void {
    this.#writing = false;
    this.#inflight = 0;
    this.#socket!.write(false);
    this.#onError(new Error(this.#socket!.reads.raw.describe(errno)));
  }

  /**
   * Writes nothing more (what is queued, or queued later) until `until`
   * settles: for output that may go only once something else is done (the
   * broker's QoS 0 deliveries from an MQTT session's journal, once the
   * deletes of their rows are committed). A write in flight finishes.
   */
  hold(until: Promise<unknown>): void {
    this.#held++;
    const release = () => {
      if (--this.#held === 0) this.flush();
    };
    until.then(release, release);
  }

  /** Resolves once pending output is at most `bytes` (or the connection closed). */
  drained(bytes = 0): Promise<void> {
    if (this.pending <= bytes || this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.pending <= bytes || this.#closed) resolve();
        else (this.#drainWaiters ??= []).push(check);
      };
      (this.#drainWaiters ??= []).push(check);
    });
  }

  /**
   * Between bursts a connection does not keep a burst's output buffers (a
   * ping fits in what release() keeps; the spare is for bursts only).
   */
  trim(): void {
    if (this.#writing) return;
    this.#out.release();
    this.#spare.release(0);
  }

  /** The connection closed: what is queued is dropped, and waiters are woken. */
  close(): void {
    this.#closed = true;
    this.#out.release(0);
    this.#spare.release(0);
    this.#account();
    this.#wake();
  }

  /** Brings this connection's share of `processOutbound.pending` up to date. */
  #account(): void {
    const now = this.#closed ? 0 : this.pending;
    processOutbound.pending += now - this.#accounted;
    this.#accounted = now;
  }

  /** Writes what is queued through the op, the first buffer from `from`. */
  async #writeLoop(from: number): Promise<void> {
    this.#writing = true;
    this.#wrote = true;
    try {
      while (this.#out.length > 0 && !this.#closed && this.#held === 0) {
        const buf = this.#out;
        this.#out = this.#spare;
        this.#spare = buf;
        const len = buf.length;
        let off = from;
        from = 0;
        this.#inflight = len - off;
        while (off < len) {
          const n = await this.#conn.write(buf.bytes.subarray(off, len));
          off += n;
          this.#bytesOut += n;
          this.#inflight = len - off;
          this.#wrote = true;
          this.#account();
        }
        buf.reset();
        if (this.#drainWaiters !== undefined && this.pending <= this.#wakeAt) this.#wake();
      }
    } catch (err) {
      this.#onError(err);
    } finally {
      this.#writing = false;
      this.#inflight = 0;
      if (this.#out.length === 0 || this.#closed) this.#wake();
    }
  }

  #wake(): void {
    const waiters = this.#drainWaiters;
    if (waiters === undefined) return;
    this.#drainWaiters = undefined;
    for (const w of waiters) w();
  }
}

/**
 * Connections with output queued this turn, flushed together by one
 * microtask at the end of the turn (one closure for the process, not one
 * per connection).
 */
let toFlush: Outbound[] = [];

function scheduleFlush(out: Outbound): void {
  if (toFlush.length === 0) queueMicrotask(flushQueued);
  toFlush.push(out);
}

/** Outputs with frames to count at the end of the turn (see Outbound.later): one closure for all. */
let toCount: Outbound[] = [];

function countQueued(): void {
  const outs = toCount;
  toCount = [];
  for (let i = 0; i < outs.length; i++) outs[i].countLater();
}

function flushQueued(): void {
  const outs = toFlush;
  toFlush = [];
  for (const out of outs) out.flush();
}

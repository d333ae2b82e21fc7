/**
 * The deadlines of one connection, judged tick by tick (the process's one
 * ticker, heartbeat.ts): output the peer takes too little of, a frame that never
 * completes, a silent peer, and when this side owes a ping. Ages grow only
 * by the ticks' elapsed time (capped by the ticker), so a stall of this
 * process never counts against the peer. No socket here: FramedConn tells
 * what it saw and acts on the verdict.
 */
import { DistError } from "./errors.ts";

/** Default write deadline: a peer that takes no bytes for this long is cut off (nats-server's). */
export const DEFAULT_WRITE_TIMEOUT_MS = 10_000;
/** Default frame deadline before heartbeats set heartbeat × liveness. */
export const DEFAULT_FRAME_TIMEOUT_MS = 3_000;

/**
 * The least a peer with output waiting must take per write timeout (6.4
 * KiB/s at the default 10 s): a peer that reads a trickle is cut off like
 * one that reads nothing, not kept forever behind a growing backlog.
 */
export const MIN_PROGRESS_BYTES = 64 * 1024;

/**
 * Whether a peer keeps up with our output, judged tick by tick: while a
 * write waits on it, it must take MIN_PROGRESS_BYTES within the write
 * timeout (each time it has, the count starts again); a peer that takes
 * all that waits (no write in flight) is never judged.
 */
export class WriteProgress {
  /** Time output has waited on the peer since it last made enough progress. */
  waited = 0;
  /** Bytes it took meanwhile. */
  taken = 0;
  /** What it must take to have made progress: what waited when the count began, at most 64 KiB. */
  #owed = 0;
  /** Bytes written to it by the last tick. */
  #at = 0;

  /**
   * One tick, `elapsed` ms after the last: `writing` (a write is in flight),
   * `bytesOut` (bytes the peer has taken in all), `pending` (bytes waiting
   * on it). Returns whether the peer is too slow: output waited `timeoutMs`
   * and the peer took less than MIN_PROGRESS_BYTES, and less than what
   * waited when the count began (a peer that keeps up with a slow stream
   * has a write in flight now and then, and is not judged by it).
   */
  tick(
    elapsed: number,
    writing: boolean,
    bytesOut: number,
    pending: number,
    timeoutMs: number,
  ): boolean {
    const took = bytesOut - this.#at;
    this.#at = bytesOut;
    if (!writing) {
      this.waited = this.taken = 0;
      return false;
    }
    if (this.waited === 0 && this.taken === 0) this.#owed = Math.min(MIN_PROGRESS_BYTES, pending);
    this.taken += took;
    if (this.taken > 0 && this.taken >= this.#owed) {
      // It took what waited (or 64 KiB of it): the count begins again.
      this.waited = this.taken = 0;
      return false;
    }
    this.waited += elapsed;
    return this.waited >= timeoutMs;
  }

  /** Why the peer is cut off, for logs and its SLOW_CONSUMER error. */
  describe(timeoutMs: number): string {
    return this.taken === 0
      ? `took no bytes for ${Math.round(this.waited)} ms`
      : `took ${this.taken} bytes in ${Math.round(this.waited)} ms, less than the ` +
        `${this.#owed} waiting (at most ${MIN_PROGRESS_BYTES} per write timeout, ${timeoutMs} ms)`;
  }
}

/** A tick's verdict: nothing, a ping is due, or a deadline passed. */
export type Due = "none" | "ping" | "stalled" | "frame" | "silent";

export class Deadlines {
  #writeTimeoutMs: number;
  #frameTimeoutMs: number;
  #heartbeatMs = 0;
  #liveness = 3;
  #tickMs = 0;
  // Ages accumulated tick by tick, in ms.
  #quietRecv = 0;
  #quietSend = 0;
  #progress = new WriteProgress();
  #partialAge = -1;
  #partialFrames = 0;

  constructor(
    writeTimeoutMs = DEFAULT_WRITE_TIMEOUT_MS,
    frameTimeoutMs = DEFAULT_FRAME_TIMEOUT_MS,
  ) {
    this.#writeTimeoutMs = writeTimeoutMs;
    this.#frameTimeoutMs = frameTimeoutMs;
    this.#updateTickMs();
  }

  /**
   * Turns on heartbeats: a ping is due after `heartbeatMs` of silence from
   * this side, the peer is dead after heartbeat × liveness of silence, and
   * a frame must complete within that same time.
   */
  keepAlive(heartbeatMs: number, liveness: number): void {
    this.#heartbeatMs = heartbeatMs;
    this.#liveness = liveness;
    if (heartbeatMs > 0) this.#frameTimeoutMs = heartbeatMs * liveness;
    this.#updateTickMs();
  }

  /** The longest gap between two ticks these deadlines tolerate (ms). */
  get tickMs(): number {
    return this.#tickMs;
  }

  #updateTickMs(): void {
    const hb = this.#heartbeatMs > 0 ? this.#heartbeatMs : Infinity;
    this.#tickMs = Math.min(hb, this.#writeTimeoutMs, this.#frameTimeoutMs) / 4;
  }

  /**
   * One tick, `elapsed` ms after the last: `heard` (bytes arrived, or this
   * side is not reading: the peer's pings wait unread or cannot come, so its
   * silence proves nothing), `sent` (frames queued), `writing` (a write is
   * in flight), `bytesOut` (bytes the peer has taken in all), `pending`
   * (bytes waiting on it), `partial`
   * (a frame has begun and reading goes on: the count of frames read so
   * far, else -1), `wall` (`elapsed` uncapped: see Tickable). This side's
   * own silence is timed by `wall`: after a stall of this process (a loaded
   * machine, a long collection) a ping goes out at once, so that a peer
   * that hears nothing else from it (a publisher that never reads an
   * answer) gets one in the time it counts on; counted in capped ticks, a
   * broker stopped more than it ran pinged such a peer a fraction as often
   * as agreed, and the peer found it dead (tests/heartbeat_stall_test.ts).
   */
  check(
    elapsed: number,
    heard: boolean,
    sent: boolean,
    writing: boolean,
    bytesOut: number,
    pending: number,
    partial: number,
    wall = elapsed,
  ): Due {
    this.#quietRecv = heard ? 0 : this.#quietRecv + elapsed;
    this.#quietSend = sent ? 0 : this.#quietSend + wall;
    // The peer does not read, or reads a trickle: cut it off rather than hold its output forever.
    if (this.#progress.tick(elapsed, writing, bytesOut, pending, this.#writeTimeoutMs)) {
      return "stalled";
    }
    // A frame that has begun must complete in time: dribbling a byte now and
    // then does not keep a connection (slowloris).
    if (partial < 0) {
      this.#partialAge = -1;
    } else if (this.#partialAge < 0 || this.#partialFrames !== partial) {
      this.#partialAge = 0;
      this.#partialFrames = partial;
    } else if ((this.#partialAge += elapsed) >= this.#frameTimeoutMs) {
      return "frame";
    }
    if (this.#heartbeatMs > 0) {
      if (this.#quietRecv >= this.#heartbeatMs * this.#liveness) return "silent";
      if (this.#quietSend >= this.#heartbeatMs) {
        this.#quietSend = 0;
        return "ping";
      }
    }
    return "none";
  }

  /** Why a passed deadline closes the connection (`pending`, `buffered`: bytes, for the message). */
  error(due: "stalled" | "frame" | "silent", pending: number, buffered: number): Error {
    if (due === "stalled") {
      return new DistError(
        "SLOW_CONSUMER",
        `Peer ${this.#progress.describe(this.#writeTimeoutMs)} ` +
          `(write timeout ${this.#writeTimeoutMs} ms, ${pending} bytes pending)`,
      );
    }
    if (due === "frame") {
      return new DistError(
        "TIMEOUT",
        `Frame incomplete ${Math.round(this.#partialAge)} ms after it began ` +
          `(${buffered} bytes received; deadline ${this.#frameTimeoutMs} ms)`,
      );
    }
    return new Error(
      `Peer silent for ${Math.round(this.#quietRecv)} ms ` +
        `(heartbeat ${this.#heartbeatMs} ms × ${this.#liveness})`,
    );
  }
}

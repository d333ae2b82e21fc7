/**
 * The deadlines of one connection, judged tick by tick (the process's one
 * ticker, heartbeat.ts): a write that takes no bytes, a frame that never
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
  #stalled = 0;
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
   * silence proves nothing), `sent` (frames queued), `stuck` (a write in
   * flight took no bytes), `partial` (a frame has begun and reading goes
   * on: the count of frames read so far, else -1).
   */
  check(elapsed: number, heard: boolean, sent: boolean, stuck: boolean, partial: number): Due {
    this.#quietRecv = heard ? 0 : this.#quietRecv + elapsed;
    this.#quietSend = sent ? 0 : this.#quietSend + elapsed;
    // The peer does not read: cut it off rather than hold its output forever.
    this.#stalled = stuck ? this.#stalled + elapsed : 0;
    if (this.#stalled >= this.#writeTimeoutMs) return "stalled";
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
        `Peer took no bytes for ${Math.round(this.#stalled)} ms ` +
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

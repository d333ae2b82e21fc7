import { CloseReason, type FramedConn } from "./conn.ts";

export interface HeartbeatOptions {
  /** Silence (ms) after which this side pings. */
  heartbeatMs: number;
  /** Heartbeats of silence after which the peer is dead. */
  liveness: number;
  /** Sends one ping notification. */
  ping: () => void;
}

/**
 * Keeps a connection's liveness: pings after `heartbeatMs` of silence from
 * this side, and closes the connection (HeartbeatTimeout) after
 * `heartbeatMs × liveness` of silence from the peer. Ticks at a quarter of
 * the heartbeat, so a dead peer is noticed within heartbeat × liveness plus
 * at most one tick. Uses the connection's sent/received flags, so traffic
 * itself counts and costs nothing per frame but setting a boolean.
 * @returns a function that stops it
 */
export function startHeartbeat(conn: FramedConn, options: HeartbeatOptions): () => void {
  const { heartbeatMs, liveness } = options;
  const tick = Math.max(5, Math.floor(heartbeatMs / 4));
  const deadAfter = heartbeatMs * liveness;
  let quietSend = 0;
  let quietRecv = 0;
  const timer = setInterval(() => {
    quietSend = conn.sentSinceTick ? 0 : quietSend + tick;
    // While this side is not reading (backpressure), the peer's pings wait
    // unread in the socket: its silence proves nothing.
    quietRecv = conn.receivedSinceTick || conn.readingPaused ? 0 : quietRecv + tick;
    conn.sentSinceTick = false;
    conn.receivedSinceTick = false;
    if (quietRecv >= deadAfter) {
      conn.close(
        CloseReason.HeartbeatTimeout,
        new Error(`Peer silent for ${quietRecv} ms (heartbeat ${heartbeatMs} ms × ${liveness})`),
      );
      return;
    }
    if (quietSend >= heartbeatMs) {
      options.ping();
      quietSend = 0;
    }
  }, tick);
  // Heartbeats alone never keep a process alive.
  Deno.unrefTimer(timer as unknown as number);
  return () => clearInterval(timer);
}

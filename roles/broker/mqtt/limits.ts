/**
 * What the MQTT front end (front.ts) is configured with, and what a CONNECT
 * asks of its session.
 */
import type { Will } from "./connect.ts";

/** The MQTT front end's limits. */
export interface MqttLimits {
  /** Largest packet accepted (remaining length), judged before it is buffered. */
  maxPacket: number;
  /** Output a connection may have queued before it is closed as not reading. */
  maxOutbound: number;
  /**
   * Most connections at once; at it, a new one closes the oldest that has
   * not been given CONNACK yet, or one of a source holding more than a
   * quarter (slots.ts), else is closed at once.
   */
  maxConnections: number;
  /** Most connections of one source, always (0 or absent: only its share while full). */
  maxConnectionsPerSource?: number;
  /** A connection must send CONNECT within this long. */
  connectTimeoutMs: number;
  /** A write that takes no bytes this long closes the connection. */
  writeTimeoutMs: number;
  /** Most persistent sessions (connected or away); one more is refused at CONNECT. */
  maxSessions: number;
  /**
   * Most persistent sessions one authenticated user may hold (the shared
   * token's holders and unauthenticated clients excepted), so that a user
   * cannot take every session slot.
   */
  maxUserSessions?: number;
  /** How often `$SYS/broker/…` statistics are published (0: never). */
  sysIntervalMs?: number;
  /** Queue QoS 0 deliveries for away persistent sessions (else dropped, counted). */
  queueQos0?: boolean;
  /**
   * Longest keep-alive an MQTT 5 client may have, in seconds (0: any): one
   * asking for more, or for none, is given this in CONNACK (Server Keep Alive).
   */
  maxKeepAliveS?: number;
}

/** What a CONNECT asks of its session. */
export interface SessionRequest {
  /** Clean session (3.1.1) or Clean Start (5): an existing session is discarded. */
  clean: boolean;
  /** Seconds the session is kept after the connection goes (capped already). */
  expiry: number;
  /** The authenticated user. */
  owner: string | undefined;
  version: number;
  /** Its client id (counted with a persistent session: sessionBytes). */
  clientId: string;
  /** Its will, if it has one. */
  will?: Will;
}

/**
 * What an MQTT session may hold and is counted at (session.ts keeps the
 * count, sessions.ts the shares): how long it waits for its client, what a
 * persistent one costs in max-memory, and how much of max-pending its
 * deliveries in flight may keep for a redelivery.
 */

/**
 * Longest a session is kept for an absent client, in seconds (a day):
 * MQTT 5 asks for less or more (more is cut to this, and CONNACK says so);
 * 3.1.1's clean session 0, which asks for no end, gets this.
 */
export const MAX_SESSION_EXPIRY_S = 86_400;

/**
 * The part of max-pending a session's deliveries in flight may keep for a
 * redelivery (a persistent session's copies): past it the session takes no
 * more deliveries until acknowledgements free some, and they wait in its
 * queues with what else is pending, within max-pending (see session.ts `full`).
 */
export const KEPT_SHARE = 0.5;

/**
 * What a persistent session is counted at, connected or away, beside its
 * client id, its filters and what it keeps in flight: about 4 KB of live
 * heap each (3,000 away sessions, after a full collection), and a broker's
 * RSS grew by about 10 KB for each of 5,000.
 */
export const SESSION_BYTES = 8192;

/**
 * What each packet id of a QoS 2 publish received and not yet released
 * (PUBREC sent, PUBREL awaited) costs a session: 2,000 away sessions that
 * left 1,024 each grew RSS by 81 MiB more than as many without (hostile
 * review 39b Q11: about 40 bytes an id; the live Set about 26).
 */
export const QOS2_ID_BYTES = 40;

/**
 * What a persistent session of `clientId` is counted at, with `filterBytes`
 * of filters and `qos2Ids` QoS 2 ids awaiting PUBREL (up to Receive Maximum,
 * 1,024, kept while its client is away: hostile review 39b Q11): its client
 * id's text counts (V8 strings: at most 2 bytes a UTF-16 unit), as 4,096
 * away sessions with 65,000-byte ids took RSS to 393 MB, counted 32 MiB
 * (hostile review 38 L3).
 */
export function sessionBytes(clientId: string, filterBytes = 0, qos2Ids = 0): number {
  return SESSION_BYTES + 2 * clientId.length + filterBytes + qos2Ids * QOS2_ID_BYTES;
}

/**
 * What a CONNECT asks for, read from its packet: the will, the session
 * (clean start, expiry), the keep-alive, and the CONNACK that accepts or
 * refuses it. The connection
 * (connection.ts) decides; this reads and writes.
 */
import { Buffer } from "node:buffer";
import type { IConnectPacket, IDisconnectPacket } from "mqtt-packet";
import type { MqttConnection } from "./connection.ts";
import { topicFromMqtt } from "./mapping.ts";
import { DistError } from "../../../wire/mod.ts";
import { generate, parseSlow, readPublish } from "./packets.ts";
import { PropertyFault, scanPublishProperties } from "./properties.ts";
import { MAX_SESSION_EXPIRY_S } from "./session_cost.ts";

/** Most QoS 2 publishes awaiting PUBREL per connection (MQTT 5: our Receive Maximum). */
export const MAX_QOS2_PENDING = 1024;

/** Topic Aliases a client may set (MQTT 5's Topic Alias Maximum in our CONNACK). */
export const TOPIC_ALIAS_MAX = 64;

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

/**
 * Longest client id taken, in UTF-8 bytes. MQTT allows 65,535 (a server
 * must take 1–23, and may take more: §3.1.3.1), but a connection holds its
 * id as long as it lives, and an id of 65,000 bytes took some 65 KB per
 * away session and per retained value it published (hostile review 38 L3).
 * 1 KiB is 28 times a UUID; a longer one gets CONNACK 0x85 Client
 * Identifier not valid (3.1.1: 2, identifier rejected).
 */
export const MAX_CLIENT_ID_BYTES = 1024;

/**
 * The CONNACK code refusing a CONNECT, and why in words, or undefined when
 * it is taken: an MQTT 5 Authentication Method, which no method here
 * answers (0x8C Bad authentication method, as Mosquitto says; hostile46b
 * M-B11: it got a success CONNACK, unauthenticated); a client id empty
 * without a clean session (3.1.1), or past {@link MAX_CLIENT_ID_BYTES}
 * (an empty one otherwise: the broker assigns one).
 */
export function connectRefused(p: IConnectPacket, v5: boolean): [number, string] | undefined {
  const method = v5 ? p.properties?.authenticationMethod : undefined;
  if (method !== undefined) return [0x8c, "an authentication method (none is supported)"];
  const id = p.clientId ?? "";
  if (id === "" && !v5 && p.clean === false) {
    return [2, "an empty client id without a clean session"];
  }
  if (id.length <= MAX_CLIENT_ID_BYTES / 3) return undefined;
  const bytes = encoder.encode(id).length;
  if (bytes <= MAX_CLIENT_ID_BYTES) return undefined;
  return [v5 ? 0x85 : 2, `a client id of ${bytes} bytes (at most ${MAX_CLIENT_ID_BYTES})`];
}

export interface Will {
  topic: string;
  payload: Uint8Array;
  qos: number;
  retain: boolean;
  /** MQTT 5 will properties, as a PUBLISH carries them (Message Expiry apart). */
  properties: Uint8Array;
  /** MQTT 5 Message Expiry Interval of the will (seconds), or -1. */
  expiry: number;
  /** MQTT 5 Will Delay Interval (seconds; 0: at once). */
  delay: number;
  /** The user it is published for (its retained value is that user's). */
  owner?: string;
}

/**
 * The CONNECT's will, its topic in dist's form.
 * @throws {DistError} for a topic dist has no name for; {@link PropertyFault}
 * for will properties MQTT 5 refuses
 */
export function willOf(p: IConnectPacket): Will | undefined {
  if (p.will === undefined) return undefined;
  const payload = p.will.payload;
  const { willDelayInterval, ...props } = p.will.properties ?? {};
  let carried = { properties: EMPTY, expiry: -1 };
  if (Object.keys(props).length > 0) {
    // mqtt-packet writes them as a PUBLISH's; our reader takes them back as bytes to pass on.
    const packet = generate({
      cmd: "publish",
      topic: "w",
      payload: Buffer.alloc(0),
      qos: 0,
      dup: false,
      retain: false,
      properties: props,
    }, 5);
    // Its body starts after the remaining length's bytes (more than one past 127 bytes).
    let body = 1;
    while (packet[body] & 0x80) body++;
    const read = readPublish(packet[0], packet, body + 1, packet.length, true);
    const scanned = typeof read === "string" ? read : scanPublishProperties(read.properties);
    if (typeof scanned === "string") throw new DistError("BAD_REQUEST", scanned);
    if (scanned instanceof PropertyFault) throw scanned; // (CONNACK with its reason)
    carried = { properties: scanned.properties.slice(), expiry: scanned.expiry };
  }
  return {
    topic: topicFromMqtt(p.will.topic),
    payload: typeof payload === "string" ? encoder.encode(payload) : Uint8Array.from(payload),
    qos: p.will.qos ?? 0,
    retain: p.will.retain === true,
    ...carried,
    delay: willDelayInterval ?? 0,
  };
}

/**
 * The session expiry asked (seconds; 3.1.1's clean session 0 asks for no
 * end: Infinity) and the one given (at most {@link MAX_SESSION_EXPIRY_S}).
 */
export function sessionExpiryOf(p: IConnectPacket, v5: boolean): { asked: number; given: number } {
  const asked = v5 ? p.properties?.sessionExpiryInterval ?? 0 : p.clean === false ? Infinity : 0;
  return { asked, given: Math.min(asked, MAX_SESSION_EXPIRY_S) };
}

/**
 * The keep-alive a connection is held to (seconds; 0: none), and MQTT 5's
 * Server Keep Alive when the broker's `maxKeepAliveS` cuts the client's
 * (3.1.1 cannot be told a shorter one: its own stands).
 */
export function keepAliveOf(
  p: IConnectPacket,
  v5: boolean,
  limits: { maxKeepAliveS?: number },
): { keepAlive: number; serverKeepAlive: number | undefined } {
  const asked = p.keepalive ?? 0;
  const max = limits.maxKeepAliveS ?? 0;
  const serverKeepAlive = v5 && max > 0 && (asked === 0 || asked > max) ? max : undefined;
  return { keepAlive: serverKeepAlive ?? asked, serverKeepAlive };
}

/**
 * Why a CONNECT is not given a session (MqttFront.register); "unstored": what
 * it changed could not be committed (a full data directory), so no CONNACK
 * says so (hostile review 41b X6: a Clean Start's discard came back after a kill).
 */
export type SessionRefusal =
  | "owner"
  | "ownerless"
  | "sessions"
  | "user sessions"
  | "memory"
  | "unstored";

/** The CONNACK code refusing a session (front.ts's register), and why in words. */
export function sessionRefused(
  why: SessionRefusal,
  v5: boolean,
  limits: { maxSessions: number; maxUserSessions?: number },
): [code: number, why: string] {
  switch (why) {
    // 3.1.1: not authorized; 5: client identifier not valid.
    case "owner":
      return [v5 ? 0x85 : 5, "its client id is another user's session"];
    case "ownerless":
      return [v5 ? 0x85 : 5, "its client id is a session made while authentication was off"];
    case "sessions":
      return [v5 ? 0x97 : 3, `more than ${limits.maxSessions} persistent sessions`];
    case "user sessions":
      return [
        v5 ? 0x97 : 3,
        `its user holds ${limits.maxUserSessions} persistent sessions already`,
      ];
    case "memory":
      return [
        v5 ? 0x97 : 3,
        "its session or will would pass their share of max-memory (or wills', or its user's)",
      ];
    // 3.1.1: server unavailable; 5: server unavailable.
    case "unstored":
      return [v5 ? 0x88 : 3, "its session could not be written (the data directory is failing)"];
  }
}

/**
 * The CONNACK accepting a connection, within the client's Maximum Packet
 * Size (`clientMax`; MQTT-3.1.2-24): past it, without the properties whose
 * absence means the same (retain, wildcard, subscription identifiers and
 * shared subscriptions available), then without our Topic Alias Maximum
 * (absent: the client sets no aliases); undefined if it is still too large.
 */
export function connackOk(
  v5: boolean,
  present: boolean,
  o: {
    assignedId?: string;
    expiry: { asked: number; given: number };
    maxPacket: number;
    serverKeepAlive?: number;
  },
  clientMax = Infinity,
): Uint8Array | undefined {
  if (!v5) return Uint8Array.of(0x20, 2, present ? 1 : 0, 0);
  const needed = {
    ...(o.assignedId === undefined ? {} : { assignedClientIdentifier: o.assignedId }),
    ...(o.serverKeepAlive === undefined ? {} : { serverKeepAlive: o.serverKeepAlive }),
    // Less than asked: the client is told what it has.
    ...(o.expiry.given < o.expiry.asked ? { sessionExpiryInterval: o.expiry.given } : {}),
    receiveMaximum: MAX_QOS2_PENDING,
    maximumPacketSize: o.maxPacket + 5,
  };
  const all = [
    { ...needed, topicAliasMaximum: TOPIC_ALIAS_MAX, ...AVAILABLE },
    { ...needed, topicAliasMaximum: TOPIC_ALIAS_MAX },
    needed,
  ];
  for (const properties of all) {
    const packet = generate(
      { cmd: "connack", sessionPresent: present, reasonCode: 0, properties },
      5,
    );
    if (packet.length <= clientMax) return packet;
  }
  return undefined;
}

/** What the broker has, said in CONNACK though absent means the same. */
const AVAILABLE = {
  retainAvailable: true,
  wildcardSubscriptionAvailable: true,
  subscriptionIdentifiersAvailable: true,
  sharedSubscriptionAvailable: true,
};

/**
 * DISCONNECT: the connection closes (MQTT 5 reason 0x04: with its will);
 * MQTT 5 may change the Session Expiry Interval, though not from 0.
 */
export function onDisconnect(c: MqttConnection, packet: Uint8Array, length: number): undefined {
  const reason = c.v5 && length > 0 ? packet[packet.length - length] : 0;
  if (c.v5 && length > 1) {
    let p: IDisconnectPacket;
    try {
      p = parseSlow(packet, 5) as IDisconnectPacket;
    } catch (err) {
      return c.protocolError(`a malformed DISCONNECT (${(err as Error).message})`);
    }
    const expiry = p.properties?.sessionExpiryInterval;
    if (expiry !== undefined) {
      const session = c.session;
      if (session.expiry === 0 && expiry > 0) {
        return c.protocolError("a Session Expiry Interval set by DISCONNECT after 0 at CONNECT");
      }
      session.expiry = Math.min(expiry, MAX_SESSION_EXPIRY_S);
    }
  }
  c.close("DISCONNECT", reason === 0x04);
}

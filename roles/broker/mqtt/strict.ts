/**
 * What mqtt-packet's parser lets through and MQTT refuses, read from the
 * packet's bytes once it has parsed (packets.ts parseSlow; hostile review
 * 39b Q7: the broker took them, mosquitto closes the connection):
 *
 * - a property that may come once, twice (MQTT 5 §2.2.2.2: a Protocol
 *   Error), in CONNECT, its will's properties, SUBSCRIBE, UNSUBSCRIBE and
 *   DISCONNECT (PUBLISH's are properties.ts's); mqtt-packet kept the last;
 * - a CONNECT with bytes after its payload (a Malformed Packet), or, before
 *   MQTT 5, a password without a user name ([MQTT-3.1.2-22]);
 * - the same in PUBACK, PUBREC, PUBREL and PUBCOMP ({@link ackRepeats});
 * - packet identifier 0 in SUBSCRIBE or UNSUBSCRIBE ([MQTT-2.2.1-3]: a
 *   QoS 1 or 2 PUBLISH's is publish_in.ts's), an UNSUBSCRIBE with no
 *   filter ([MQTT-3.10.3-2]).
 *
 * Each is a {@link PacketFault}: MQTT 5 refuses it with its reason code
 * (CONNACK before CONNECT is accepted, DISCONNECT after), 3.1.1 closes.
 */
import { CONNECT, DISCONNECT, SUBSCRIBE, UNSUBSCRIBE } from "./packets.ts";

/** A packet MQTT refuses, with the reason code MQTT 5 gives it. */
export class PacketFault extends Error {
  constructor(
    /** 0x81 Malformed Packet or 0x82 Protocol Error. */
    readonly code: 0x81 | 0x82,
    why: string,
  ) {
    super(why);
  }
}

/** Property ids by the size of their value (MQTT 5 §2.2.2.2); 0x26 User Property may repeat. */
const FIXED: Record<number, number> = {
  0x01: 1, // Payload Format Indicator
  0x17: 1, // Request Problem Information
  0x19: 1, // Request Response Information
  0x24: 1, // Maximum QoS
  0x25: 1, // Retain Available
  0x28: 1, // Wildcard Subscription Available
  0x29: 1, // Subscription Identifier Available
  0x2a: 1, // Shared Subscription Available
  0x13: 2, // Server Keep Alive
  0x21: 2, // Receive Maximum
  0x22: 2, // Topic Alias Maximum
  0x23: 2, // Topic Alias
  0x02: 4, // Message Expiry Interval
  0x11: 4, // Session Expiry Interval
  0x18: 4, // Will Delay Interval
  0x27: 4, // Maximum Packet Size
};
/** UTF-8 strings and binary data: a two-byte length, then that many bytes. */
const COUNTED = new Set([0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1a, 0x1c, 0x1f]);
const USER_PROPERTY = 0x26;
const SUBSCRIPTION_ID = 0x0b;

/** Where a packet's parts are read from: `at`, moved on as they are. */
interface Cursor {
  b: Uint8Array;
  at: number;
}

/**
 * Checks the packet mqtt-packet has just parsed (`b`, the whole packet;
 * `v5`: MQTT 5).
 * @throws {PacketFault} for what it refuses
 */
export function checkStrictly(b: Uint8Array, v5: boolean): void {
  const type = b[0] >> 4;
  const c = { b, at: 1 };
  const length = vbi(c);
  if (type === CONNECT) return checkConnect(c, v5, c.at + length);
  if (type === SUBSCRIBE || type === UNSUBSCRIBE) {
    const name = type === SUBSCRIBE ? "SUBSCRIBE" : "UNSUBSCRIBE";
    if (((b[c.at] << 8) | b[c.at + 1]) === 0) {
      throw new PacketFault(0x81, `a ${name} with packet identifier 0`);
    }
    c.at += 2;
    if (v5) properties(c, name);
    if (type === UNSUBSCRIBE && c.at >= b.length) {
      throw new PacketFault(0x82, "an UNSUBSCRIBE with no filter");
    }
    return;
  }
  if (type === DISCONNECT && v5 && length > 1) {
    c.at++; // its reason code
    properties(c, "DISCONNECT");
  }
}

/**
 * Whether the MQTT 5 acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP) whose
 * body is `b[body..end)` — its packet id, reason code and properties — has
 * a property that may come once twice (a Protocol Error; mosquitto closes).
 */
export function ackRepeats(b: Uint8Array, body: number, end: number): boolean {
  if (end - body <= 3) return false; // no properties
  try {
    properties({ b, at: body + 3 }, "acknowledgement");
    return false;
  } catch {
    return true;
  }
}

function checkConnect(c: Cursor, v5: boolean, end: number): void {
  const b = c.b;
  c.at += counted(c); // the protocol name
  const flags = b[c.at + 1];
  // Will QoS 3 (MQTT-3.1.2-14): malformed (hostile45b K-B4: served, the will sent at QoS 2).
  if ((flags & 0x18) === 0x18) throw new PacketFault(0x81, "a CONNECT with Will QoS 3");
  c.at += 4; // level, flags, keep-alive
  if (v5) {
    const at = c.at;
    properties(c, "CONNECT");
    connectProperties(b, at, c.at);
  }
  c.at += counted(c); // the client id
  if ((flags & 0x04) !== 0) {
    if (v5) properties(c, "will");
    c.at += counted(c); // its topic
    c.at += counted(c); // its payload
  }
  const user = (flags & 0x80) !== 0, password = (flags & 0x40) !== 0;
  if (password && !user && !v5) {
    throw new PacketFault(0x82, "a CONNECT with a password and no user name");
  }
  if (user) c.at += counted(c);
  if (password) c.at += counted(c);
  if (c.at !== end) {
    throw new PacketFault(0x81, `a CONNECT with ${end - c.at} bytes after its payload`);
  }
}

/**
 * Refuses a CONNECT property MQTT 5 calls a Protocol Error (§3.1.2.11): a
 * Receive Maximum or Maximum Packet Size of 0, a Request Problem or Response
 * Information past 1, a property CONNECT does not have (Payload Format
 * Indicator…). `b[from, end)` is the list, its length first, read once by
 * {@link properties} already (hostile45b K-B4: Mosquitto closes each).
 */
function connectProperties(b: Uint8Array, from: number, end: number): void {
  const c = { b, at: from };
  vbi(c);
  while (c.at < end) {
    const id = b[c.at++];
    const size = FIXED[id];
    let value = -1;
    if (size !== undefined) value = 0;
    for (let k = 0; k < (size ?? 0); k++) value = value * 256 + b[c.at + k];
    const zero = (id === 0x21 || id === 0x27) && value === 0;
    if (zero || ((id === 0x17 || id === 0x19) && value > 1) || !IN_CONNECT.has(id)) {
      throw new PacketFault(0x82, `a CONNECT with property 0x${id.toString(16)} as it is`);
    }
    if (id === USER_PROPERTY) {
      c.at += counted(c);
      c.at += counted(c);
    } else if (COUNTED.has(id)) c.at += counted(c);
    else c.at += size ?? end;
  }
}

/** The properties a CONNECT may have (MQTT 5 §3.1.2.11). */
const IN_CONNECT = new Set([0x11, 0x21, 0x27, 0x22, 0x19, 0x17, USER_PROPERTY, 0x15, 0x16]);

/** Reads a property list at the cursor (its length first), refusing one that comes twice. */
function properties(c: Cursor, what: string): void {
  const length = vbi(c);
  const end = c.at + length;
  const b = c.b;
  let seen: Set<number> | undefined;
  while (c.at < end) {
    const id = b[c.at++];
    if (id === USER_PROPERTY) {
      c.at += counted(c);
      c.at += counted(c);
      continue;
    }
    if ((seen ??= new Set()).has(id)) {
      throw new PacketFault(0x82, `a ${what} with property 0x${id.toString(16)} twice`);
    }
    seen.add(id);
    if (id === SUBSCRIPTION_ID) vbi(c);
    else if (COUNTED.has(id)) c.at += counted(c);
    else c.at += FIXED[id] ?? end; // (mqtt-packet refused an unknown one)
  }
  c.at = end;
}

/** The bytes a two-byte length and what it counts take at the cursor. */
function counted(c: Cursor): number {
  return 2 + ((c.b[c.at] << 8) | c.b[c.at + 1]);
}

/** Reads a variable byte integer at the cursor. */
function vbi(c: Cursor): number {
  let n = 0;
  for (let mul = 1, k = 0; k < 4 && c.at < c.b.length; k++, mul *= 128) {
    const byte = c.b[c.at++];
    n += (byte & 0x7f) * mul;
    if ((byte & 0x80) === 0) break;
  }
  return n;
}

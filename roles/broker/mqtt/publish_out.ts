/**
 * A delivery to an MQTT subscriber written out: the session's Sink writes
 * (session.ts) as PUBLISH packets in its connection's output, straight
 * from the message or from the bytes it waited as in a queue; and the
 * client's acknowledgements of them (PUBACK, PUBREC, PUBCOMP). What the
 * delivery carries is delivery.ts's; the packet's layout packets.ts's.
 */
import type { Message, Subscription } from "../subscriber.ts";
import { AWAY, NOT_PARKED, park } from "../parking.ts";
import { MqttPayload, payloadOf } from "./mapping.ts";
import {
  ackId,
  expiryAt,
  NO_EXTRAS,
  patchExpiry,
  patchId,
  PUBACK,
  publishQos,
  publishSize,
  PUBREC,
  PUBREL,
  readExpiry,
  writePublish,
} from "./packets.ts";
import {
  extrasOf,
  keptAbsolute,
  mqttTopic,
  NO_LOCAL,
  qosOf,
  retainOf,
  secondsLeft,
  SKIP_RETAINED,
  withSubscription,
} from "./delivery.ts";
import type { By } from "./delivery.ts";
import { carrierOf } from "./one_copy.ts";
import type { MqttConnection } from "./connection.ts";
import type { MqttSession } from "./session.ts";
import { pickBytes, refusedFrom } from "../group_delivery.ts";
import { written } from "./pace.ts";
import type { KeptForm } from "../kept.ts";
import { keptOf } from "./give_back.ts";

const EMPTY = new Uint8Array(0);

/** The bytes of a delivery, as the core's queues judge a message by them. */
export function deliverySize(version: number, msg: Message, sub: By): number {
  const topic = mqttTopic(msg.topic);
  if (topic === null) return 0;
  const v5 = version === 5;
  const extras = v5 ? withSubscription(extrasOf(msg, false) ?? NO_EXTRAS, sub) : NO_EXTRAS;
  return publishSize(topic, qosOf(msg, sub), v5, payloadOf(msg).length, extras);
}

/**
 * Writes a delivery into the connection's output (a Topic Alias for its
 * topic where the client takes them); QoS 1 and 2 take a packet id, and a
 * persistent session keeps the bytes for a redelivery.
 */
export function writeDelivery(
  session: MqttSession,
  conn: MqttConnection,
  msg: Message,
  sub: By,
): void {
  const topic = mqttTopic(msg.topic);
  if (topic === null) return void conn.front.undeliverable++;
  if (skips(session, msg, sub)) return;
  const v5 = session.version === 5;
  // Expired: sent to no one, MQTT 3.1.1 subscribers included (hostile review 37 K3).
  let extras = extrasOf(msg, false);
  if (extras === undefined) return void conn.front.expired++;
  extras = v5 ? withSubscription(extras, sub) : NO_EXTRAS;
  const qos = qosOf(msg, sub);
  const payload = payloadOf(msg);
  const full = extras;
  const alias = conn.aliases?.of(msg.topic) ?? 0;
  let name = topic;
  if (alias !== 0) {
    extras = { ...extras, alias: Math.abs(alias) };
    if (alias > 0) name = EMPTY; // The client knows the topic by its alias.
  }
  const size = publishSize(name, qos, v5, payload.length, extras);
  if (size > conn.clientMaxPacket) {
    // Passed over from now on for deliveries as large (value with its properties, and topic:
    // pickBytes), and this one goes to another member of its group (hostile review 38 L4: judged
    // by the value alone, a limit a few bytes under the packet kept its turns and lost them all;
    // 37 K6: by the payload alone, 1 byte with 100 KB of User Properties lost every turn).
    const bytes = pickBytes(msg);
    const over = size - conn.clientMaxPacket;
    if (bytes > 0) session.refusedBytes = Math.min(session.refusedBytes, refusedFrom(bytes, over));
    if (alias < 0) conn.aliases!.unsent(msg.topic);
    return tooLarge(conn);
  }
  const id = qos > 0 ? session.inflight.take() : 0;
  const out = conn.out.buffer;
  out.reserve(size);
  const at = out.length;
  const retain = retainOf(msg, sub);
  out.length = writePublish(out.bytes, at, name, payload, qos, retain, id, v5, extras);
  // Kept for a redelivery, or (a queue group's) for another member should the session end first.
  if (qos > 0 && (session.expiry > 0 || sub.group !== undefined)) {
    // Kept with its topic and no alias: a redelivery goes on another connection.
    const kept = alias === 0 ? out.bytes.slice(at, out.length) : new Uint8Array(
      publishSize(topic, qos, v5, payload.length, full),
    );
    if (alias !== 0) writePublish(kept, 0, topic, payload, qos, retain, id, v5, full);
    const aside = session.expiry === 0; // (for the group alone: see InflightWindow.keep)
    const by = groupOf(sub); // as published too: what goes to another member (give_back.ts)
    const bytes = v5 ? keptAbsolute(kept, extras.expiry) : kept;
    session.inflight.keep(id, bytes, by, aside, by === undefined ? undefined : keptOf(msg));
    session.journal?.sent(id, kept);
  }
  conn.queuedOut();
  written(conn.out, conn);
}

/**
 * Writes a delivery that waited in a queue ({@link MqttSession.encode}'s
 * bytes): MQTT 5's Message Expiry made the seconds left (expired: not
 * sent), and a packet id for QoS 1 and 2; `published`: what is kept of a
 * queue group's delivery (kept.ts).
 */
export function writeQueued(
  session: MqttSession,
  conn: MqttConnection,
  bytes: Uint8Array,
  hadRow = false,
  sub?: Subscription,
  published?: KeptForm,
): void {
  if (bytes.length === 0) return; // Counted when it was encoded, if it is a loss.
  if (bytes.length > conn.clientMaxPacket) return tooLarge(conn);
  const out = conn.out.buffer;
  out.reserve(bytes.length);
  const at = out.length;
  out.bytes.set(bytes, at);
  const sent = out.bytes.subarray(at, at + bytes.length);
  if (session.version === 5) {
    const e = expiryAt(sent);
    if (e >= 0) {
      const leftMs = readExpiry(sent, e) * 1000 - Date.now();
      // Expired while it waited: not sent (the bytes written are not counted in).
      if (leftMs <= 0) return void conn.front.expired++;
      patchExpiry(sent, e, Math.ceil(leftMs / 1000));
    }
  }
  out.length += bytes.length;
  // QoS 0: sent once its row's delete (if it had one) is committed (sent again after a kill otherwise).
  if (publishQos(bytes) === 0) {
    if (hadRow) session.journal?.sentOnce(conn.out);
  } else {
    const id = session.inflight.take();
    patchId(sent, id);
    if (session.expiry > 0 || sub?.group !== undefined) {
      const kept = session.version === 5 ? keptAbsolute(sent.slice(), -2, bytes) : sent.slice();
      const by = sub?.group === undefined ? undefined : sub;
      session.inflight.keep(id, kept, by, session.expiry === 0, by && published);
      session.journal?.sent(id, kept);
    }
  }
  conn.queuedOut();
}

/** A delivery in flight to send again: its PUBLISH, or none for a PUBREL (InflightWindow.resend). */
export interface Resend {
  readonly id: number;
  readonly bytes: Uint8Array | undefined;
}

/**
 * Sends again what was in flight when the client came back, as far as its
 * window goes (MQTT 5 §4.9); returns what must wait for acks.
 */
export function writeResends(
  session: MqttSession,
  conn: MqttConnection,
  resends: readonly Resend[],
): readonly Resend[] {
  let i = 0;
  // In flight on this connection: the entries not waiting here.
  while (i < resends.length && session.inflight.size - (resends.length - i) < conn.window) {
    const { id, bytes } = resends[i++];
    if (bytes === undefined) conn.ack(PUBREL, id);
    else if (bytes.length <= conn.clientMaxPacket) {
      conn.send(session.version === 5 ? secondsLeft(bytes) : bytes);
    } else if (session.inflight.done(id)) {
      // Past the Maximum Packet Size it came back with: given up, counted (hostile46b M-B2).
      conn.front.undeliverable++;
      session.journal?.acked(id);
    }
  }
  return resends.slice(i);
}

/** The queue group member a delivery goes by (kept with it in flight), if it is one. */
function groupOf(sub: By): Subscription | undefined {
  return sub.group === undefined ? undefined : sub as Subscription;
}

/** A delivery that MQTT says not to send: no-local (its own publish), retain handling. */
export function skips(session: MqttSession, msg: Message, sub: By): boolean {
  const flags = sub.data as number;
  if ((flags & SKIP_RETAINED) !== 0 && msg.retained) return true;
  if ((flags & NO_LOCAL) === 0) return false;
  const value = msg.value;
  return value instanceof MqttPayload && value.origin === session.serial;
}

/**
 * PUBACK or PUBCOMP: the id is free (one for nothing in flight is
 * ignored); PUBREC: PUBREL goes out.
 */
export function onDeliveryAck(
  c: MqttConnection,
  first: number,
  buf: Uint8Array,
  body: number,
  e: number,
): undefined {
  const type = first >> 4;
  const id = ackId(buf, body, e, c.v5);
  if (type !== PUBREC) {
    if ((first & 0x0f) !== 0 || id < 0) {
      return c.protocolError(`a bad ${type === PUBACK ? "PUBACK" : "PUBCOMP"}`);
    }
    c.session.acked(id);
    return;
  }
  if (first !== 0x50 || id < 0) return c.protocolError("a bad PUBREC");
  // MQTT 5: a reason code of 0x80 or more ends the exchange here, with no PUBREL.
  if (c.v5 && e - body > 2 && buf[body + 2] >= 0x80) {
    c.session.acked(id);
    return;
  }
  if (c.session.received(id)) c.ack(PUBREL, id);
  else if (c.v5) c.send(Uint8Array.of(0x62, 3, id >> 8, id & 0xff, 0x92));
  else c.ack(PUBREL, id);
}

/** A delivery past the client's Maximum Packet Size: not sent, counted. */
function tooLarge(conn: MqttConnection): void {
  conn.front.undeliverable++;
}

const NOTHING = new Uint8Array(0);

/** Where QoS 0 deliveries to away sessions are counted, and whether they are queued. */
interface AwayDrops {
  limits: { queueQos0?: boolean };
  awayQos0Dropped: number;
}

/**
 * A delivery to `session` as the PUBLISH packet it waits as (queued, kept
 * in flight, journaled), encoded into `scratch.buf` (grown as needed: the
 * caller copies it before the next); empty when it is not to be sent (no
 * MQTT topic, skipped by its subscription's options, expired; QoS 0 to an
 * away session without `--mqtt-queue-qos0`, as Mosquitto's default: 50
 * away sessions on `#` cut every QoS 0 flow 42 times and wrote 60 MB/s of
 * rows, hostile review 40a T9), counted.
 */
export function queuedRecord(
  session: MqttSession,
  front: AwayDrops & { undeliverable: number; expired: number },
  msg: Message,
  sub: By,
  scratch: { buf: Uint8Array },
): Uint8Array {
  if (session.kept && front.limits.queueQos0 !== true && qosOf(msg, sub) === 0) {
    front.awayQos0Dropped++;
    // Out of QoS 0 targets until its client is back (parking.ts): a merged copy's carrier, and
    // the next publish's carrier after it, until none of its subscriptions is left in them.
    const own = carrierOf(sub);
    if (own.parked === NOT_PARKED) {
      park(own, AWAY, { drained: Infinity, passes: () => session.socket !== undefined });
    }
    return NOTHING;
  }
  const topic = mqttTopic(msg.topic);
  if (topic === null) {
    front.undeliverable++;
    return NOTHING;
  }
  if (skips(session, msg, sub)) return NOTHING;
  const v5 = session.version === 5;
  let extras = v5 ? extrasOf(msg, true) : extrasOf(msg, false) && NO_EXTRAS; // (K3)
  if (extras === undefined) {
    front.expired++;
    return NOTHING;
  }
  if (v5) extras = withSubscription(extras, sub);
  const qos = qosOf(msg, sub);
  const payload = payloadOf(msg);
  const size = publishSize(topic, qos, v5, payload.length, extras);
  if (scratch.buf.length < size) scratch.buf = new Uint8Array(Math.max(size, 1024));
  writePublish(scratch.buf, 0, topic, payload, qos, retainOf(msg, sub), 0, v5, extras);
  return scratch.buf.subarray(0, size);
}

/**
 * What a session that ends owes its queue groups (MQTT 5 §4.8.2: a shared
 * subscription's message whose client's session ends unacknowledged goes
 * to another member): the deliveries its group subscriptions had in flight,
 * neither acknowledged nor (QoS 2) received, and what waited in their
 * queues, each as it was published (kept.ts), given back by give_back.ts.
 * One read back from disk after a restart has only the PUBLISH bytes kept
 * for it (publish_out.ts): what goes on is then what the member was sent,
 * its topic, payload, RETAIN flag, the publisher's MQTT 5 properties and
 * Message Expiry, at the QoS it went at.
 */
import type { Subscription } from "../subscriber.ts";
import type { BrokerCore } from "../core.ts";
import { type Loser, othersIn, type Owed } from "../give_back.ts";
import { inRecord, keep, Kept, type KeptForm, type KeptQueue } from "../kept.ts";
import type { Message } from "../subscriber.ts";

export type { KeptForm };
import { MqttPayload } from "./mapping.ts";
import { patchId, type Publish, publishQos, readPublish } from "./packets.ts";
import type { InflightWindow } from "./inflight.ts";
import type { ByteQueue } from "../byte_queue.ts";

const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * Takes what the session's group subscriptions owe their groups, before
 * they are cut: what is in flight, then what is queued (its PUBLISH
 * packets written for its version; its front end counts what cannot be
 * given). A subscription that is its group's last member has no one to
 * give it to: counted as its drops at once (in `sys.stats` `dropped` and
 * `dist_broker_dropped_total`, once it is cut).
 */
export function takeOwed(
  session: {
    readonly subs: Iterable<Subscription>;
    readonly inflight: InflightWindow;
    readonly version: number;
  },
  front: Loser & { readonly core: BrokerCore },
): Owed[] {
  const { subs, inflight } = session, core = front.core, v5 = session.version === 5, lost = front;
  const owed = new Map<Subscription, { packets: Uint8Array[]; kept: KeptForm[] }>();
  for (const { by, bytes, kept } of inflight.givenBack()) {
    const held = owed.get(by);
    if (held === undefined) owed.set(by, { packets: [bytes], kept: [kept] });
    else {
      held.packets.push(bytes);
      held.kept.push(kept);
    }
  }
  const queues = new Map<Subscription, { queue: ByteQueue; kept: KeptQueue | undefined }>();
  for (const sub of subs) {
    if (sub.group === undefined || sub.queued === 0) continue;
    queues.set(sub, sub.takeQueued());
    if (!owed.has(sub)) owed.set(sub, { packets: [], kept: [] });
  }
  const rebuild = (record: Uint8Array) => messageOf(record, v5);
  // (A member unsubscribed meanwhile still owes what it had in flight.)
  const out: Owed[] = [];
  for (const [sub, { packets, kept }] of owed) {
    const queued = queues.get(sub);
    // The group's last member: dropped as it is cut (one cut already: undeliverable, GiveBacks).
    if (!othersIn(sub, core)) {
      sub.dropped += packets.length + (queued?.queue.length ?? 0);
      queued?.queue.clear();
      queued?.kept?.clear();
    } else {
      out.push({
        sub,
        packets,
        kept,
        queue: queued?.queue,
        queueKept: queued?.kept,
        rebuild,
        lost,
      });
    }
  }
  return out;
}

/**
 * What an MQTT session keeps of a queue group's delivery beside its
 * PUBLISH: of an MQTT payload, the publisher's QoS and the give-backs so
 * far, the rest read back from the PUBLISH (the payload's bytes as they
 * came, its properties, expiry and RETAIN flag); else the delivery as
 * published (kept.ts).
 */
export function keptOf(msg: Message): KeptForm {
  return msg.value instanceof MqttPayload ? inRecord(msg) : keep(msg);
}

/**
 * The message a PUBLISH this broker wrote carries (publish_out.ts: its own
 * properties first, Message Expiry as the second it runs out at, then the
 * publisher's; `v5`: written for an MQTT 5 session, with properties);
 * undefined if it is not one. Its packet id is overwritten.
 */
export function messageOf(packet: Uint8Array, v5: boolean): Kept | undefined {
  let body = 1;
  while (body < packet.length && (packet[body] & 0x80) !== 0) body++;
  body++;
  // A queued one has no packet id yet (0, which a read refuses): any will do (the bytes are ours).
  if (publishQos(packet) > 0) patchId(packet, 1);
  const read = readPublish(packet[0], packet, body, packet.length, v5);
  if (typeof read === "string") return undefined;
  const payload = MqttPayload.borrow(read.payload.slice());
  payload.retain = read.retain;
  ownProperties(read, payload);
  return new Kept("/" + decoder.decode(read.topic), payload, false, read.qos);
}

/** Reads what this broker put in the packet's properties; the publisher's pass on. */
function ownProperties(read: Publish, payload: MqttPayload): void {
  const p = read.properties;
  let at = 0;
  for (;;) {
    if (p[at] === 0x02) {
      const seconds = ((p[at + 1] << 24) | (p[at + 2] << 16) | (p[at + 3] << 8) | p[at + 4]) >>> 0;
      payload.expiresAt = seconds * 1000;
      at += 5;
    } else if (p[at] === 0x0b) {
      at++;
      while (at < p.length && (p[at] & 0x80) !== 0) at++;
      at++;
    } else if (p[at] === 0x23) at += 3;
    else break;
  }
  if (at < p.length) payload.properties = p.slice(at);
}

/**
 * What a session that ends owes its queue groups (MQTT 5 §4.8.2: a shared
 * subscription's message whose client's session ends unacknowledged goes
 * to another member): the deliveries its group subscriptions had in flight,
 * neither acknowledged nor (QoS 2) received, and what waited in their
 * queues. Each goes to another member of its group, as the fan-out would
 * have given it; with none left, it is counted dropped (hostile46b M-B3:
 * lost, uncounted). Read back from the PUBLISH bytes kept for it
 * (publish_out.ts), so what goes on is what the member was sent: its
 * topic, payload, RETAIN flag, the publisher's MQTT 5 properties and
 * Message Expiry, at the QoS it went at.
 */
import { Message, type Subscription } from "../subscriber.ts";
import type { BrokerCore } from "../core.ts";
import { deliverToGroup } from "../group_delivery.ts";
import { groupCounts } from "../group.ts";
import { MqttPayload } from "./mapping.ts";
import { patchId, type Publish, publishQos, readPublish } from "./packets.ts";
import type { InflightWindow } from "./inflight.ts";

const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** What one group subscription of an ending session leaves: PUBLISH packets, oldest first. */
export interface Owed {
  readonly sub: Subscription;
  readonly packets: Uint8Array[];
}

/**
 * Takes what the session's group subscriptions owe their groups, before
 * they are cut: what is in flight (from `inflight`), then what is queued.
 * A subscription that is its group's last member has no one to give it to:
 * counted as its drops at once (in `sys.stats` `dropped` and
 * `dist_broker_dropped_total`, once it is cut).
 */
export function takeOwed(
  subs: Iterable<Subscription>,
  inflight: InflightWindow,
  core: BrokerCore,
): Owed[] {
  const owed = new Map<Subscription, Uint8Array[]>();
  for (const { by, bytes } of inflight.givenBack()) {
    const packets = owed.get(by);
    if (packets === undefined) owed.set(by, [bytes]);
    else packets.push(bytes);
  }
  for (const sub of subs) {
    if (sub.group === undefined || sub.queued === 0) continue;
    owed.set(sub, [...(owed.get(sub) ?? []), ...sub.takeQueued()]);
  }
  // (A member unsubscribed meanwhile still owes what it had in flight.)
  const out: Owed[] = [];
  for (const [sub, packets] of owed) {
    const group = core.subscriptions.groupOf(sub);
    const others = (group?.members.length ?? 0) - (group?.members.includes(sub) ? 1 : 0);
    // The group's last member: dropped as it is cut (one cut already: undeliverable, giveBack).
    if (others === 0 && !sub.cancelled) sub.dropped += packets.length;
    else out.push({ sub, packets });
  }
  return out;
}

/**
 * Gives what {@link takeOwed} took to the other members of each group,
 * once the session's subscriptions are cut (so none comes back to it);
 * counted in `queue_groups.given_back`. A group whose members all left
 * meanwhile: counted undeliverable.
 */
export function giveBack(
  owed: readonly Owed[],
  v5: boolean,
  core: BrokerCore,
  lost: { undeliverable: number },
): void {
  for (const { sub, packets } of owed) {
    for (const packet of packets) {
      const group = core.subscriptions.groupOf(sub);
      const msg = messageOf(packet, v5);
      if (group === undefined || group.members.length === 0 || msg === undefined) {
        lost.undeliverable++;
        continue;
      }
      groupCounts.givenBack++;
      deliverToGroup(group, msg);
    }
  }
}

/**
 * The message a PUBLISH this broker wrote carries (publish_out.ts: its own
 * properties first, Message Expiry as the second it runs out at, then the
 * publisher's; `v5`: written for an MQTT 5 session, with properties);
 * undefined if it is not one. Its packet id is overwritten.
 */
export function messageOf(packet: Uint8Array, v5: boolean): Message | undefined {
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
  const msg = new Message("/" + decoder.decode(read.topic), payload);
  msg.qos = read.qos;
  return msg;
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

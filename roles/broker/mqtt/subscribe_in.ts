/**
 * SUBSCRIBE and UNSUBSCRIBE from a client: parsed (with mqtt-packet: they
 * come once per subscription, not per message), done by the session that
 * holds the subscriptions, answered with SUBACK and UNSUBACK.
 */
import type { ISubscribePacket, ISubscription, IUnsubscribePacket } from "mqtt-packet";
import { DistError } from "../../../wire/mod.ts";
import type { Subscription } from "../subscriber.ts";
import { filterFromMqtt } from "./mapping.ts";
import { shareSource } from "../shares.ts";
import { NO_LOCAL, RETAIN_AS_PUBLISHED, SKIP_RETAINED, SUBSCRIPTION_ID } from "./delivery.ts";
import { parseSlow, withIds } from "./packets.ts";
import type { MqttConnection } from "./connection.ts";

/** Most subscriptions one session may hold (as a connection on the native port). */
const MAX_SUBSCRIPTIONS = 10_000;
/** The highest QoS of a delivery. */
const MAX_QOS_OUT = 2;

export function onSubscribe(c: MqttConnection, packet: Uint8Array): undefined {
  let p: ISubscribePacket;
  try {
    p = parseSlow(packet, c.version) as ISubscribePacket;
  } catch (err) {
    return c.protocolError(`a malformed SUBSCRIBE (${(err as Error).message})`);
  }
  if (p.subscriptions.length === 0) return c.protocolError("a SUBSCRIBE with no filter");
  const id = p.properties?.subscriptionIdentifier;
  if (Array.isArray(id) || id === 0) return c.protocolError("a bad Subscription Identifier");
  const { codes, added } = subscribe(c, p.subscriptions, id);
  c.send(withIds(0x90, p.messageId ?? 0, codes, c.v5));
  // The SUBACK is queued: retained values and live messages follow it.
  for (const sub of added) sub.release();
}

export function onUnsubscribe(c: MqttConnection, packet: Uint8Array): undefined {
  let p: IUnsubscribePacket;
  try {
    p = parseSlow(packet, c.version) as IUnsubscribePacket;
  } catch (err) {
    return c.protocolError(`a malformed UNSUBSCRIBE (${(err as Error).message})`);
  }
  const codes = c.session.unsubscribeFilters(p.unsubscriptions);
  c.send(withIds(0xb0, p.messageId ?? 0, c.v5 ? codes : [], c.v5));
}

/**
 * SUBSCRIBE's filters: each subscribed (the same filter again replaces
 * its subscription, and its retained values come again), or refused with
 * its SUBACK code. The new subscriptions are held: release them once the
 * SUBACK is queued.
 */
function subscribe(
  c: MqttConnection,
  filters: readonly ISubscription[],
  subscriptionId = 0,
): { codes: number[]; added: Subscription[] } {
  const { session, v5, identity, front } = c;
  const codes: number[] = [];
  const added: Subscription[] = [];
  const subs = session.subscriptions();
  for (const { topic, qos, nl, rap, rh } of filters) {
    try {
      const filter = filterFromMqtt(topic, v5);
      identity?.access?.check("broker.subscribe", { action: "subscribe", name: filter.pattern });
      const old = subs.get(topic);
      if (old === undefined && subs.size >= MAX_SUBSCRIPTIONS) {
        codes.push(v5 ? 0x97 : 0x80);
        continue;
      }
      if (old !== undefined) session.unsubscribe(old);
      const { sub } = front.core.subscribe(session, {
        topic: filter.pattern,
        group: filter.group,
        exact: filter.exact,
        // Away, a session's deliveries wait under max-pending: past it the oldest go, counted.
        policy: session.expiry > 0 ? "drop-oldest" : undefined,
        // One user's (or address's) share, whichever protocol it subscribes with.
        source: shareSource(c.source),
      });
      const granted = Math.min(qos, MAX_QOS_OUT);
      sub.data = (granted | (nl === true ? NO_LOCAL : 0) |
        (rap === true ? RETAIN_AS_PUBLISHED : 0) |
        (rh === 2 || (rh === 1 && old !== undefined) ? SKIP_RETAINED : 0)) +
        subscriptionId * SUBSCRIPTION_ID;
      subs.set(topic, sub);
      added.push(sub);
      codes.push(granted);
    } catch (err) {
      const e = DistError.from(err);
      front.warn(c, `SUBSCRIBE ${JSON.stringify(topic)} refused: ${e.message}`);
      // MQTT 5: 0x97 Quota exceeded for a limit (max-subscriptions, a share, max-memory).
      codes.push(
        !v5 ? 0x80 : e.code === "UNAUTHORIZED" ? 0x87 : e.code === "OVERLOADED" ? 0x97 : 0x8f,
      );
    }
  }
  if (added.length > 0) session.save();
  return { codes, added };
}

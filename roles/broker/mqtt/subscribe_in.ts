/**
 * SUBSCRIBE and UNSUBSCRIBE from a client: parsed (with mqtt-packet: they
 * come once per subscription, not per message), done by the session that
 * holds the subscriptions, answered with SUBACK and UNSUBACK.
 */
import type { ISubscribePacket, IUnsubscribePacket } from "mqtt-packet";
import { parseSlow, withIds } from "./packets.ts";
import type { MqttConnection } from "./connection.ts";

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
  const { codes, added } = c.session.subscribe(
    p.subscriptions,
    c.v5,
    c.identity,
    id,
  );
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

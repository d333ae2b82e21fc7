/**
 * The set-up of the `$share` give-back tests (stop 47's M-B3 and its
 * reviews): members of `$share/g/t/#` at QoS 1 that acknowledge nothing
 * themselves, a publisher of numbered QoS 1 messages to `t/x`, and what
 * each was given.
 */
import { Buffer } from "node:buffer";
import type { IPublishPacket } from "mqtt-packet";
import { BrokerClient } from "./broker.ts";
import { RawMqtt } from "./mqtt.ts";
import { waitFor } from "./raw.ts";

/** How a member connects: MQTT 5 unless told, a clean session, these properties. */
export interface MemberOptions {
  version?: number;
  /** Its window: deliveries in flight before the rest queue (Receive Maximum). */
  receiveMaximum?: number;
  /** Seconds its session is kept once it goes (0: it ends with the connection). */
  sessionExpiryInterval?: number;
}

/** A member of `$share/g/t/#` at QoS 1 that never acknowledges, subscribed. */
export async function member(
  port: number,
  id: string,
  { version = 5, receiveMaximum = 65535, sessionExpiryInterval = 0 }: MemberOptions = {},
): Promise<RawMqtt> {
  const c = await RawMqtt.connect(
    port,
    { clientId: id, clean: true, properties: { receiveMaximum, sessionExpiryInterval } },
    version,
  );
  await c.send(
    { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "$share/g/t/#", qos: 1 }] } as never,
    version,
  );
  await c.next("suback");
  return c;
}

/** The publishes `c` was given. */
export const publishes = (c: RawMqtt): IPublishPacket[] =>
  c.packets.filter((p) => p.cmd === "publish") as unknown as IPublishPacket[];

/**
 * Publishes `m<from>` … `m<to - 1>` to `t/x` at QoS 1 (MQTT 5), message ids
 * from `from + 1`, each with `properties(i)` if given.
 */
export async function publishNumbered(
  pub: RawMqtt,
  from: number,
  to: number,
  properties?: (i: number) => Record<string, unknown>,
): Promise<void> {
  for (let i = from; i < to; i++) {
    await pub.send({
      cmd: "publish",
      topic: "t/x",
      payload: Buffer.from(`m${i}`),
      qos: 1,
      messageId: i + 1,
      ...(properties ? { properties: properties(i) } : {}),
    } as never, 5);
  }
}

/** Waits until the broker has acknowledged `n` of `pub`'s publishes. */
export function pubacks(pub: RawMqtt, n: number): Promise<void> {
  return waitFor(
    () => pub.packets.filter((p) => p.cmd === "puback").length >= n,
    5000,
    "PUBACKs",
  );
}

/** Waits until `c` holds `n` deliveries (its full window). */
export function windowFull(
  c: RawMqtt,
  n: number,
  what = "the member's full window",
): Promise<void> {
  return waitFor(() => publishes(c).length >= n, 5000, what);
}

/** The broker's `sys.stats`, asked on its native port `port` as `name`. */
export async function nativeStats(port: number, name: string): Promise<Record<string, unknown>> {
  const native = await BrokerClient.connect(port, "json", name);
  try {
    return await native.stats();
  } finally {
    native.close();
  }
}

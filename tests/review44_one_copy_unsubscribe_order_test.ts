/**
 * review44 R4: after hostile44b H-B1's fix (89e39e3), an UNSUBSCRIBEd
 * carrier delivers what it queued before it is cut (Subscription
 * cancelWhenDrained), while the topic's next messages go by the other
 * matching filter the session holds, into that subscription's own queue.
 * The two queues take turns at the session's window (each re-arms behind
 * the other's waiter), so the topic's messages arrive out of order: the
 * order H-B2's fix (the oldest subscription carries) was made to keep.
 */
import assert from "node:assert/strict";
import type mqttPacket from "mqtt-packet";
import { mqttOpts as opts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";

const N = 20;

/** Payloads of the PUBLISHes `c` gets until none came for `quietMs`, each acknowledged. */
async function drain(c: RawMqtt, quietMs: number): Promise<string[]> {
  const out: string[] = [];
  let last = Date.now();
  while (Date.now() - last < quietMs) {
    const got = c.packets.filter((p) => p.cmd === "publish") as mqttPacket.IPublishPacket[];
    if (got.length === 0) {
      await sleep(20);
      continue;
    }
    c.packets.splice(0, c.packets.length, ...c.packets.filter((p) => p.cmd !== "publish"));
    last = Date.now();
    for (const p of got) {
      out.push(String(p.payload));
      if (p.qos > 0) await c.send({ cmd: "puback", messageId: p.messageId } as never, 5);
    }
  }
  return out;
}

Deno.test(
  "mqtt one copy: messages queued before an UNSUBSCRIBE of the carrier and those after it arrive in order",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const session = { clientId: "s", clean: false, properties: { sessionExpiryInterval: 300 } };
      const s = await RawMqtt.connect(b.mqttPort, session, 5);
      await s.send({
        cmd: "subscribe",
        messageId: 1,
        subscriptions: [{ topic: "oc/#", qos: 1 }, { topic: "oc/t", qos: 1 }],
      } as never, 5);
      await s.next("suback");
      await s.end();
      const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" }, 5);
      const publish = async (from: number, to: number) => {
        for (let i = from; i < to; i++) {
          await pub.send(
            { cmd: "publish", topic: "oc/t", payload: `m${i}`, qos: 1, messageId: i + 1 } as never,
            5,
          );
        }
        for (let i = from; i < to; i++) await pub.next("puback");
      };
      await publish(0, N);
      const back = await RawMqtt.connect(b.mqttPort, {
        ...session,
        properties: { sessionExpiryInterval: 300, receiveMaximum: 2 },
      }, 5);
      await back.send({ cmd: "unsubscribe", messageId: 2, unsubscriptions: ["oc/#"] } as never, 5);
      await back.next("unsuback");
      await publish(N, 2 * N); // while the old carrier's queue drains
      const got = (await drain(back, 1500)).map((p) => Number(p.slice(1)));
      assert.equal(new Set(got).size, 2 * N, `received ${got.length}`);
      assert.deepEqual(got, [...got].sort((x, y) => x - y), `order: ${got.join(" ")}`);
      await pub.end();
      await back.end();
    }),
);

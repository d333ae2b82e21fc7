/**
 * hostile review 44b H-B2: one copy per session (one_copy.ts) queues a QoS 1
 * publish matching several filters of a session in the queue of one of
 * them, the first in the topic's targets. A SUBSCRIBE of another matching
 * filter (`#`) while earlier publishes wait in the first carrier's queue
 * (the window is full) makes it the carrier of the later ones: two queues
 * drain in turn and one topic's messages arrive out of order (main:
 * m0 m1 m10 m2 m11 m3 …). MQTT 5 §4.6 / 3.1.1 §4.6: a Server MUST send
 * PUBLISHes of one topic and QoS to a subscriber in the order it received
 * them (every topic is an Ordered Topic). onecopy_order.py 10 '#': 8
 * inversions; with `oo/+` or `+/t` as the new filter: in order.
 */
import assert from "node:assert/strict";
import type mqttPacket from "mqtt-packet";
import { mqttOpts as opts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";

const N = 10;

Deno.test(
  "mqtt one copy: a filter subscribed while a topic's QoS 1 publishes wait keeps that topic's order",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const s = await RawMqtt.connect(b.mqttPort, {
        clientId: "s",
        properties: { receiveMaximum: 1 },
      }, 5);
      await s.send({
        cmd: "subscribe",
        messageId: 1,
        subscriptions: [{ topic: "oo/#", qos: 1 }, { topic: "oo/t", qos: 1 }],
      } as never, 5);
      await s.next("suback");
      const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" }, 5);
      const publish = async (from: number) => {
        for (let i = from; i < from + N; i++) {
          await pub.send(
            { cmd: "publish", topic: "oo/t", payload: `${i}`, qos: 1, messageId: i + 1 } as never,
            5,
          );
        }
        for (let i = 0; i < N; i++) await pub.next("puback");
      };
      // m0 fills the window of 1; m1–m9 wait.
      await publish(0);
      await s.send({
        cmd: "subscribe",
        messageId: 2,
        subscriptions: [{ topic: "#", qos: 1 }],
      } as never, 5);
      await s.next("suback");
      await publish(N);
      const order: number[] = [];
      const end = Date.now() + 10_000;
      while (new Set(order).size < 2 * N && Date.now() < end) {
        const got = s.packets.filter((p) => p.cmd === "publish") as mqttPacket.IPublishPacket[];
        s.packets.splice(0, s.packets.length, ...s.packets.filter((p) => p.cmd !== "publish"));
        for (const p of got) {
          order.push(Number(String(p.payload)));
          await s.send({ cmd: "puback", messageId: p.messageId } as never, 5);
        }
        if (got.length === 0) await sleep(10);
      }
      await sleep(200);
      // main: 0 1 10 2 11 3 12 4 13 5 14 6 15 7 16 8 17 9 18 19
      const firsts = order.filter((n, i) => order.indexOf(n) === i);
      assert.deepEqual(
        firsts,
        Array.from({ length: 2 * N }, (_, i) => i),
        `order ${order.join(" ")}`,
      );
      await pub.end();
      await s.end();
    }),
);

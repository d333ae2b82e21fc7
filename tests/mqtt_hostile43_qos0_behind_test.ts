/**
 * hostile review 43b B1: a connected persistent session's QoS 0 is dropped
 * at once while an earlier QoS 0 waits in its queue behind a QoS 1 that a
 * full in-flight window holds, though its socket is empty. QoS 0 queues
 * whenever the subscription is held or sends retained values (a SUBSCRIBE
 * over retained topics, a SUBSCRIBE of its filter again); from then until
 * the queue is empty every new QoS 0 is dropped. Mosquitto 2 sends QoS 0
 * whatever the window holds (MQTT 5 §4.9: Receive Maximum bounds QoS 1
 * and 2 only): q0_mix.py 100 retained, QoS 1 80/s, QoS 0 400/s for 10 s,
 * Receive Maximum 20, 10 ms of work per QoS 1: dist 3,739 of 4,000 QoS 0,
 * Mosquitto 4,000.
 */
import assert from "node:assert/strict";
import type mqttPacket from "mqtt-packet";
import { mqttOpts as opts, payloads, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { sleep, waitFor } from "./helpers/raw.ts";

Deno.test(
  "mqtt QoS 0 reaches a persistent subscriber whose socket is empty while QoS 1 waits for its window",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" });
      let id = 1;
      const publish = async (topic: string, payload: string, qos: number, retain = false) => {
        const messageId = qos > 0 ? id++ : undefined;
        await pub.send({ cmd: "publish", topic, payload, qos, retain, messageId } as never);
        if (qos > 0) await pub.next("puback");
      };
      // A retained value: a new subscription sends it first.
      await publish("r/x", "ret", 1, true);
      const s = await RawMqtt.connect(b.mqttPort, {
        clientId: "s",
        clean: false,
        properties: { sessionExpiryInterval: 3600, receiveMaximum: 1 },
      }, 5);
      await s.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "#", qos: 1 }] }, 5);
      await s.next("suback");
      await waitFor(() => payloads(s).length === 1, 3000, "the retained value");
      // Its window (1) is full with "ret": two QoS 1 and some QoS 0 wait behind it.
      await publish("t/x", "one", 1);
      await publish("t/x", "two", 1);
      for (let i = 0; i < 3; i++) await publish("z/x", `zero ${i}`, 0);
      await sleep(200);
      const ret = s.packets.find((p) => p.cmd === "publish") as mqttPacket.IPublishPacket;
      s.packets.length = 0;
      // PUBACK of "ret": "one" fills the window; "two" waits, and the QoS 0 behind it.
      await s.send({ cmd: "puback", messageId: ret.messageId } as never, 5);
      await waitFor(() => payloads(s).includes("one"), 3000, "one");
      // The socket is empty: QoS 0 published now has room (main: dropped at once, never sent).
      for (let i = 0; i < 3; i++) await publish("z/x", `later ${i}`, 0);
      await sleep(300);
      // Then every QoS 1 is acknowledged, so whatever waits goes.
      for (let round = 0; round < 3; round++) {
        for (const p of s.packets.filter((p) => p.cmd === "publish")) {
          const m = p as mqttPacket.IPublishPacket;
          if (m.qos > 0 && !(m as { acked?: boolean }).acked) {
            (m as { acked?: boolean }).acked = true;
            await s.send({ cmd: "puback", messageId: m.messageId } as never, 5);
          }
        }
        await sleep(200);
      }
      const got = payloads(s);
      assert.deepEqual(
        got.filter((p) => p.startsWith("later")),
        ["later 0", "later 1", "later 2"],
        `QoS 0 published while the subscriber's socket was empty (got ${JSON.stringify(got)})`,
      );
      assert(got.includes("two") && got.includes("zero 2"), `everything else: ${got}`);
      await pub.end();
      await s.end();
    }),
);

/**
 * hostile review 43b B5: a SUBSCRIBE of a filter the session holds with
 * Retain Handling 1 or 2 (change its options, no retained values again)
 * while the first SUBSCRIBE's retained values are still going out stops
 * them: Retain Handling is kept as a flag of the subscription
 * (SKIP_RETAINED) and read when each retained value is written, so the
 * first SUBSCRIBE's cursor is filtered too. resub_snapshot.py 2,000 retained,
 * Receive Maximum 100: dist 100 of 2,000, Mosquitto 2 (max_queued_messages
 * 100000) 2,000 of 2,000. MQTT 5 §3.8.4: each SUBSCRIBE is handled in turn;
 * the second's Retain Handling is about the second's retained values.
 */
import assert from "node:assert/strict";
import type mqttPacket from "mqtt-packet";
import { mqttOpts as opts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";

const RETAINED = 300;

for (const rh of [1, 2]) {
  Deno.test(
    `mqtt a SUBSCRIBE again with Retain Handling ${rh} does not stop the retained values the first one is owed`,
    opts,
    () =>
      withMqttBroker(async (b) => {
        const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" });
        for (let i = 0; i < RETAINED; i++) {
          await pub.send(
            { cmd: "publish", topic: `r/${i}`, payload: `v${i}`, qos: 0, retain: true } as never,
          );
        }
        await sleep(300);
        const s = await RawMqtt.connect(b.mqttPort, {
          clientId: "s",
          properties: { receiveMaximum: 10 },
        }, 5);
        await s.send({
          cmd: "subscribe",
          messageId: 1,
          subscriptions: [{ topic: "r/#", qos: 1, rh: 0 }],
        } as never, 5);
        await s.next("suback");
        // Its options again (QoS 1 as before), no retained values for this one.
        await s.send({
          cmd: "subscribe",
          messageId: 2,
          subscriptions: [{ topic: "r/#", qos: 1, rh }],
        } as never, 5);
        const topics = new Set<string>();
        let last = Date.now();
        while (Date.now() - last < 1500 && topics.size < RETAINED) {
          const got = s.packets.filter((p) => p.cmd === "publish") as mqttPacket.IPublishPacket[];
          if (got.length === 0) {
            await sleep(20);
            continue;
          }
          s.packets.splice(0, s.packets.length, ...s.packets.filter((p) => p.cmd !== "publish"));
          last = Date.now();
          for (const p of got) {
            topics.add(p.topic);
            if (p.qos > 0) await s.send({ cmd: "puback", messageId: p.messageId } as never, 5);
          }
        }
        // main: 10 (the first window) of 300.
        assert.equal(topics.size, RETAINED, "retained values of the first SUBSCRIBE");
        await pub.end();
        await s.end();
      }),
  );
}

/**
 * hostile review 46b M-B1 (medium): a delivery past the subscriber's MQTT 5
 * Maximum Packet Size is dropped, but the broker's Topic Alias for its topic
 * was taken first (publish_out.ts writeDelivery: `aliases.of` before the
 * size check). The next delivery of that topic goes as the alias alone, which
 * the client never saw set: MQTT.js ("Received unregistered Topic Alias") and
 * mosquitto_sub ("A network protocol error") drop the connection, and do so
 * again at every message of the topic (MQTT 5 §3.3.2.3.4: a Protocol Error).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { IPublishPacket } from "mqtt-packet";
import { mqttOpts as opts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { waitFor } from "./helpers/raw.ts";

Deno.test(
  "mqtt 5: a delivery dropped for Maximum Packet Size leaves no Topic Alias the client never got",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const sub = await RawMqtt.connect(b.mqttPort, {
        clientId: "small-device",
        protocolVersion: 5,
        properties: { topicAliasMaximum: 10, maximumPacketSize: 200 },
      }, 5);
      const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub", protocolVersion: 5 }, 5);
      try {
        await sub.send(
          { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t/#", qos: 0 }] } as never,
          5,
        );
        await sub.next("suback");
        const publish = (topic: string, payload: Buffer) =>
          pub.send({ cmd: "publish", topic, payload, qos: 0 } as never, 5);
        await publish("t/a", Buffer.alloc(500, 65)); // past the subscriber's 200 bytes: dropped
        for (let i = 0; i < 3; i++) await publish("t/a", Buffer.from(`small ${i}`));
        await publish("t/b", Buffer.from("other"));
        const got = () => sub.packets.filter((p) => p.cmd === "publish") as IPublishPacket[];
        await waitFor(() => got().length >= 4, 5000, "4 deliveries");
        // As a client reads them: an alias is usable only once a PUBLISH set it with its topic.
        const known = new Map<number, string>();
        const topics: string[] = [];
        for (const p of got()) {
          const alias = p.properties?.topicAlias;
          if (p.topic !== "") {
            if (alias !== undefined) known.set(alias, p.topic);
            topics.push(p.topic);
          } else {
            assert.ok(
              alias !== undefined && known.has(alias),
              `PUBLISH with Topic Alias ${alias} that was never set (the client drops the connection)`,
            );
            topics.push(known.get(alias!)!);
          }
        }
        assert.deepEqual(topics, ["t/a", "t/a", "t/a", "t/b"]);
        assert.equal(
          got().map((p) => String(p.payload)).join(","),
          "small 0,small 1,small 2,other",
        );
      } finally {
        await sub.end();
        await pub.end();
      }
    }),
);

/**
 * hostile review 46b M-B2 (medium): what a persistent session had in flight
 * is sent again when its client comes back (session.ts #sendResends), with
 * no look at the Maximum Packet Size of the CONNECT it came back with. A
 * client that returns with a smaller limit than the delivery (a device that
 * states the memory it has now) gets a packet past it (MQTT-3.1.2-25: the
 * Server MUST NOT send it), drops the connection (MQTT.js closes at once),
 * and is sent it again at every return: the session is stuck for good, its
 * queued messages behind it. writeDelivery and writeQueued do check the limit.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { IPublishPacket } from "mqtt-packet";
import { mqttOpts as opts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { sleep, waitFor } from "./helpers/raw.ts";

Deno.test(
  "mqtt 5: a delivery sent again after a reconnect respects the client's new Maximum Packet Size",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const connect = (maximumPacketSize: number) =>
        RawMqtt.connect(b.mqttPort, {
          clientId: "device",
          clean: false,
          protocolVersion: 5,
          properties: { sessionExpiryInterval: 600, maximumPacketSize },
        }, 5);
      const first = await connect(100_000);
      const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub", protocolVersion: 5 }, 5);
      let back: RawMqtt | undefined;
      try {
        await first.send(
          { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t/#", qos: 1 }] } as never,
          5,
        );
        await first.next("suback");
        await pub.send(
          {
            cmd: "publish",
            topic: "t/big",
            payload: Buffer.alloc(5000, 66),
            qos: 1,
            messageId: 1,
          } as never,
          5,
        );
        await first.next("publish"); // in flight, never acknowledged
        await first.end();
        await sleep(200);
        back = await connect(1000);
        await pub.send(
          {
            cmd: "publish",
            topic: "t/small",
            payload: Buffer.from("after"),
            qos: 1,
            messageId: 2,
          } as never,
          5,
        );
        await waitFor(
          () => back!.packets.some((p) => p.cmd === "publish" && p.topic === "t/small"),
          5000,
          "the small message",
        );
        await sleep(200);
        const sizes = back.packets.filter((p) => p.cmd === "publish")
          .map((p) => ({ topic: (p as IPublishPacket).topic, bytes: p.length! + 2 }));
        const over = sizes.filter((s) => s.bytes > 1000);
        assert.deepEqual(over, [], `packets past the client's Maximum Packet Size of 1000`);
        const stats = await b.mqttStats();
        assert.ok(stats.undeliverable >= 1, "the delivery too large for the client is counted");
      } finally {
        await first.end();
        await back?.end();
        await pub.end();
      }
    }),
);

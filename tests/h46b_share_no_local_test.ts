/**
 * hostile review 46b M-B5 (medium): an MQTT 5 shared subscription with No
 * Local set is granted (MQTT-3.8.3-4 makes it a Protocol Error), and then
 * the group picks the publisher's own member for about half of that
 * client's publishes, whose No Local skips them: PUBACKed, and delivered to
 * no member, counted nowhere (publish_out.ts `skips` runs after the group's
 * pick). Mosquitto 2.0.11 ignores No Local there: nothing is lost. Either
 * refusing the SUBSCRIBE (DISCONNECT 0x82) or giving the message to another
 * member (or to the publisher) keeps every acknowledged message.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { mqttOpts as opts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { sleep, waitFor } from "./helpers/raw.ts";

Deno.test(
  "mqtt 5: No Local on a shared subscription loses none of the publisher's acknowledged messages",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const worker = await RawMqtt.connect(
        b.mqttPort,
        { clientId: "worker", protocolVersion: 5 },
        5,
      );
      const other = await RawMqtt.connect(b.mqttPort, { clientId: "other", protocolVersion: 5 }, 5);
      try {
        await worker.send(
          {
            cmd: "subscribe",
            messageId: 1,
            subscriptions: [{ topic: "$share/g/t/#", qos: 1, nl: true }],
          } as never,
          5,
        );
        await waitFor(
          () => worker.closed || worker.packets.some((p) => p.cmd === "suback"),
          5000,
          "a SUBACK or the connection closed",
        );
        if (worker.closed) return; // refused as MQTT says: nothing can be lost
        await other.send(
          {
            cmd: "subscribe",
            messageId: 1,
            subscriptions: [{ topic: "$share/g/t/#", qos: 1 }],
          } as never,
          5,
        );
        await other.next("suback");
        const n = 100;
        for (let i = 0; i < n; i++) {
          await worker.send(
            {
              cmd: "publish",
              topic: "t/x",
              payload: Buffer.from(`m${i}`),
              qos: 1,
              messageId: i + 1,
            } as never,
            5,
          );
        }
        await waitFor(
          () => worker.packets.filter((p) => p.cmd === "puback").length >= n,
          5000,
          `${n} PUBACKs`,
        );
        await sleep(500);
        const got = (c: RawMqtt) => c.packets.filter((p) => p.cmd === "publish").length;
        assert.equal(
          got(worker) + got(other),
          n,
          `acknowledged messages delivered to the group: worker ${got(worker)}, other ${
            got(other)
          } of ${n}`,
        );
      } finally {
        await worker.end();
        await other.end();
      }
    }),
);

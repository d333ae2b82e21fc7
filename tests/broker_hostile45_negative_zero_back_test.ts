/**
 * hostile review 45b K-B3 (low): hostile44b H-B5's other way. A MessagePack
 * publisher's -0 (float64 0xcb 80 00 …, as the encoder writes it since
 * 7646128) reaches JSON subscribers and MQTT subscribers as 0: the broker's
 * MessagePack-to-JSON conversion (wire/msgpack_to_json.ts writeNumber)
 * writes String(-0), which is "0". JSON has `-0` (JSON.parse reads it as
 * -0, and an MQTT publisher's `-0` reaches JSON subscribers so). Issue 17:
 * every shape equal in value, JSON ↔ MessagePack.
 */
import assert from "node:assert/strict";
import { BrokerClient } from "./helpers/broker.ts";
import { mqttOpts as opts, payloads, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { waitFor } from "./helpers/raw.ts";

Deno.test(
  "broker: a MessagePack publisher's -0 reaches JSON and MQTT subscribers as -0",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const json = await BrokerClient.connect(b.port, "json", "j");
      await json.subscribe("/z");
      const sub = await RawMqtt.connect(b.mqttPort, { clientId: "sub" }, 5);
      await sub.send(
        { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "z/#", qos: 0 }] } as never,
        5,
      );
      await sub.next("suback");
      const msgpack = await BrokerClient.connect(b.port, "msgpack", "m");
      msgpack.publish("/z/a", -0, false);
      msgpack.publish("/z/a", [-0], false);
      await waitFor(
        () => json.deliveries.length >= 2 && payloads(sub).length >= 2,
        5000,
        "2 deliveries each",
      );
      const zero = (v: unknown) => Array.isArray(v) ? v[0] : v;
      const got = json.deliveries.map((d) =>
        Object.is(zero(d.value), -0) ? "-0" : String(zero(d.value))
      );
      const mqtt = payloads(sub);
      // main: JSON subscriber 0,0; MQTT payloads 0 and [0].
      assert.deepEqual({ json: got, mqtt }, { json: ["-0", "-0"], mqtt: ["-0", "[-0]"] });
      json.close();
      msgpack.close();
      await sub.end();
    }),
);

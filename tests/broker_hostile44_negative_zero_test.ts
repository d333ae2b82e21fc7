/**
 * hostile review 44b H-B5 (low): -0 arrives as -0 to JSON subscribers and
 * as 0 to MessagePack ones. An MQTT payload `-0` (or `-0.0`, `[-0]`) is JSON
 * text: JSON subscribers get it as it came (JSON.parse: -0), MessagePack
 * subscribers get it converted (json_to_msgpack.ts writeNumber: a safe
 * integer, written as positive fixint 0). values_probe.ts: `-0 | json -0 |
 * msgpack 0`. Issue 17: every shape arrives equal in value, JSON ↔
 * MessagePack; -0 is a float64 MessagePack can carry (0xcb 80 00 …).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { BrokerClient } from "./helpers/broker.ts";
import { mqttOpts as opts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { waitFor } from "./helpers/raw.ts";

Deno.test(
  "broker: an MQTT payload -0 reaches JSON and MessagePack subscribers as the same value",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const json = await BrokerClient.connect(b.port, "json", "j");
      const msgpack = await BrokerClient.connect(b.port, "msgpack", "m");
      await json.subscribe("/z");
      await msgpack.subscribe("/z");
      const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" }, 5);
      const payloads = ["-0", "-0.0", "[-0]"];
      for (const p of payloads) {
        await pub.send(
          { cmd: "publish", topic: "z/a", payload: Buffer.from(p), qos: 0 } as never,
          5,
        );
      }
      await waitFor(
        () => json.deliveries.length >= 3 && msgpack.deliveries.length >= 3,
        5000,
        "3 deliveries each",
      );
      for (let i = 0; i < payloads.length; i++) {
        const [j, m] = [json.deliveries[i].value, msgpack.deliveries[i].value];
        const zero = (v: unknown) => Array.isArray(v) ? v[0] : v;
        // main: JSON -0, MessagePack 0.
        assert.ok(
          Object.is(zero(j), -0),
          `${payloads[i]}: JSON subscriber ${Object.is(zero(j), -0) ? "-0" : zero(j)}`,
        );
        assert.ok(
          Object.is(zero(m), -0),
          `${payloads[i]}: MessagePack subscriber got ${
            Object.is(zero(m), -0) ? "-0" : zero(m)
          }, JSON -0`,
        );
      }
      json.close();
      msgpack.close();
      await pub.end();
    }),
);

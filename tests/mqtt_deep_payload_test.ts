/**
 * An MQTT payload that is JSON nested deeper than a delivery may be (the
 * native side refuses such publishes: 64 levels) reaches every subscriber
 * as text, whatever its codec, live and retained (hostile review 36 J8: it
 * was taken as a JSON value, its MessagePack encoding threw inside the
 * fan-out, so the subscribers after the first MessagePack one got nothing,
 * the publisher's connection was closed, and a late MessagePack subscriber
 * of the retained value was dropped each time it subscribed).
 */
import assert from "node:assert/strict";
import { BrokerClient } from "./helpers/broker.ts";
import { mqttClient, mqttOpts, withMqttBroker } from "./helpers/mqtt.ts";
import { within } from "./helpers/raw.ts";

const DEEP = "[".repeat(70) + "1" + "]".repeat(70);

Deno.test(
  "mqtt: a payload of JSON nested 70 deep reaches JSON and MessagePack subscribers as its text, live and retained",
  mqttOpts,
  async () => {
    await withMqttBroker(async (b) => {
      const a = await BrokerClient.connect(b.port, "json", "a");
      const m = await BrokerClient.connect(b.port, "msgpack", "m");
      const z = await BrokerClient.connect(b.port, "json", "z");
      const pub = await mqttClient(b.mqttPort);
      let late: BrokerClient | undefined;
      try {
        for (const c of [a, m, z]) await c.subscribe("/t");
        // Each acknowledged (on main the deep one closed the publisher's connection: no PUBACK).
        await within(pub.publishAsync("t/x", "before", { qos: 1 }), 10_000, "PUBACK");
        await within(pub.publishAsync("t/x", DEEP, { qos: 1, retain: true }), 10_000, "PUBACK");
        await within(pub.publishAsync("t/x", "after", { qos: 1 }), 10_000, "PUBACK");
        for (const c of [a, m, z]) {
          const got = (await c.received(3)).map((d) => d.value);
          assert.deepEqual(got, ["before", DEEP, "after"]);
        }
        assert.ok(pub.connected, "the publisher is still connected");
        // A late MessagePack subscriber gets the retained value, and its connection stays.
        late = await BrokerClient.connect(b.port, "msgpack", "late");
        await late.subscribe("/t");
        assert.deepEqual((await late.received(1)).map((d) => d.value), [DEEP]);
        assert.equal((await late.stats()).role, "broker");
      } finally {
        await pub.endAsync(true);
        for (const c of [a, m, z, late]) c?.close();
      }
    });
  },
);

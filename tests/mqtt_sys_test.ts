/**
 * `$SYS/broker/…` statistics on the MQTT port: retained, refreshed every
 * --mqtt-sys-interval when they change, reached by `$SYS/#` and never by
 * `#` (MQTT) or `/` (native).
 */
import assert from "node:assert/strict";
import { atLeast, mqttClient, mqttOpts as opts, record, withMqttBroker } from "./helpers/mqtt.ts";
import { sleep, waitFor } from "./helpers/raw.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test({
  name: "mqtt $SYS: broker statistics, retained and refreshed; # does not reach them",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const sys = await mqttClient(b.mqttPort);
      const all = await mqttClient(b.mqttPort);
      try {
        const got = record(sys);
        const everything = record(all);
        await all.subscribeAsync("#");
        await b.native.subscribe("/");
        await sys.subscribeAsync("$SYS/#");
        await atLeast(got, 10);
        const latest = (name: string) =>
          got.filter((m) => m.topic === `$SYS/broker/${name}`).map((m) => text(m.payload)).at(-1);
        assert.match(latest("version")!, /^dist \d+\.\d+\.\d+/);
        assert.match(latest("uptime")!, /^\d+ seconds$/);
        // Retained at subscribe (version never changes, so it comes only then; an uptime tick
        // that falls while the test subscribes arrives live, not retained).
        const versions = got.filter((m) => m.topic === "$SYS/broker/version");
        assert.ok(versions.length > 0 && versions.every((m) => m.retain), "retained at subscribe");
        // clients/connected follows the count within an interval or two, up and down.
        const connected = (n: number) =>
          waitFor(() => Number(latest("clients/connected")) === n, 2000, `${n} connected`);
        await connected(2);
        const third = await mqttClient(b.mqttPort);
        await connected(3);
        await third.endAsync();
        await connected(2);
        // `#` and a native `/` get ordinary topics, never $SYS ones.
        await all.publishAsync("plain", "x", { qos: 1 });
        await atLeast(everything, 1);
        await sleep(300);
        assert.deepEqual(everything.map((m) => m.topic), ["plain"]);
        const native = (await b.native.received(1)).map((d) => d.topic);
        assert.deepEqual(native, ["/plain"]);
      } finally {
        await sys.endAsync();
        await all.endAsync();
      }
    }, { mqttSysInterval: 100 }),
});

Deno.test({
  name: "mqtt $SYS: clients cannot publish there (native and MQTT), the broker's values stand",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      // Found by a hostile-peer review: a forged, retained $SYS/broker/version stood until restart.
      for (const topic of ["/$SYS/broker/version", "$SYS/broker/version", "/$SYS"]) {
        await assert.rejects(b.native.confirm(topic, "forged", true), (e: Error) => {
          assert.match(e.message, /\/\$SYS.*not for clients/);
          return (e as { code?: string }).code === "UNAUTHORIZED";
        });
      }
      // Elsewhere a $ is an ordinary character.
      await b.native.confirm("/$other/x", 1, false);
      const v5 = await mqttClient(b.mqttPort, { protocolVersion: 5 });
      try {
        await assert.rejects(
          v5.publishAsync("$SYS/broker/version", "forged", { qos: 1, retain: true }),
        );
      } finally {
        v5.end(true);
      }
      const sys = await mqttClient(b.mqttPort);
      try {
        const got = record(sys);
        await sys.subscribeAsync("$SYS/broker/version");
        await atLeast(got, 1);
        assert.match(text(got[0].payload), /^dist \d+\.\d+\.\d+/);
      } finally {
        await sys.endAsync();
      }
    }, { mqttSysInterval: 100 }),
});

/**
 * hostile review 46b M-B6: in a queue group shared by native and MQTT
 * members, a native topic with no MQTT name (`/t/a#b`) picked for an MQTT
 * member was undeliverable (counted), about one publish in two, while a
 * native member could have taken it. Now a member that has a name for the
 * topic takes it; with none, it is counted undeliverable as before.
 */
import assert from "node:assert/strict";
import { BrokerClient } from "./helpers/broker.ts";
import { mqttOpts as opts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { sleep, waitFor } from "./helpers/raw.ts";

async function mqttMember(port: number): Promise<RawMqtt> {
  const c = await RawMqtt.connect(port, { clientId: `m-${crypto.randomUUID()}` }, 5);
  await c.send(
    { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "$share/g/t/#", qos: 0 }] } as never,
    5,
  );
  await c.next("suback");
  return c;
}

const publishes = (c: RawMqtt) => c.packets.filter((p) => p.cmd === "publish").length;

Deno.test(
  "mqtt: a group's topic with no MQTT name goes to a native member, not lost at an MQTT one",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const ms = [await mqttMember(b.mqttPort), await mqttMember(b.mqttPort)];
      const native = await BrokerClient.connect(b.port, "json", "native-member");
      const pub = await BrokerClient.connect(b.port, "json", "pub");
      try {
        await native.subscribe("/t", { group: "g" });
        const n = 30;
        for (let i = 0; i < n; i++) await pub.confirm("/t/a#b", i, false);
        await native.received(n);
        // Named topics are still shared among all three.
        for (let i = 0; i < n; i++) await pub.confirm("/t/x", i, false);
        await waitFor(
          () => native.deliveries.length + publishes(ms[0]) + publishes(ms[1]) >= 2 * n,
          5000,
          "the named topic's deliveries",
        );
        await sleep(100);
        const unnamed = native.deliveries.filter((d) => d.topic === "/t/a#b").map((d) => d.value);
        assert.deepEqual(unnamed, [...Array(n).keys()], "every unnamed one to the native member");
        assert.ok(
          publishes(ms[0]) > 0 && publishes(ms[1]) > 0,
          "the MQTT members still take turns",
        );
        assert.equal((await b.mqttStats()).undeliverable, 0, "none undeliverable");
      } finally {
        native.close();
        pub.close();
        for (const m of ms) await m.end();
      }
    }),
);

Deno.test(
  "mqtt: a group's topic with no MQTT name and only MQTT members is counted undeliverable",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const m = await mqttMember(b.mqttPort);
      const other = await mqttMember(b.mqttPort);
      const pub = await BrokerClient.connect(b.port, "json", "pub");
      try {
        const n = 5;
        for (let i = 0; i < n; i++) await pub.confirm("/t/a#b", i, false);
        let undeliverable = 0;
        for (let i = 0; i < 100 && undeliverable < n; i++) {
          await sleep(20);
          undeliverable = (await b.mqttStats()).undeliverable;
        }
        assert.equal(undeliverable, n, "each counted once");
        assert.equal(publishes(m) + publishes(other), 0);
      } finally {
        pub.close();
        await m.end();
        await other.end();
      }
    }),
);

/**
 * What a queue group member leaves without taking goes to another member
 * as it was published (stop-47 Limits, "Open from the stop-47 reviews"):
 *
 * - rebuilt from the MQTT packet the first member was sent, a native member
 *   got the string "123" back as the number 123 (an MQTT payload has no
 *   type), and an MQTT member subscribed at QoS 2 got it at the first
 *   member's QoS 1. Now each gets the value as published, at the QoS of its
 *   own subscription (and the publisher's).
 * - a native member's queue was counted dropped when it left: now it goes
 *   to the other members, as an MQTT member's does.
 * - a delivery given back by members that keep leaving went round for
 *   ever: now it is given back 3 times at most, then counted dropped
 *   (`queue_groups.given_up`).
 */
import assert from "node:assert/strict";
import type { IPublishPacket } from "mqtt-packet";
import { BrokerClient, rawSubscriber, statsUntil, withBroker } from "./helpers/broker.ts";
import { mqttOpts as opts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { closeQuietly, waitFor } from "./helpers/raw.ts";

/** An MQTT 5 member of `$share/g/t/#` at `qos` that never acknowledges. */
async function mqttMember(port: number, id: string, qos: 0 | 1 | 2): Promise<RawMqtt> {
  const c = await RawMqtt.connect(port, { clientId: id, clean: true }, 5);
  await c.send(
    { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "$share/g/t/#", qos }] } as never,
    5,
  );
  await c.next("suback");
  return c;
}

/** `queue_groups.given_back` (counted per process: the tests here share it). */
async function givenBack(c: BrokerClient): Promise<number> {
  return ((await c.stats()).queue_groups as Record<string, number>).given_back;
}

const publishes = (c: RawMqtt) =>
  c.packets.filter((p) => p.cmd === "publish") as unknown as IPublishPacket[];

/** Values whose JSON text as an MQTT payload reads back as another value. */
const VALUES = ["123", "true", "null", "[1,2]", '{"a":1}', "-0", 7, "text"];

Deno.test(
  "queue group: what an MQTT member leaves unacknowledged reaches a native member as published",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const quitter = await mqttMember(b.mqttPort, "quitter", 1);
      const pub = await BrokerClient.connect(b.port, "json", "pub");
      const native = await BrokerClient.connect(b.port, "json", "native-member");
      try {
        const givenBefore = await givenBack(pub);
        for (const v of VALUES) await pub.confirm("/t/x", v, false);
        await waitFor(() => publishes(quitter).length === VALUES.length, 5000, "the quitter's");
        await native.subscribe("/t", { group: "g" });
        await quitter.end(); // none acknowledged
        const got = await native.received(VALUES.length);
        // Before: [123, true, null, [1, 2], {a: 1}, -0 (as 0), 7, "text"].
        assert.deepEqual(got.map((d) => d.value), VALUES);
        assert.equal(await givenBack(pub) - givenBefore, VALUES.length);
      } finally {
        await quitter.end();
        native.close();
        pub.close();
      }
    }),
);

for (const publisher of ["native", "MQTT"] as const) {
  Deno.test(
    `queue group: what an MQTT member at QoS 1 leaves goes to a member at QoS 2 at QoS 2 (${
      publisher === "native" ? "a native" : "an MQTT"
    } publish)`,
    opts,
    () =>
      withMqttBroker(async (b) => {
        const quitter = await mqttMember(b.mqttPort, "quitter", 1);
        const pub = await BrokerClient.connect(b.port, "json", "pub");
        const mqttPub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" }, 5);
        let stayer: RawMqtt | undefined;
        try {
          for (let i = 0; i < 3; i++) {
            if (publisher === "native") await pub.confirm("/t/x", `m${i}`, false); // (QoS 2)
            else {
              await mqttPub.send(
                {
                  cmd: "publish",
                  topic: "t/x",
                  payload: `m${i}`,
                  qos: 2,
                  messageId: i + 1,
                } as never,
                5,
              );
            }
          }
          await waitFor(() => publishes(quitter).length === 3, 5000, "the quitter's");
          assert.deepEqual(publishes(quitter).map((p) => p.qos), [1, 1, 1]);
          stayer = await mqttMember(b.mqttPort, "stayer", 2);
          await quitter.end();
          await waitFor(() => publishes(stayer!).length === 3, 5000, "the stayer's");
          // Before: at the quitter's QoS 1, rebuilt from its packets.
          assert.deepEqual(publishes(stayer).map((p) => [String(p.payload), p.qos]), [
            ["m0", 2],
            ["m1", 2],
            ["m2", 2],
          ]);
        } finally {
          await quitter.end();
          await stayer?.end();
          await mqttPub.end();
          pub.close();
        }
      }),
  );
}

Deno.test("queue group: what a native member had queued when it leaves goes to another member", async () => {
  await withBroker(async (b) => {
    const pub = await BrokerClient.connect(b.port, "json", "pub");
    // A member that never reads: its socket fills, then the broker queues for it.
    const quitter = await rawSubscriber(b.port, { topic: "/q", group: "g", policy: "drop-oldest" });
    let stayer: BrokerClient | undefined;
    try {
      const value = "v".repeat(1000);
      let queued = 0, n = 0;
      for (let round = 0; round < 60 && queued < 200_000; round++) {
        for (let i = 0; i < 500; i++) pub.publish("/q/x", `${n++} ${value}`);
        queued = (await pub.stats()).queued_bytes as number;
      }
      assert.ok(queued >= 200_000, `the quitter has deliveries queued in the broker (${queued})`);
      stayer = await BrokerClient.connect(b.port, "json", "stayer");
      await stayer.subscribe("/q", { group: "g" });
      const before = (await pub.stats()).dropped as number, givenBefore = await givenBack(pub);
      closeQuietly(quitter.conn);
      const stats = await statsUntil(
        pub,
        (s) =>
          (s.queue_groups as Record<string, number>).given_back > givenBefore &&
          s.queued_bytes === 0,
        10_000,
      );
      const given = (stats.queue_groups as Record<string, number>).given_back - givenBefore;
      // Before: counted dropped, the stayer given none of them.
      assert.equal((stats.dropped as number) - before, 0, "none dropped");
      await waitFor(
        () => stayer!.deliveries.length >= given,
        10_000,
        `the stayer's ${given} (${stayer!.deliveries.length})`,
      );
      // The newest, in their order, as published.
      const got = stayer.deliveries.map((d) => d.value as string);
      assert.ok(got.every((v) => v.endsWith(value)));
      const numbers = got.map((v) => Number(v.split(" ")[0]));
      assert.deepEqual(numbers, [...numbers].sort((x, y) => x - y), "in their order");
      assert.equal(numbers[numbers.length - 1], n - 1, "up to the last published");
    } finally {
      closeQuietly(quitter.conn);
      stayer?.close();
      pub.close();
    }
  });
});

for (const publisher of ["native", "MQTT"] as const) {
  Deno.test(
    `queue group: a delivery members keep leaving with is given back 3 times, then counted dropped (${
      publisher === "native" ? "a native" : "an MQTT"
    } publish)`,
    opts,
    () =>
      withMqttBroker(async (b) => {
        const pub = await BrokerClient.connect(b.port, "json", "pub");
        const mqttPub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" }, 5);
        let member = await mqttMember(b.mqttPort, "m0", 1);
        try {
          const givenBefore = await givenBack(pub);
          const upBefore = ((await pub.stats()).queue_groups as Record<string, number>).given_up;
          if (publisher === "native") await pub.confirm("/t/x", "bounce", false);
          else {
            await mqttPub.send(
              { cmd: "publish", topic: "t/x", payload: "bounce", qos: 1, messageId: 1 } as never,
              5,
            );
          }
          for (let k = 1; k <= 4; k++) {
            await waitFor(() => publishes(member).length === 1, 5000, `member ${k - 1}'s`);
            const next = await mqttMember(b.mqttPort, `m${k}`, 1);
            await member.end(); // unacknowledged: to the next
            member = next;
          }
          // Given back to m1, m2, m3; m3 left with it too: m4 never gets it.
          const stats = await statsUntil(
            pub,
            (s) => (s.queue_groups as Record<string, number>).given_up === upBefore + 1,
            5000,
          );
          assert.equal(await givenBack(pub) - givenBefore, 3);
          assert.equal(stats.dropped, 1, "counted dropped");
          assert.equal(publishes(member).length, 0, "the fifth member was not given it");
        } finally {
          await member.end();
          await mqttPub.end();
          pub.close();
        }
      }),
  );
}

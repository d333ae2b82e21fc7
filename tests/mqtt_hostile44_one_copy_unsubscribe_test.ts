/**
 * hostile review 44b H-B1: a QoS 1 publish that two filters of one MQTT
 * session match goes once, queued in ONE of the two subscriptions' queues
 * (its carrier: one_copy.ts). The client UNSUBSCRIBEs that filter and keeps
 * the other, which matched every one of them: the carrier's queue goes with
 * it (Subscription.cancel clears it, uncounted), so the queued messages are
 * lost although a subscription that matched them is still held
 * (MQTT-3.3.4-2: the Server MUST deliver the message to the Client). Before
 * one copy, each subscription had a copy of its own. onecopy_unsub.py 20:
 * dist 2 of 20 (the window), undeliverable 0, session_dropped 0; Mosquitto 2
 * 20 of 20 (a copy per subscription).
 */
import assert from "node:assert/strict";
import { drainAcking, mqttOpts as opts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";

const N = 20;

/** A persistent MQTT 5 session "s" that SUBSCRIBEs oc/# and oc/t (QoS 1) and goes away: its CONNECT options. */
async function awayOnBoth(port: number) {
  const session = { clientId: "s", clean: false, properties: { sessionExpiryInterval: 300 } };
  const s = await RawMqtt.connect(port, session, 5);
  await s.send({
    cmd: "subscribe",
    messageId: 1,
    subscriptions: [{ topic: "oc/#", qos: 1 }, { topic: "oc/t", qos: 1 }],
  } as never, 5);
  await s.next("suback");
  await s.end();
  return session;
}

for (const gone of ["oc/#", "oc/t"]) {
  Deno.test(
    `mqtt one copy: UNSUBSCRIBE ${gone} of a session holding oc/# and oc/t keeps the queued QoS 1 that the other filter matched`,
    opts,
    () =>
      withMqttBroker(async (b) => {
        const session = await awayOnBoth(b.mqttPort); // what comes is queued
        const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" }, 5);
        for (let i = 0; i < N; i++) {
          await pub.send(
            { cmd: "publish", topic: "oc/t", payload: `m${i}`, qos: 1, messageId: i + 1 } as never,
            5,
          );
        }
        for (let i = 0; i < N; i++) await pub.next("puback");
        // Back with a window of 2: the rest waits in the queue when the UNSUBSCRIBE comes.
        const back = await RawMqtt.connect(b.mqttPort, {
          ...session,
          properties: { sessionExpiryInterval: 300, receiveMaximum: 2 },
        }, 5);
        await back.send({ cmd: "unsubscribe", messageId: 2, unsubscriptions: [gone] } as never, 5);
        await back.next("unsuback");
        const got = new Set(await drainAcking(back, 1500));
        const m = await b.mqttStats();
        // main (unsubscribing the carrier): 2 of 20, none counted.
        assert.equal(
          got.size + m.undeliverable + m.session_dropped,
          N,
          `received ${got.size} of ${N}, counted lost ${m.undeliverable + m.session_dropped}`,
        );
        assert.equal(got.size, N, "every message matched a subscription the session still holds");
        await pub.end();
        await back.end();
      }),
  );
}

// review44 R4: after hostile44b H-B1's fix (89e39e3), an UNSUBSCRIBEd
// carrier delivers what it queued before it is cut (Subscription
// cancelWhenDrained), while the topic's next messages go by the other
// matching filter the session holds, into that subscription's own queue.
// The two queues take turns at the session's window (each re-arms behind
// the other's waiter), so the topic's messages arrive out of order: the
// order H-B2's fix (the oldest subscription carries) was made to keep.
Deno.test(
  "mqtt one copy: messages queued before an UNSUBSCRIBE of the carrier and those after it arrive in order",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const session = await awayOnBoth(b.mqttPort);
      const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" }, 5);
      const publish = async (from: number, to: number) => {
        for (let i = from; i < to; i++) {
          await pub.send(
            { cmd: "publish", topic: "oc/t", payload: `m${i}`, qos: 1, messageId: i + 1 } as never,
            5,
          );
        }
        for (let i = from; i < to; i++) await pub.next("puback");
      };
      await publish(0, N);
      const back = await RawMqtt.connect(b.mqttPort, {
        ...session,
        properties: { sessionExpiryInterval: 300, receiveMaximum: 2 },
      }, 5);
      await back.send({ cmd: "unsubscribe", messageId: 2, unsubscriptions: ["oc/#"] } as never, 5);
      await back.next("unsuback");
      await publish(N, 2 * N); // while the old carrier's queue drains
      const got = (await drainAcking(back, 1500)).map((p) => Number(p.slice(1)));
      assert.equal(new Set(got).size, 2 * N, `received ${got.length}`);
      assert.deepEqual(got, [...got].sort((x, y) => x - y), `order: ${got.join(" ")}`);
      await pub.end();
      await back.end();
    }),
);

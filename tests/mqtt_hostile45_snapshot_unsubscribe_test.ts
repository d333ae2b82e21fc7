/**
 * hostile review 45b K-B1: hostile44b H-B1's fix (an UNSUBSCRIBEd carrier
 * delivers what it queued before it goes, Subscription.cancelWhenDrained)
 * is skipped while that subscription still walks its retained snapshot:
 * cancelWhenDrained then cancels at once and the queue, which holds the
 * copies another held filter matched (one_copy.ts: the carrier is the
 * oldest matching subscription), is cleared, uncounted. A client that
 * SUBSCRIBEs `x/#` (retained values under it, the window full) then `x/t`,
 * and UNSUBSCRIBEs `x/#`: snap_unsub.py 20 5: 0 of 20 (session_dropped 0,
 * undeliverable 0); with no retained value under `x/#` 20 of 20;
 * Mosquitto 2 20 of 20.
 */
import assert from "node:assert/strict";
import { drainAcking as drain, mqttOpts as opts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";

const N = 20;

for (const retained of [2, 0]) {
  Deno.test(
    `mqtt one copy: UNSUBSCRIBE of the carrier with ${retained} retained value(s) of its snapshot to go keeps the queued QoS 1 the other filter matched`,
    opts,
    () =>
      withMqttBroker(async (b) => {
        const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" }, 5);
        let id = 1;
        for (let i = 0; i < retained; i++) {
          const p = { cmd: "publish", topic: `sn/r/${i}`, payload: `r${i}`, qos: 1, retain: true };
          await pub.send({ ...p, messageId: id++ } as never, 5);
          await pub.next("puback");
        }
        // A window of 1: the first retained value fills it, the snapshot waits for its PUBACK.
        const s = await RawMqtt.connect(b.mqttPort, {
          clientId: "s",
          properties: { receiveMaximum: 1 },
        }, 5);
        await s.send({
          cmd: "subscribe",
          messageId: 1,
          subscriptions: [{ topic: "sn/#", qos: 1 }],
        } as never, 5);
        await s.next("suback");
        await s.send({
          cmd: "subscribe",
          messageId: 2,
          subscriptions: [{ topic: "sn/t", qos: 1 }],
        } as never, 5);
        await s.next("suback");
        for (let i = 0; i < N; i++) {
          await pub.send(
            { cmd: "publish", topic: "sn/t", payload: `m${i}`, qos: 1, messageId: id++ } as never,
            5,
          );
        }
        for (let i = 0; i < N; i++) await pub.next("puback");
        await s.send({ cmd: "unsubscribe", messageId: 3, unsubscriptions: ["sn/#"] } as never, 5);
        await s.next("unsuback");
        const got = new Set((await drain(s, 1500)).filter((p) => p.startsWith("m")));
        const m = await b.mqttStats();
        // main with 2 retained: 0 of 20, none counted.
        assert.equal(
          got.size,
          N,
          `received ${got.size} of ${N}, counted lost ${m.undeliverable + m.session_dropped}`,
        );
        await pub.end();
        await s.end();
      }),
  );
}

/**
 * hostile review 43b B1: a connected persistent session's QoS 0 is dropped
 * at once while an earlier QoS 0 waits in its queue behind a QoS 1 that a
 * full in-flight window holds, though its socket is empty. QoS 0 queues
 * whenever the subscription is held or sends retained values (a SUBSCRIBE
 * over retained topics, a SUBSCRIBE of its filter again); from then until
 * the queue is empty every new QoS 0 is dropped. Mosquitto 2 sends QoS 0
 * whatever the window holds (MQTT 5 §4.9: Receive Maximum bounds QoS 1
 * and 2 only): q0_mix.py 100 retained, QoS 1 80/s, QoS 0 400/s for 10 s,
 * Receive Maximum 20, 10 ms of work per QoS 1: dist 3,739 of 4,000 QoS 0,
 * Mosquitto 4,000.
 *
 * hostile review 44b H-B7 (second case): since B1's fix (119ef9e) those QoS
 * 0 wait behind the QoS 1 the window holds; a QoS 0 flow then fills the
 * queue to max-pending and drop-oldest drops the oldest: that QoS 1.
 * q1_displaced.py 50 retained, QoS 1 30/s, QoS 0 1,000/s of 2 KB for 10 s,
 * Receive Maximum 1, each PUBACK after 50 ms (the client reads everything at
 * once): main QoS 1 252–263 of 300 (session_dropped 992), at 119ef9e~1 300
 * (QoS 0 5,175–5,579 of 10,000: B1), Mosquitto 2 300 and 10,000. QoS 0 may
 * be lost; a QoS 1 must not be lost for QoS 0 that came after it. A fix keeps
 * both cases passing (QoS 0 in a lane of their own, or shed before QoS 1).
 */
import assert from "node:assert/strict";
import type mqttPacket from "mqtt-packet";
import {
  type MqttBroker,
  mqttOpts as opts,
  payloads,
  RawMqtt,
  withMqttBroker,
} from "./helpers/mqtt.ts";
import { sleep, waitFor } from "./helpers/raw.ts";

/**
 * A persistent subscriber (Receive Maximum 1) on `#` whose window holds a
 * retained QoS 1 ("ret"); behind it "one", "two" (QoS 1) and `zeros` QoS 0
 * ("zero i") queue; then "ret" is acknowledged and "one" fills the window,
 * "two" waiting for it and the QoS 0 behind "two". Returns the subscriber
 * and a publish function (QoS 1 and 2 wait for their PUBACK).
 */
async function behindWindow(b: MqttBroker, zeros: number) {
  const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" });
  let id = 1;
  const publish = async (topic: string, payload: string, qos: number, retain = false) => {
    const messageId = qos > 0 ? id++ : undefined;
    await pub.send({ cmd: "publish", topic, payload, qos, retain, messageId } as never);
    if (qos > 0) await pub.next("puback");
  };
  // A retained value: a new subscription sends it first.
  await publish("r/x", "ret", 1, true);
  const s = await RawMqtt.connect(b.mqttPort, {
    clientId: "s",
    clean: false,
    properties: { sessionExpiryInterval: 3600, receiveMaximum: 1 },
  }, 5);
  await s.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "#", qos: 1 }] }, 5);
  await s.next("suback");
  await waitFor(() => payloads(s).length === 1, 3000, "the retained value");
  // Its window (1) is full with "ret": two QoS 1 and some QoS 0 wait behind it.
  await publish("t/x", "one", 1);
  await publish("t/x", "two", 1);
  for (let i = 0; i < zeros; i++) await publish("z/x", `zero ${i}`, 0);
  await sleep(200);
  const ret = s.packets.find((p) => p.cmd === "publish") as mqttPacket.IPublishPacket;
  s.packets.length = 0;
  // PUBACK of "ret": "one" fills the window; "two" waits, and the QoS 0 behind it.
  await s.send({ cmd: "puback", messageId: ret.messageId } as never, 5);
  await waitFor(() => payloads(s).includes("one"), 3000, "one");
  return { pub, publish, s };
}

Deno.test(
  "mqtt QoS 0 reaches a persistent subscriber whose socket is empty while QoS 1 waits for its window",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const { pub, publish, s } = await behindWindow(b, 3);
      // The socket is empty: QoS 0 published now has room (main: dropped at once, never sent).
      for (let i = 0; i < 3; i++) await publish("z/x", `later ${i}`, 0);
      await sleep(300);
      // Then every QoS 1 is acknowledged, so whatever waits goes.
      for (let round = 0; round < 3; round++) {
        for (const p of s.packets.filter((p) => p.cmd === "publish")) {
          const m = p as mqttPacket.IPublishPacket;
          if (m.qos > 0 && !(m as { acked?: boolean }).acked) {
            (m as { acked?: boolean }).acked = true;
            await s.send({ cmd: "puback", messageId: m.messageId } as never, 5);
          }
        }
        await sleep(200);
      }
      const got = payloads(s);
      assert.deepEqual(
        got.filter((p) => p.startsWith("later")),
        ["later 0", "later 1", "later 2"],
        `QoS 0 published while the subscriber's socket was empty (got ${JSON.stringify(got)})`,
      );
      assert(got.includes("two") && got.includes("zero 2"), `everything else: ${got}`);
      await pub.end();
      await s.end();
    }),
);

const MAX_PENDING = 64 * 1024;

Deno.test(
  "mqtt QoS 0 waiting behind a window-held QoS 1 does not push that QoS 1 out of a persistent session's queue (hostile44b H-B7)",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const { pub, publish, s } = await behindWindow(b, 1);
      // A QoS 0 flow, the socket empty: 200 of 1 KB, three times max-pending (64 KiB). Since
      // 119ef9e each waits behind "zero 0" (before: dropped at once, "two" kept).
      const kb = "z".repeat(1024);
      for (let i = 0; i < 200; i++) await publish("z/x", `${i} ${kb}`, 0);
      await sleep(300);
      // Now the client acknowledges whatever comes, as it comes.
      const acked = new Set<number>();
      const got: string[] = [];
      const end = Date.now() + 3000;
      while (Date.now() < end && !got.includes("two")) {
        for (const p of s.packets.splice(0) as mqttPacket.IPublishPacket[]) {
          if (p.cmd !== "publish") continue;
          got.push(String(p.payload).slice(0, 8));
          if (p.qos > 0 && !acked.has(p.messageId!)) {
            acked.add(p.messageId!);
            await s.send({ cmd: "puback", messageId: p.messageId } as never, 5);
          }
        }
        await sleep(20);
      }
      const m = await b.mqttStats();
      // main: "two" dropped (session_dropped counts them with the QoS 0 shed).
      assert.ok(
        got.includes("two"),
        `QoS 1 "two" (got ${got.length} publishes: ${
          got.filter((g) => !/^\d/.test(g)).join(", ")
        }; session_dropped ${m.session_dropped})`,
      );
      await pub.end();
      await s.end();
    }, { maxPending: MAX_PENDING }),
);

Deno.test(
  "mqtt QoS 0 queued behind a QoS 1 the window holds goes without waiting for that QoS 1's turn (MQTT 5 §4.9)",
  opts,
  () =>
    withMqttBroker(async (b) => {
      // The window holds "one"; queued: "two", "zero 0".
      const { pub, publish, s } = await behindWindow(b, 1);
      // Then "three" (QoS 1) and QoS 0 published while the socket is empty.
      await publish("t/x", "three", 1);
      for (let i = 0; i < 5; i++) await publish("z/x", `later ${i}`, 0);
      await sleep(200);
      // PUBACK of "one": "two" fills the window, "zero 0" passes it; "three" waits for "two".
      const one = s.packets.find((p) => p.cmd === "publish") as mqttPacket.IPublishPacket;
      s.packets.length = 0;
      await s.send({ cmd: "puback", messageId: one.messageId } as never, 5);
      await sleep(500);
      const got = payloads(s);
      // main: the later QoS 0 waited behind "three" in one queue, so behind "two"'s PUBACK too.
      assert.deepEqual(
        got,
        ["two", "zero 0", "later 0", "later 1", "later 2", "later 3", "later 4"],
        "QoS 0 not held by the window (MQTT 5 §4.9) once the QoS 0 before them went",
      );
      await pub.end();
      await s.end();
    }),
);

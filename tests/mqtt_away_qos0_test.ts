/**
 * QoS 0 messages are not queued for an away persistent session unless
 * `--mqtt-queue-qos0` (Mosquitto's `queue_qos0_messages false`): 50
 * anonymous away sessions on `#` cut every client's QoS 0 throughput 42
 * times and wrote 60 MB/s of journal rows (hostile review 40a T9). QoS 1
 * and 2 are queued as before. Nor is a QoS 0 delivery waiting behind a
 * connected session's full window written to the journal (hostile 41b X1).
 */
import assert from "node:assert/strict";
import type mqttPacket from "mqtt-packet";
import { durableBroker, journalRows } from "./helpers/mqtt_durable.ts";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { startDist } from "./helpers/dist.ts";
import { sleep, waitFor } from "./helpers/raw.ts";

/** Makes the away session `away` on `#`, sends 50 QoS 0 and one QoS 1, and returns what it gets back. */
async function queuedWhileAway(port: number): Promise<string[]> {
  const away = await RawMqtt.connect(port, { clientId: "away", clean: false });
  await away.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "#", qos: 1 }] });
  await away.next("suback");
  await away.send({ cmd: "disconnect" });
  await away.end();
  const pub = await RawMqtt.connect(port, { clientId: "pub" });
  for (let i = 0; i < 50; i++) {
    await pub.send({ cmd: "publish", topic: "q0/t", payload: `zero ${i}`, qos: 0 } as never);
  }
  await pub.send({ cmd: "publish", topic: "q1/t", payload: "one", qos: 1, messageId: 9 } as never);
  await pub.next("puback");
  await pub.end();
  const back = await RawMqtt.connect(port, { clientId: "away", clean: false });
  await sleep(500);
  const got = back.packets.filter((p) => p.cmd === "publish")
    .map((p) => String((p as mqttPacket.IPublishPacket).payload));
  await back.end();
  return got;
}

Deno.test("mqtt away QoS 0: not queued by default, QoS 1 is (--data-dir)", opts, async () => {
  const dir = await Deno.makeTempDir();
  const { b, port } = await durableBroker(dir, "batch");
  try {
    assert.deepEqual(await queuedWhileAway(port), ["one"]);
  } finally {
    await b.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mqtt away QoS 0: queued with --mqtt-queue-qos0", opts, async () => {
  const b = await startDist(["broker", "--port", "0", "--mqtt-port", "0", "--mqtt-queue-qos0"]);
  try {
    const port = Number(b.stderr().match(/MQTT on 127\.0\.0\.1:(\d+)/)![1]);
    const got = await queuedWhileAway(port);
    assert.equal(got.length, 51, got.join());
    assert.equal(got.at(-1), "one");
  } finally {
    await b.stop();
  }
});

Deno.test(
  "mqtt QoS 0 behind a full window: kept in memory, no journal row (hostile 41b X1)",
  opts,
  async () => {
    const dir = await Deno.makeTempDir();
    const { b, port } = await durableBroker(dir, "batch");
    try {
      // MQTT 5, Receive Maximum 1: one QoS 1 in flight, never acknowledged, fills its window.
      const held = await RawMqtt.connect(port, {
        clientId: "held",
        clean: false,
        properties: { sessionExpiryInterval: 3600, receiveMaximum: 1 },
      }, 5);
      await held.send(
        { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "#", qos: 1 }] },
        5,
      );
      await held.next("suback");
      const pub = await RawMqtt.connect(port, { clientId: "pub" });
      await pub.send(
        { cmd: "publish", topic: "q1/t", payload: "one", qos: 1, messageId: 9 } as never,
      );
      await pub.next("puback");
      const first = await held.next("publish") as mqttPacket.IPublishPacket;
      for (let i = 0; i < 50; i++) {
        await pub.send({ cmd: "publish", topic: "q0/t", payload: `zero ${i}`, qos: 0 } as never);
      }
      await sleep(500);
      // The QoS 1 in flight only (main: 51, every QoS 0 put as a row as it was queued).
      assert.equal(journalRows(dir), 1);
      // QoS 0 passes the full window (MQTT 5 §4.9): nothing waits, in memory or on disk.
      await held.send({ cmd: "puback", messageId: first.messageId } as never, 5);
      await waitFor(() => held.packets.filter((p) => p.cmd === "publish").length >= 50, 5000, "50");
      const got = held.packets.filter((p) => p.cmd === "publish")
        .map((p) => String((p as mqttPacket.IPublishPacket).payload));
      assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => `zero ${i}`));
      await pub.end();
      await held.end();
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

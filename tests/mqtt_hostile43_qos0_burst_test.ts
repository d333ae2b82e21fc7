/**
 * hostile review 43b B6: a persistent session's QoS 0 has 256 KiB of room
 * in its connection's output (a quarter of --max-pending at most) and is
 * dropped past it, so a subscriber that reads as fast as it can loses part
 * of a burst that a clean session on the same broker (room: --max-pending)
 * gets whole, as Mosquitto's clients get it from Mosquitto (1,000 packets
 * of room). big_q0_mosq.sh (mosquitto_sub / mosquitto_pub -l, 2,000 x
 * 10 KB): persistent 1,463-1,858 of 2,000 in 4 runs, clean 2,000;
 * Mosquitto 2,000 in every run. This test (3 bursts of 2,000 x 10 KB): main
 * 425-1,955 in each failing burst, 4 runs of 4 failed, the clean control 2,000.
 */
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { Buffer } from "node:buffer";
import { startDist } from "./helpers/dist.ts";
import { byteReader, mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep, waitFor, writeAll } from "./helpers/raw.ts";

const BURST = 2000;
const SIZE = 10_000;

/** QoS 0 publishes of a burst (`n` x SIZE) a subscriber (persistent or not) that reads all the time receives. */
async function received(
  port: number,
  persistent: boolean,
  id: string,
  burst = BURST,
): Promise<number> {
  const sub = await RawMqtt.connect(port, {
    clientId: id,
    clean: !persistent,
    properties: persistent ? { sessionExpiryInterval: 3600 } : {},
  }, 5);
  await sub.send(
    { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: `${id}/#`, qos: 0 }] },
    5,
  );
  await sub.next("suback");
  const pub = await RawMqtt.connect(port, { clientId: `${id}-pub` });
  const one = mqttPacket.generate({
    cmd: "publish",
    topic: `${id}/x`,
    payload: Buffer.alloc(SIZE, 120),
    qos: 0,
  } as never);
  await writeAll(pub.conn, new Uint8Array(Buffer.concat(Array(burst).fill(one))));
  const count = () => sub.packets.filter((p) => p.cmd === "publish").length;
  await waitFor(() => count() === burst, burst * 1.5, "the burst").catch(() => {});
  await sleep(300);
  const n = count();
  await pub.end();
  await sub.end();
  return n;
}

Deno.test(
  "mqtt a persistent session that reads as fast as it can gets a QoS 0 burst whole, as a clean one does",
  opts,
  async () => {
    const b = await startDist(["broker", "--port", "0", "--mqtt-port", "0"]);
    try {
      const port = Number(b.stderr().match(/MQTT on 127\.0\.0\.1:(\d+)/)![1]);
      const clean = await received(port, false, "clean");
      const kept = [];
      for (let round = 0; round < 3; round++) {
        kept.push(await received(port, true, `keeps${round}`));
      }
      // main: clean 2,000, persistent tens to hundreds fewer in most bursts (dropped past 256 KiB
      // of output: the broker reads the burst in large chunks, and one turn writes more than that).
      assert.deepEqual({ clean, kept }, { clean: BURST, kept: [BURST, BURST, BURST] });
    } finally {
      await b.stop();
    }
  },
);

Deno.test(
  "mqtt a clean session that keeps reading, slower than the publisher sends, gets a 50 MB QoS 0 burst whole, not cut off past max-pending",
  opts,
  async () => {
    const b = await startDist(["broker", "--port", "0", "--mqtt-port", "0"]);
    try {
      const port = Number(b.stderr().match(/MQTT on 127\.0\.0\.1:(\d+)/)![1]);
      // 64 KiB a read, 2 ms between reads: about 20 MB/s.
      const sub = await byteReader(port, "big/#", { chunk: 64 * 1024, pauseMs: 2 });
      await sleep(300);
      const pub = await RawMqtt.connect(port, { clientId: "big-pub" });
      const one = mqttPacket.generate({
        cmd: "publish",
        topic: "big/x",
        payload: Buffer.alloc(SIZE, 120),
        qos: 0,
      } as never);
      const n = 5000, whole = n * one.length + 4 + 5; // its CONNACK and SUBACK too
      await writeAll(pub.conn, new Uint8Array(Buffer.concat(Array(n).fill(one))));
      await waitFor(() => sub.bytes() >= whole, 20_000, "the burst").catch(() => {});
      await pub.end();
      sub.conn.close();
      await sub.ended;
      // main: cut off past its 8 MiB of output ("Cutting off"), the rest of the burst missed
      // (big_q0_mosq.sh with mosquitto_sub: 4,821 and 3,348 of 5,000; Mosquitto 5,000).
      assert.equal(sub.bytes(), whole, b.stderr().match(/Cutting off.*/)?.[0]);
    } finally {
      await b.stop();
    }
  },
);

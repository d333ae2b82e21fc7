/**
 * The memory guard does not cut honest readers for what cut persistent
 * sessions still hold (hostile review 41b X9): cutting a persistent
 * session's connection frees nothing (its queue stays, now an away
 * session's), so the same shed went on and cut two readers that kept up,
 * with 64 KB pending each. What cut sessions hold is the away share's to
 * trim.
 */
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { byteReader, mqttOpts as opts, RawMqtt, stalledSession } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";
import { startDist } from "./helpers/dist.ts";

const STALLED = 20;
const BUDGET = 64 * 1024 * 1024;

Deno.test({
  name:
    "mqtt memory: cutting stalled persistent sessions does not go on to cut readers that keep up (hostile review 41b X9)",
  ...opts,
}, async () => {
  const b = await startDist([
    "broker",
    ...["--port", "0", "--mqtt-port", "0", "--max-memory", String(BUDGET), "--log-level", "debug"],
  ]);
  const port = Number(b.stderr().match(/MQTT on 127\.0\.0\.1:(\d+)/)![1]);
  const conns: Deno.Conn[] = [];
  let honest: Deno.Conn | undefined;
  let reading: Promise<void> | undefined;
  try {
    for (let i = 0; i < STALLED; i++) conns.push(await stalledSession(port, `st${i}`, 86400));
    await sleep(500);
    // One QoS 1 each, never acknowledged: their windows are full from now on.
    const seed = await RawMqtt.connect(port, { clientId: "seed" });
    await seed.send(
      { cmd: "publish", topic: "seed/x", payload: "s", qos: 1, messageId: 1 } as mqttPacket.Packet,
    );
    await seed.next("puback");
    await seed.end();
    // A reader that keeps up: it reads every byte as it comes, and parses nothing.
    const reader = await byteReader(port, "load/#");
    honest = reader.conn;
    let cut = false;
    reading = reader.ended.then(() => {
      cut = true;
    });
    await sleep(300);
    // 1 KB QoS 1 publishes, 100 MB in all: each stalled session queues them all (QoS 0 it
    // does not: not held by its window, dropped once its socket is backed up).
    const pub = await RawMqtt.connect(port, { clientId: "pub" });
    const one = mqttPacket.generate(
      {
        cmd: "publish",
        topic: "load/x",
        payload: Buffer.alloc(1000, 121),
        qos: 1,
        messageId: 1,
      } as mqttPacket.Packet,
    );
    const batch = new Uint8Array(Buffer.concat(Array(100).fill(one)));
    const until = performance.now() + 15_000;
    for (let i = 0; i < 1000 && !pub.closed && performance.now() < until; i++) {
      // Ids 1-65,535 in turn (patched in place: bytes 2-3 of each, after the 2-byte topic length).
      for (let j = 0; j < 100; j++) {
        const id = (i * 100 + j) % 65_535 + 1, at = j * one.length + 3 + 2 + "load/x".length;
        batch[at] = id >> 8;
        batch[at + 1] = id & 0xff;
      }
      await pub.write(batch);
      pub.packets.length = 0; // its PUBACKs
    }
    await pub.end();
    await sleep(1000);
    assert.match(b.stderr(), /Cutting off st\d+/, "the guard shed the stalled sessions");
    assert.ok(
      !cut,
      `the reader that kept up was cut: ${
        b.stderr().split("\n").filter((l) => /Cutting|held past|WRN/.test(l)).join("\n")
      }`,
    );
    assert.doesNotMatch(b.stderr(), /Cutting off honest/);
  } finally {
    for (const c of conns) c.close();
    honest?.close();
    await reading;
    await b.stop();
  }
});

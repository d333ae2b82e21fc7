/**
 * A publisher whose socket always has bytes waiting does not keep the
 * broker from reading its other clients: the MQTT read loop yields a turn
 * after a few full reads (hostile review 41b X4's rest: under a flood of
 * QoS 0 the broker read a PINGREQ about once in 1.5 s).
 */
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { startDist } from "./helpers/dist.ts";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";

const FLOOD_MS = 4000;

Deno.test("mqtt read turns: PINGREQ answered beside a publisher flooding QoS 0", opts, async () => {
  const b = await startDist(["broker", "--port", "0", "--mqtt-port", "0"]);
  try {
    const m = b.stderr().match(/MQTT on 127\.0\.0\.1:(\d+)/);
    assert.ok(m, b.stderr());
    const port = Number(m[1]);
    const pinger = await RawMqtt.connect(port, { clientId: "pinger" });
    const pub = await RawMqtt.connect(port, { clientId: "pub" });
    // 1 MiB of small QoS 0 PUBLISHes (nobody subscribed): written faster than they are read.
    const one = mqttPacket.generate({
      cmd: "publish",
      topic: "flood/x",
      payload: Buffer.from("y"),
      qos: 0,
      retain: false,
      dup: false,
    } as mqttPacket.Packet);
    const chunk = new Uint8Array(Math.floor((1 << 20) / one.length) * one.length);
    for (let i = 0; i < chunk.length; i += one.length) chunk.set(one, i);
    const until = performance.now() + FLOOD_MS;
    const flood = (async () => {
      while (performance.now() < until) await pub.write(chunk);
    })();
    await sleep(200);
    const waits: number[] = [];
    while (performance.now() < until - 200) {
      const sent = performance.now();
      await pinger.send({ cmd: "pingreq" });
      await pinger.next("pingresp", 30_000);
      waits.push(performance.now() - sent);
      await sleep(20);
    }
    await flood;
    pub.close();
    pinger.close();
    waits.sort((x, y) => x - y);
    const median = waits[waits.length >> 1];
    // Main: one PINGREQ read in ~1 s (median), a handful of pings in the flood.
    assert.ok(waits.length >= 20, `${waits.length} pings answered in ${FLOOD_MS} ms`);
    assert.ok(median < 100, `PINGRESP median ${median.toFixed(0)} ms`);
  } finally {
    await b.stop();
  }
});

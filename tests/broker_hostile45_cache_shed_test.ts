/**
 * hostile review 45b K-B2: since hostile44b H-B3's fix (b8abf3f) every
 * topic's cached targets count in `--max-memory` (4 × (64 + 8 a target)
 * bytes). The count is the budget's, but nothing that the budget's policy
 * does can free it: a cache is dropped only with its topic. Anonymous away
 * sessions on `#` (400 of them, 4.4 MB counted, within their share) and
 * QoS 0 to a few thousand new topics take the broker past its budget for
 * good; then new topics are refused to everyone, and the memory guard cuts
 * every connected subscriber that has anything pending when it looks (each
 * turn after a publish): an honest subscriber on its own topic, reading at
 * once, is cut "to keep the broker within its memory budget" with 34 bytes
 * pending. Mosquitto 2 (no budget) 9 MiB RSS for the same flood; nats-server
 * has no cache to count.
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";
import { BrokerClient } from "./helpers/broker.ts";
import { mqttOpts, payloads, RawMqtt } from "./helpers/mqtt.ts";
import { packet, str } from "./helpers/mqtt_bytes.ts";
import { awaySessions, dialMqtt, readBytes } from "./helpers/mqtt_pinger.ts";
import { sleep, waitFor, writeAll } from "./helpers/raw.ts";

const MIB = 1024 * 1024;
const MQTT_LINE = /MQTT on [\d.]+:(\d+)/;
const N = 100;

Deno.test(
  "broker: away sessions on # and QoS 0 to new topics do not get an honest subscriber cut for memory it does not hold (--max-memory 64 MiB)",
  mqttOpts,
  async () => {
    const broker = await startDist(
      ["broker", "--port", "0", "--mqtt-port", "0", "--max-memory", String(64 * MIB)],
    );
    try {
      await waitFor(() => MQTT_LINE.test(broker.stderr()), 5000, "the MQTT line");
      const port = Number(broker.stderr().match(MQTT_LINE)![1]);
      const sub = await RawMqtt.connect(port, { clientId: "honest-sub" });
      await sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "h/#", qos: 0 }] });
      await sub.next("suback");
      const pub = await RawMqtt.connect(port, { clientId: "honest-pub" }, 5);
      await pub.send({ cmd: "publish", topic: "h/x", payload: "first", qos: 0 } as never, 5);
      await waitFor(() => payloads(sub).length === 1, 5000, "the first message");
      sub.packets.length = 0;
      // The attack: 400 away sessions on #, then QoS 0 to 40,000 new topics (refused past the budget).
      await awaySessions(port, "away", 400, ["#"]);
      const flood = await dialMqtt(port, "flood");
      const chunk: number[] = [];
      for (let i = 0; i < 40_000; i++) {
        chunk.push(...packet(0x30, [...str(`t/${i}`), 0x78]));
        if (chunk.length > 32_768) {
          await writeAll(flood, Uint8Array.from(chunk));
          chunk.length = 0;
        }
      }
      await writeAll(flood, Uint8Array.from([...chunk, 0xc0, 0]));
      await readBytes(flood, 2);
      flood.close();
      // The honest pair on topics of its own (h/x and one new one in ten: a sensor that joins),
      // the subscriber reading all along.
      for (let i = 0; i < N; i++) {
        const topic = i % 10 === 0 ? `h/new/${i}` : "h/x";
        const p = { cmd: "publish", topic, payload: `m${i}`, qos: 1, messageId: i + 1 };
        await pub.send(p as never, 5);
        await sleep(10);
      }
      const acks = pub.packets.filter((p) => p.cmd === "puback") as { reasonCode?: number }[];
      const refused = acks.filter((a) => (a.reasonCode ?? 0) !== 0).length;
      await sleep(1000);
      const native = await BrokerClient.connect(broker.port);
      const memory = (await native.stats()).memory as Record<string, number>;
      native.close();
      const got = payloads(sub).length;
      const say = `honest subscriber ${sub.closed ? "cut" : "connected"}, got ${got} of ${N} ` +
        `(publisher: ${acks.length} PUBACKs, ${refused} refused); ` +
        `memory.bytes ${(memory.bytes / MIB).toFixed(1)} MiB of ${memory.budget / MIB}, ` +
        `shed ${memory.shed}`;
      console.log(say);
      // main: cut, got 0-1 of 100; memory.bytes 65 MiB of 64, shed 1.
      assert.ok(!sub.closed, say);
      assert.ok(got >= N - N / 10, say);
      await sub.end();
      await pub.end();
    } finally {
      await broker.stop();
    }
  },
);

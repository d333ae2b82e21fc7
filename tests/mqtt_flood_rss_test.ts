/**
 * After floods into persistent sessions that hold everything (hostile
 * review 41b X1/X8's shape: a full window, Receive Maximum 1 and a QoS 1
 * never acknowledged), the broker's RSS comes back near its --max-memory:
 * what the collections free into the C heap is given back (malloc_trim)
 * rather than kept by glibc for good (main: 575 MiB after a second storm
 * under 256 MiB, what it counted 136 MiB).
 */
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { startDist } from "./helpers/dist.ts";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";

const MIB = 1024 * 1024;
const BUDGET = 192 * MIB;
const SESSIONS = 50;
const STORM_MS = 6000;

function rssOf(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(status.match(/VmRSS:\s+(\d+)/)![1]) * 1024;
}

/** SESSIONS persistent MQTT 5 sessions on `#`, each holding one QoS 1 it never acknowledges. */
async function stalled(port: number): Promise<RawMqtt[]> {
  const subs: RawMqtt[] = [];
  for (let i = 0; i < SESSIONS; i++) {
    const s = await RawMqtt.connect(port, {
      clientId: `st${i}`,
      clean: false,
      properties: { sessionExpiryInterval: 86400, receiveMaximum: 1 },
    }, 5);
    await s.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "#", qos: 1 }] }, 5);
    await s.next("suback");
    subs.push(s);
  }
  const seed = await RawMqtt.connect(port, { clientId: "seed" });
  await seed.send({ cmd: "publish", topic: "seed/x", payload: "s", qos: 1, messageId: 1 } as never);
  await seed.next("puback");
  seed.close();
  return subs;
}

Deno.test(
  "mqtt flood: RSS comes back within 1.5x --max-memory after two floods",
  opts,
  async () => {
    const dir = await Deno.makeTempDir();
    const b = await startDist([
      "broker",
      ...["--port", "0", "--mqtt-port", "0", "--data-dir", dir],
      ...["--max-memory", String(BUDGET)],
    ], { timeoutMs: 30_000 });
    try {
      const m = b.stderr().match(/MQTT on 127\.0\.0\.1:(\d+)/);
      assert.ok(m, b.stderr());
      const port = Number(m[1]);
      const one = mqttPacket.generate({
        cmd: "publish",
        topic: "load/x",
        payload: Buffer.alloc(1000, 121),
        qos: 0,
        retain: false,
        dup: false,
      } as mqttPacket.Packet);
      const chunk = new Uint8Array(100 * one.length);
      for (let i = 0; i < chunk.length; i += one.length) chunk.set(one, i);
      for (let storm = 0; storm < 2; storm++) {
        const subs = await stalled(port);
        const pub = await RawMqtt.connect(port, { clientId: "pub" });
        const until = performance.now() + STORM_MS;
        while (performance.now() < until && !pub.closed) await pub.write(chunk);
        pub.close();
        for (const s of subs) s.close();
        await sleep(2000);
      }
      // The guard's next samples: a collection, and the C heap trimmed after it.
      let rss = rssOf(b.child.pid);
      for (let i = 0; i < 20 && rss > 1.5 * BUDGET; i++) {
        await sleep(500);
        rss = rssOf(b.child.pid);
      }
      assert.ok(
        rss <= 1.5 * BUDGET,
        `RSS ${(rss / MIB).toFixed(0)} MiB after the floods under ${BUDGET / MIB} MiB`,
      );
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

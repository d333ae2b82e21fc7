/**
 * review r46 R2 (of hostile46b M-B8's fix): retained snapshots share one
 * budget of 4,096 tree visits per walk turn, taken first come, first walked
 * (subscriber.ts walkLater/walkTurn), one place in the line per snapshot,
 * not per client. One client's SUBSCRIBE of 1,000 filters that walk a
 * 100,000-topic tree takes 1,000 places, and each turn goes to the head of the
 * line: an honest client subscribing then waits behind all of them for its
 * own few retained values, turn after turn.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";
import { startDist } from "./helpers/dist.ts";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";

const TOPICS = 100_000;
const FILTERS = 1000;

/** Ms from a SUBSCRIBE of `filter` by a new client to its `n` retained values. */
async function retainedIn(port: number, filter: string, n: number, clients: RawMqtt[]) {
  const c = await RawMqtt.connect(port, { clientId: `h-${filter.replaceAll("/", "_")}` }, 4);
  clients.push(c);
  const t = performance.now();
  await c.send(
    { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: filter, qos: 0 }] } as never,
  );
  const end = Date.now() + 40_000;
  while (c.packets.filter((p) => p.cmd === "publish").length < n && Date.now() < end) {
    await sleep(5);
  }
  return performance.now() - t;
}

Deno.test(
  "mqtt: an honest client's retained values are not held behind another client's 500 snapshot walks (r46 R2)",
  opts,
  async () => {
    const b = await startDist(["broker", "--port", "0", "--mqtt-port", "0"]);
    const m = b.stderr().match(/MQTT on 127\.0\.0\.1:(\d+)/);
    assert.ok(m, b.stderr());
    const port = Number(m[1]);
    const clients: RawMqtt[] = [];
    try {
      const pub = await RawMqtt.connect(port, { clientId: "pub" }, 4);
      clients.push(pub);
      for (let i = 0; i < TOPICS; i += 2000) {
        const batch = Array.from({ length: 2000 }, (_, k) =>
          mqttPacket.generate({
            cmd: "publish",
            topic: `r/${(i + k) % 100}/${Math.floor((i + k) / 100)}/x`,
            payload: Buffer.from("v"),
            qos: 0,
            retain: true,
            dup: false,
          }));
        await pub.write(new Uint8Array(Buffer.concat(batch)));
      }
      // The retained publishes are in: the last topic's value comes back.
      await retainedIn(port, "r/99/999/x", 1, clients);
      const quiet = await retainedIn(port, "r/8/+/x", 1000, clients);
      const attacker = await RawMqtt.connect(port, { clientId: "walker" }, 4);
      clients.push(attacker);
      await attacker.send({
        cmd: "subscribe",
        messageId: 1,
        subscriptions: Array.from(
          { length: FILTERS },
          (_, j) => ({ topic: `+/+/+/n${j}`, qos: 0 }),
        ),
      } as never);
      await sleep(200);
      const during = await retainedIn(port, "r/7/+/x", 1000, clients);
      console.log(
        `honest 1,000 retained: quiet ${quiet.toFixed(0)} ms, during ${during.toFixed(0)} ms`,
      );
      assert.ok(
        during < Math.max(1500, 15 * quiet),
        `1,000 retained values took ${during.toFixed(0)} ms behind the walks (quiet ${
          quiet.toFixed(0)
        } ms)`,
      );
    } finally {
      for (const c of clients) await c.end();
      await b.stop();
    }
  },
);

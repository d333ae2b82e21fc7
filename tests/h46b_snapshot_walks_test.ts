/**
 * hostile review 46b M-B8 (high): each subscription's retained snapshot
 * walks at most SNAPSHOT_VISITS_PER_TURN (4,096) nodes of the topic tree a
 * pump and goes on after a `setTimeout(0)` (subscriber.ts #pump), but
 * nothing bounds the visits of all snapshots together in a turn. One MQTT
 * SUBSCRIBE of 500 filters like `+/+/+/n7` (exact, matching nothing, so
 * each walks every inner node of a 100,000-topic tree) starts 500 walks at
 * once: their timers run back to back, and another client's PINGRESP took
 * p50 0.7–1.0 s, max 2.3 s, for 25 s and more (quiet: p50 6.6 ms, load 16–17;
 * h46b-scripts/snapshot_walks.ts). A SUBSCRIBE's own work takes its costly
 * turns (4 ms a turn); the walks it starts do not. Here 1,000 such filters
 * (one 13 KB packet), other client's PINGRESP p90 0.6–1.3 s, max 1.8–3.6 s,
 * 28–34 pings in 8 s (quiet: p90 8–23 ms; load 8–10).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";
import { startDist } from "./helpers/dist.ts";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";

const TOPICS = 100_000;
const FILTERS = 1000;

/** PINGREQ → PINGRESP times (ms) of `c`, one every 20 ms, for `ms`. */
async function pings(c: RawMqtt, ms: number): Promise<number[]> {
  const times: number[] = [];
  for (const end = Date.now() + ms; Date.now() < end;) {
    const t = performance.now();
    await c.send({ cmd: "pingreq" } as never);
    await c.next("pingresp", 30_000);
    times.push(performance.now() - t);
    await sleep(20);
  }
  return times.sort((a, b) => a - b);
}

const median = (xs: number[]): number => xs[xs.length >> 1];

Deno.test(
  "mqtt: a SUBSCRIBE of many filters walking a large tree does not hold other clients up",
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
      const pinger = await RawMqtt.connect(port, { clientId: "pinger" }, 4);
      clients.push(pinger);
      await pings(pinger, 2000); // the retained publishes are in
      const quiet = await pings(pinger, 2000);
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
      const during = await pings(pinger, 8000);
      const p90 = (xs: number[]) => xs[Math.floor(xs.length * 0.9)];
      const bound = Math.max(100, 5 * median(quiet), 2 * p90(quiet));
      assert.ok(
        p90(during) < bound,
        `PINGRESP p90 ${p90(during).toFixed(0)} ms during the walks, bound ${
          bound.toFixed(0)
        } ms ` +
          `(quiet p50 ${median(quiet).toFixed(1)}, p90 ${p90(quiet).toFixed(0)} ms; during p50 ${
            median(during).toFixed(1)
          } ms, max ${during[during.length - 1].toFixed(0)} ms, ${during.length} pings in 8 s)`,
      );
    } finally {
      for (const c of clients) await c.end();
      await b.stop();
    }
  },
);

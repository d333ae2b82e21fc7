/**
 * hostile review 45b K-B5: a topic's cached targets (matching.ts keep) hold
 * the subscriptions it reached until the topic is published again; a cache
 * gone stale (a subscription came or went since) is not dropped, and holds
 * its subscriptions after they are cancelled, with their sessions (and what
 * those hold). So waves of short-lived clients on `#`, each wave while one
 * new topic is published, leave every wave's ended sessions alive: waves.py
 * 40 × 500: heap +21 MiB after a full collection for 0.7 MiB counted
 * (4 × (64 + 8 a target) a topic); one topic for every wave (its cache
 * replaced each time): +0. Unbounded in waves (a topic each), and none of
 * it is in --max-memory. Mosquitto keeps no such list. Fixed in stop 46:
 * a removal has the caches under its pattern's prefix swept in the turns
 * after (roles/broker/cache_sweep.ts): +1.9 MiB for 30 waves, +2.8 for 90.
 */
import assert from "node:assert/strict";
import { memoryMark } from "./helpers/hostile45.ts";
import { mqttOpts, withMqttBroker } from "./helpers/mqtt.ts";
import { packet, str } from "./helpers/mqtt_bytes.ts";
import { connect311, readBytes } from "./helpers/mqtt_pinger.ts";
import { writeAll } from "./helpers/raw.ts";

const MIB = 1024 * 1024;
const WAVES = 30;
const PER_WAVE = 250;

for (const sameTopic of [false, true]) {
  Deno.test(
    `broker: ${WAVES} waves of ${PER_WAVE} clients on # that end leave nothing alive uncounted (${
      sameTopic ? "one topic for all waves" : "a topic each wave"
    })`,
    mqttOpts,
    () =>
      withMqttBroker(async (b) => {
        const counted = async () => ((await b.stats()).memory as Record<string, number>).bytes;
        const subscribe = packet(0x82, [0, 1, ...str("#"), 0]);
        const pub = await Deno.connect({ hostname: "127.0.0.1", port: b.mqttPort });
        await writeAll(pub, connect311("pub", true));
        await readBytes(pub, 4);
        const since = await memoryMark(counted);
        for (let w = 0; w < WAVES; w++) {
          const wave = await Promise.all(Array.from({ length: PER_WAVE }, async (_, i) => {
            const c = await Deno.connect({ hostname: "127.0.0.1", port: b.mqttPort });
            await writeAll(c, Uint8Array.from([...connect311(`w${w}-${i}`, true), ...subscribe]));
            await readBytes(c, 4 + 5); // CONNACK, SUBACK
            return c;
          }));
          // One QoS 0 publish while the wave is there: its topic caches the wave's subscriptions.
          const topic = sameTopic ? "wv/0" : `wv/${w}`;
          await writeAll(pub, Uint8Array.from([...packet(0x30, [...str(topic), 0x78]), 0xc0, 0]));
          await readBytes(pub, 2); // PINGRESP: the publish is routed
          await Promise.all(wave.map(async (c) => {
            await writeAll(c, packet(0xe0, []));
            c.close();
          }));
        }
        const { heap, count, say } = await since();
        pub.close();
        // Before the sweep, a topic each wave: live heap +9.8 MiB, counted +0.26 MiB (40 waves: +12.5, 0.34); one topic: +0.6.
        assert.ok(heap <= 1.5 * count + 4 * MIB, say);
      }),
  );
}

/**
 * hostile review 45b K-B8 (regression of b8abf3f, hostile44b H-B4's fix):
 * one copy's per-publish index (one_copy.ts `indexes`, a WeakMap keyed by
 * the Message) lists every merging session the publish reached, and each
 * session's OneCopy keeps the last Message it decided for (`#msg`) until
 * its next QoS 1/2 publish: so one live session keeps every session its
 * last publish reached alive after they end, and what they hold, counted
 * nowhere. Before b8abf3f the index was keyed by the topic's targets list
 * and went with it. waves_onecopy.py 40 waves × 500 sessions on w/# and
 * w/+ (QoS 1) and one observer per wave that stays; each wave topic
 * published again (the caches no longer hold the waves) and collected:
 * heap 13 → 58 MiB on main, counted 0.3 MiB; observers closed: 14 MiB; at
 * b8abf3f~1: 14 MiB.
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

/** A 3.1.1 client (clean) that SUBSCRIBEs `w/#` and `w/+` at QoS 1; SUBACK read. */
async function twoFilters(port: number, id: string, w: number): Promise<Deno.Conn> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  const sub = packet(0x82, [0, 1, ...str(`w${w}/#`), 1, ...str(`w${w}/+`), 1]);
  await writeAll(c, Uint8Array.from([...connect311(id, true), ...sub]));
  await readBytes(c, 4 + 6); // CONNACK, SUBACK of two codes
  return c;
}

Deno.test(
  `mqtt one copy: ${WAVES} waves of ${PER_WAVE} clients on two filters that end are not kept alive by the session that stays`,
  mqttOpts,
  () =>
    withMqttBroker(async (b) => {
      const counted = async () => ((await b.stats()).memory as Record<string, number>).bytes;
      const pub = await Deno.connect({ hostname: "127.0.0.1", port: b.mqttPort });
      await writeAll(pub, connect311("pub", true));
      await readBytes(pub, 4);
      const since = await memoryMark(counted);
      const observers: Deno.Conn[] = [];
      for (let w = 0; w < WAVES; w++) {
        observers.push(await twoFilters(b.mqttPort, `obs${w}`, w));
        const wave = await Promise.all(
          Array.from({ length: PER_WAVE }, (_, i) => twoFilters(b.mqttPort, `w${w}-${i}`, w)),
        );
        // One QoS 1 publish the wave and its observer take (one copy each: two filters match).
        await writeAll(pub, packet(0x32, [...str(`w${w}/x`), 0, w + 1, 0x78]));
        await readBytes(pub, 4); // PUBACK
        await Promise.all(wave.map(async (c) => {
          await writeAll(c, packet(0xe0, []));
          c.close();
        }));
      }
      // Every wave topic again (QoS 0): its cached targets are the observer's now (not K-B5's path).
      const again = Array.from(
        { length: WAVES },
        (_, w) => [...packet(0x30, [...str(`w${w}/x`), 0x79])],
      );
      await writeAll(pub, Uint8Array.from([...again.flat(), 0xc0, 0]));
      await readBytes(pub, 2);
      const { heap, count, say } = await since();
      pub.close();
      for (const c of observers) c.close();
      // main: live heap +18.8 MiB, counted +0.19 MiB; at b8abf3f~1 +2.5 MiB (passes).
      assert.ok(heap <= 1.5 * count + 4 * MIB, say);
    }),
);

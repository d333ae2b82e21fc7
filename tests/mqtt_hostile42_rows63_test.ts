/**
 * hostile review 42b Z4: sessions that end together with 63 rows queued
 * per subscription (one under journal.ts's RANGE_FROM) and many
 * subscriptions each have every row deleted one by one on the event loop,
 * as before 41b X4's background range deletes. 10 sessions × 1,300
 * filters × 63 QoS 1 publishes (819,000 rows) expiring together: the
 * longest PINGRESP 10.2 s (64 publishes: 78 ms). Each subscription a
 * topic of its own: overlapping filters take one copy a session
 * (one_copy.ts), so one subscription would hold every row.
 */
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { Buffer } from "node:buffer";
import { durableBroker, journalRows, longestPing } from "./helpers/mqtt_durable.ts";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { waitFor } from "./helpers/raw.ts";

const SESSIONS = 8;
const FILTERS = 600;
const MESSAGES = 63;
// Long enough to fill them at a load of 20 (13 s then), short enough for the suite.
const EXPIRY_S = 25;

Deno.test(
  "mqtt hostile42 Z4: sessions expiring with 63 rows in each of many subscriptions leave PINGREQ answered",
  opts,
  async () => {
    const dir = await Deno.makeTempDir();
    const { b, port } = await durableBroker(dir, "batch");
    try {
      const left = performance.now();
      for (let i = 0; i < SESSIONS; i++) {
        const s = await RawMqtt.connect(port, {
          clientId: `s${i}`,
          clean: false,
          properties: { sessionExpiryInterval: EXPIRY_S },
        }, 5);
        for (let base = 0; base < FILTERS; base += 100) {
          const subscriptions = Array.from({ length: 100 }, (_, j) => ({
            topic: `z4/${base + j}`,
            qos: 1 as const,
          }));
          await s.send({ cmd: "subscribe", messageId: 1 + base, subscriptions }, 5);
          await s.next("suback");
        }
        await s.end();
      }
      const pub = await RawMqtt.connect(port, { clientId: "pub" });
      // A round: one QoS 1 publish to each subscription's topic, written at once.
      for (let m = 0; m < MESSAGES; m++) {
        const round = Array.from({ length: FILTERS }, (_, i) =>
          mqttPacket.generate({
            cmd: "publish",
            topic: `z4/${i}`,
            payload: Buffer.from("z"),
            qos: 1,
            messageId: 1 + m * FILTERS + i,
            retain: false,
            dup: false,
          }));
        await pub.write(Buffer.concat(round));
        await waitFor(
          () => pub.packets.filter((p) => p.cmd === "puback").length >= FILTERS,
          30_000,
          "every PUBACK",
        );
        pub.packets.length = 0;
      }
      await pub.end();
      assert.ok(performance.now() - left < (EXPIRY_S - 3) * 1000, "filled before they expire");
      assert.equal(journalRows(dir), SESSIONS * FILTERS * MESSAGES);
      const worst = await longestPing(port, left + (EXPIRY_S + 4) * 1000, 60_000);
      await waitFor(() => journalRows(dir) === 0, 60_000, "their rows deleted");
      // main: 4.0 s (302,400 deletes, one per row, in one turn); with 64 rows each (ranges): passes.
      assert.ok(worst < 1500, `PINGRESP took ${worst.toFixed(0)} ms`);
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

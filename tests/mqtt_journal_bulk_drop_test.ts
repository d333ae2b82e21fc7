/**
 * Many queued deliveries dropped at once (a trim of the away share, sessions
 * expiring together) leave the broker answering: their journal rows are
 * deleted in the background, a bounded number a turn (hostile review 41b
 * X4: one delete per row on the event loop, 180 MB dropped held every
 * client 8–14 s; 200,000 rows of sessions expiring together, 7.3 s).
 */
import assert from "node:assert/strict";
import { durableBroker, journalRows, longestPing } from "./helpers/mqtt_durable.ts";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { waitFor } from "./helpers/raw.ts";

const SESSIONS = 40;
const MESSAGES = 2_500;
const EXPIRY_S = 12;

Deno.test(
  "mqtt journal: sessions expiring with 100,000 rows leave PINGREQ answered",
  opts,
  async () => {
    const dir = await Deno.makeTempDir();
    const { b, port } = await durableBroker(dir, "batch");
    try {
      for (let i = 0; i < SESSIONS; i++) {
        const s = await RawMqtt.connect(port, {
          clientId: `s${i}`,
          clean: false,
          properties: { sessionExpiryInterval: EXPIRY_S },
        }, 5);
        await s.send(
          { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "#", qos: 1 }] },
          5,
        );
        await s.next("suback");
        await s.end();
      }
      const left = performance.now();
      const pub = await RawMqtt.connect(port, { clientId: "pub" });
      const payload = "x".repeat(1000);
      for (let i = 1; i <= MESSAGES; i++) {
        await pub.send({ cmd: "publish", topic: "t", payload, qos: 1, messageId: i } as never);
      }
      await waitFor(
        () => pub.packets.filter((p) => p.cmd === "puback").length >= MESSAGES,
        30_000,
        "every PUBACK",
      );
      await pub.end();
      assert.ok(performance.now() - left < (EXPIRY_S - 2) * 1000, "filled before they expire");
      assert.equal(journalRows(dir), SESSIONS * MESSAGES);
      // PINGREQ every 20 ms from before they expire until well after.
      const worst = await longestPing(port, left + (EXPIRY_S + 4) * 1000, 30_000);
      await waitFor(() => journalRows(dir) === 0, 30_000, "their rows deleted");
      // Main: several seconds (100,000 deletes in one turn).
      assert.ok(worst < 1500, `PINGRESP took ${worst.toFixed(0)} ms`);
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

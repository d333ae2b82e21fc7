/**
 * A session read back whose subscriptions pass `--max-memory` (a restart
 * with a lower budget, as after an out-of-memory kill) is put back, not
 * deleted from disk as unreadable with its queued messages: restored
 * subscriptions are not refused by the budget, as they are not by their
 * source's share (hostile review 41b X7: 3 of 5 sessions deleted, their
 * PUBACKed messages with them). The memory guard then holds away sessions
 * to their share, counted, as for any other.
 */
import assert from "node:assert/strict";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { durableBroker } from "./helpers/mqtt_durable.ts";
import type { IPublishPacket } from "mqtt-packet";

const FILTERS = 5000;

Deno.test({
  name:
    "mqtt restore: a persistent session whose subscriptions pass a lower --max-memory comes back with its queued messages (hostile41b X7)",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-restore-budget-" });
    try {
      let { b, port } = await durableBroker(dir, "batch", "--max-memory", String(512 * 2 ** 20));
      const s = await RawMqtt.connect(port, { clientId: "wide", clean: false });
      for (let i = 0; i < FILTERS; i += 500) {
        const subscriptions = Array.from(
          { length: 500 },
          (_, j) => ({ topic: `w/${i + j}/a/b/c/d/e/f`, qos: 1 as const }),
        );
        await s.send({ cmd: "subscribe", messageId: 1 + i / 500, subscriptions });
        await s.next("suback", 30_000);
      }
      await s.end();
      const pub = await RawMqtt.connect(port, { clientId: "p" });
      await pub.send(
        {
          cmd: "publish",
          topic: "w/7/a/b/c/d/e/f",
          payload: "kept",
          qos: 1,
          messageId: 1,
          dup: false,
          retain: false,
        },
      );
      await pub.next("puback");
      await pub.end();
      await b.stop();
      ({ b, port } = await durableBroker(dir, "batch", "--max-memory", String(16 * 2 ** 20)));
      try {
        assert.match(b.stderr(), /Read 1 MQTT session\(s\) back with 1 message\(s\) for them\n/);
        const c = await RawMqtt.connect(port, { clientId: "wide", clean: false });
        const p = await c.next("publish") as IPublishPacket;
        assert.equal(String(p.payload), "kept");
        await c.end();
      } finally {
        await b.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * Hostile review h47b N2 (stop 47's M-B3 give-back, mqtt/give_back.ts): a
 * persistent `$share` member's deliveries in flight are given to another
 * member when its session expires, but only those it took in THIS broker
 * process: InflightWindow.restore (a restart reading the data directory)
 * keeps each PUBLISH with no group member (`by: undefined`), and
 * givenBack() skips those. So after a broker restart a member that never
 * comes back loses what it had in flight when its session expires: neither
 * given to the member that stayed nor counted dropped (M-B3 as it was,
 * behind a restart).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { IPublishPacket } from "mqtt-packet";
import { durableBroker } from "./helpers/mqtt_durable.ts";
import { drainAcking, mqttOpts, RawMqtt } from "./helpers/mqtt.ts";
import { BrokerClient } from "./helpers/broker.ts";
import { waitFor } from "./helpers/raw.ts";

async function member(port: number, id: string, receiveMaximum: number, expiry: number) {
  const c = await RawMqtt.connect(
    port,
    { clientId: id, clean: true, properties: { receiveMaximum, sessionExpiryInterval: expiry } },
    5,
  );
  await c.send(
    { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "$share/g/t/#", qos: 1 }] } as never,
    5,
  );
  await c.next("suback");
  return c;
}

Deno.test({
  name:
    "h47b N2: a persistent $share member's deliveries in flight across a broker restart go to another member when its session expires (or are counted dropped)",
  ...mqttOpts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "dist-h47b-gb-" });
    try {
      let { b, port } = await durableBroker(dir, "always");
      // The only member: persistent (kept 3 s once away), a window of 2.
      const away = await member(port, "away", 2, 3);
      const pub = await RawMqtt.connect(port, { clientId: "pub" }, 5);
      const n = 4;
      for (let i = 0; i < n; i++) {
        await pub.send({
          cmd: "publish",
          topic: "t/x",
          payload: Buffer.from(`m${i}`),
          qos: 1,
          messageId: i + 1,
        } as never, 5);
      }
      await waitFor(
        () => pub.packets.filter((p) => p.cmd === "puback").length >= n,
        5000,
        "PUBACKs",
      );
      await waitFor(
        () => away.packets.filter((p) => p.cmd === "publish").length >= 2,
        5000,
        "the member's full window",
      );
      const inFlight = (away.packets.filter((p) => p.cmd === "publish") as IPublishPacket[])
        .map((p) => String(p.payload));
      await pub.end();
      await away.end();
      await b.stop();
      // Restarted: the member never comes back; another joins the group and stays.
      ({ b, port } = await durableBroker(dir, "always"));
      try {
        const stayer = await member(port, "stayer", 65535, 0);
        // The away session expires 3 s after the restart at most: its due goes to the stayer.
        const got = new Set(await drainAcking(stayer, 5000));
        await stayer.end();
        const stats = await (async () => {
          const native = await BrokerClient.connect(b.port, "json", "h47b");
          try {
            return await native.stats();
          } finally {
            native.close();
          }
        })();
        const dropped = stats.dropped as number;
        const lost = inFlight.filter((p) => !got.has(p));
        assert.ok(
          lost.length <= dropped,
          `in flight at the restart: ${inFlight}; the stayer got ${[...got].sort()}; ` +
            `${lost.length} neither given back nor counted (dropped ${dropped})`,
        );
      } finally {
        await b.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

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
import { durableBroker } from "./helpers/mqtt_durable.ts";
import { drainAcking, mqttOpts, RawMqtt } from "./helpers/mqtt.ts";
import * as share from "./helpers/share_members.ts";

Deno.test({
  name:
    "h47b N2: a persistent $share member's deliveries in flight across a broker restart go to another member when its session expires (or are counted dropped)",
  ...mqttOpts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "dist-h47b-gb-" });
    try {
      let { b, port } = await durableBroker(dir, "always");
      // The only member: persistent (kept 3 s once away), a window of 2.
      const away = await share.member(port, "away", {
        receiveMaximum: 2,
        sessionExpiryInterval: 3,
      });
      const pub = await RawMqtt.connect(port, { clientId: "pub" }, 5);
      const n = 4;
      await share.publishNumbered(pub, 0, n);
      await share.pubacks(pub, n);
      await share.windowFull(away, 2);
      const inFlight = share.publishes(away).map((p) => String(p.payload));
      await pub.end();
      await away.end();
      await b.stop();
      // Restarted: the member never comes back; another joins the group and stays.
      ({ b, port } = await durableBroker(dir, "always"));
      try {
        const stayer = await share.member(port, "stayer");
        // The away session expires 3 s after the restart at most: its due goes to the stayer.
        const got = new Set(await drainAcking(stayer, 5000));
        await stayer.end();
        const stats = await share.nativeStats(b.port, "h47b");
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

/**
 * n47b (hostile h47b N2's other half): a persistent `$share` member's
 * deliveries in flight read back after a broker restart, with no other
 * member left when its session expires, are counted dropped (`sys.stats`
 * `dropped`), not lost uncounted.
 */
import assert from "node:assert/strict";
import { durableBroker } from "./helpers/mqtt_durable.ts";
import { mqttOpts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";
import * as share from "./helpers/share_members.ts";

Deno.test({
  name:
    "n47b: a persistent $share member's deliveries in flight across a restart are counted dropped when its session expires with no other member",
  ...mqttOpts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "dist-n47b-gb-" });
    try {
      let { b, port } = await durableBroker(dir, "always");
      const away = await share.member(port, "away", {
        receiveMaximum: 2,
        sessionExpiryInterval: 2,
      });
      const pub = await RawMqtt.connect(port, { clientId: "pub" }, 5);
      await share.publishNumbered(pub, 0, 4);
      await share.pubacks(pub, 4);
      await share.windowFull(away, 2);
      await pub.end();
      await away.end();
      await b.stop();
      ({ b, port } = await durableBroker(dir, "always"));
      try {
        // The session (kept 2 s once away) expires: 2 in flight, 2 queued, no one to take them.
        let dropped = 0;
        const until = performance.now() + 10_000;
        while (dropped < 4 && performance.now() < until) {
          await sleep(250);
          dropped = (await share.nativeStats(b.port, "n47b")).dropped as number;
        }
        assert.equal(dropped, 4, "the 2 in flight and the 2 queued counted dropped");
      } finally {
        await b.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

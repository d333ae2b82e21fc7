/**
 * QoS 2 publishes an away persistent session left half-finished (PUBREC
 * sent, PUBREL never came) stay with it, up to Receive Maximum (1,024)
 * each: they count in `--max-memory` (hostile review 39b Q11: 2,000 such
 * sessions grew RSS by 81 MiB more than without, counted nowhere).
 */
import assert from "node:assert/strict";
import mp from "mqtt-packet";
import { mqttOpts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { concat, sleep, waitFor } from "./helpers/raw.ts";

Deno.test({
  name: "mqtt memory: an away session's QoS 2 ids awaiting PUBREL count in --max-memory",
  ...mqttOpts,
  fn: () =>
    withMqttBroker(async (b) => {
      const n = 20;
      const ids = 1024;
      const publishes = concat(
        Array.from({ length: ids }, (_, i) =>
          mp.generate({
            cmd: "publish",
            topic: "h2/x",
            payload: "v",
            qos: 2,
            messageId: i + 1,
            dup: false,
            retain: false,
          })),
      );
      for (let s = 0; s < n; s++) {
        const raw = await RawMqtt.connect(b.mqttPort, { clientId: `q2-${s}`, clean: false });
        await raw.write(publishes);
        await waitFor(
          () => raw.packets.filter((p) => p.cmd === "pubrec").length === ids,
          10_000,
          `${ids} PUBRECs`,
        );
        raw.close(); // gone without PUBREL: the ids stay with the session
      }
      // A session's own 8 KiB, and about 40 bytes an id (roles/broker/mqtt/session_cost.ts).
      const want = n * (8192 + ids * 40);
      let counted = 0;
      for (let t = 0; t < 40 && counted < want; t++) {
        counted = ((await b.stats()).mqtt as { sessions_bytes: number }).sessions_bytes;
        if (counted < want) await sleep(50);
      }
      assert.ok(counted >= want, `counted ${counted} for ${n} sessions × ${ids} ids, want ${want}`);
    }),
});

/**
 * n47b (hostile h47b N2's other half): a persistent `$share` member's
 * deliveries in flight read back after a broker restart, with no other
 * member left when its session expires, are counted dropped (`sys.stats`
 * `dropped`), not lost uncounted.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { durableBroker } from "./helpers/mqtt_durable.ts";
import { mqttOpts, RawMqtt } from "./helpers/mqtt.ts";
import { BrokerClient } from "./helpers/broker.ts";
import { sleep, waitFor } from "./helpers/raw.ts";

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
    "n47b: a persistent $share member's deliveries in flight across a restart are counted dropped when its session expires with no other member",
  ...mqttOpts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "dist-n47b-gb-" });
    try {
      let { b, port } = await durableBroker(dir, "always");
      const away = await member(port, "away", 2, 2);
      const pub = await RawMqtt.connect(port, { clientId: "pub" }, 5);
      for (let i = 0; i < 4; i++) {
        await pub.send({
          cmd: "publish",
          topic: "t/x",
          payload: Buffer.from(`m${i}`),
          qos: 1,
          messageId: i + 1,
        } as never, 5);
      }
      await waitFor(
        () => pub.packets.filter((p) => p.cmd === "puback").length >= 4,
        5000,
        "PUBACKs",
      );
      await waitFor(
        () => away.packets.filter((p) => p.cmd === "publish").length >= 2,
        5000,
        "the member's full window",
      );
      await pub.end();
      await away.end();
      await b.stop();
      ({ b, port } = await durableBroker(dir, "always"));
      try {
        const stats = async () => {
          const native = await BrokerClient.connect(b.port, "json", "n47b");
          try {
            return await native.stats();
          } finally {
            native.close();
          }
        };
        // The session (kept 2 s once away) expires: 2 in flight, 2 queued, no one to take them.
        let dropped = 0;
        const until = performance.now() + 10_000;
        while (dropped < 4 && performance.now() < until) {
          await sleep(250);
          dropped = (await stats()).dropped as number;
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

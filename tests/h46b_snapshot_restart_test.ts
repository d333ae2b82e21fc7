/**
 * hostile review 46b M-B7 (medium): with `--data-dir`, a persistent
 * session whose SUBSCRIBE's retained values are still going out (its client
 * takes them at its Receive Maximum) loses the rest of them at a restart,
 * a clean stop included: the subscription comes back (Session Present 1,
 * so its client does not subscribe again), what was in flight is sent
 * again, and the retained values not yet sent never are, counted nowhere.
 * Without a restart the same client, away and back, gets all of them.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqttPacket, { type IPublishPacket } from "mqtt-packet";
import { mqttOpts as opts, RawMqtt, startMqttBroker } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";

const N = 500;

Deno.test(
  "mqtt restart: a persistent session gets every retained value of its SUBSCRIBE across a restart",
  opts,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "h46b-snapshot-" });
    let b = await startMqttBroker({ dataDir: dir });
    let sub: RawMqtt | undefined;
    try {
      const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" }, 4);
      const packets = Array.from({ length: N }, (_, i) =>
        mqttPacket.generate({
          cmd: "publish",
          topic: `r/${i}`,
          payload: Buffer.from(`v${i}`),
          qos: 1,
          messageId: i + 1,
          retain: true,
          dup: false,
        }));
      await pub.write(new Uint8Array(Buffer.concat(packets)));
      for (let t = 0; pub.packets.filter((p) => p.cmd === "puback").length < N; t++) {
        if (t > 500) throw new Error("retained values not acknowledged");
        await sleep(10);
      }
      await pub.end();
      const session = {
        clientId: "slow-reader",
        clean: false,
        protocolVersion: 5,
        properties: { sessionExpiryInterval: 3600, receiveMaximum: 10 },
      };
      const seen = new Set<string>();
      /** Takes and acknowledges deliveries until `n` are seen or `ms` pass. */
      const take = async (c: RawMqtt, n: number, ms: number) => {
        const end = Date.now() + ms;
        while (seen.size < n && Date.now() < end) {
          const p = c.packets.shift();
          if (p === undefined) {
            await sleep(2);
            continue;
          }
          if (p.cmd !== "publish") continue;
          seen.add(String((p as IPublishPacket).payload));
          await c.send({ cmd: "puback", messageId: (p as IPublishPacket).messageId } as never, 5);
        }
      };
      sub = await RawMqtt.connect(b.mqttPort, session, 5);
      await sub.send(
        { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "r/#", qos: 1 }] } as never,
        5,
      );
      await take(sub, 50, 10_000);
      await sub.end();
      await b.stop(); // a clean stop (a SIGKILL loses them the same way)
      b = await startMqttBroker({ dataDir: dir });
      sub = await RawMqtt.connect(b.mqttPort, session, 5);
      await take(sub, N, 15_000);
      assert.equal(seen.size, N, `retained values received of ${N} (50 before the restart)`);
    } finally {
      await sub?.end();
      await b.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
);

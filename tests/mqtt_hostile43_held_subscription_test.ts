/**
 * hostile review 43b B2: under `--data-dir` a SUBSCRIBE's subscription is
 * held (nothing delivered) until its SUBACK, which waits for the commit;
 * if the connection is taken over (or closed by the broker) meanwhile,
 * neither the SUBACK nor the release comes: the session keeps the
 * subscription held for good. The client, told Session Present 1, does not
 * subscribe again (paho's usual `if not session present: subscribe`) and
 * never gets a message; they queue until drop-oldest drops them. The same
 * for a SUBSCRIBE of a filter it holds (`again()` holds the subscription
 * and its queue). b2_held.py: 0 of 8 messages with `--data-dir` (MQTT 5
 * and 3.1.1), 3 of 3 without it, 3 of 3 with Mosquitto 2.
 */
import assert from "node:assert/strict";
import type mqttPacket from "mqtt-packet";
import { durableBroker as broker } from "./helpers/mqtt_durable.ts";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";

const ROUNDS = 5;

for (const again of [false, true]) {
  Deno.test({
    name: `mqtt --data-dir: a session taken over before its SUBACK still gets its messages${
      again ? " (a SUBSCRIBE of a filter it holds)" : ""
    }`,
    ...opts,
    async fn() {
      const dir = await Deno.makeTempDir();
      const { b, port } = await broker(dir, "batch");
      try {
        let lost = 0;
        for (let round = 0; round < ROUNDS; round++) {
          const id = `held${round}`;
          const topic = `h/${round}`;
          const first = await RawMqtt.connect(port, { clientId: id, clean: false });
          if (again) {
            await first.send({
              cmd: "subscribe",
              messageId: 1,
              subscriptions: [{ topic, qos: 1 }],
            });
            await first.next("suback");
          }
          const second = await RawMqtt.open(port);
          // The SUBSCRIBE, then at once the same client id connects again (a reconnect, a takeover).
          await first.send({ cmd: "subscribe", messageId: 2, subscriptions: [{ topic, qos: 1 }] });
          await second.send({
            cmd: "connect",
            protocolId: "MQTT",
            protocolVersion: 4,
            clientId: id,
            clean: false,
            keepalive: 0,
          } as mqttPacket.Packet);
          const ack = await second.next("connack") as mqttPacket.IConnackPacket;
          assert.equal(ack.sessionPresent, true, "its session is there");
          const pub = await RawMqtt.connect(port, { clientId: `p${round}` });
          await pub.send({ cmd: "publish", topic, payload: "x", qos: 1, messageId: 1 } as never);
          await pub.next("puback");
          const got = await second.next("publish", 2_000).catch(() => undefined);
          if (got === undefined) lost++;
          await pub.end();
          await first.end();
          await second.end();
          await sleep(50);
        }
        // main: 5 of 5 lost (4-5 of 5 with `again`) (held until the client subscribes again).
        assert.equal(lost, 0, `${lost} of ${ROUNDS} sessions got nothing`);
      } finally {
        await b.stop();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

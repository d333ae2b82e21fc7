/**
 * A SUBACK sent is kept (`--data-dir`): the broker SIGKILLed the moment a
 * persistent session's SUBACK arrives, restarted on the same directory,
 * gives the session back with that subscription (hostile review 39b Q5:
 * the SUBACK went before the session's row was committed; the client came
 * back told Session Present 1, so it did not subscribe again, and the
 * subscription was gone: 12 of 12 times under `--fsync batch`).
 */
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { durableBroker as broker } from "./helpers/mqtt_durable.ts";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { writeAll } from "./helpers/raw.ts";

const gen = (p: unknown) => mqttPacket.generate(p as mqttPacket.Packet);

/** Connects `id` (persistent), SUBSCRIBEs `topic` at QoS 1, and SIGKILLs `child` in the turn its SUBACK is read. */
async function subscribeThenKill(
  port: number,
  id: string,
  topic: string,
  child: Deno.ChildProcess,
) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const connect = { cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clientId: id };
  await writeAll(conn, gen({ ...connect, clean: false, keepalive: 0 }));
  await writeAll(conn, gen({ cmd: "subscribe", messageId: 9, subscriptions: [{ topic, qos: 1 }] }));
  const buf = new Uint8Array(1024);
  let seen = new Uint8Array(0);
  for (;;) {
    const n = await conn.read(buf);
    assert.ok(n !== null, "the broker closed before its SUBACK");
    seen = new Uint8Array([...seen, ...buf.subarray(0, n)]);
    // CONNACK (4 bytes), then SUBACK 0x90 3 0 9 granted.
    if (seen.length >= 9 && seen[4] === 0x90 && seen[7] === 9) break;
  }
  child.kill("SIGKILL");
  conn.close();
}

for (const fsync of ["batch", "always"]) {
  Deno.test({
    name:
      `mqtt --fsync ${fsync}: a persistent session SIGKILLed on its SUBACK comes back with that subscription (hostile39b Q5)`,
    ...opts,
    async fn() {
      const dir = await Deno.makeTempDir();
      try {
        let lost = 0;
        for (let round = 0; round < 4; round++) {
          const first = await broker(dir, fsync);
          await subscribeThenKill(first.port, `sk${round}`, `q5/${round}`, first.b.child);
          await first.b.child.status;
          const { b, port } = await broker(dir, fsync);
          try {
            const c = await RawMqtt.connect(port, { clientId: `sk${round}`, clean: false });
            const pub = await RawMqtt.connect(port, { clientId: "p", clean: true });
            await pub.send(
              {
                cmd: "publish",
                topic: `q5/${round}`,
                payload: "x",
                qos: 1,
                messageId: 1,
              } as mqttPacket.Packet,
            );
            await pub.next("puback", 5_000);
            const got = await c.next("publish", 2_000).catch(() => undefined);
            if (got === undefined) lost++;
            await pub.end();
            await c.end();
          } finally {
            await b.stop();
          }
        }
        // main under batch: 4 of 4 lost.
        assert.equal(lost, 0, `${lost} of 4 subscriptions lost`);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

/**
 * A persistent session discarded by a Clean Start CONNECT stays discarded:
 * the broker SIGKILLed the moment its CONNACK (Session Present 0) arrives,
 * restarted on the same directory, has no session for the client id and
 * delivers nothing for the old subscription (hostile review 40a T5: under
 * `--fsync batch` 6 rounds of 8 brought the old session back, Session
 * Present 1 and the old filter's message).
 */
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { durableBroker as broker } from "./helpers/mqtt_durable.ts";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep, writeAll } from "./helpers/raw.ts";

const persistent = { clean: false, properties: { sessionExpiryInterval: 3600 } };

/** Connects `cs` with Clean Start and expiry 0 on a raw socket; SIGKILL in the turn CONNACK is read. */
async function cleanThenKill(port: number, child: Deno.ChildProcess): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const connect = { cmd: "connect", protocolId: "MQTT", protocolVersion: 5, keepalive: 0 };
  await writeAll(
    conn,
    mqttPacket.generate({ ...connect, clientId: "cs", clean: true } as mqttPacket.Packet, {
      protocolVersion: 5,
    }),
  );
  const n = await conn.read(new Uint8Array(64));
  assert.ok(n !== null, "the broker closed before its CONNACK");
  child.kill("SIGKILL");
  conn.close();
}

for (let round = 0; round < 4; round++) {
  Deno.test({
    name:
      `mqtt kill on a Clean Start CONNACK (--fsync batch, round ${round}): the discarded session stays gone`,
    ...opts,
    fn: async () => {
      const dir = await Deno.makeTempDir({ prefix: "mqtt-kill-clean-" });
      let { b, port } = await broker(dir, "batch");
      try {
        const c = await RawMqtt.connect(port, { clientId: "cs", ...persistent }, 5);
        await c.send(
          { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "c/a", qos: 1 }] },
          5,
        );
        await c.next("suback");
        await c.send({ cmd: "disconnect" }, 5);
        await c.end();
        await sleep(100 + round * 100);
        await cleanThenKill(port, b.child);
        await b.stop("SIGKILL");
        ({ b, port } = await broker(dir, "batch"));
        const pub = await RawMqtt.connect(port, { clientId: "cp" }, 5);
        await pub.send({
          cmd: "publish",
          topic: "c/a",
          payload: "after",
          qos: 1,
          messageId: 1,
          dup: false,
          retain: false,
        }, 5);
        await pub.next("puback");
        await pub.end();
        const again = await RawMqtt.open(port, 5);
        await again.send({
          cmd: "connect",
          protocolId: "MQTT",
          protocolVersion: 5,
          clientId: "cs",
          keepalive: 0,
          ...persistent,
        } as mqttPacket.Packet, 5);
        const ack = await again.next("connack") as mqttPacket.IConnackPacket;
        await sleep(500);
        const got = again.packets.filter((p) => p.cmd === "publish").length;
        await again.end();
        assert.deepEqual([ack.sessionPresent, got], [false, 0], b.stderr());
      } finally {
        await b.stop();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

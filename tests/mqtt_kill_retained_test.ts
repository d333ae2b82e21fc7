/**
 * A retained MQTT PUBLISH acknowledged is kept (`--data-dir`): the broker
 * SIGKILLed the moment the last PUBACK arrives, restarted on the same
 * directory, has every retained value, the last one included, as a
 * confirmed native publish has (hostile review 40a T4: the PUBACK went
 * before the retained value's commit, and 7 rounds of 8 lost the last).
 */
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { durableBroker as broker } from "./helpers/mqtt_durable.ts";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep, writeAll } from "./helpers/raw.ts";

const gen = (p: unknown) => mqttPacket.generate(p as mqttPacket.Packet);

/** QoS `qos` retained PUBLISHes to r/0…r/(n-1), one at a time; SIGKILL in the turn the last ack is read. */
async function publishThenKill(port: number, child: Deno.ChildProcess, n: number, qos: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const connect = { cmd: "connect", protocolId: "MQTT", protocolVersion: 4, keepalive: 0 };
  await writeAll(conn, gen({ ...connect, clientId: "pub", clean: true }));
  const buf = new Uint8Array(1024);
  let seen = new Uint8Array(0);
  /** Reads until `len` bytes have come, the last ack's id ending them. */
  const upTo = async (len: number) => {
    while (seen.length < len) {
      const got = await conn.read(buf);
      assert.ok(got !== null, "the broker closed before the acknowledgement");
      seen = new Uint8Array([...seen, ...buf.subarray(0, got)]);
    }
  };
  await upTo(4); // CONNACK
  for (let i = 0; i < n; i++) {
    const messageId = i + 1;
    const payload = `value-${i}`;
    await writeAll(
      conn,
      gen({ cmd: "publish", topic: `r/${i}`, payload, qos, messageId, retain: true, dup: false }),
    );
    await upTo(4 + 4 * (i + 1)); // PUBACK or PUBREC, 4 bytes each
  }
  child.kill("SIGKILL");
  conn.close();
}

/** The retained values r/# brings, by topic, after 1 s of quiet. */
async function retained(port: number): Promise<Map<string, string>> {
  const c = await RawMqtt.connect(port, { clientId: "reader", clean: true });
  await c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "r/#", qos: 0 }] });
  await c.next("suback");
  await sleep(1000);
  const got = new Map<string, string>();
  for (const p of c.packets) {
    if (p.cmd === "publish") got.set(p.topic, String(p.payload));
  }
  await c.end();
  return got;
}

for (const [fsync, qos] of [["batch", 1], ["batch", 2], ["off", 1]] as const) {
  Deno.test({
    name:
      `mqtt kill on PUBACK (--fsync ${fsync}, QoS ${qos}): every retained value acknowledged comes back`,
    ...opts,
    fn: async () => {
      for (let round = 0; round < 3; round++) {
        const dir = await Deno.makeTempDir({ prefix: "mqtt-kill-retained-" });
        let { b, port } = await broker(dir, fsync);
        try {
          const n = 20 + round * 17;
          await publishThenKill(port, b.child, n, qos);
          await b.stop("SIGKILL");
          ({ b, port } = await broker(dir, fsync));
          const got = await retained(port);
          assert.equal(got.size, n, `round ${round}: ${got.size} of ${n}\n${b.stderr()}`);
          assert.equal(got.get(`r/${n - 1}`), `value-${n - 1}`);
        } finally {
          await b.stop();
          await Deno.remove(dir, { recursive: true });
        }
      }
    },
  });
}

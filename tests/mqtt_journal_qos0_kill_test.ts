/**
 * A QoS 0 backlog a persistent session got when it came back is not sent
 * to it again after a SIGKILL (`--data-dir`): QoS 0 is at most once.
 * Hostile review 39b Q12: the PUBLISHes went out before the deletes of
 * their rows were committed, so a SIGKILL the moment the last one arrived
 * brought the whole backlog back at the next start (2,000 of 2,000, 5
 * rounds of 5).
 */
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep, writeAll } from "./helpers/raw.ts";
import { durableBroker } from "./helpers/mqtt_durable.ts";

const N = 2000;
const ROUNDS = 3;

/** Queues N QoS 0 messages for session `z` (away), then one QoS 1 to wait on: N + 1 in all. */
async function queue(port: number): Promise<void> {
  const c = await RawMqtt.connect(port, { clientId: "pub" });
  const one = mqttPacket.generate(
    { cmd: "publish", topic: "z", payload: "x", qos: 0 } as mqttPacket.Packet,
  );
  await c.write(new Uint8Array(Buffer.concat(Array(N).fill(one))));
  await c.send(
    { cmd: "publish", topic: "z", payload: "last", qos: 1, messageId: 1 } as mqttPacket.Packet,
  );
  await c.next("puback", 30_000);
  await c.end();
}

/** Session `z` comes back; the broker is SIGKILLed in the turn its last delivery (of `count`) is read. */
async function takeThenKill(port: number, child: Deno.ChildProcess, count: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  let got = 0;
  parser.on("packet", (p: mqttPacket.Packet) => {
    if (p.cmd === "publish" && ++got === count) child.kill("SIGKILL");
  });
  await writeAll(
    conn,
    mqttPacket.generate({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: 4,
      clientId: "z",
      clean: false,
      keepalive: 0,
    }),
  );
  const buf = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    parser.parse(Buffer.from(buf.subarray(0, n)));
  }
  conn.close();
  assert.equal(got, count, "the whole backlog came before the kill");
}

/** What session `z` gets now, once 1 s passes with nothing. */
async function again(port: number): Promise<number> {
  const c = await RawMqtt.connect(port, { clientId: "z", clean: false });
  let got = 0;
  for (let quiet = 0; quiet < 10;) {
    const n = c.packets.splice(0).filter((p) => p.cmd === "publish").length;
    got += n;
    quiet = n === 0 ? quiet + 1 : 0;
    await sleep(100);
  }
  await c.send({ cmd: "disconnect" });
  await c.end();
  return got;
}

Deno.test({
  name:
    "mqtt journal: a QoS 0 backlog taken by its returning session is not sent again after a SIGKILL the moment it is read",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-journal-qos0-kill-" });
    let { b, port } = await durableBroker(dir, "batch", "--mqtt-queue-qos0");
    try {
      const s = await RawMqtt.connect(port, { clientId: "z", clean: false });
      await s.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "z", qos: 0 }] });
      await s.next("suback");
      await s.send({ cmd: "disconnect" });
      await s.end();
      const twice: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        await queue(port);
        await takeThenKill(port, b.child, N + 1);
        await b.stop();
        ({ b, port } = await durableBroker(dir, "batch", "--mqtt-queue-qos0"));
        twice.push(await again(port));
      }
      assert.deepEqual(twice, Array(ROUNDS).fill(0), "deliveries sent again after the kill");
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

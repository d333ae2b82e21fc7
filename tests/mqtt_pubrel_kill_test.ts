/**
 * A QoS 2 delivery to a persistent session is not delivered twice after a
 * SIGKILL (`--data-dir`): the broker's PUBREL goes out once its row says
 * "PUBREL owed" is committed. Hostile review 41b X3: the PUBREL went out
 * first, and a SIGKILL the moment it arrived brought the PUBLISH back
 * (DUP) at the next start, which a client that got PUBREL (and handed the
 * message on) takes as a new message: 6 of 12 and 9 of 10 rounds.
 */
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep, writeAll } from "./helpers/raw.ts";
import { durableBroker } from "./helpers/mqtt_durable.ts";

const ROUNDS = 6;
const gen = (p: unknown) => new Uint8Array(mqttPacket.generate(p as mqttPacket.Packet));

/**
 * Session `q` comes back, takes its QoS 2 delivery (PUBREC), and the
 * broker is SIGKILLed in the turn its PUBREL is read.
 */
async function pubrecThenKill(port: number, child: Deno.ChildProcess): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  let pubrel = false;
  const replies: Uint8Array[] = [];
  parser.on("packet", (p: mqttPacket.Packet) => {
    if (p.cmd === "publish" && p.qos === 2) {
      replies.push(gen({ cmd: "pubrec", messageId: p.messageId }));
    } else if (p.cmd === "pubrel" && !pubrel) {
      pubrel = true;
      child.kill("SIGKILL");
    }
  });
  const connect = { cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clientId: "q" };
  await writeAll(conn, gen({ ...connect, clean: false, keepalive: 0 }));
  const buf = new Uint8Array(64 * 1024);
  const timer = setTimeout(() => conn.close(), 10_000);
  for (;;) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    parser.parse(Buffer.from(buf.subarray(0, n)));
    for (const reply of replies.splice(0)) await writeAll(conn, reply).catch(() => {});
  }
  clearTimeout(timer);
  try {
    conn.close();
  } catch {
    // closed by the timer
  }
  assert.ok(pubrel, "PUBREL came before the broker closed");
}

Deno.test({
  name:
    "mqtt journal: a QoS 2 delivery whose PUBREL arrived is not sent again after a SIGKILL the moment it is read (hostile41b X3)",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-pubrel-kill-" });
    let { b, port } = await durableBroker(dir, "batch");
    try {
      const s = await RawMqtt.connect(port, { clientId: "q", clean: false });
      await s.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t/#", qos: 2 }] });
      await s.next("suback");
      await s.end();
      const again: string[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        const pub = await RawMqtt.connect(port, { clientId: "p" });
        const payload = `r${round}`;
        const publish = { cmd: "publish" as const, topic: "t/x", payload, messageId: 1 };
        await pub.send({ ...publish, qos: 2, dup: false, retain: false });
        await pub.next("pubrec");
        await pub.send({ cmd: "pubrel", messageId: 1 });
        await pub.next("pubcomp");
        await pub.end();
        await pubrecThenKill(port, b.child);
        await b.stop();
        ({ b, port } = await durableBroker(dir, "batch"));
        const c = await RawMqtt.connect(port, { clientId: "q", clean: false });
        for (let quiet = 0; quiet < 7;) {
          const packets = c.packets.splice(0);
          for (const p of packets) {
            if (p.cmd === "publish") {
              again.push(`${p.payload}${p.dup ? " (DUP)" : ""}`);
              await c.send({ cmd: "pubrec", messageId: p.messageId! });
            }
            // PUBREL owed: PUBCOMP ends the exchange.
            if (p.cmd === "pubrel") await c.send({ cmd: "pubcomp", messageId: p.messageId! });
          }
          quiet = packets.length === 0 ? quiet + 1 : 0;
          await sleep(100);
        }
        await c.end();
      }
      assert.deepEqual(again, [], "delivered again after the PUBREL");
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

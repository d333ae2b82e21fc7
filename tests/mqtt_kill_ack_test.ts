/**
 * A QoS 1 PUBLISH acknowledged is kept (`--data-dir`): the broker
 * SIGKILLed the moment its PUBACK arrives, restarted on the same
 * directory, gives every away persistent session its copy (hostile review
 * 39b Q1: the PUBACK went before the deliveries were queued and their
 * journal rows committed; 0 of 24,000 copies came back). A session's
 * overlapping filters take one copy (one_copy.ts), one row each.
 */
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import {
  DEEP_TOPIC as TOPIC,
  deepFilter as filter,
  durableBroker as broker,
} from "./helpers/mqtt_durable.ts";
import { mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { sleep, writeAll } from "./helpers/raw.ts";
import { BrokerClient } from "./helpers/broker.ts";

/** Persistent 3.1.1 sessions `s0…`, each subscribed at QoS 1 to `filters` distinct filters, gone. */
async function sessions(port: number, count: number, filters: number): Promise<void> {
  for (let s = 0; s < count; s++) {
    const c = await RawMqtt.connect(port, { clientId: `s${s}`, clean: false });
    for (let k = 0, id = 1; k < filters; k += 1000, id++) {
      const subscriptions = [];
      for (let i = k; i < Math.min(filters, k + 1000); i++) {
        subscriptions.push({ topic: filter(i), qos: 1 });
      }
      await c.send({ cmd: "subscribe", messageId: id, subscriptions } as mqttPacket.Packet);
      const ack = await c.next("suback", 30_000) as mqttPacket.ISubackPacket;
      assert.ok(ack.granted.every((g) => g === 1), "every filter granted");
    }
    await c.send({ cmd: "disconnect" });
    await c.end();
  }
}

/** Sends one QoS 1 PUBLISH on a raw socket and SIGKILLs `child` in the turn its PUBACK is read. */
async function publishThenKill(port: number, child: Deno.ChildProcess): Promise<void> {
  const c = await RawMqtt.connect(port, { clientId: "pub", clean: true });
  c.close(); // (only its CONNACK was needed: a socket of our own reads the PUBACK at once)
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const gen = (p: unknown) => mqttPacket.generate(p as mqttPacket.Packet);
  await writeAll(
    conn,
    gen({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: 4,
      clientId: "pub2",
      clean: true,
      keepalive: 0,
    }),
  );
  await writeAll(
    conn,
    gen({
      cmd: "publish",
      topic: TOPIC,
      payload: "the-one",
      qos: 1,
      messageId: 7,
      retain: false,
      dup: false,
    }),
  );
  const buf = new Uint8Array(1024);
  let seen = new Uint8Array(0);
  for (;;) {
    const n = await conn.read(buf);
    assert.ok(n !== null, "the broker closed before its PUBACK");
    seen = new Uint8Array([...seen, ...buf.subarray(0, n)]);
    // CONNACK (4 bytes), then PUBACK 0x40 2 0 7.
    if (seen.length >= 8 && seen[4] === 0x40 && seen[7] === 7) break;
  }
  child.kill("SIGKILL");
  conn.close();
}

/** The copies each session gets back (acknowledged as they come), after at most 3 s of quiet. */
async function copies(port: number, count: number): Promise<number[]> {
  const got: number[] = [];
  for (let s = 0; s < count; s++) {
    const c = await RawMqtt.connect(port, { clientId: `s${s}`, clean: false });
    let n = 0;
    for (let quiet = 0; quiet < 30;) {
      const p = c.packets.shift();
      if (p === undefined) {
        await sleep(100);
        quiet++;
        continue;
      }
      quiet = 0;
      if (p.cmd !== "publish") continue;
      n++;
      if (p.qos === 1) await c.send({ cmd: "puback", messageId: p.messageId! });
    }
    got.push(n);
    await c.end();
  }
  return got;
}

/** A confirmed native `broker.publish`, the broker SIGKILLed in the turn its answer is read. */
async function confirmThenKill(port: number, child: Deno.ChildProcess): Promise<void> {
  const c = await BrokerClient.connect(port);
  await c.confirm(`/${TOPIC}`, "the-one", false).then(() => child.kill("SIGKILL"));
  c.close();
}

const cases = [
  ["batch", 2, 5000, "MQTT"],
  ["batch", 1, 1, "MQTT"],
  ["batch", 2, 5000, "native"],
  ["always", 1, 9000, "MQTT"],
] as const;

for (const [fsync, count, filters, by] of cases) {
  Deno.test({
    name:
      `mqtt kill on PUBACK (--fsync ${fsync}, ${by} publisher): ${count} away session(s) × ${filters} filter(s) get their copy after the restart`,
    ...opts,
    fn: async () => {
      const dir = await Deno.makeTempDir({ prefix: "mqtt-kill-ack-" });
      let { b, port } = await broker(dir, fsync);
      try {
        await sessions(port, count, filters);
        await sleep(300); // the sessions' rows committed
        if (by === "MQTT") await publishThenKill(port, b.child);
        else await confirmThenKill(b.port, b.child);
        await b.stop("SIGKILL");
        ({ b, port } = await broker(dir, fsync));
        const got = await copies(port, count);
        assert.deepEqual(got, Array(count).fill(1), b.stderr());
      } finally {
        await b.stop();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

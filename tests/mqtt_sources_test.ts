/**
 * The MQTT ports count connections by source as the native port does
 * (hostile review 34, Z1; roles/broker/mqtt/slots.ts over wire/sources.ts):
 * an address holding every slot with CONNACK'd, silent clients (keep-alive
 * 600 s) no longer keeps another client out for 15 minutes; the newcomer
 * closes the hog's newest connection, which is told why (MQTT 5:
 * DISCONNECT 0x97); `--max-connections-per-source` refuses one address
 * past it and lets another in.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { Buffer } from "node:buffer";
import mqttPacket, { type Packet } from "mqtt-packet";
import { type MqttBroker, mqttOpts, startMqttBroker } from "./helpers/mqtt.ts";
import { waitFor } from "./helpers/raw.ts";

/** An MQTT client from `from` (another loopback address): CONNECT, then silence. */
function mqttFrom(port: number, from: string, clientId: string, version = 4) {
  const packets: Packet[] = [];
  let closed = false;
  const parser = mqttPacket.parser({ protocolVersion: version });
  parser.on("packet", (p: Packet) => packets.push(p));
  const socket = net.connect({ host: "127.0.0.1", port, localAddress: from }, () => {
    socket.write(mqttPacket.generate({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: version,
      clientId,
      clean: true,
      keepalive: 600,
    } as Packet, { protocolVersion: version }));
  });
  socket.on("error", () => {});
  socket.on("close", () => closed = true);
  socket.on("data", (d: Buffer) => parser.parse(d));
  return {
    packets,
    socket,
    get closed() {
      return closed;
    },
    /** The CONNACK's code (3.1.1 returnCode, 5 reasonCode), or "closed". */
    connack: async (): Promise<number | "closed"> => {
      await waitFor(() => packets.length > 0 || closed, 5000, "a CONNACK or a close");
      const ack = packets.find((p) => p.cmd === "connack") as
        | { returnCode?: number; reasonCode?: number }
        | undefined;
      return ack === undefined ? "closed" : ack.returnCode ?? ack.reasonCode ?? 0;
    },
  };
}

type Holder = ReturnType<typeof mqttFrom>;

async function hold(b: MqttBroker, n: number, from: string, version = 4): Promise<Holder[]> {
  const held = Array.from({ length: n }, (_, i) => mqttFrom(b.mqttPort, from, `hog-${i}`, version));
  for (const h of held) assert.equal(await h.connack(), 0, "the hog's clients are accepted");
  return held;
}

async function limits(b: MqttBroker): Promise<Record<string, number>> {
  return (await b.mqttStats() as unknown as { connection_limits: Record<string, number> })
    .connection_limits;
}

Deno.test({
  name:
    "mqtt --max-connections 8: an address holding all 8 CONNACK'd and silent does not keep another client out",
  ...mqttOpts,
  fn: async () => {
    const b = await startMqttBroker({ maxConnections: 8 });
    let held: Holder[] = [];
    let legit: Holder | undefined;
    try {
      held = await hold(b, 8, "127.0.0.2", 5);
      // Before: closed without a CONNACK for as long as the hog stayed (keep-alive 600 s: 15 min).
      legit = mqttFrom(b.mqttPort, "127.0.0.1", "legit");
      assert.equal(await legit.connack(), 0);
      assert.equal((await limits(b)).closed_source, 1);
      // The hog's newest was closed, told why: quota exceeded.
      await waitFor(() => held.some((h) => h.closed), 5000, "a hog's connection closed");
      const gone = held.filter((h) => h.closed);
      assert.equal(gone.length, 1);
      assert.ok(
        gone[0].packets.some((p) => p.cmd === "disconnect" && p.reasonCode === 0x97),
        JSON.stringify(gone[0].packets),
      );
      const stats = await limits(b);
      assert.equal(stats.connections, 8);
      assert.equal(stats.share_when_full, 2);
      // The hog, at more than its share while full, may take no more.
      const more = mqttFrom(b.mqttPort, "127.0.0.2", "hog-more");
      assert.equal(await more.connack(), "closed");
      assert.equal((await limits(b)).refused_source, 1);
      more.socket.destroy();
    } finally {
      legit?.socket.destroy();
      for (const h of held) h.socket.destroy();
      await b.stop();
    }
  },
});

Deno.test({
  name:
    "mqtt --max-connections-per-source 2: a third connection of one address is refused, another address is not",
  ...mqttOpts,
  fn: async () => {
    const b = await startMqttBroker({ maxConnectionsPerSource: 2 });
    const all: Holder[] = [];
    try {
      all.push(...await hold(b, 2, "127.0.0.2"));
      const third = mqttFrom(b.mqttPort, "127.0.0.2", "third");
      all.push(third);
      assert.equal(await third.connack(), "closed");
      const other = mqttFrom(b.mqttPort, "127.0.0.3", "other");
      all.push(other);
      assert.equal(await other.connack(), 0);
      const stats = await limits(b);
      assert.equal(stats.max_per_source, 2);
      assert.equal(stats.refused_source, 1);
      assert.equal(stats.connections, 3);
    } finally {
      for (const h of all) h.socket.destroy();
      await b.stop();
    }
  },
});

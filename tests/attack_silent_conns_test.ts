/**
 * Connections that never speak, against `--max-connections` (hostile
 * review H16, H14): silent TCP connections, renewed before their deadline,
 * took every slot and kept legitimate clients out. Now a listener at its
 * limit closes the oldest connection that has not proven itself yet (no
 * dist hello, no MQTT CONNECT) to make room, and refuses a new one only
 * when every connection has.
 */
import assert from "node:assert/strict";
import { type Peer } from "../wire/mod.ts";
import { closedWithin, closeQuietly, sleep, within } from "./helpers/raw.ts";
import { connect, echo, HOST, isCode, server } from "./helpers/rpc.ts";
import { mqttClient, mqttOpts, withMqttBroker } from "./helpers/mqtt.ts";
import type mqtt from "mqtt";

/** `n` TCP connections to `port` that send nothing. */
async function silent(port: number, n: number): Promise<Deno.Conn[]> {
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < n; i++) conns.push(await Deno.connect({ hostname: HOST, port }));
  return conns;
}

Deno.test("listen() at maxConnections closes the oldest connection without a hello to make room", async () => {
  const l = server({ maxConnections: 4, onRequest: echo, handshakeMs: 10_000 });
  const peers: Peer[] = [];
  const held: Deno.Conn[] = [];
  try {
    peers.push(await connect(l));
    held.push(...await silent(l.addr.port, 3));
    // Full: a real dialer gets in, the oldest silent one goes (the others and the peer stay).
    peers.push(await connect(l));
    assert.equal(await closedWithin(held[0], 2000), true, "the oldest silent one was closed");
    assert.equal(await closedWithin(held[1], 200), false);
    // Renewed silent connections keep closing the oldest silent ones, never a peer.
    held.push(...await silent(l.addr.port, 6));
    for (const c of held.slice(1, 7)) assert.equal(await closedWithin(c, 2000), true);
    assert.equal(await closedWithin(held[7], 200), false);
    peers.push(await connect(l));
    for (const p of peers) assert.equal(await p.call("echo", 1), 1, "every peer still served");
    // Every slot holds a peer that said hello: the next is refused, and no peer is closed.
    peers.push(await connect(l));
    await assert.rejects(connect(l), isCode("OVERLOADED"));
    for (const p of peers) assert.equal(await p.call("echo", 2), 2);
  } finally {
    for (const c of held) closeQuietly(c);
    for (const p of peers) p.close();
    await l.close(500);
  }
});

Deno.test({
  name:
    "mqtt: at --max-connections the oldest connection without CONNECT makes room for a new client",
  ...mqttOpts,
  fn: () =>
    withMqttBroker(async (b) => {
      const clients: mqtt.MqttClient[] = [];
      const held: Deno.Conn[] = [];
      try {
        clients.push(await mqttClient(b.mqttPort, { clientId: "first" }));
        held.push(...await silent(b.mqttPort, 5));
        // The repro's shape: the port is full of silent connections, renewed; clients get in.
        for (let round = 0; round < 3; round++) {
          const c = await within(
            mqttClient(b.mqttPort, { clientId: `legit-${round}` }),
            5000,
            "CONNACK",
          );
          clients.push(c);
          assert.equal(c.connected, true);
          held.push(...await silent(b.mqttPort, 5));
        }
        // The broker accepts (and makes room) a turn or so after the connects return.
        let stats = await b.mqttStats();
        for (let i = 0; i < 40 && stats.evicted_connections < 3 + 10; i++) {
          await sleep(50);
          stats = await b.mqttStats();
        }
        assert.equal(stats.refused_connections, 0);
        assert.ok(stats.evicted_connections >= 3 + 10, JSON.stringify(stats));
        // The oldest silent ones went; the newest still hold their slot.
        assert.equal(await closedWithin(held[0], 2000), true);
        assert.equal(await closedWithin(held.at(-1)!, 200), false);
        // Connected clients are never closed to make room.
        for (const c of clients) assert.equal(c.connected, true);
        // Every slot CONNECTed: a new one is refused, the clients stay.
        for (const c of held) closeQuietly(c);
        for (let i = clients.length; i < 10; i++) {
          clients.push(await mqttClient(b.mqttPort, { clientId: `fill-${i}` }));
        }
        const extra = await silent(b.mqttPort, 1);
        held.push(...extra);
        assert.equal(await closedWithin(extra[0], 2000), true, "refused: every slot CONNECTed");
        assert.equal((await b.mqttStats()).refused_connections, 1);
        for (const c of clients) assert.equal(c.connected, true);
      } finally {
        for (const c of held) closeQuietly(c);
        for (const c of clients) await c.endAsync(true).catch(() => {});
      }
    }, { maxConnections: 10 }),
});

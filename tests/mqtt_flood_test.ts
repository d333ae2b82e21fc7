/**
 * The MQTT port against floods: silent and dripping TLS handshakes (each
 * holds a connection slot, only until the CONNECT deadline from accept,
 * and the oldest is closed to make room for a new connection), a flood of distinct client ids asking for persistent sessions
 * (at most --max-connections of them, each one's queue bounded by
 * --max-pending, drops counted), and random garbage after CONNECT; a live
 * client is served throughout.
 */
import assert from "node:assert/strict";
import mqtt from "mqtt";
import { BrokerCore } from "../roles/broker/core.ts";
import { MqttFront } from "../roles/broker/mqtt/front.ts";
import {
  atLeast,
  mqttClient,
  mqttOpts as opts,
  RawMqtt,
  record,
  withMqttBroker,
} from "./helpers/mqtt.ts";
import { makePki } from "./helpers/pki.ts";
import { prng, sleep, waitFor } from "./helpers/raw.ts";

/** Resolves with the ms until the server closes `conn` (EOF or reset), reading what comes. */
async function closedAfter(conn: Deno.Conn, t0: number): Promise<number> {
  const buf = new Uint8Array(4096);
  try {
    while ((await conn.read(buf)) !== null) { /* a TLS alert, perhaps */ }
  } catch {
    // Reset: closed as well.
  }
  return performance.now() - t0;
}

Deno.test({
  name:
    "mqtt flood: silent and dripping TLS handshakes hold a slot each, only until the CONNECT deadline, the oldest closed to make room",
  ...opts,
  fn: async () => {
    const pki = await makePki();
    const core = new BrokerCore({ retainBytes: 1 << 20, maxPending: 1 << 20, maxTopics: 1000 });
    const DEADLINE = 1500;
    const front = new MqttFront(core, {
      maxPacket: 1 << 20,
      maxOutbound: 4 << 20,
      maxConnections: 4,
      maxSessions: 4,
      connectTimeoutMs: DEADLINE,
      writeTimeoutMs: 5000,
    });
    const { port } = front.bind("127.0.0.1", 0, {
      cert: pki.server.certPem,
      key: pki.server.keyPem,
    });
    front.start();
    const held: Deno.Conn[] = [];
    try {
      const t0 = performance.now();
      // Three say nothing; one drips a ClientHello's first bytes, one every 100 ms.
      for (let i = 0; i < 4; i++) held.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      const closes = held.map((c) => closedAfter(c, t0));
      const drip = (async () => {
        const hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];
        for (let i = 0; performance.now() - t0 < 3 * DEADLINE; i = (i + 1) % hello.length) {
          try {
            await held[3].write(Uint8Array.of(hello[i]));
          } catch {
            return;
          }
          await sleep(100);
        }
      })();
      await waitFor(() => front.stats().handshaking === 4, 2000, "4 handshakes in progress");
      // Every slot is taken: a fifth connection closes the oldest handshake to make room.
      const fifth = await Deno.connect({ hostname: "127.0.0.1", port });
      held.push(fifth);
      closes.push(closedAfter(fifth, t0));
      assert.ok((await closes[0]) < 1000, "the oldest handshake closed at once");
      assert.equal(front.refusedConnections, 0);
      assert.equal(front.stats().evicted_connections, 1);
      // The others go at the deadline (the dripping one too), not before.
      for (const ms of await Promise.all(closes.slice(1))) {
        assert.ok(ms >= DEADLINE - 100 && ms < DEADLINE + 1500, `closed after ${ms} ms`);
      }
      await drip;
      assert.equal(front.stats().handshaking, 0);
      assert.equal(front.tlsFailures, 5);
      // A handshake that completes but sends no CONNECT: the same deadline, counted from accept.
      const late = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [pki.caPem] });
      const t1 = performance.now();
      await late.handshake();
      assert.ok((await closedAfter(late, t1)) < DEADLINE + 1500);
      // The slots are free again: a real client is served.
      const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, {
        ca: pki.caPem,
        reconnectPeriod: 0,
        connectTimeout: 5000,
      });
      const got = record(c);
      await c.subscribeAsync("after", { qos: 1 });
      await c.publishAsync("after", "served", { qos: 1 });
      await atLeast(got, 1);
      await c.endAsync();
    } finally {
      for (const c of held) {
        try {
          c.close();
        } catch {
          // Closed by the broker.
        }
      }
      front.close();
      await pki.remove();
    }
  },
});

Deno.test({
  name:
    "mqtt flood: distinct client ids asking for sessions are capped at max-connections, queues bounded, a live client unharmed",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const live = await mqttClient(b.mqttPort);
      const pub = await mqttClient(b.mqttPort);
      try {
        const got = record(live);
        await live.subscribeAsync("flood/#", { qos: 1 });
        const codes: number[] = [];
        // 60 ids, 3.1.1 clean session 0 and MQTT 5 with a long expiry, each subscribing and
        // leaving; a live message goes between every 10, and must arrive in order.
        for (let i = 0; i < 60; i++) {
          const v5 = i % 2 === 1;
          const raw = await RawMqtt.open(b.mqttPort, v5 ? 5 : 4);
          await raw.send({
            cmd: "connect",
            protocolId: "MQTT",
            protocolVersion: v5 ? 5 : 4,
            clientId: `flood-${i}`,
            clean: false,
            keepalive: 0,
            ...(v5 ? { properties: { sessionExpiryInterval: 0xffffffff } } : {}),
          }, v5 ? 5 : 4);
          const ack = await raw.next("connack") as { returnCode?: number; reasonCode?: number };
          const code = v5 ? ack.reasonCode! : ack.returnCode!;
          codes.push(code);
          if (code === 0) {
            await raw.send({
              cmd: "subscribe",
              messageId: 1,
              subscriptions: [{ topic: "flood/#", qos: 1 }],
            }, v5 ? 5 : 4);
            await raw.next("suback");
          }
          await raw.end();
          if (i % 10 === 9) await pub.publishAsync("flood/live", String(i), { qos: 1 });
        }
        // 20 sessions (the cap); the rest refused: 3.1.1 CONNACK 3, MQTT 5 0x97.
        assert.equal(codes.filter((c) => c === 0).length, 20);
        assert.deepEqual(new Set(codes.slice(20)), new Set([3, 0x97]));
        // 200 values of 1 KiB for 20 away sessions: each queue holds at most max-pending.
        const body = "x".repeat(1024);
        for (let i = 0; i < 200; i += 20) {
          const sent: Promise<unknown>[] = [];
          for (let j = i; j < i + 20; j++) {
            sent.push(pub.publishAsync("flood/bulk", `${j} ${body}`, { qos: 1 }));
          }
          await Promise.all(sent);
        }
        await atLeast(got, 206, 10_000);
        const stats = await b.mqttStats();
        assert.equal(stats.sessions_persistent, 20);
        assert.equal(stats.sessions_away, 20);
        assert.ok(stats.session_queued_bytes <= 20 * 64 * 1024, JSON.stringify(stats));
        assert.ok(stats.session_dropped > 0, JSON.stringify(stats));
        const seen = got.map((m) => new TextDecoder().decode(m.payload).split(" ")[0]);
        assert.deepEqual(seen.slice(0, 6), ["9", "19", "29", "39", "49", "59"]);
        assert.deepEqual(seen.slice(6), [...Array(200).keys()].map(String));
      } finally {
        await live.endAsync();
        await pub.endAsync();
      }
    }, { maxConnections: 20, maxPending: 64 * 1024 }),
});

Deno.test({
  name: "mqtt flood: random garbage after CONNECT closes each sender; the broker goes on",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const rand = prng(18);
      for (let i = 0; i < 60; i++) {
        const raw = await RawMqtt.connect(b.mqttPort, {}, i % 2 === 0 ? 4 : 5);
        const junk = Uint8Array.from({ length: 1 + Math.floor(rand() * 300) }, () => rand() * 256);
        await raw.write(junk).catch(() => {});
        // A packet that needs more bytes waits for them: a PINGREQ after, or the close.
        await raw.write(Uint8Array.of(0xc0, 0)).catch(() => {});
        raw.close();
      }
      await sleep(100);
      const live = await mqttClient(b.mqttPort);
      const got = record(live);
      await live.subscribeAsync("ok", { qos: 1 });
      await live.publishAsync("ok", "still here", { qos: 1 });
      await atLeast(got, 1);
      await live.endAsync();
      const stats = await b.mqttStats();
      assert.ok(stats.protocol_errors > 0, JSON.stringify(stats));
    }),
});

/**
 * The MQTT port against hostile and broken clients: oversize and malformed
 * lengths refused before anything is buffered, garbage, a second CONNECT,
 * wrong protocol levels, wildcards in topic names, silent clients past
 * their keep-alive, and subscribers that do not read or do not acknowledge:
 * each is closed (MQTT 5: told why) while everyone else carries on.
 */
import assert from "node:assert/strict";
import {
  atLeast,
  mqttClient,
  mqttOpts as opts,
  RawMqtt,
  record,
  withMqttBroker,
} from "./helpers/mqtt.ts";
import { sleep, waitFor } from "./helpers/raw.ts";
import { INFLIGHT_WINDOW } from "../roles/broker/mqtt/connection.ts";
import { queueMemory, releaseEmptySlabs } from "../roles/broker/byte_queue.ts";

/** The queues' slabs in use, the empty ones given back first (as the broker's memory guard does). */
function slabBytes(): number {
  releaseEmptySlabs();
  return queueMemory.bytes;
}

/** The broker still serves: a publish reaches a subscriber. */
async function stillServes(port: number): Promise<void> {
  const sub = await mqttClient(port);
  const pub = await mqttClient(port);
  try {
    const got = record(sub);
    await sub.subscribeAsync("alive");
    await pub.publishAsync("alive", "yes", { qos: 1 });
    await atLeast(got, 1);
  } finally {
    await sub.endAsync();
    await pub.endAsync();
  }
}

Deno.test({
  name: "mqtt hostile: an oversize remaining length closes at once, nothing buffered",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const before = (await b.stats()).rss_bytes as number;
      // Before CONNECT, and after it: a PUBLISH claiming 256 MB, of which 64 KiB come.
      const early = await RawMqtt.open(b.mqttPort);
      await early.write(Uint8Array.of(0x10, 0xff, 0xff, 0xff, 0x7f));
      await early.closedWithin(3000);
      const raw = await RawMqtt.connect(b.mqttPort);
      await raw.write(Uint8Array.of(0x30, 0xff, 0xff, 0xff, 0x7f, 0, 1, 0x61));
      try {
        await raw.write(new Uint8Array(64 * 1024));
      } catch {
        // Reset already.
      }
      await raw.closedWithin(3000);
      const stats = await b.mqttStats();
      assert.equal(stats.oversize, 2);
      const after = (await b.stats()).rss_bytes as number;
      assert.ok(after - before < 64 * 1024 * 1024, `RSS grew by ${after - before}`);
      // A fifth length byte is malformed.
      const bad = await RawMqtt.connect(b.mqttPort);
      await bad.write(Uint8Array.of(0x30, 0x80, 0x80, 0x80, 0x80, 0x01));
      await bad.closedWithin(3000);
      await stillServes(b.mqttPort);
      for (const r of [early, raw, bad]) await r.end();
    }, { maxFrame: 64 * 1024 }),
});

Deno.test({
  name: "mqtt hostile: garbage, a first packet that is not CONNECT, and a second CONNECT close",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const http = await RawMqtt.open(b.mqttPort);
      await http.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      await http.closedWithin();
      const ping = await RawMqtt.open(b.mqttPort);
      await ping.send({ cmd: "pingreq" });
      await ping.closedWithin();
      const twice = await RawMqtt.connect(b.mqttPort);
      await twice.send({ cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clientId: "x" });
      await twice.closedWithin();
      // A reserved flag set on SUBSCRIBE (must be 0b0010).
      const flags = await RawMqtt.connect(b.mqttPort);
      await flags.write(Uint8Array.of(0x80, 6, 0, 1, 0, 1, 0x61, 0));
      await flags.closedWithin();
      const stats = await b.mqttStats();
      assert.ok(stats.protocol_errors >= 4, JSON.stringify(stats));
      await stillServes(b.mqttPort);
      for (const r of [http, ping, twice, flags]) await r.end();
    }),
});

Deno.test({
  name: "mqtt hostile: an unknown protocol level gets CONNACK 1; MQTT 5 errors say their reason",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const old = await RawMqtt.open(b.mqttPort);
      // CONNECT "MQTT" level 6.
      await old.write(Uint8Array.of(0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 6, 2, 0, 0, 0, 0));
      const connack = await old.next("connack") as { returnCode: number };
      assert.equal(connack.returnCode, 1);
      await old.closedWithin();
      // MQTT 5: a wildcard in a topic name is a protocol error (0x82), said in a DISCONNECT.
      const v5 = await RawMqtt.connect(b.mqttPort, {}, 5);
      await v5.send({ cmd: "publish", topic: "a/#", payload: "x", qos: 0 } as never, 5);
      const d = await v5.next("disconnect") as { reasonCode: number };
      assert.equal(d.reasonCode, 0x82);
      await v5.closedWithin();
      // MQTT 5: an empty level is ours to refuse: PUBACK 0x90, and the connection stays.
      const v5b = await RawMqtt.connect(b.mqttPort, {}, 5);
      await v5b.send({
        cmd: "publish",
        topic: "/lead",
        payload: "x",
        qos: 1,
        messageId: 3,
        dup: false,
        retain: false,
      }, 5);
      const ack = await v5b.next("puback") as { messageId: number; reasonCode: number };
      assert.deepEqual([ack.messageId, ack.reasonCode], [3, 0x90]);
      await v5b.send({ cmd: "pingreq" }, 5);
      await v5b.next("pingresp");
      // 3.1.1 has no way to say it: closed.
      const v4 = await RawMqtt.connect(b.mqttPort);
      await v4.send({
        cmd: "publish",
        topic: "a//b",
        payload: "x",
        qos: 1,
        messageId: 1,
        dup: false,
        retain: false,
      });
      await v4.closedWithin();
      await stillServes(b.mqttPort);
      for (const r of [old, v5, v5b, v4]) await r.end();
    }),
});

Deno.test({
  name: "mqtt hostile: a client silent past 1.5 × keep-alive is closed",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const quiet = await RawMqtt.connect(b.mqttPort, { keepalive: 1 });
      const t0 = performance.now();
      await quiet.closedWithin(6000);
      const took = performance.now() - t0;
      assert.ok(took >= 1400, `closed after ${took} ms`);
      await quiet.end();
    }),
});

Deno.test({
  name:
    "mqtt hostile: a subscriber that does not acknowledge gets the in-flight window, then more as it acks",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const raw = await RawMqtt.connect(b.mqttPort);
      const pub = await mqttClient(b.mqttPort);
      try {
        await raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "w", qos: 1 }] });
        await raw.next("suback");
        const n = INFLIGHT_WINDOW + 300;
        const sent: Promise<unknown>[] = [];
        for (let i = 0; i < n; i++) sent.push(pub.publishAsync("w", String(i), { qos: 1 }));
        await Promise.all(sent);
        const publishes = () => raw.packets.filter((p) => p.cmd === "publish");
        await waitFor(() => publishes().length >= INFLIGHT_WINDOW, 10_000, "the window");
        await sleep(300);
        assert.equal(publishes().length, INFLIGHT_WINDOW);
        const first = publishes().map((p) => (p as { messageId: number }).messageId);
        for (const id of first) await raw.send({ cmd: "puback", messageId: id });
        await waitFor(() => publishes().length >= n, 10_000, "the rest after the acks");
        const payloads = publishes().map((p) => String((p as { payload: Uint8Array }).payload));
        assert.deepEqual(payloads, [...Array(n).keys()].map(String));
      } finally {
        await raw.end();
        await pub.endAsync();
      }
    }),
});

Deno.test({
  name:
    "mqtt hostile: a subscriber that reads nothing is cut off at max-pending; others get everything",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      // Subscribes, then never reads again (its socket buffers fill).
      const frozen = await Deno.connect({ hostname: "127.0.0.1", port: b.mqttPort });
      const { default: mp } = await import("mqtt-packet");
      await frozen.write(mp.generate({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 4,
        clientId: "frozen",
        clean: true,
        keepalive: 0,
      }));
      await frozen.write(mp.generate({
        cmd: "subscribe",
        messageId: 1,
        subscriptions: [{ topic: "s/#", qos: 0 }],
      }));
      const fast = await mqttClient(b.mqttPort);
      const pub = await mqttClient(b.mqttPort);
      try {
        const got = record(fast);
        await fast.subscribeAsync("s/#", { qos: 1 });
        await sleep(200); // the frozen SUBSCRIBE is in
        // 20 MB in all, more than the frozen socket's kernel buffers take; paced so
        // that the healthy subscriber never has more than 100 behind.
        const n = 5000;
        const body = "x".repeat(4000);
        for (let i = 0; i < n; i += 100) {
          const sent: Promise<unknown>[] = [];
          for (let j = i; j < i + 100; j++) {
            sent.push(pub.publishAsync("s/t", `${j} ${body}`, { qos: 1 }));
          }
          await Promise.all(sent);
          await atLeast(got, i + 1, 10_000);
        }
        await atLeast(got, n, 10_000);
        const stats = await b.mqttStats();
        assert.equal(stats.slow_consumers, 1, JSON.stringify(stats));
        assert.deepEqual(
          got.map((m) => Number(new TextDecoder().decode(m.payload).split(" ")[0])),
          [...Array(n).keys()],
        );
      } finally {
        frozen.close();
        await fast.endAsync();
        await pub.endAsync();
      }
    }, { maxPending: 1024 * 1024 }),
});

Deno.test({
  name:
    "mqtt hostile: packets sent but for their last byte count in max-memory, are refused past it, and are cut after 3 write timeouts",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      // A PUBLISH announcing a MiB, all of it sent but its last byte: each
      // connection held a MiB forever (keep-alive 0), counted nowhere.
      const length = 1024 * 1024 - 16;
      const header = Uint8Array.of(
        0x30,
        (length & 0x7f) | 0x80,
        ((length >> 7) & 0x7f) | 0x80,
        length >> 14,
        0,
        1,
        0x61,
      );
      const memory = async () => ((await b.stats()).memory as { bytes: number }).bytes;
      const base = await memory();
      const conns: RawMqtt[] = [];
      for (let i = 0; i < 16; i++) {
        const raw = await RawMqtt.connect(b.mqttPort);
        conns.push(raw);
        try {
          await raw.write(header);
          await raw.write(new Uint8Array(length - 4));
        } catch {
          // Refused and closed while it wrote.
        }
        await sleep(20);
      }
      // Counted while held, and refused once the broker is past 8 MiB.
      const counted = await memory() - base;
      await waitFor(() => conns.some((c) => c.closed), 3000, "a refusal past the budget");
      const held = conns.filter((c) => !c.closed).length;
      assert.ok(held >= 4 && held <= 10, `${held} of 16 held`);
      assert.ok(counted >= (held - 1) * length, `${counted} counted for ${held}`);
      // None holds its packet past 3 write timeouts (1 s each here).
      await waitFor(() => conns.every((c) => c.closed), 6000, "the partial packets cut");
      let left = Infinity;
      for (let t = 0; t < 50 && left >= 256 * 1024; t++) {
        if (t > 0) await sleep(60);
        left = await memory() - base;
      }
      assert.ok(left < 256 * 1024, `${left} bytes still counted`);
      await stillServes(b.mqttPort);
      for (const r of conns) await r.end();
      // 8 MiB beyond the queues' slabs, counted process-wide (earlier tests' too).
    }, { maxMemory: slabBytes() + 8 * 1024 * 1024, writeTimeout: 1000 }),
});

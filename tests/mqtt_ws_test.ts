/**
 * MQTT over WebSocket (`--mqtt-ws-port`): MQTT.js over `ws://` in both
 * directions with TCP MQTT and native clients, 3.1.1 and 5, a packet
 * larger than a frame; what is not MQTT over WebSocket is refused.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import { atLeast, mqttClient, mqttOpts as opts, record, withMqttBroker } from "./helpers/mqtt.ts";
import { waitFor, writeAll } from "./helpers/raw.ts";
import { startDist } from "./helpers/dist.ts";
import { BrokerClient } from "./helpers/broker.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

function wsClient(port: number, o: mqtt.IClientOptions = {}): Promise<mqtt.MqttClient> {
  return mqtt.connectAsync(`ws://127.0.0.1:${port}/mqtt`, {
    reconnectPeriod: 0,
    connectTimeout: 5000,
    ...o,
  });
}

/** The WebSocket port a broker process logged. */
async function wsPortOf(broker: { stderr(): string }): Promise<number> {
  const line = /MQTT over WebSocket on [\d.]+:(\d+)/;
  await waitFor(() => line.test(broker.stderr()), 5000, "the WebSocket line");
  return Number(broker.stderr().match(line)![1]);
}

/** A process's resident memory (bytes). */
function rssOf(pid: number): number {
  return Number(Deno.readTextFileSync(`/proc/${pid}/status`).match(/VmRSS:\s+(\d+)/)![1]) * 1024;
}

async function wsPort(b: { mqttStats(): Promise<Record<string, number>> }): Promise<number> {
  return (await b.mqttStats()).ws_port;
}

Deno.test({
  name: "mqtt ws: MQTT.js over ws:// to and from TCP MQTT and native clients, 3.1.1 and 5",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const port = await wsPort(b);
      const ws4 = await wsClient(port);
      const ws5 = await wsClient(port, { protocolVersion: 5 });
      const tcp = await mqttClient(b.mqttPort);
      try {
        const got4 = record(ws4);
        const got5 = record(ws5);
        const gotTcp = record(tcp);
        await ws4.subscribeAsync("ws/#", { qos: 1 });
        await ws5.subscribeAsync("ws/#", { qos: 2 });
        await tcp.subscribeAsync("ws/from-ws", { qos: 1 });
        await tcp.publishAsync("ws/from-tcp", "over tcp", { qos: 1 });
        await b.native.publish("/ws/native", { n: 1 });
        // Larger than one frame and than the read buffer: framed across reads.
        const big = Buffer.alloc(200_000, 0x61);
        await ws5.publishAsync("ws/from-ws", big, { qos: 2 });
        await atLeast(got4, 3);
        await atLeast(got5, 3);
        await atLeast(gotTcp, 1);
        for (const got of [got4, got5]) {
          const byTopic = new Map(got.map((m) => [m.topic, m]));
          assert.equal(text(byTopic.get("ws/from-tcp")!.payload), "over tcp");
          assert.equal(text(byTopic.get("ws/native")!.payload), '{"n":1}');
          assert.equal(byTopic.get("ws/from-ws")!.payload.length, big.length);
        }
        assert.equal(got5.find((m) => m.topic === "ws/from-tcp")!.qos, 1);
        assert.deepEqual(gotTcp[0].payload, new Uint8Array(big));
        const stats = await b.mqttStats();
        // WebSocket connections are MQTT connections like the TCP one.
        assert.equal(stats.connections, 3);
      } finally {
        await ws4.endAsync();
        await ws5.endAsync();
        await tcp.endAsync();
      }
    }, { mqttWsPort: 0 }),
});

Deno.test({
  name: "mqtt ws: a plain HTTP request, a WebSocket without the mqtt subprotocol, a text frame",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const port = await wsPort(b);
      const plain = await fetch(`http://127.0.0.1:${port}/mqtt`);
      assert.equal(plain.status, 426);
      await plain.body?.cancel();
      // No subprotocol: the upgrade is refused.
      const none = new WebSocket(`ws://127.0.0.1:${port}/mqtt`);
      await new Promise<void>((resolve) => none.onerror = none.onclose = () => resolve());
      assert.notEqual(none.readyState, WebSocket.OPEN);
      // A text frame is not MQTT: closed.
      const ws = new WebSocket(`ws://127.0.0.1:${port}/mqtt`, "mqtt");
      let closed = false;
      ws.onclose = () => closed = true;
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = reject;
      });
      assert.equal(ws.protocol, "mqtt");
      ws.send("CONNECT please");
      await waitFor(() => closed, 5000, "the broker to close");
    }, { mqttWsPort: 0 }),
});

Deno.test({
  name:
    "mqtt ws: 48 MiB WebSocket messages are refused as they arrive, never buffered (hostile review H13)",
  ...opts,
  async fn() {
    const broker = await startDist([
      "broker",
      ...["--port", "0", "--mqtt-ws-port", "0", "--max-memory", String(32 * 1024 * 1024)],
    ]);
    const socks: WebSocket[] = [];
    try {
      const port = await wsPortOf(broker);
      const rss = () => rssOf(broker.child.pid);
      const before = rss();
      // Each: one binary message, a PUBLISH claiming 48 MiB, or as many zeros (no packet at all).
      const big = new Uint8Array(48 * 1024 * 1024);
      const claiming = big.slice();
      claiming.set([0x30, 0xf6, 0xff, 0xff, 0x17, 0, 1, 0x61]);
      let peak = 0;
      for (const message of [claiming, big, claiming, big]) {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/mqtt`, "mqtt");
        socks.push(ws);
        await new Promise((resolve, reject) => {
          ws.onopen = resolve;
          ws.onerror = reject;
        });
        const closed = new Promise((resolve) => ws.onclose = resolve);
        ws.send(message);
        await closed;
        peak = Math.max(peak, rss());
      }
      assert.ok(peak - before < 16 * 1024 * 1024, `RSS grew by ${peak - before} bytes`);
    } finally {
      for (const ws of socks) ws.close();
      await broker.stop();
    }
  },
});

/** Debian's python3, which has Debian's paho (python3-paho-mqtt, installed by .ci/run). */
const PYTHON = "/usr/bin/python3";
const HAVE_PAHO = (() => {
  try {
    return new Deno.Command(PYTHON, { args: ["-c", "import paho.mqtt.client"], stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
})();
if (!HAVE_PAHO) console.warn("mqtt_ws_test: Paho case skipped, python3-paho-mqtt is not installed");

const PAHO_WS = `
import sys, threading
import paho.mqtt.client as mqtt
c = mqtt.Client(client_id="paho-ws", transport="websockets", protocol=mqtt.MQTTv311)
c.ws_set_options(path="/mqtt")
got = threading.Event()
up = threading.Event()
subscribed = threading.Event()
c.on_connect = lambda *a: up.set()
c.on_subscribe = lambda *a: subscribed.set()
c.on_message = lambda cl, u, m: (print(m.topic, m.payload.decode(), m.qos, flush=True), got.set())
c.connect("127.0.0.1", int(sys.argv[1]))
c.loop_start()
assert up.wait(5), "no CONNACK"
c.subscribe("pws/t", qos=1)
assert subscribed.wait(5), "no SUBACK"
c.publish("pws/t", "hello over ws", qos=1).wait_for_publish(5)
assert got.wait(5), "nothing received"
c.disconnect()
c.loop_stop()
`;

Deno.test({
  name: "mqtt ws: Paho for Python over websockets, publish and receive",
  ignore: !HAVE_PAHO,
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const out = await new Deno.Command(PYTHON, {
        args: ["-c", PAHO_WS, String(await wsPort(b))],
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(20_000),
      }).output();
      const d = new TextDecoder();
      assert.equal(out.code, 0, d.decode(out.stderr));
      assert.equal(d.decode(out.stdout).trim(), "pws/t hello over ws 1");
    }, { mqttWsPort: 0 }),
});

/** A masked client frame of `op` with `payload` (under 126 bytes). */
function clientFrame(op: number, payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(6 + payload.length);
  frame[0] = 0x80 | op;
  frame[1] = 0x80 | payload.length;
  frame.set([1, 2, 3, 4], 2);
  for (let i = 0; i < payload.length; i++) frame[6 + i] = payload[i] ^ [1, 2, 3, 4][i & 3];
  return frame;
}

Deno.test({
  name:
    "mqtt ws: a client sending 200,000 WebSocket pings and reading nothing costs the broker no more than one pong (hostile review 36 J5)",
  ...opts,
  async fn() {
    const broker = await startDist(["broker", "--port", "0", "--mqtt-ws-port", "0"]);
    let conn: Deno.Conn | undefined;
    try {
      const port = await wsPortOf(broker);
      const rss = () => rssOf(broker.child.pid);
      conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(new TextEncoder().encode(
        "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
          "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
      ));
      const head = new Uint8Array(1024);
      const n = await conn.read(head);
      assert.match(new TextDecoder().decode(head.subarray(0, n ?? 0)), /^HTTP\/1.1 101/);
      // A CONNECT still incomplete (it says 15 bytes, 13 come): WebSocket pings alone follow. (A
      // whole CONNECT has its CONNACK stuck behind the pongs, and the connection is cut as a
      // client that does not read, as it should be.)
      const connect = new Uint8Array([0x10, 15, 0, 4, 77, 81, 84, 84, 4, 2, 0, 0, 0, 1, 112]);
      await conn.write(clientFrame(2, connect));
      const before = rss();
      const ping = clientFrame(9, new Uint8Array(125).fill(0x70));
      const batch = new Uint8Array(ping.length * 500);
      for (let i = 0; i < 500; i++) batch.set(ping, i * ping.length);
      // 200,000 pings (26 MB) as fast as the socket takes them, for 8 s at most; never read.
      // Now the broker reads no more once a pong cannot go out: the writes stop.
      const deadline = Date.now() + 8_000;
      let sent = 0;
      while (sent < 200_000 && Date.now() < deadline) {
        const wrote = await Promise.race([
          writeAll(conn, batch).then(() => true, () => false), // closed by the broker: done
          new Promise<false>((r) => setTimeout(() => r(false), deadline - Date.now())),
        ]);
        if (!wrote) break;
        sent += 500;
      }
      await new Promise((r) => setTimeout(r, 500));
      const grew = rss() - before;
      assert.ok(sent >= 20_000, `only ${sent} pings went out`);
      // Before: about 1 KB of heap a ping (200 MB here), and every other client stalled.
      assert.ok(grew < 48 * 1024 * 1024, `broker RSS grew ${grew} bytes for ${sent} pings`);
      const native = await BrokerClient.connect(broker.port);
      try {
        assert.equal((await native.stats()).role, "broker");
      } finally {
        native.close();
      }
    } finally {
      try {
        conn?.close();
      } catch {
        // Closed by the broker.
      }
      await broker.stop();
    }
  },
});

/**
 * MQTT over TLS: `dist broker --mqtt-port` beside `--tls-cert` serves MQTT
 * in TLS with the native port's files. MQTT.js (mqtts://) and
 * mosquitto_pub/mosquitto_sub (--cafile) both ways; a client that does not
 * trust the CA, or speaks plain MQTT to the port, gets nothing.
 */
import assert from "node:assert/strict";
import mqtt from "mqtt";
import { lines, startDist } from "./helpers/dist.ts";
import { atLeast, HAVE_MOSQUITTO, mosquitto, mqttOpts as opts, RawMqtt } from "./helpers/mqtt.ts";
import { makePki } from "./helpers/pki.ts";

const pki = await makePki();
globalThis.addEventListener("unload", () => Deno.removeSync(pki.dir, { recursive: true }));

/** A broker process in TLS with an MQTT port and a WebSocket one; `body` gets their numbers. */
async function withTlsBroker(
  body: (mqttPort: number, wsPort: number) => Promise<void>,
): Promise<void> {
  const broker = await startDist([
    "broker",
    ...["--port", "0", "--mqtt-port", "0", "--mqtt-ws-port", "0"],
    ...["--tls-cert", pki.server.cert, "--tls-key", pki.server.key],
  ]);
  try {
    const m = broker.stderr().match(/MQTT on 127\.0\.0\.1:(\d+)/);
    const ws = broker.stderr().match(/MQTT over WebSocket on 127\.0\.0\.1:(\d+)/);
    assert.ok(m && ws, broker.stderr());
    await body(Number(m[1]), Number(ws[1]));
  } finally {
    const { code } = await broker.stop();
    assert.equal(code, 0);
  }
}

function mqtts(port: number, ca: string): Promise<mqtt.MqttClient> {
  return mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, {
    ca,
    rejectUnauthorized: true,
    reconnectPeriod: 0,
    connectTimeout: 5000,
  });
}

Deno.test({
  name:
    "mqtt tls: MQTT.js over mqtts:// both ways, QoS 1; an untrusted CA and plain MQTT get nothing",
  ...opts,
  fn: () =>
    withTlsBroker(async (port) => {
      const sub = await mqtts(port, pki.caPem);
      const pub = await mqtts(port, pki.caPem);
      try {
        const got: string[] = [];
        sub.on("message", (topic, payload) => got.push(`${topic} ${payload}`));
        await sub.subscribeAsync("sec/#", { qos: 1 });
        for (let i = 0; i < 100; i++) await pub.publishAsync("sec/a", String(i), { qos: 1 });
        await atLeast(got, 100);
        assert.deepEqual(got, [...Array(100).keys()].map((i) => `sec/a ${i}`));
      } finally {
        await sub.endAsync();
        await pub.endAsync();
      }
      const impostorCa = await Deno.readTextFile(pki.otherCa);
      await assert.rejects(mqtts(port, impostorCa));
      // Plain MQTT on the TLS port: no CONNACK, the connection is closed.
      const raw = await RawMqtt.open(port);
      await raw.send({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 4,
        clientId: "plain",
        clean: true,
        keepalive: 0,
      });
      await raw.closedWithin(12_000);
      assert.deepEqual(raw.packets, []);
      await raw.end();
    }),
});

Deno.test({
  name: "mqtt tls: mosquitto_pub and mosquitto_sub with --cafile, 3.1.1 and 5",
  ignore: !HAVE_MOSQUITTO,
  ...opts,
  fn: () =>
    withTlsBroker(async (port) => {
      const p = ["-h", "127.0.0.1", "-p", String(port), "--cafile", pki.ca];
      for (const v of ["mqttv311", "mqttv5"]) {
        const sub = mosquitto("mosquitto_sub", [
          ...p,
          "-V",
          v,
          "-t",
          "m/#",
          "-q",
          "1",
          "-v",
          "-C",
          "2",
        ]);
        // Subscribed once a retained value comes back to a second subscriber: poll with -W.
        let ready = false;
        for (let i = 0; i < 50 && !ready; i++) {
          const r = await mosquitto("mosquitto_pub", [
            ...p,
            "-V",
            v,
            "-t",
            "m/ping",
            "-m",
            "p",
            "-q",
            "1",
          ]);
          assert.equal(r.code, 0, r.stderr);
          ready = await Promise.race([
            sub.then(() => true),
            new Promise<boolean>((r) => setTimeout(() => r(false), 100)),
          ]);
        }
        const out = await sub;
        assert.equal(out.code, 0, out.stderr);
        assert.deepEqual(lines(out.stdout), ["m/ping p", "m/ping p"], v);
      }
      // The impostor CA is not trusted: mosquitto_pub fails.
      const bad = await mosquitto("mosquitto_pub", [
        ...["-h", "127.0.0.1", "-p", String(port), "--cafile", pki.otherCa],
        ...["-t", "x", "-m", "y"],
      ]);
      assert.notEqual(bad.code, 0);
    }),
});

Deno.test({
  name: "mqtt tls: MQTT.js over wss:// with the broker's certificate, to and from mqtts://",
  ...opts,
  fn: () =>
    withTlsBroker(async (port, wsPort) => {
      const sub = await mqtt.connectAsync(`wss://127.0.0.1:${wsPort}/mqtt`, {
        ca: pki.caPem,
        rejectUnauthorized: true,
        reconnectPeriod: 0,
        connectTimeout: 5000,
      });
      const pub = await mqtts(port, pki.caPem);
      try {
        const got: string[] = [];
        sub.on("message", (topic, payload) => got.push(`${topic} ${payload}`));
        await sub.subscribeAsync("wss/#", { qos: 1 });
        await pub.publishAsync("wss/a", "over tls", { qos: 1 });
        await atLeast(got, 1);
        assert.deepEqual(got, ["wss/a over tls"]);
      } finally {
        await sub.endAsync();
        await pub.endAsync();
      }
    }),
});

Deno.test({
  name:
    "mqtt tls: with --tls-client-ca a client certificate is the MQTT identity (the users file's permissions)",
  ...opts,
  fn: async () => {
    const users = `${pki.dir}/mqtt-users.toml`;
    await Deno.writeTextFile(
      users,
      `[users.alice]\npublish = ["/cert/ok"]\nsubscribe = ["/cert"]\n`,
      { mode: 0o600 },
    );
    const broker = await startDist([
      "broker",
      ...["--port", "0", "--mqtt-port", "0", "--users", users],
      ...["--tls-cert", pki.server.cert, "--tls-key", pki.server.key, "--tls-client-ca", pki.ca],
    ]);
    try {
      const port = Number(broker.stderr().match(/MQTT on 127\.0\.0\.1:(\d+)/)![1]);
      // alice's certificate, no user name or password in CONNECT.
      const alice = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, {
        ca: pki.caPem,
        cert: pki.alice.certPem,
        key: pki.alice.keyPem,
        protocolVersion: 5,
        reconnectPeriod: 0,
        connectTimeout: 5000,
      });
      try {
        const got: string[] = [];
        alice.on("message", (topic, payload) => got.push(`${topic} ${payload}`));
        const granted = await alice.subscribeAsync("cert/#", { qos: 1 });
        assert.deepEqual(granted.map((g) => g.qos), [1]);
        // Her subscribe permission covers /cert, not /other (MQTT 5 SUBACK 0x87 Not authorized).
        await assert.rejects(alice.subscribeAsync("other/#", { qos: 1 }), /Not authorized/);
        // Not hers to publish: MQTT 5 PUBACK 0x87, nothing delivered; then one that is.
        await assert.rejects(
          alice.publishAsync("cert/no", "refused", { qos: 1 }),
          /Not authorized/,
        );
        await alice.publishAsync("cert/ok", "allowed", { qos: 1 });
        await atLeast(got, 1);
        assert.deepEqual(got, ["cert/ok allowed"]);
      } finally {
        await alice.endAsync();
      }
    } finally {
      await broker.stop();
    }
  },
});

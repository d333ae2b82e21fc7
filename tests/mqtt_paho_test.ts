/**
 * Paho for Python (Debian python3-paho-mqtt 1.6.1, installed by .ci/run)
 * against `dist broker --mqtt-port`: 3.1.1 and 5 × QoS 0/1/2 between Paho
 * clients with a binary payload, MQTT 5 properties, a topic alias from the
 * publisher and a subscription identifier on the delivery; a native
 * publish reaches a Paho subscriber and a Paho publish a native one.
 */
import assert from "node:assert/strict";
import { mqttOpts as opts, withMqttBroker } from "./helpers/mqtt.ts";

/** Debian's python3, which has Debian's paho (a pyenv python3 on PATH may not). */
const PYTHON = "/usr/bin/python3";
const HAVE_PAHO = (() => {
  try {
    return new Deno.Command(PYTHON, { args: ["-c", "import paho.mqtt.client"], stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
})();
if (!HAVE_PAHO) console.warn("mqtt_paho_test: skipped, python3-paho-mqtt is not installed");

const SCRIPT = `
import json, sys, threading, time
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
PORT = int(sys.argv[1])

def client(cid, v5):
    c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
    c.got = []
    c.ev = threading.Event()
    def on_message(cl, u, m):
        p = getattr(m, "properties", None)
        c.got.append({"topic": m.topic, "payload": list(m.payload), "qos": m.qos,
                      "sid": getattr(p, "SubscriptionIdentifier", None) if p else None,
                      "ct": getattr(p, "ContentType", None) if p else None})
        c.ev.set()
    c.on_message = on_message
    up = threading.Event()
    c.on_connect = lambda *a: up.set()
    c.subscribed = threading.Event()
    c.on_subscribe = lambda *a: c.subscribed.set()
    c.connect("127.0.0.1", PORT)
    c.loop_start()
    up.wait(3)
    return c

def close(*cs):
    # disconnect() first: it wakes the network loop, which loop_stop() then joins at once.
    for c in cs:
        c.disconnect()
        c.loop_stop()

out = {}
for v5 in (False, True):
    for q in (0, 1, 2):
        key = f"{'v5' if v5 else 'v4'}-qos{q}"
        s = client(f"s-{key}", v5)
        if v5:
            sp = Properties(PacketTypes.SUBSCRIBE)
            sp.SubscriptionIdentifier = 40 + q
            s.subscribe(f"paho/{key}", qos=q, properties=sp)
        else:
            s.subscribe(f"paho/{key}", qos=q)
        s.subscribed.wait(3)
        p = client(f"p-{key}", v5)
        props = None
        if v5:
            props = Properties(PacketTypes.PUBLISH)
            props.ContentType = "application/octet-stream"
            props.TopicAlias = 3
        p.publish(f"paho/{key}", b"bin\\x00\\xff", qos=q, properties=props).wait_for_publish(3)
        if v5:
            # The alias again, with no topic: the broker knows it.
            p.publish("", b"again", qos=q, properties=props).wait_for_publish(3)
        deadline = time.time() + 3
        while len(s.got) < (2 if v5 else 1) and time.time() < deadline:
            time.sleep(0.02)
        out[key] = s.got
        close(s, p)
# Native side: the test publishes natively to paho/native once it sees "ready".
s = client("s-native", False)
s.subscribe("paho/native", qos=1)
s.subscribed.wait(3)
print("ready", flush=True)
s.ev.wait(5)
out["native"] = s.got
p = client("p-native", False)
p.publish("paho/to-native", b"from paho", qos=1).wait_for_publish(3)
close(s, p)
print(json.dumps(out), flush=True)
`;

Deno.test({
  name: "mqtt paho: 3.1.1 and 5 × QoS 0/1/2, alias and subscription identifier; native both ways",
  ignore: !HAVE_PAHO,
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      await b.native.subscribe("/paho/to-native");
      const child = new Deno.Command(PYTHON, {
        args: ["-c", SCRIPT, String(b.mqttPort)],
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(30_000),
      }).spawn();
      const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      while (!text.includes("ready")) {
        const { value, done } = await lines.read();
        if (done) break;
        text += value;
      }
      b.native.publish("/paho/native", { from: "dist" });
      while (true) {
        const { value, done } = await lines.read();
        if (done) break;
        text += value;
      }
      const status = await child.status;
      const err = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
      assert.equal(status.code, 0, err);
      const out = JSON.parse(text.trim().split("\n").at(-1)!);
      const bin = [98, 105, 110, 0, 255];
      for (const v of ["v4", "v5"]) {
        for (const q of [0, 1, 2]) {
          const got = out[`${v}-qos${q}`];
          assert.equal(got[0].topic, `paho/${v}-qos${q}`);
          assert.deepEqual(got[0].payload, bin);
          assert.equal(got[0].qos, q);
          if (v === "v5") {
            assert.equal(got.length, 2);
            assert.deepEqual(got[0].sid, [40 + q]);
            assert.equal(got[0].ct, "application/octet-stream");
            assert.equal(got[1].topic, `paho/v5-qos${q}`);
            assert.deepEqual(got[1].payload, [...new TextEncoder().encode("again")]);
          }
        }
      }
      assert.deepEqual(out.native.map((m: { payload: number[] }) => m.payload), [
        [...new TextEncoder().encode('{"from":"dist"}')],
      ]);
      const native = await b.native.received(1);
      assert.deepEqual(native.map((d) => [d.topic, d.value]), [["/paho/to-native", "from paho"]]);
    }),
});

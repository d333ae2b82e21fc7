/**
 * The broker's MQTT front end with MQTT.js (npm mqtt) and raw sockets:
 * topics and wildcards, retained values, QoS 1, the payload mapping both
 * ways with native clients, `$` topics, wills, takeover, and queue groups
 * shared between MQTT 5 shared subscriptions and native groups.
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
import { BrokerClient } from "./helpers/broker.ts";
import { sleep } from "./helpers/raw.ts";
import { startDist } from "./helpers/dist.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test({
  name: "mqtt: wildcards match as MQTT says (+ one level, # a subtree and its root)",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const sub = await mqttClient(b.mqttPort);
      const pub = await mqttClient(b.mqttPort);
      const plus = await mqttClient(b.mqttPort);
      const exact = await mqttClient(b.mqttPort);
      try {
        const all = record(sub);
        const one = record(plus);
        const only = record(exact);
        await sub.subscribeAsync("a/#");
        await plus.subscribeAsync("a/+");
        await exact.subscribeAsync("a/b");
        for (const t of ["a", "a/b", "a/b/c", "a/x", "b/a"]) await pub.publishAsync(t, t);
        await atLeast(all, 4);
        await atLeast(one, 2);
        await atLeast(only, 1);
        await sleep(100);
        assert.deepEqual(all.map((m) => m.topic), ["a", "a/b", "a/b/c", "a/x"]);
        assert.deepEqual(one.map((m) => m.topic), ["a/b", "a/x"]);
        assert.deepEqual(only.map((m) => m.topic), ["a/b"]);
        assert.deepEqual(all.map((m) => text(m.payload)), ["a", "a/b", "a/b/c", "a/x"]);
      } finally {
        for (const c of [sub, pub, plus, exact]) await c.endAsync();
      }
    }),
});

Deno.test({
  name: "mqtt: retained values arrive with RETAIN set, live ones without; empty clears",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const pub = await mqttClient(b.mqttPort);
      try {
        await pub.publishAsync("r/1", "one", { retain: true, qos: 1 });
        await pub.publishAsync("r/2", "two", { retain: true, qos: 1 });
        await pub.publishAsync("r/3", "not kept", { qos: 1 });
        await pub.publishAsync("r/2", "", { retain: true, qos: 1 }); // cleared
        const sub = await mqttClient(b.mqttPort);
        const got = record(sub);
        await sub.subscribeAsync("r/+", { qos: 1 });
        await atLeast(got, 1);
        await pub.publishAsync("r/1", "live", { qos: 1 });
        await atLeast(got, 2);
        await sleep(100);
        assert.deepEqual(
          got.map((m) => [m.topic, text(m.payload), m.retain]),
          [["r/1", "one", true], ["r/1", "live", false]],
        );
        // A retained exact filter gets its own topic only.
        const exact = await mqttClient(b.mqttPort);
        const e = record(exact);
        await pub.publishAsync("r/1/deeper", "deep", { retain: true, qos: 1 });
        await exact.subscribeAsync("r/1");
        await atLeast(e, 1);
        await sleep(100);
        assert.deepEqual(e.map((m) => m.topic), ["r/1"]);
        await sub.endAsync();
        await exact.endAsync();
      } finally {
        await pub.endAsync();
      }
    }),
});

Deno.test({
  name: "mqtt: QoS 1 both ways, in order, and the subscription's QoS caps the delivery",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const pub = await mqttClient(b.mqttPort);
      const s1 = await mqttClient(b.mqttPort, { protocolVersion: 5 });
      const s0 = await mqttClient(b.mqttPort);
      try {
        const got1 = record(s1);
        const got0 = record(s0);
        await s1.subscribeAsync("q/#", { qos: 1 });
        await s0.subscribeAsync("q/#", { qos: 0 });
        // More than the in-flight window (1024): the rest waits in the queue, nothing is lost.
        const n = 3000;
        const sent: Promise<unknown>[] = [];
        for (let i = 0; i < n; i++) sent.push(pub.publishAsync("q/x", String(i), { qos: 1 }));
        await Promise.all(sent);
        await atLeast(got1, n, 20_000);
        await atLeast(got0, n, 20_000);
        assert.deepEqual(got1.map((m) => Number(text(m.payload))), [...Array(n).keys()]);
        assert.ok(got1.every((m) => m.qos === 1));
        assert.ok(got0.every((m) => m.qos === 0));
        // QoS 2 publish: taken once (PUBREC/PUBREL/PUBCOMP), delivered at the subscription's QoS 1.
        await pub.publishAsync("q/two", "2", { qos: 2 });
        await atLeast(got1, n + 1);
        assert.equal(got1[n].topic, "q/two");
        assert.equal(got1[n].qos, 1);
      } finally {
        for (const c of [pub, s1, s0]) await c.endAsync();
      }
    }),
});

Deno.test({
  name:
    "mqtt: payloads to native subscribers: JSON parsed, text a string, binary bytes, empty null",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const nj = await BrokerClient.connect(b.port, "json", "nj");
      const nm = await BrokerClient.connect(b.port, "msgpack", "nm");
      const pub = await mqttClient(b.mqttPort);
      try {
        await nj.subscribe("/p");
        await nm.subscribe("/p");
        const payloads: (string | Uint8Array)[] = [
          '{"a":[1,2.5,"é"]}',
          "42",
          "plain text",
          '"quoted"',
          Uint8Array.of(0x62, 0x00, 0xff),
          "",
        ];
        for (const p of payloads) await pub.publishAsync("p/x", p as string, { qos: 1 });
        await nj.received(payloads.length);
        await nm.received(payloads.length);
        const expected = [
          { a: [1, 2.5, "é"] },
          42,
          "plain text",
          "quoted",
          Uint8Array.of(0x62, 0x00, 0xff),
          null,
        ];
        assert.deepEqual(nm.deliveries.map((d) => d.value), expected);
        // JSON carries binary as base64, as it does for every binary value.
        assert.deepEqual(nj.deliveries.map((d) => d.value), [
          ...expected.slice(0, 4),
          btoa("b\x00\xff"),
          null,
        ]);
        assert.ok(nj.deliveries.every((d) => d.topic === "/p/x"));
      } finally {
        nj.close();
        nm.close();
        await pub.endAsync();
      }
    }),
});

Deno.test({
  name:
    "mqtt: native values to MQTT subscribers: strings unquoted, JSON text, binary raw, null empty",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const sub = await mqttClient(b.mqttPort);
      const nj = await BrokerClient.connect(b.port, "json", "pj");
      const nm = await BrokerClient.connect(b.port, "msgpack", "pm");
      try {
        const got = record(sub);
        await sub.subscribeAsync("n/#", { qos: 1 });
        await nj.confirm("/n/1", "hi", false);
        await nj.confirm("/n/2", { k: "v", n: [1, true, null] }, false);
        await nj.confirm("/n/3", 3.5, false);
        await nj.confirm("/n/4", null, false);
        await nm.confirm("/n/5", Uint8Array.of(0, 1, 0xfe, 0xff), false);
        // The fast path (JSON text passed through): the same rules.
        nj.publish("/n/6", { fast: "é" }, false);
        nj.publish("/n/7", "fast text", false);
        await atLeast(got, 7);
        assert.deepEqual(got.map((m) => m.topic), [1, 2, 3, 4, 5, 6, 7].map((i) => `n/${i}`));
        assert.deepEqual(got.slice(0, 4).map((m) => text(m.payload)), [
          "hi",
          '{"k":"v","n":[1,true,null]}',
          "3.5",
          "",
        ]);
        assert.deepEqual(got[4].payload, Uint8Array.of(0, 1, 0xfe, 0xff));
        assert.deepEqual(JSON.parse(text(got[5].payload)), { fast: "é" });
        assert.equal(text(got[6].payload), "fast text");
        // Native publishes go at the subscription's QoS.
        assert.ok(got.every((m) => m.qos === 1));
      } finally {
        nj.close();
        nm.close();
        await sub.endAsync();
      }
    }),
});

Deno.test({
  name: "mqtt: $ topics are reached only by filters that name them (MQTT and native alike)",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const all = await mqttClient(b.mqttPort);
      const plus = await mqttClient(b.mqttPort);
      const sys = await mqttClient(b.mqttPort);
      const pub = await mqttClient(b.mqttPort);
      const native = await BrokerClient.connect(b.port, "json", "root");
      try {
        const a = record(all);
        const p = record(plus);
        const s = record(sys);
        await all.subscribeAsync("#");
        await plus.subscribeAsync("+/x");
        await sys.subscribeAsync("$app/#");
        await native.subscribe("/");
        // ($SYS itself is the broker's own: clients cannot publish there, tests/mqtt_sys_test.ts.)
        await pub.publishAsync("$app/x", "hidden", { qos: 1, retain: true });
        await pub.publishAsync("v/x", "seen", { qos: 1 });
        await atLeast(s, 1);
        await atLeast(a, 1);
        await atLeast(p, 1);
        await native.received(1);
        await sleep(150);
        assert.deepEqual(a.map((m) => m.topic), ["v/x"]);
        assert.deepEqual(p.map((m) => m.topic), ["v/x"]);
        assert.deepEqual(s.map((m) => m.topic), ["$app/x"]);
        assert.deepEqual(native.deliveries.map((d) => d.topic), ["/v/x"]);
        // Nor does a later `#` get the retained `$` value.
        const late = await mqttClient(b.mqttPort);
        const l = record(late);
        await late.subscribeAsync("#");
        await pub.publishAsync("v/y", "after", { qos: 1 });
        await atLeast(l, 1);
        await sleep(100);
        assert.deepEqual(l.map((m) => m.topic), ["v/y"]);
        await late.endAsync();
      } finally {
        native.close();
        for (const c of [all, plus, sys, pub]) await c.endAsync();
      }
    }),
});

Deno.test({
  name: "mqtt: a will goes out when a client vanishes, not when it disconnects",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const watcher = await mqttClient(b.mqttPort);
      try {
        const got = record(watcher);
        await watcher.subscribeAsync("will/#", { qos: 1 });
        const polite = await mqttClient(b.mqttPort, {
          will: { topic: "will/polite", payload: "bye" as never, qos: 1, retain: false },
        });
        await polite.endAsync();
        const rude = await RawMqtt.connect(b.mqttPort, {
          will: { topic: "will/rude", payload: "gone", qos: 1, retain: false },
        });
        await rude.end(); // no DISCONNECT
        await atLeast(got, 1);
        await sleep(150);
        assert.deepEqual(got.map((m) => [m.topic, text(m.payload)]), [["will/rude", "gone"]]);
      } finally {
        await watcher.endAsync();
      }
    }),
});

Deno.test({
  name: "mqtt: a second connection with the same client id takes over",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const first = await RawMqtt.connect(b.mqttPort, { clientId: "same" });
      const second = await RawMqtt.connect(b.mqttPort, { clientId: "same" });
      try {
        await first.closedWithin();
        await second.send({ cmd: "pingreq" });
        await second.next("pingresp");
        assert.equal((await b.mqttStats()).takeovers, 1);
      } finally {
        await first.end();
        await second.end();
      }
    }),
});

Deno.test({
  name: "mqtt: $share groups and native groups are one queue group",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const m = await mqttClient(b.mqttPort, { protocolVersion: 5 });
      const n = await BrokerClient.connect(b.port, "json", "member");
      const pub = await BrokerClient.connect(b.port, "json", "pub");
      try {
        const got = record(m);
        await m.subscribeAsync("$share/g/work/#", { qos: 1 });
        await n.subscribe("/work", { group: "g" });
        const total = 20;
        for (let i = 0; i < total; i++) await pub.confirm("/work/job", i, false);
        await sleep(200);
        await atLeast(got, 1);
        await n.received(1);
        const values = [
          ...got.map((x) => Number(text(x.payload))),
          ...n.deliveries.map((d) => d.value as number),
        ].sort((x, y) => x - y);
        assert.deepEqual(values, [...Array(total).keys()]);
        assert.equal(got.length, total / 2);
      } finally {
        n.close();
        pub.close();
        await m.endAsync();
      }
    }),
});

Deno.test({
  name: "mqtt: UNSUBSCRIBE stops deliveries; PINGREQ is answered",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const raw = await RawMqtt.connect(b.mqttPort);
      const pub = await mqttClient(b.mqttPort);
      try {
        await raw.send({
          cmd: "subscribe",
          messageId: 7,
          subscriptions: [{ topic: "u/#", qos: 1 }, { topic: "bad/#/x", qos: 0 }],
        });
        const suback = await raw.next("suback") as { messageId: number; granted: number[] };
        assert.equal(suback.messageId, 7);
        assert.deepEqual(suback.granted, [1, 0x80]);
        await pub.publishAsync("u/1", "x", { qos: 1 });
        const p = await raw.next("publish") as { topic: string; messageId: number };
        assert.equal(p.topic, "u/1");
        await raw.send({ cmd: "puback", messageId: p.messageId });
        await raw.send({ cmd: "unsubscribe", messageId: 8, unsubscriptions: ["u/#"] });
        await raw.next("unsuback");
        await pub.publishAsync("u/2", "y", { qos: 1 });
        await raw.send({ cmd: "pingreq" });
        await raw.next("pingresp");
        await sleep(100);
        assert.equal(raw.packets.filter((x) => x.cmd === "publish").length, 0);
      } finally {
        await raw.end();
        await pub.endAsync();
      }
    }),
});

Deno.test({
  name: "mqtt: a second subscription beside the first, either one unsubscribed, the other delivers",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const raw = await RawMqtt.connect(b.mqttPort);
      const pub = await mqttClient(b.mqttPort);
      const got = async (topic: string) => {
        await pub.publishAsync(topic, "x", { qos: 1 });
        const p = await raw.next("publish") as { topic: string; messageId: number };
        await raw.send({ cmd: "puback", messageId: p.messageId });
        return p.topic;
      };
      const sub = async (id: number, topic: string) => {
        await raw.send({ cmd: "subscribe", messageId: id, subscriptions: [{ topic, qos: 1 }] });
        assert.deepEqual((await raw.next("suback") as { granted: number[] }).granted, [1]);
      };
      const unsub = async (id: number, topic: string) => {
        await raw.send({ cmd: "unsubscribe", messageId: id, unsubscriptions: [topic] });
        await raw.next("unsuback");
      };
      try {
        await sub(1, "a/#");
        await sub(2, "a/#"); // The same filter again: replaced, one delivery
        assert.equal(await got("a/1"), "a/1");
        await sub(3, "b/#");
        assert.equal(await got("b/1"), "b/1");
        await unsub(4, "a/#");
        assert.equal(await got("b/2"), "b/2");
        await sub(5, "a/#");
        await unsub(6, "b/#");
        assert.equal(await got("a/2"), "a/2");
        await unsub(7, "a/#");
        await pub.publishAsync("a/3", "y", { qos: 1 });
        await pub.publishAsync("b/3", "y", { qos: 1 });
        await raw.send({ cmd: "pingreq" });
        await raw.next("pingresp");
        await sleep(100);
        assert.equal(raw.packets.filter((x) => x.cmd === "publish").length, 0);
      } finally {
        await raw.end();
        await pub.endAsync();
      }
    }),
});

Deno.test({
  name: "mqtt: with --token, CONNECT must carry it as the password",
  ...opts,
  fn: async () => {
    const broker = await startDist(["broker", "--port", "0", "--mqtt-port", "0"], {
      env: { DIST_TOKEN: "s3cret-t0ken" },
    });
    try {
      const m = broker.stderr().match(/MQTT on 127\.0\.0\.1:(\d+)/);
      assert.ok(m, broker.stderr());
      const port = Number(m[1]);
      // 3.1.1 has no password without a user name: `token`. (MQTT.js never sends a CONNECT
      // with a password and no user name, which MQTT 5 allows: not tried here.)
      const ok = await mqttClient(port, { username: "token", password: "s3cret-t0ken" });
      await ok.endAsync();
      const v5 = await mqttClient(port, {
        protocolVersion: 5,
        username: "token",
        password: "s3cret-t0ken",
      });
      await v5.endAsync();
      const refused = [{ username: "token", password: "wrong" }, {}, {
        username: "ann",
        password: "x",
      }];
      for (const bad of refused) {
        await assert.rejects(mqttClient(port, bad), /bad user ?name|not authorized/i);
      }
      await assert.rejects(
        mqttClient(port, { protocolVersion: 5, username: "token", password: "nope" }),
        /bad user ?name|not authorized/i,
      );
      assert.doesNotMatch(broker.stderr(), /s3cret/);
    } finally {
      await broker.stop();
    }
  },
});

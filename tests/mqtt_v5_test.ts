/**
 * MQTT 5 PUBLISH properties carried from publisher to subscribers (user
 * properties, content type, payload format, response topic, correlation
 * data), Message Expiry (the time left, and nothing after it), and the
 * subscription options no-local, retain-as-published and retain handling.
 * With MQTT.js on both sides.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import type { IPublishPacket, Packet } from "mqtt-packet";
import { atLeast, mqttClient, mqttOpts as opts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";

const v5 = { protocolVersion: 5 as const };
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** Every PUBLISH a client receives, whole. */
function packets(c: mqtt.MqttClient): IPublishPacket[] {
  const got: IPublishPacket[] = [];
  c.on("message", (_topic, _payload, packet) => got.push(packet));
  return got;
}

Deno.test({
  name: "mqtt 5: PUBLISH properties reach MQTT 5 subscribers as published",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const pub = await mqttClient(b.mqttPort, v5);
      const sub = await mqttClient(b.mqttPort, v5);
      const old = await mqttClient(b.mqttPort);
      try {
        const got = packets(sub);
        const got4 = packets(old);
        await sub.subscribeAsync("p/#", { qos: 1 });
        await old.subscribeAsync("p/#", { qos: 1 });
        const properties = {
          payloadFormatIndicator: true,
          contentType: "application/json",
          responseTopic: "p/replies",
          correlationData: Buffer.from([1, 2, 3, 250]),
          userProperties: { trace: "abc", "ünï": "cødé" },
        };
        await pub.publishAsync("p/a", '{"k":1}', { qos: 1, properties });
        await pub.publishAsync("p/b", "plain", { qos: 1 });
        await atLeast(got, 2);
        await atLeast(got4, 2);
        const p = got[0].properties!;
        assert.equal(p.payloadFormatIndicator, true);
        assert.equal(p.contentType, "application/json");
        assert.equal(p.responseTopic, "p/replies");
        assert.deepEqual([...(p.correlationData as Uint8Array)], [1, 2, 3, 250]);
        assert.deepEqual({ ...p.userProperties }, { trace: "abc", "ünï": "cødé" });
        assert.equal(text(got[0].payload as Uint8Array), '{"k":1}');
        assert.equal(got[1].properties?.userProperties, undefined);
        assert.deepEqual(got4.map((m) => text(m.payload as Uint8Array)), ['{"k":1}', "plain"]);
      } finally {
        for (const c of [pub, sub, old]) await c.endAsync();
      }
    }),
});

Deno.test({
  name: "mqtt 5: Message Expiry — the time left goes out; expired, nothing (retained or queued)",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const pub = await mqttClient(b.mqttPort, v5);
      try {
        await pub.publishAsync("x/r", "soon gone", {
          qos: 1,
          retain: true,
          properties: { messageExpiryInterval: 1 },
        });
        const early = await mqttClient(b.mqttPort, v5);
        const got = packets(early);
        await early.subscribeAsync("x/#", { qos: 1 });
        await atLeast(got, 1);
        assert.ok(got[0].properties!.messageExpiryInterval! <= 1, JSON.stringify(got[0]));
        // A persistent session away: a message waits for it past its expiry.
        const away = await mqttClient(b.mqttPort, {
          ...v5,
          clientId: "exp-away",
          clean: false,
          properties: { sessionExpiryInterval: 60 },
        });
        await away.subscribeAsync("x/q", { qos: 1 });
        await away.endAsync();
        for (let i = 0; (await b.mqttStats()).sessions_away !== 1; i++) {
          assert.ok(i < 250, "the session away");
          await sleep(20);
        }
        await pub.publishAsync("x/q", "expires", {
          qos: 1,
          properties: { messageExpiryInterval: 1 },
        });
        await pub.publishAsync("x/q", "stays", {
          qos: 1,
          properties: { messageExpiryInterval: 60 },
        });
        await sleep(2100);
        const late = await mqttClient(b.mqttPort, v5);
        const lateGot = packets(late);
        await late.subscribeAsync("x/#", { qos: 1 });
        // Recording from before the CONNACK: what waited comes right after it.
        const back = mqtt.connect(`mqtt://127.0.0.1:${b.mqttPort}`, {
          ...v5,
          clientId: "exp-away",
          clean: false,
          reconnectPeriod: 0,
          properties: { sessionExpiryInterval: 60 },
        });
        const backGot = packets(back);
        await atLeast(backGot, 1);
        await sleep(300);
        assert.deepEqual(lateGot, []);
        assert.deepEqual(backGot.map((m) => text(m.payload as Uint8Array)), ["stays"]);
        const left = backGot[0].properties!.messageExpiryInterval!;
        assert.ok(left >= 57 && left <= 60, String(left));
        assert.ok((await b.mqttStats()).expired >= 2);
        for (const c of [early, late, back]) await c.endAsync();
      } finally {
        await pub.endAsync();
      }
    }),
});

Deno.test({
  name: "mqtt 5: no-local, retain-as-published and retain handling",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const me = await mqttClient(b.mqttPort, v5);
      const other = await mqttClient(b.mqttPort, v5);
      const rap = await mqttClient(b.mqttPort, v5);
      const none = await mqttClient(b.mqttPort, v5);
      try {
        await other.publishAsync("o/kept", "old", { qos: 1, retain: true });
        const mine = packets(me);
        const raps = packets(rap);
        const nones = packets(none);
        await me.subscribeAsync("o/#", { qos: 1, nl: true, rh: 2 });
        await rap.subscribeAsync("o/#", { qos: 1, rap: true });
        await none.subscribeAsync("o/#", { qos: 1, rh: 2 });
        await atLeast(raps, 1); // the retained value, at subscribe
        await me.publishAsync("o/live", "from me", { qos: 1, retain: true });
        await other.publishAsync("o/live", "from other", { qos: 1 });
        await atLeast(mine, 1);
        await atLeast(raps, 3);
        await atLeast(nones, 2);
        await sleep(200);
        // No-local: not its own; retain handling 2: no retained value at subscribe.
        assert.deepEqual(mine.map((m) => text(m.payload as Uint8Array)), ["from other"]);
        assert.deepEqual(nones.map((m) => [text(m.payload as Uint8Array), m.retain]), [
          ["from me", false],
          ["from other", false],
        ]);
        // Retain-as-published: a live publish keeps its RETAIN flag.
        assert.deepEqual(raps.map((m) => [text(m.payload as Uint8Array), m.retain]), [
          ["old", true],
          ["from me", true],
          ["from other", false],
        ]);
      } finally {
        for (const c of [me, other, rap, none]) await c.endAsync();
      }
    }),
});

Deno.test({
  name:
    "mqtt 5: topic aliases from a client (Topic Alias Maximum in CONNACK), subscription identifiers on deliveries",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const pub = await mqttClient(b.mqttPort, v5);
      const sub = await mqttClient(b.mqttPort, v5);
      const old = await mqttClient(b.mqttPort);
      try {
        const got = packets(sub);
        const got4 = packets(old);
        // Two overlapping subscriptions: one copy, with both identifiers (MQTT-3.3.4-4).
        await sub.subscribeAsync("al/#", { qos: 1, properties: { subscriptionIdentifier: 7 } });
        await sub.subscribeAsync("al/+", { qos: 1, properties: { subscriptionIdentifier: 300 } });
        await old.subscribeAsync("al/#", { qos: 1 });
        // The alias set with its topic, then used with an empty topic; a second alias too.
        await pub.publishAsync("al/one", "1", { qos: 1, properties: { topicAlias: 1 } });
        await pub.publishAsync("", "2", { qos: 1, properties: { topicAlias: 1 } });
        await pub.publishAsync("al/two/deep", "3", { qos: 1, properties: { topicAlias: 2 } });
        await pub.publishAsync("", "4", { qos: 1, properties: { topicAlias: 2 } });
        await atLeast(got, 4);
        await atLeast(got4, 4);
        await sleep(100);
        const seen = got.map((m) => {
          const ids = [m.properties?.subscriptionIdentifier ?? []].flat().sort((a, b) => a - b);
          return `${m.topic} ${text(m.payload as Uint8Array)} ${ids.join(",")}`;
        }).sort();
        assert.deepEqual(seen, [
          "al/one 1 7,300",
          "al/one 2 7,300",
          "al/two/deep 3 7",
          "al/two/deep 4 7",
        ]);
        // The alias is the publisher's hop: no subscriber gets it.
        assert.ok(got.every((m) => m.properties?.topicAlias === undefined));
        assert.deepEqual(got4.map((m) => `${m.topic} ${text(m.payload as Uint8Array)}`), [
          "al/one 1",
          "al/one 2",
          "al/two/deep 3",
          "al/two/deep 4",
        ]);
      } finally {
        for (const c of [pub, sub, old]) await c.endAsync();
      }
    }),
});

Deno.test({
  name: "mqtt 5: an unknown Topic Alias is a protocol error; one over the maximum is 0x94",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      for (const [alias, reason] of [[5, 0x82], [65, 0x94], [0, 0x94]]) {
        const raw = await RawMqtt.open(b.mqttPort, 5);
        await raw.send({
          cmd: "connect",
          protocolId: "MQTT",
          protocolVersion: 5,
          clientId: `alias-${alias}`,
          clean: true,
          keepalive: 0,
        }, 5);
        const ack = await raw.next("connack") as { properties?: { topicAliasMaximum?: number } };
        assert.equal(ack.properties?.topicAliasMaximum, 64);
        await raw.send({
          cmd: "publish",
          topic: alias === 5 ? "" : "t",
          payload: "x",
          qos: 0,
          dup: false,
          retain: false,
          properties: { topicAlias: alias },
        } as Packet, 5);
        const d = await raw.next("disconnect") as { reasonCode?: number };
        assert.equal(d.reasonCode, reason, `alias ${alias}`);
        await raw.closedWithin();
        await raw.end();
      }
    }),
});

Deno.test({
  name:
    "mqtt 5: a will with a delay waits for it, not sent if the client is back in time; will properties carried",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const sub = await mqttClient(b.mqttPort, v5);
      try {
        const got = packets(sub);
        await sub.subscribeAsync("wd/#", { qos: 1 });
        const leaver = (id: string, delay: number) =>
          RawMqtt.connect(b.mqttPort, {
            clientId: id,
            protocolVersion: 5,
            properties: { sessionExpiryInterval: 60 },
            will: {
              topic: `wd/${id}`,
              payload: "gone",
              qos: 1,
              retain: false,
              properties: {
                willDelayInterval: delay,
                contentType: "text/plain",
                userProperties: { why: "test" },
              },
            },
          }, 5);
        // Gone without DISCONNECT: the will comes after its second, not before.
        const t0 = performance.now();
        (await leaver("late", 1)).close();
        await sleep(500);
        assert.equal(got.length, 0);
        await atLeast(got, 1, 3000);
        assert.ok(performance.now() - t0 >= 950, `after ${performance.now() - t0} ms`);
        assert.equal(got[0].topic, "wd/late");
        assert.equal(got[0].properties?.contentType, "text/plain");
        assert.deepEqual({ ...got[0].properties?.userProperties }, { why: "test" });
        // Back in its session within the delay: never sent.
        (await leaver("back", 1)).close();
        await sleep(200);
        const again = await RawMqtt.connect(b.mqttPort, {
          clientId: "back",
          protocolVersion: 5,
          clean: false,
          properties: { sessionExpiryInterval: 60 },
        }, 5);
        await sleep(1300);
        assert.deepEqual(got.map((m) => m.topic), ["wd/late"]);
        const stats = await b.mqttStats();
        assert.equal(stats.wills_cancelled, 1);
        assert.equal(stats.wills_delayed, 0);
        await again.end();
      } finally {
        await sub.endAsync();
      }
    }),
});

Deno.test({
  name:
    "mqtt 5: topic aliases to a client that allows them (its Topic Alias Maximum), topics as sent",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      // A raw client sees the wire; MQTT.js resolves the aliases as a user's client does.
      const raw = await RawMqtt.connect(b.mqttPort, { properties: { topicAliasMaximum: 2 } }, 5);
      const js = await mqttClient(b.mqttPort, { ...v5, properties: { topicAliasMaximum: 2 } });
      const pub = await mqttClient(b.mqttPort);
      try {
        await raw.send({
          cmd: "subscribe",
          messageId: 1,
          subscriptions: [{ topic: "ao/#", qos: 0 }],
        }, 5);
        await raw.next("suback");
        const got: string[] = [];
        js.on("message", (topic, payload) => got.push(`${topic} ${text(payload)}`));
        await js.subscribeAsync("ao/#", { qos: 1 });
        const order = ["a", "b", "c", "a", "b", "c"];
        for (const [i, t] of order.entries()) await pub.publishAsync(`ao/${t}`, `${i}`, { qos: 1 });
        const wire: [string, number | undefined][] = [];
        for (let i = 0; i < order.length; i++) {
          const p = await raw.next("publish") as IPublishPacket;
          wire.push([p.topic, p.properties?.topicAlias]);
        }
        // Two aliases: set with the topic, then used alone; the third topic goes by name.
        assert.deepEqual(wire, [
          ["ao/a", 1],
          ["ao/b", 2],
          ["ao/c", undefined],
          ["", 1],
          ["", 2],
          ["ao/c", undefined],
        ]);
        await atLeast(got, order.length);
        assert.deepEqual(got, order.map((t, i) => `ao/${t} ${i}`));
      } finally {
        await raw.end();
        await js.endAsync();
        await pub.endAsync();
      }
    }),
});

Deno.test({
  name: "mqtt 5: a delivery that went by its alias is sent again with its topic after a reconnect",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const session = {
        clientId: "alias-again",
        clean: false,
        properties: { sessionExpiryInterval: 60, topicAliasMaximum: 4 },
      };
      const first = await RawMqtt.connect(b.mqttPort, session, 5);
      const pub = await mqttClient(b.mqttPort);
      try {
        await first.send({
          cmd: "subscribe",
          messageId: 1,
          subscriptions: [{ topic: "ar/t", qos: 1 }],
        }, 5);
        await first.next("suback");
        for (const v of ["1", "2"]) await pub.publishAsync("ar/t", v, { qos: 1 });
        const sent = [await first.next("publish"), await first.next("publish")] as IPublishPacket[];
        assert.deepEqual(sent.map((p) => p.topic), ["ar/t", ""]);
        // Not acknowledged: in flight when the connection goes.
        await first.end();
        const again = await RawMqtt.connect(b.mqttPort, { ...session, properties: {} }, 5);
        const resent = [
          await again.next("publish"),
          await again.next("publish"),
        ] as IPublishPacket[];
        assert.deepEqual(
          resent.map((
            p,
          ) => [p.topic, text(p.payload as Uint8Array), p.dup, p.properties?.topicAlias]),
          [["ar/t", "1", true, undefined], ["ar/t", "2", true, undefined]],
        );
        await again.end();
      } finally {
        await pub.endAsync();
      }
    }),
});

Deno.test({
  name:
    "mqtt 5: --mqtt-max-keepalive tells a client asking for none or more its Server Keep Alive, and holds it to it",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const none = await RawMqtt.open(b.mqttPort, 5);
      await none.send({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 5,
        clientId: "ka-none",
        clean: true,
        keepalive: 0,
      } as Packet, 5);
      const ack = await none.next("connack") as { properties?: { serverKeepAlive?: number } };
      assert.equal(ack.properties?.serverKeepAlive, 1);
      const within = await RawMqtt.open(b.mqttPort, 5);
      await within.send({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 5,
        clientId: "ka-short",
        clean: true,
        keepalive: 1,
      } as Packet, 5);
      const ack2 = await within.next("connack") as { properties?: { serverKeepAlive?: number } };
      assert.equal(ack2.properties?.serverKeepAlive, undefined);
      // Silent past 1.5 × 1 s: closed (the housekeeping tick is 1 s: allow a few).
      await none.closedWithin(5000);
      await within.closedWithin(5000);
      await none.end();
      await within.end();
    }, { mqttMaxKeepalive: 1 }),
});

Deno.test({
  name:
    "mqtt 5: DISCONNECT's Session Expiry Interval ends or keeps the session; one set after 0 at CONNECT is a protocol error",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const connect = async (clientId: string, expiry: number) => {
        const raw = await RawMqtt.open(b.mqttPort, 5);
        await raw.send({
          cmd: "connect",
          protocolId: "MQTT",
          protocolVersion: 5,
          clientId,
          clean: false,
          keepalive: 0,
          properties: { sessionExpiryInterval: expiry },
        }, 5);
        return { raw, ack: await raw.next("connack") as { sessionPresent: boolean } };
      };
      const bye = (raw: RawMqtt, expiry: number) =>
        raw.send({ cmd: "disconnect", properties: { sessionExpiryInterval: expiry } } as Packet, 5);
      // Kept at CONNECT for 60 s, ended by DISCONNECT's 0; kept by DISCONNECT's 600.
      for (const [expiry, present] of [[0, false], [600, true]] as const) {
        const id = `bye-${expiry}`;
        const first = await connect(id, 60);
        await bye(first.raw, expiry);
        await first.raw.closedWithin();
        await first.raw.end();
        const again = await connect(id, 60);
        assert.equal(again.ack.sessionPresent, present, `DISCONNECT with ${expiry}`);
        await again.raw.end();
      }
      // 0 at CONNECT, then more at DISCONNECT: refused (0x82), the connection closed.
      const zero = await connect("bye-late", 0);
      await bye(zero.raw, 60);
      const d = await zero.raw.next("disconnect") as { reasonCode?: number };
      assert.equal(d.reasonCode, 0x82);
      await zero.raw.closedWithin();
      await zero.raw.end();
    }),
});

Deno.test(
  "mqtt 5: a CONNECT with an Authentication Method is refused 0x8C, as no method is answered (hostile46b M-B11)",
  opts,
  () =>
    withMqttBroker(async (b) => {
      const raw = await RawMqtt.open(b.mqttPort, 5);
      await raw.send({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 5,
        clientId: "scram",
        clean: true,
        keepalive: 0,
        properties: { authenticationMethod: "SCRAM-SHA-1" },
      } as Packet);
      const ack = await raw.next("connack") as { reasonCode?: number };
      assert.equal(ack.reasonCode, 0x8c);
      await raw.end().catch(() => {});
    }),
);

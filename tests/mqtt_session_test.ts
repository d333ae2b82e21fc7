/**
 * MQTT persistent sessions and QoS 2 deliveries: subscriptions kept while
 * the client is away (3.1.1 clean session 0, MQTT 5 Clean Start 0 with a
 * Session Expiry Interval), what was published meanwhile delivered when it
 * comes back (Session Present set), unacknowledged deliveries sent again
 * with DUP, the bound on what waits (drops counted in sys.stats), expiry;
 * PUBLISH → PUBREC → PUBREL → PUBCOMP towards a QoS 2 subscriber. With
 * MQTT.js, raw sockets, and mosquitto_sub -c.
 */
import assert from "node:assert/strict";
import type { IConnackPacket, IPublishPacket, Packet } from "mqtt-packet";
import {
  atLeast,
  connectWithAck,
  HAVE_MOSQUITTO,
  mosquitto,
  type MqttBroker,
  mqttClient,
  mqttOpts as opts,
  RawMqtt,
  record,
  withMqttBroker,
} from "./helpers/mqtt.ts";
import { sleep, waitFor } from "./helpers/raw.ts";
import { lines } from "./helpers/dist.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** A raw connection's CONNECT with its CONNACK returned. */
async function rawSession(
  port: number,
  clientId: string,
  fields: Record<string, unknown> = {},
  version = 4,
): Promise<{ raw: RawMqtt; ack: IConnackPacket }> {
  const raw = await RawMqtt.open(port, version);
  await raw.send({
    cmd: "connect",
    protocolId: "MQTT",
    protocolVersion: version,
    clientId,
    clean: false,
    keepalive: 0,
    ...fields,
  } as Packet, version);
  const ack = await raw.next("connack") as IConnackPacket;
  return { raw, ack };
}

/** Waits (at most 5 s) until the MQTT counters satisfy `ok`. */
async function until(b: MqttBroker, ok: (s: Record<string, number>) => boolean): Promise<void> {
  const t0 = Date.now();
  for (let s = await b.mqttStats(); !ok(s); s = await b.mqttStats()) {
    if (Date.now() - t0 > 5000) assert.fail(`MQTT counters: ${JSON.stringify(s)}`);
    await sleep(20);
  }
}

/** Waits until `n` sessions wait for their clients. */
const awayCount = (b: MqttBroker, n: number) => until(b, (s) => s.sessions_away === n);

const publishes = (raw: RawMqtt) =>
  raw.packets.filter((p) => p.cmd === "publish") as IPublishPacket[];

Deno.test({
  name: "mqtt session: 3.1.1 clean session 0 keeps subscriptions and queues while away",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const pub = await mqttClient(b.mqttPort);
      try {
        const first = await connectWithAck(b.mqttPort, { clientId: "keeper", clean: false });
        assert.equal(first.ack.sessionPresent, false);
        await first.c.subscribeAsync("s/#", { qos: 1 });
        await first.c.endAsync();
        await awayCount(b, 1);
        for (let i = 0; i < 20; i++) await pub.publishAsync("s/x", `m${i}`, { qos: 1 });
        const stats = await b.mqttStats();
        assert.ok(stats.session_queued_bytes > 0);
        const back = await connectWithAck(b.mqttPort, { clientId: "keeper", clean: false });
        assert.equal(back.ack.sessionPresent, true);
        await atLeast(back.got, 20);
        assert.deepEqual(
          back.got.map((m) => text(m.payload)),
          [...Array(20).keys()].map((i) => `m${i}`),
        );
        // Still subscribed: live ones arrive too, with no SUBSCRIBE.
        await pub.publishAsync("s/y", "live", { qos: 1 });
        await atLeast(back.got, 21);
        assert.equal(back.got[20].topic, "s/y");
        await back.c.endAsync();
        // A clean session discards it: nothing waits, nothing is delivered.
        await pub.publishAsync("s/z", "for nobody", { qos: 1 });
        const clean = await connectWithAck(b.mqttPort, { clientId: "keeper", clean: true });
        assert.equal(clean.ack.sessionPresent, false);
        await sleep(200);
        assert.deepEqual(clean.got, []);
        await clean.c.endAsync();
        // The publisher's own (clean) session is the one left.
        await until(b, (s) => s.sessions === 1 && s.sessions_persistent === 0);
        assert.equal((await b.stats()).subscriptions, 0);
      } finally {
        await pub.endAsync();
      }
    }),
});

Deno.test({
  name: "mqtt session: an unacknowledged QoS 1 delivery comes again with DUP and its packet id",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const pub = await mqttClient(b.mqttPort);
      try {
        const { raw } = await rawSession(b.mqttPort, "forgetful");
        await raw.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "d", qos: 1 }] });
        await raw.next("suback");
        await pub.publishAsync("d", "one", { qos: 1 });
        await pub.publishAsync("d", "two", { qos: 1 });
        await waitFor(() => publishes(raw).length >= 2, 5000, "two deliveries");
        const [one, two] = publishes(raw);
        assert.equal(one.dup, false);
        // "one" is acknowledged, "two" is not: the client goes away.
        await raw.send({ cmd: "puback", messageId: one.messageId });
        await sleep(100);
        await raw.end();
        await pub.publishAsync("d", "three", { qos: 1 });
        const again = await rawSession(b.mqttPort, "forgetful");
        assert.equal(again.ack.sessionPresent, true);
        await waitFor(() => publishes(again.raw).length >= 2, 5000, "the redelivery and the rest");
        const [re, three] = publishes(again.raw);
        assert.deepEqual([text(re.payload as Uint8Array), re.dup, re.messageId], [
          "two",
          true,
          two.messageId,
        ]);
        assert.deepEqual([text(three.payload as Uint8Array), three.dup], ["three", false]);
        for (const p of [re, three]) {
          await again.raw.send({ cmd: "puback", messageId: p.messageId });
        }
        await sleep(100);
        await again.raw.end();
        // All acknowledged: nothing comes a third time.
        const third = await rawSession(b.mqttPort, "forgetful");
        assert.equal(third.ack.sessionPresent, true);
        await sleep(300);
        assert.deepEqual(publishes(third.raw), []);
        await third.raw.end();
      } finally {
        await pub.endAsync();
      }
    }),
});

Deno.test({
  name: "mqtt session: what is sent again keeps within the returning client's Receive Maximum",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const pub = await mqttClient(b.mqttPort);
      try {
        const v5 = { properties: { sessionExpiryInterval: 60 } };
        const { raw } = await rawSession(b.mqttPort, "narrow", v5, 5);
        await raw.send(
          { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "n", qos: 1 }] },
          5,
        );
        await raw.next("suback");
        for (let i = 0; i < 5; i++) await pub.publishAsync("n", String(i), { qos: 1 });
        await waitFor(() => publishes(raw).length >= 5, 5000, "five deliveries");
        await raw.end();
        const back = await rawSession(b.mqttPort, "narrow", {
          properties: { sessionExpiryInterval: 60, receiveMaximum: 2 },
        }, 5);
        assert.equal(back.ack.sessionPresent, true);
        await waitFor(() => publishes(back.raw).length >= 2, 5000, "two again");
        await sleep(200);
        assert.equal(publishes(back.raw).length, 2);
        const [first] = publishes(back.raw);
        await back.raw.send({ cmd: "puback", messageId: first.messageId }, 5);
        await waitFor(() => publishes(back.raw).length >= 3, 5000, "a third after one ack");
        await sleep(200);
        const seen = publishes(back.raw);
        assert.equal(seen.length, 3);
        assert.deepEqual(seen.map((p) => [text(p.payload as Uint8Array), p.dup]), [
          ["0", true],
          ["1", true],
          ["2", true],
        ]);
        await back.raw.end();
      } finally {
        await pub.endAsync();
      }
    }),
});

Deno.test({
  name: "mqtt session: what waits is bounded by max-pending, the oldest dropped and counted",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const pub = await mqttClient(b.mqttPort);
      try {
        const first = await connectWithAck(b.mqttPort, { clientId: "away", clean: false });
        await first.c.subscribeAsync("big", { qos: 1 });
        await first.c.endAsync();
        const n = 200;
        const body = "x".repeat(200);
        for (let i = 0; i < n; i++) await pub.publishAsync("big", `${i} ${body}`, { qos: 1 });
        const stats = await b.mqttStats();
        assert.ok(stats.session_dropped > 0, JSON.stringify(stats));
        assert.ok(stats.session_queued_bytes <= 16 * 1024, JSON.stringify(stats));
        const back = await connectWithAck(b.mqttPort, { clientId: "away", clean: false });
        assert.equal(back.ack.sessionPresent, true);
        await atLeast(back.got, n - stats.session_dropped);
        await sleep(200);
        // Every one delivered or counted; the newest are the ones kept, in order.
        assert.equal(back.got.length + stats.session_dropped, n);
        const ids = back.got.map((m) => Number(text(m.payload).split(" ")[0]));
        assert.deepEqual(ids, [...Array(ids.length).keys()].map((i) => n - ids.length + i));
        await back.c.endAsync();
      } finally {
        await pub.endAsync();
      }
    }, { maxPending: 16 * 1024 }),
});

Deno.test({
  name: "mqtt session: MQTT 5 Session Expiry Interval — kept for it, gone after, 0 ends at once",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const v5 = { protocolVersion: 5 as const, clean: false };
      const a = await connectWithAck(b.mqttPort, {
        ...v5,
        clientId: "brief",
        properties: { sessionExpiryInterval: 1 },
      });
      await a.c.subscribeAsync("e", { qos: 1 });
      await a.c.endAsync();
      await awayCount(b, 1);
      await sleep(1500);
      const stats = await b.mqttStats();
      assert.equal(stats.sessions_expired, 1);
      assert.equal(stats.sessions, 0);
      assert.equal((await b.stats()).subscriptions, 0);
      const again = await connectWithAck(b.mqttPort, { ...v5, clientId: "brief" });
      assert.equal(again.ack.sessionPresent, false);
      await again.c.endAsync();
      // Clean Start 0 with no expiry: the session ends with the connection.
      await until(b, (s) => s.sessions === 0);
      // Asked for more than a day: cut to a day, and the CONNACK says so.
      const long = await connectWithAck(b.mqttPort, {
        ...v5,
        clientId: "long",
        properties: { sessionExpiryInterval: 0xffff_fffe },
      });
      assert.equal(long.ack.properties?.sessionExpiryInterval, 86_400);
      await long.c.endAsync();
    }),
});

Deno.test({
  name:
    "mqtt session: QoS 2 to a QoS 2 subscriber (PUBREC, PUBREL, PUBCOMP), PUBREL again on return",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const pub = await mqttClient(b.mqttPort);
      const sub = await mqttClient(b.mqttPort, { protocolVersion: 5 });
      try {
        const got = record(sub);
        await sub.subscribeAsync("two/#", { qos: 2 });
        for (let i = 0; i < 50; i++) await pub.publishAsync("two/a", String(i), { qos: 2 });
        await atLeast(got, 50);
        assert.ok(got.every((m) => m.qos === 2));
        assert.deepEqual(got.map((m) => Number(text(m.payload))), [...Array(50).keys()]);

        // On the wire: PUBREC is answered with PUBREL; the id is held until PUBCOMP.
        const { raw } = await rawSession(b.mqttPort, "two-raw");
        await raw.send({
          cmd: "subscribe",
          messageId: 1,
          subscriptions: [{ topic: "two/b", qos: 2 }],
        });
        await raw.next("suback");
        await pub.publishAsync("two/b", "x", { qos: 2 });
        const p = await raw.next("publish") as IPublishPacket;
        assert.equal(p.qos, 2);
        await raw.send({ cmd: "pubrec", messageId: p.messageId });
        assert.equal((await raw.next("pubrel")).messageId, p.messageId);
        await raw.end();
        // Away before PUBCOMP: the PUBREL comes again, not the PUBLISH.
        const back = await rawSession(b.mqttPort, "two-raw");
        assert.equal(back.ack.sessionPresent, true);
        assert.equal((await back.raw.next("pubrel")).messageId, p.messageId);
        await back.raw.send({ cmd: "pubcomp", messageId: p.messageId });
        await sleep(200);
        assert.deepEqual(publishes(back.raw), []);
        await back.raw.end();
      } finally {
        await pub.endAsync();
        await sub.endAsync();
      }
    }),
});

Deno.test({
  name: "mqtt session: mosquitto_sub -c -i gets what was published while it was not running",
  ignore: !HAVE_MOSQUITTO,
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const p = ["-p", String(b.mqttPort)];
      for (const v of ["mqttv311", "mqttv5"]) {
        const id = ["-c", "-i", `mosq-${v}`, "-V", v, "-q", "1", "-t", "ms/#", "-v"];
        // MQTT 5 asks for its session with an expiry (-x); 3.1.1's -c is enough.
        const expiry = v === "mqttv5" ? ["-x", "60"] : [];
        // The first run subscribes, then leaves (-W: after a second of nothing).
        const first = await mosquitto("mosquitto_sub", [...p, ...id, ...expiry, "-W", "1"]);
        assert.equal(first.stdout, "", first.stderr);
        for (const m of ["a", "b", "c"]) {
          const r = await mosquitto("mosquitto_pub", [...p, "-q", "1", "-t", `ms/${m}`, "-m", m]);
          assert.equal(r.code, 0, r.stderr);
        }
        const second = await mosquitto("mosquitto_sub", [...p, ...id, ...expiry, "-C", "3"]);
        assert.equal(second.code, 0, second.stderr);
        assert.deepEqual(lines(second.stdout), ["ms/a a", "ms/b b", "ms/c c"], v);
      }
    }),
});

Deno.test({
  name:
    "mqtt session: an MQTT 5 delivery sent again carries the Message Expiry left, not the first",
  ...opts,
  fn: () =>
    withMqttBroker(async (b) => {
      const pub = await mqttClient(b.mqttPort, { protocolVersion: 5 });
      const v5 = { protocolVersion: 5, properties: { sessionExpiryInterval: 60 } };
      try {
        const { raw } = await rawSession(b.mqttPort, "ager", v5, 5);
        await raw.send({
          cmd: "subscribe",
          messageId: 1,
          subscriptions: [{ topic: "ex/#", qos: 1 }],
        }, 5);
        await raw.next("suback");
        // One goes at once (then unacknowledged), one waits in the queue while the client is away.
        await pub.publishAsync("ex/a", "sent", {
          qos: 1,
          properties: { messageExpiryInterval: 30 },
        });
        await waitFor(() => publishes(raw).length >= 1, 5000, "the delivery");
        assert.equal(publishes(raw)[0].properties?.messageExpiryInterval, 30);
        await raw.end();
        await pub.publishAsync("ex/b", "queued", {
          qos: 1,
          properties: { messageExpiryInterval: 30 },
        });
        await sleep(2100);
        const again = await rawSession(b.mqttPort, "ager", v5, 5);
        await waitFor(() => publishes(again.raw).length >= 2, 5000, "both");
        const [re, queued] = publishes(again.raw);
        assert.deepEqual([text(re.payload as Uint8Array), re.dup], ["sent", true]);
        for (const p of [re, queued]) {
          const left = p.properties?.messageExpiryInterval ?? 0;
          assert.ok(left >= 27 && left <= 29, `${text(p.payload as Uint8Array)}: ${left} s left`);
        }
        await again.raw.end();
      } finally {
        await pub.endAsync();
      }
    }),
});

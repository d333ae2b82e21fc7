/**
 * Code points an MQTT client refuses (hostile review 38 L1): libmosquitto
 * drops its connection on a control character (U+0001–U+001F,
 * U+007F–U+009F) or a non-character (U+FDD0–U+FDEF, U+xFFFE, U+xFFFF) in any
 * string it reads, and a retained value holding one cut every mosquitto_sub
 * off on every reconnect. Topics holding them are refused, natively
 * (BAD_REQUEST) and over MQTT (0x90, as other topics dist has no name for),
 * and a data file's rows of such topics are dropped when read back. (Property
 * strings: mqtt_properties_test.ts.)
 */
import assert from "node:assert/strict";
import { DistError } from "../wire/mod.ts";
import { normalizeTopic } from "../clients/contracts/mod.ts";
import { BrokerCore } from "../roles/broker/mod.ts";
import { BROKER_FILE, DurableBroker } from "../roles/broker/durable.ts";
import { Store } from "../store/mod.ts";
import { FakeSink } from "./helpers/broker_sink.ts";
import { waitUntil } from "./helpers/binder.ts";
import { HAVE_MOSQUITTO, mosquitto, mqttOpts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { sleep } from "./helpers/raw.ts";
import { varint } from "./helpers/mqtt_bytes.ts";
import { startMqttBroker } from "./helpers/mqtt.ts";
import { META, MQTT_FILE, SESSIONS } from "../roles/broker/mqtt/persist.ts";
import { DELIVERIES, deliveryKey, readDeliveryKey } from "../roles/broker/mqtt/journal.ts";

const encoder = new TextEncoder();
/** Topics (MQTT form) a client library refuses; U+0001 was refused before L1 too. */
const BAD = [
  "u/x\u0001",
  "u/x\u0080",
  "u/x\u0085",
  "u/x\u009f",
  "u/x\ufdd0",
  "u/x\uffff",
  "u/x\u{1fffe}",
];

/** A retained PUBLISH of `payload` on `topic`: QoS 1 (id 1) or 0; MQTT 5 with no properties. */
function publish(topic: string, payload: string, qos: 0 | 1, v5: boolean): Uint8Array {
  const t = encoder.encode(topic);
  const body = [
    ...[t.length >> 8, t.length & 0xff, ...t],
    ...(qos === 1 ? [0, 1] : []),
    ...(v5 ? [0] : []),
    ...encoder.encode(payload),
  ];
  return Uint8Array.from([0x31 | (qos << 1), ...varint(body.length), ...body]);
}

Deno.test("normalizeTopic() refuses controls, non-characters and lone surrogates; takes other Unicode", () => {
  for (const t of [...BAD, "a\u007f", "a\ufdef", "a\ufffe", "a\u{10ffff}", "a\ud800", "a\udc00b"]) {
    assert.throws(() => normalizeTopic(t), DistError, JSON.stringify(t));
    assert.throws(() => normalizeTopic(t, { pattern: true }), DistError, JSON.stringify(t));
  }
  for (
    const t of ["é/ü", "a\u00a1", "a\ufdcf", "a\ufdf0", "a\ufffd", "a\u{1f600}", "a\u{10fffd}"]
  ) {
    assert.equal(normalizeTopic(t), "/" + t);
  }
});

Deno.test({
  name:
    "mqtt topics: a topic with a control character or a non-character is refused over MQTT 5 (PUBACK 0x90), 3.1.1 (closed) and natively (BAD_REQUEST), never retained; mosquitto_sub gets the rest (L1)",
  ...mqttOpts,
  async fn() {
    await withMqttBroker(async (b) => {
      const v5 = await RawMqtt.connect(b.mqttPort, { clientId: "l1-v5" }, 5);
      for (const topic of BAD) {
        await v5.write(publish(topic, "bad", 1, true));
        const ack = (await v5.next("puback")) as { reasonCode?: number };
        // Before: 0x00 (retained) for all but U+0001.
        assert.equal(ack.reasonCode, 0x90, JSON.stringify(topic));
      }
      await v5.write(publish("u/ok", "fine", 1, true));
      assert.equal(((await v5.next("puback")) as { reasonCode?: number }).reasonCode ?? 0, 0);
      v5.close();
      for (const topic of ["u/y\u0085", "u/y\uffff"]) {
        const v3 = await RawMqtt.connect(b.mqttPort, { clientId: "l1-v3" }, 4);
        await v3.write(publish(topic, "bad", 0, false));
        await v3.closedWithin();
      }
      for (const topic of ["/u/n\u0080", "/u/n\ufdd0", "/u/n\ud800"]) {
        await assert.rejects(
          () => b.native.confirm(topic, "v", true),
          (e: DistError) => e.code === "BAD_REQUEST",
          JSON.stringify(topic),
        );
        await assert.rejects(() => b.native.subscribe(topic), DistError, JSON.stringify(topic));
      }
      await sleep(100); // (the 3.1.1 QoS 0 publishes: nothing comes back for them)
      const retained = await b.native.subscribe("/u");
      assert.deepEqual(retained.topics ?? ["/u/ok"], ["/u/ok"]);
      await waitUntil(() => b.native.deliveries.length >= 1, "u/ok", 5000);
      await sleep(200);
      assert.deepEqual(b.native.deliveries.map((d) => d.topic), ["/u/ok"]);
      if (!HAVE_MOSQUITTO) return;
      for (const version of ["mqttv5", "mqttv311"]) {
        const sub = await mosquitto("mosquitto_sub", [
          ...["-p", String(b.mqttPort), "-V", version, "-t", "u/#", "-C", "1", "-W", "5", "-v"],
          "-d",
        ]);
        // Before: a CONNECT a second, nothing received (the retained value cut it off each time).
        assert.match(sub.stdout, /^u\/ok fine$/m, JSON.stringify(sub));
        assert.equal(sub.stdout.match(/sending CONNECT/g)?.length, 1, sub.stdout);
      }
    });
  },
});

Deno.test("mqtt topics: a data file's rows of topics with control characters or non-characters are dropped when read back (L1)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = new Store(`${dir}/${BROKER_FILE}`, { fsync: "off", tables: ["retained"] });
    const now = Math.floor(Date.now() / 1000);
    const rows = ["/u/ok", "/u/x\u0080", "/u/x\u0085", "/u/x\ufdd0", "/u/x\uffff", "/u/x\u{2ffff}"];
    for (const topic of rows) store.put("retained", topic, `${now} "v"`);
    await store.commit();
    store.close();
    const warnings: string[] = [];
    const open = () => {
      const c = new BrokerCore({ retainBytes: 1 << 20, maxPending: 1 << 20, maxTopics: 1000 });
      const d = new DurableBroker(c, dir, {
        fsync: "batch",
        moveCorruptAside: false,
        warn: (m) => warnings.push(m),
      });
      return { c, d };
    };
    let { c, d } = open();
    try {
      await waitUntil(() => !d.loading, "the file read back", 5000);
      // Before: all 6 read back, and every libmosquitto subscriber of /u cut off by them.
      assert.equal(d.stats().restored, 1);
      assert.equal(d.stats().unreadable, 5);
      const sink = new FakeSink();
      const { sub } = c.subscribe(sink, { topic: "/u" });
      sub.release();
      await waitUntil(() => !sub.snapshotting, "the snapshot sent", 5000);
      assert.deepEqual(sink.written.map((m) => m.topic), ["/u/ok"]);
      await d.committed();
    } finally {
      d.close();
    }
    // Deleted from the file as they were dropped.
    ({ c, d } = open());
    try {
      await waitUntil(() => !d.loading, "the file read back", 5000);
      assert.equal(d.stats().restored, 1);
      assert.equal(d.stats().unreadable, 0);
    } finally {
      d.close();
    }
    assert.equal(warnings.length, 5, warnings.join("\n"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "mqtt topics: a persistent session's deliveries read back from --data-dir whose topic a client refuses (queued or in flight) are dropped, not sent at every return (L1)",
  ...mqttOpts,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "mqtt-l1-" });
    const session = {
      clientId: "l1-away",
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
    };
    let b = await startMqttBroker({ dataDir: dir });
    try {
      const away = await RawMqtt.connect(b.mqttPort, session, 5);
      await away.send(
        { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "u/#", qos: 1 }] },
        5,
      );
      await away.next("suback");
      await away.end();
      const pub = await RawMqtt.connect(b.mqttPort, { clientId: "l1-pub" }, 5);
      await pub.write(publish("u/ok", "fine", 1, true));
      await pub.next("puback");
      pub.close();
      await sleep(300); // the group commit
      await b.stop();
      // Rows as a broker before the check could have written them: one queued before the good
      // one, one in flight (packet id 9), both on a topic with U+0080.
      const store = new Store(`${dir}/${MQTT_FILE}`, {
        fsync: "off",
        tables: [SESSIONS, DELIVERIES, META],
      });
      const rows = [...store.rows(DELIVERIES)];
      assert.equal(rows.length, 1, JSON.stringify(rows.map(([k]) => k)));
      const { session: no, sub, n } = readDeliveryKey(rows[0][0])!;
      const bad = publish("u/x\u0080", "bad", 1, true);
      store.put(DELIVERIES, deliveryKey(no, sub, n - 1), bad.slice());
      bad[0] |= 0x08;
      bad[bad.length - 5] = 9; // its packet id's low byte (before: properties' length, "bad")
      store.put(DELIVERIES, deliveryKey(no, 0, 0), Uint8Array.of(0, 9, ...bad));
      await store.commit();
      store.close();
      b = await startMqttBroker({ dataDir: dir });
      const back = await RawMqtt.connect(b.mqttPort, session, 5);
      const first = (await back.next("publish")) as { topic: string };
      await sleep(300);
      const got = back.packets.filter((p) => p.cmd === "publish") as { topic: string }[];
      back.close();
      // Before: the one in flight (DUP), the queued one, then u/ok; libmosquitto, cut off by the
      // first, got it again at every return.
      assert.deepEqual([first.topic, ...got.map((p) => p.topic)], ["u/ok"]);
      assert.equal((await b.mqttStats()).messages_restored, 1);
    } finally {
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * A leading U+FEFF (EF BB BF) is data: it reaches every subscriber, in
 * every codec, in strings, keys and MQTT payloads, and an MQTT topic that
 * starts with it is not another topic without it (hostile review 40a T2:
 * every TextDecoder built without `ignoreBOM` dropped it from what it
 * decoded, one string or key at a time; 9 of 12 library deliveries
 * changed, and a PUBLISH to "\ufeffx" reached subscribers of `x`; MQTT 5
 * §1.5.4-3 forbids stripping it). @msgpack/msgpack's own decoder drops it
 * too (strings over 200 bytes): product code decodes MessagePack through
 * wire/codec.ts, whose string decoding is ours.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { fileURLToPath } from "node:url";
import mp, { type Packet } from "mqtt-packet";
import { connect } from "../clients/mod.ts";
import { withBroker } from "./helpers/broker.ts";
import { mqttOpts, RawMqtt, withMqttBroker } from "./helpers/mqtt.ts";
import { BrokerClient } from "./helpers/broker.ts";
import { sleep, waitFor } from "./helpers/raw.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const SKIP = new Set(["tests", "bench", "docs", "node_modules", "test-artifacts", ".probe", ".ci"]);

async function* productFiles(rel = ""): AsyncGenerator<string> {
  for await (const e of Deno.readDir(ROOT + rel)) {
    const path = rel === "" ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory && !SKIP.has(path)) yield* productFiles(path);
    else if (e.isFile && path.endsWith(".ts")) yield path;
  }
}

Deno.test("product files build every TextDecoder with ignoreBOM, and decode no MessagePack with the library's decode", async () => {
  const bare: string[] = [];
  for await (const path of productFiles()) {
    const lines = (await Deno.readTextFile(ROOT + path)).split("\n");
    lines.forEach((line, i) => {
      if (/new TextDecoder\(/.test(line) && !/ignoreBOM: true/.test(line)) {
        bare.push(`${path}:${i + 1}`);
      }
      if (/import\s*\{[^}]*\bdecode\b[^}]*\}\s*from\s*"@msgpack\/msgpack"/.test(line)) {
        bare.push(`${path}:${i + 1} (the library's decode)`);
      }
    });
  }
  assert.deepEqual(bare, [], 'new TextDecoder("utf-8", { ignoreBOM: true }), and wire/codec.ts');
});

const VALUES: Record<string, unknown> = {
  short: "\ufeffhi",
  long: "\ufeff" + "x".repeat(300),
  key: { ["\ufeff" + "k".repeat(250)]: 1 },
  short_key: { "\ufeffk": "\ufeffv", list: ["\ufeffa", "b"] },
};

Deno.test("library: strings and keys starting with U+FEFF arrive equal, JSON and MessagePack both ways", async () => {
  await withBroker(async (b) => {
    const codecs = ["json", "msgpack"] as const;
    const got: Record<string, Map<string, unknown>> = {};
    const conns = [];
    try {
      for (const codec of codecs) {
        const conn = await connect(b.address, { codec, name: `sub-${codec}` });
        conns.push(conn);
        const sub = await conn.subscribe("/bom");
        const seen = got[codec] = new Map();
        (async () => {
          for await (const m of sub) seen.set(m.topic, m.value);
        })();
      }
      for (const codec of codecs) {
        const pub = await connect(b.address, { codec, name: `pub-${codec}` });
        conns.push(pub);
        for (const [name, value] of Object.entries(VALUES)) {
          await pub.publish(`/bom/${codec}/${name}`, value, { confirm: true });
        }
      }
      const count = codecs.length * Object.keys(VALUES).length;
      await waitFor(
        () => codecs.every((c) => got[c].size === count),
        5000,
        `${count} deliveries each`,
      );
      for (const pc of codecs) {
        for (const sc of codecs) {
          for (const [name, value] of Object.entries(VALUES)) {
            assert.deepEqual(got[sc].get(`/bom/${pc}/${name}`), value, `${pc} → ${sc}: ${name}`);
          }
        }
      }
    } finally {
      for (const c of conns) c.close();
    }
  });
});

const gen = (p: unknown) => mp.generate(p as Packet, { protocolVersion: 5 });

Deno.test({
  name: "mqtt: a topic starting with U+FEFF is not the topic without it",
  ...mqttOpts,
  fn: () =>
    withMqttBroker(async (b) => {
      const plain = await RawMqtt.connect(b.mqttPort, { clientId: "plain" }, 5);
      const bom = await RawMqtt.connect(b.mqttPort, { clientId: "bom" }, 5);
      const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" }, 5);
      try {
        await plain.send({
          cmd: "subscribe",
          messageId: 1,
          subscriptions: [{ topic: "x", qos: 1 }],
        }, 5);
        assert.deepEqual((await plain.next("suback") as mp.ISubackPacket).granted, [1]);
        // Whitespace (JavaScript's \s, U+FEFF included) is refused in a dist topic, in both.
        await bom.send({
          cmd: "subscribe",
          messageId: 1,
          subscriptions: [{ topic: "\ufeffx", qos: 1 }],
        }, 5);
        assert.deepEqual((await bom.next("suback") as mp.ISubackPacket).granted, [0x8f]);
        const publish = (topic: string, messageId: number, payload: string) =>
          gen({ cmd: "publish", topic, payload, qos: 1, messageId, dup: false, retain: false });
        await pub.write(publish("\ufeffx", 1, "to-bom-topic"));
        const refused = await pub.next("puback") as mp.IPubackPacket;
        assert.deepEqual([refused.messageId, refused.reasonCode], [1, 0x90]);
        await pub.write(publish("x", 2, "to-plain-x"));
        assert.equal((await pub.next("puback") as mp.IPubackPacket).reasonCode ?? 0, 0);
        await waitFor(() => plain.packets.length > 0, 5000, "the publish to x");
        await sleep(100);
        const topics = plain.packets.map((p) => {
          const m = p as mp.IPublishPacket;
          return [m.topic, String(m.payload)];
        });
        assert.deepEqual(topics, [["x", "to-plain-x"]]);
      } finally {
        for (const c of [plain, bom, pub]) await c.end();
      }
    }),
});

Deno.test({
  name: "mqtt: a payload starting with EF BB BF reaches native subscribers with its U+FEFF",
  ...mqttOpts,
  fn: () =>
    withMqttBroker(async (b) => {
      const subs = [];
      try {
        for (const codec of ["json", "msgpack"]) {
          const c = await BrokerClient.connect(b.port, codec);
          subs.push(c);
          await c.subscribe("/m");
        }
        const pub = await RawMqtt.connect(b.mqttPort, { clientId: "pub" }, 5);
        const payload = Buffer.from([
          0xef,
          0xbb,
          0xbf,
          ...new TextEncoder().encode('{"bom":1}'),
        ]);
        await pub.write(
          gen({
            cmd: "publish",
            topic: "m",
            payload,
            qos: 1,
            messageId: 1,
            dup: false,
            retain: false,
          }),
        );
        await pub.next("puback");
        await pub.end();
        for (const c of subs) {
          const [d] = await c.received(1);
          assert.equal(d.value, '\ufeff{"bom":1}');
        }
      } finally {
        for (const c of subs) c.close();
      }
    }),
});

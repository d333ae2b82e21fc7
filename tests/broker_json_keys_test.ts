/**
 * One client's message does not change how another's parses (V8 in Deno
 * 2.9.6 read an escaped key as an earlier key holding a backslash:
 * docs/v8_json_keys.md). A real broker process: one client publishes
 * values with a key `\`, another then values with keys written with an
 * escape (`"\n"`, `"ab\t"`) of the same shape, each in the layout the
 * broker reads as bytes and in one it decodes, and over MQTT; a JSON and a
 * MessagePack subscriber of the wire, the client library in both codecs,
 * a raw reader of the frames and `dist consumer` each get the exact values.
 */
import assert from "node:assert/strict";
import { connect } from "../clients/mod.ts";
import { startDist } from "./helpers/dist.ts";
import { BrokerClient, streamDist } from "./helpers/broker.ts";
import { mqttClient, mqttOpts } from "./helpers/mqtt.ts";
import { frame, HELLO, jsonFrame, RawReader, within, writeAll } from "./helpers/raw.ts";

/** topic → [the poison's text, the victim's text] (same keys before, one escaped key). */
const PAIRS: [string, string][] = [
  ['{"x":1,"\\\\":0}', '{"x":1,"\\n":0}'],
  ['{"x":1,"\\\\":0}', '{"x":1,"\\u001f":0}'],
  ['{"q":[1],"ab\\\\":{"z":0}}', '{"q":[2],"ab\\t":{"z":1}}'],
  ['[{"id":"a","\\\\":true}]', '[{"id":"b","\\"":false}]'],
];

/** The victims' values, decoded by hand-checked construction (not by JSON.parse). */
const WANT: unknown[] = [
  { x: 1, "\n": 0 },
  { x: 1, "\u001f": 0 },
  { q: [2], "ab\t": { z: 1 } },
  [{ id: "b", '"': false }],
];

/** A publish the broker reads as bytes (canonical), and one it decodes (params first). */
const layouts = {
  bytes: (topic: string, value: string, id: number) =>
    `{"id":${id},"method":"broker.publish","params":{"topic":"${topic}","value":${value}}}`,
  decoded: (topic: string, value: string, id: number) =>
    `{"params":{"value":${value},"topic":"${topic}"},"method":"broker.publish","id":${id}}`,
};

async function rawPublisher(port: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reader = new RawReader(conn);
  await writeAll(conn, jsonFrame(HELLO));
  assert.equal((await reader.json())?.op, "welcome");
  let id = 0;
  return {
    async publish(text: string): Promise<void> {
      await writeAll(conn, frame(text.replace(/"id":0/, `"id":${++id}`)));
      const answer = await reader.json();
      assert.equal(answer?.error, undefined, JSON.stringify(answer));
    },
    close: () => conn.close(),
  };
}

Deno.test({
  name: "broker: values with escaped keys arrive as written after another client's `\\` keys",
  ...mqttOpts,
  fn: async () => {
    const broker = await startDist([
      "broker",
      "--port",
      "0",
      "--mqtt-port",
      "0",
      "--heartbeat",
      "30000",
    ]);
    const wireJson = await BrokerClient.connect(broker.port, "json");
    const mqttPort = ((await wireJson.stats()).mqtt as { port: number }).port;
    const wireMp = await BrokerClient.connect(broker.port, "msgpack");
    const libJson = await connect(broker.address);
    const libMp = await connect(broker.address, { codec: "msgpack" });
    const raw = await Deno.connect({ hostname: "127.0.0.1", port: broker.port });
    const rawReader = new RawReader(raw);
    const consumer = streamDist(["consumer", "-b", broker.address, "--topic", "/v", "--json"]);
    const a = await rawPublisher(broker.port);
    const b = await rawPublisher(broker.port);
    try {
      await wireJson.subscribe("/v");
      await wireMp.subscribe("/v");
      const subs = [await libJson.subscribe("/v"), await libMp.subscribe("/v")];
      await writeAll(raw, jsonFrame(HELLO));
      assert.equal((await rawReader.json())?.op, "welcome");
      await writeAll(
        raw,
        jsonFrame({ id: 1, method: "broker.subscribe", params: { topic: "/v" } }),
      );
      assert.ok((await rawReader.json())?.result);
      await consumer.until("stderr", /Subscribed to \/v/);

      // Each pair: A's poison, then B's victim, in both layouts; then over MQTT.
      const topics: string[] = [];
      for (const [name, layout] of Object.entries(layouts)) {
        for (const [i, [poison, victim]] of PAIRS.entries()) {
          await a.publish(layout(`/p/${name}/${i}`, poison, 0));
          await b.publish(layout(`/v/${name}/${i}`, victim, 0));
          topics.push(`/v/${name}/${i}`);
        }
      }
      const mq = await mqttClient(mqttPort);
      try {
        for (const [i, [poison, victim]] of PAIRS.entries()) {
          await mq.publishAsync(`p/mqtt/${i}`, poison, { qos: 1 });
          await mq.publishAsync(`v/mqtt/${i}`, victim, { qos: 1 });
          topics.push(`/v/mqtt/${i}`);
        }
      } finally {
        await mq.endAsync();
      }
      const want = (topic: string) => WANT[Number(topic.split("/").at(-1))];

      // The wire's JSON and MessagePack subscribers.
      for (const c of [wireJson, wireMp]) {
        const got = await c.received(topics.length);
        assert.deepEqual(got.map((d) => d.topic), topics);
        for (const d of got) assert.deepEqual(d.value, want(d.topic), d.topic);
      }
      // The client library, both codecs.
      for (const sub of subs) {
        let n = 0;
        await within(
          (async () => {
            for await (const m of sub) {
              assert.deepEqual(m.value, want(m.topic), m.topic);
              if (++n === topics.length) break;
            }
          })(),
          5000,
          "library subscriber",
        );
      }
      // The frames as sent: each value's text is the victim's as written, or JSON.stringify's.
      const frames: string[] = [];
      while (frames.length < topics.length) {
        const text = new TextDecoder().decode((await rawReader.frame())!);
        if (text.includes('"broker.message"')) frames.push(text);
      }
      for (const [n, topic] of topics.entries()) {
        const i = Number(topic.split("/").at(-1));
        const [victim, unescaped] = [PAIRS[i][1], JSON.stringify(WANT[i])];
        assert.ok(frames[n].includes(`"topic":"${topic}"`), frames[n]);
        assert.ok(frames[n].includes(victim) || frames[n].includes(unescaped), frames[n]);
      }
      // dist consumer --json: one line per message, the value as written (JSON.stringify's form).
      await consumer.until("stdout", (t) => t.trim().split("\n").length >= topics.length);
      const lines = consumer.stdout().trim().split("\n");
      assert.deepEqual(
        lines,
        topics.map((topic) => JSON.stringify({ topic, value: want(topic), retained: false })),
      );
    } finally {
      a.close();
      b.close();
      raw.close();
      wireJson.close();
      wireMp.close();
      libJson.close();
      libMp.close();
      await consumer.stop();
      await broker.stop();
    }
  },
});

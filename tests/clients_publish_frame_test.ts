/**
 * The client library's fire-and-forget JSON publish, written as bytes
 * (clients/publish_frame.ts): the same frame `jsonCodec` writes for the
 * publish message, byte for byte, or the same refusal, for random values,
 * topics and retain flags; and through a real broker, every value a
 * subscriber gets equal to what was published, what the broker refuses
 * still refused.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { connect } from "../clients/mod.ts";
import { PublishFrame } from "../clients/publish_frame.ts";
import { DistError, jsonCodec, OutBuffer, type Peer } from "../wire/mod.ts";
import { startBroker } from "./helpers/broker.ts";
import { within } from "./helpers/raw.ts";

/** What jsonCodec writes for the publish, or the error code it throws. */
function byCodec(topic: string, value: unknown, retain: boolean, maxFrame: number) {
  const params = retain ? { topic, value } : { topic, value, retain: false };
  const out = new OutBuffer(0);
  try {
    jsonCodec.writeFrame(out, { method: "broker.publish", params }, maxFrame);
  } catch (err) {
    return (err as DistError).code;
  }
  return out.bytes.slice(0, out.length);
}

/**
 * What PublishFrame writes into a buffer that already holds `before` bytes
 * (only its own bytes), the error code it throws (nothing written), or
 * "declined" when it leaves the publish to the ordinary path.
 */
function byFrame(topic: string, value: unknown, retain: boolean, maxFrame: number, before = 0) {
  const out = new OutBuffer(0);
  out.reserve(before);
  out.length = before;
  const peer = {
    conn: {
      maxFrame,
      sendWith: (w: { writeFrames(out: OutBuffer): void }) => {
        w.writeFrames(out);
        return true;
      },
    },
  } as unknown as Peer;
  try {
    if (!new PublishFrame().send(peer, topic, value, retain)) return "declined";
  } catch (err) {
    assert.equal(out.length, before, "nothing written on a refusal");
    return (err as DistError).code;
  }
  return out.bytes.slice(before, out.length);
}

const topics = fc.oneof(
  fc.constantFrom("/e2e", "/a/b/c", "t", "/sensors/12/temp", "", "/"),
  fc.string({ unit: "grapheme-ascii" }),
  fc.string({ unit: "binary" }),
);
const values = fc.oneof(
  fc.jsonValue(),
  fc.constantFrom(
    NaN,
    Infinity,
    [1, -Infinity],
    { a: NaN },
    "\ud800",
    { "\udc00": 1 },
    "°C",
    null,
    undefined,
    { a: undefined },
    [undefined],
    new Date(0),
    { toJSON: (key: string) => key },
    () => 1,
  ),
  fc.anything(),
);

Deno.test("a publish written as bytes is jsonCodec's frame for it, byte for byte, or its refusal", () => {
  fc.assert(
    fc.property(topics, values, fc.boolean(), fc.nat(40), (topic, value, retain, before) => {
      const frame = byFrame(topic, value, retain, 1 << 20, before);
      if (frame === "declined") return; // the ordinary path then writes it: byCodec, by definition
      assert.deepEqual(frame, byCodec(topic, value, retain, 1 << 20));
    }),
    { numRuns: 20_000 },
  );
});

Deno.test("a publish written as bytes is refused past the frame limit as jsonCodec refuses it", () => {
  const value = { text: "x".repeat(200), unit: "°C".repeat(40) };
  for (let maxFrame = 150; maxFrame <= 500; maxFrame++) {
    for (const retain of [true, false]) {
      assert.deepEqual(
        byFrame("/t", value, retain, maxFrame, 7),
        byCodec("/t", value, retain, maxFrame),
        `max frame ${maxFrame}`,
      );
    }
  }
});

Deno.test("publishes written as bytes arrive equal through a broker; bad values are refused", async () => {
  const b = await startBroker();
  const pub = await connect(b.address);
  const subConn = await connect(b.address);
  try {
    const sub = await subConn.subscribe("/");
    const sent: [string, unknown][] = [
      ["/e2e", { t: 1.5, n: 1, name: "sensor-12", ok: true, tags: ["a", "b"], unit: "°C" }],
      ["/e2e", "plain"],
      ["/e2e", [1, [2, [3]], null, false]],
      ["/other", -0.25e-7],
      ["/e2e", { nested: { deeper: { "ключ": "значение", emoji: "🎉" } } }],
      ["/ünï", "a topic that is not ASCII goes the ordinary way"],
      ["/e2e", new Date(0)],
    ];
    for (const [topic, value] of sent) await pub.publish(topic, value, { retain: false });
    await pub.publish("/kept", { k: 1 });
    await assert.rejects(pub.publish("/e2e", { bad: NaN }), (err: DistError) => {
      assert.equal(err.code, "BAD_REQUEST");
      return true;
    });
    await assert.rejects(pub.publish("/e2e", "\ud800"), (err: DistError) => {
      assert.equal(err.code, "BAD_REQUEST");
      return true;
    });
    const got: [string, unknown][] = [];
    await within(
      (async () => {
        for await (const m of sub) {
          got.push([m.topic, m.value]);
          if (got.length === sent.length + 1) break;
        }
      })(),
      5000,
      "every publish",
    );
    assert.deepEqual(got, [
      ...sent.map(([t, v]): [string, unknown] => [t, JSON.parse(JSON.stringify(v))]),
      ["/kept", { k: 1 }],
    ]);
    // Retained by default, not with retain: false.
    const listed = (await pub.topics()).topics;
    assert.deepEqual(listed.filter((t) => t.retained).map((t) => t.topic), ["/kept"]);
    assert.equal(listed.find((t) => t.topic === "/e2e")?.messages, 5);
  } finally {
    pub.close();
    subConn.close();
    await b.stop();
  }
});

Deno.test("values of every shape arrive equal between JSON and MessagePack clients, either way", async () => {
  const b = await startBroker();
  const values: unknown[] = [
    { t: 1733370000123.456, n: 7, name: "sensor-12", ok: true, temp: 21.5, tags: ["a", "b"] },
    { unit: "°C", "ключ": "значение", emoji: "🎉", cjk: "漢字", esc: 'a"b\\c\n\t\u0001' },
    [0, -0.5, 1e21, 2 ** 53 - 1, -(2 ** 31), 123456789.125, 5e-324],
    { a: { b: { c: { d: [[[{ e: null }]]] } } } },
    "",
    "plain",
    0,
    false,
    null,
    [],
    {},
  ];
  const conns = {
    json: await connect(b.address),
    msgpack: await connect(b.address, { codec: "msgpack" }),
  };
  try {
    for (
      const [from, to] of [["json", "msgpack"], ["msgpack", "json"], ["json", "json"]] as const
    ) {
      const topic = `/shapes/${from}-${to}`;
      const sub = await conns[to].subscribe(topic);
      for (const v of values) await conns[from].publish(topic, v, { retain: false });
      const got: unknown[] = [];
      await within(
        (async () => {
          for await (const m of sub) if (got.push(m.value) === values.length) break;
        })(),
        5000,
        `${from} → ${to}`,
      );
      assert.deepEqual(got, values, `${from} → ${to}`);
      // Byte for byte: the same JSON text as the value sent.
      assert.deepEqual(got.map((v) => JSON.stringify(v)), values.map((v) => JSON.stringify(v)));
    }
  } finally {
    conns.json.close();
    conns.msgpack.close();
    await b.stop();
  }
});

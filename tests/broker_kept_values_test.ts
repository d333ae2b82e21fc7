/**
 * Retained values that reach the core decoded (a publish the byte reader
 * does not take: positional params, an odd layout, rows read back from a
 * data file) are kept as their encoding, made once, and counted by it
 * (hostile34 Z3a: 60 retained 1 MB `[{},{},…]` took the broker to 1.4 GiB
 * while it counted 114 MiB). What the subscribers get is the same value.
 */
import assert from "node:assert/strict";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { BrokerCore } from "../roles/broker/mod.ts";
import { msgpackOf, RawJson, RawMsgpack } from "../roles/broker/raw_json.ts";
import { msgpackCodec } from "../wire/mod.ts";
import type { Origin } from "../roles/broker/core.ts";
import { MqttPayload } from "../roles/broker/mqtt/mapping.ts";
import { jsonBytes } from "../roles/broker/frames.ts";
import { FakeSink } from "./helpers/broker_sink.ts";

const MIB = 1024 * 1024;

function core(): BrokerCore {
  return new BrokerCore({ retainBytes: 256 * MIB, maxPending: 8 * MIB, maxTopics: 1e6 });
}

/** A full collection, then the heap in use. */
function liveHeap(): number {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as (o: { type: "major"; execution: "sync" }) => void;
  gc({ type: "major", execution: "sync" });
  gc({ type: "major", execution: "sync" });
  return Deno.memoryUsage().heapUsed;
}

/** A publisher of `codec` (a wire connection says the codec its values come in). */
function origin(codec: string): Origin {
  return { codec, waiting: 0, heldBack: false, holdBack() {}, goOn() {} };
}

Deno.test("BrokerCore keeps decoded retained values encoded: the heap grows within 1.5× of memoryBytes", () => {
  const c = core();
  // 300 KB of JSON text; decoded, 100,000 objects (some 20 times the text).
  const text = "[" + "{},".repeat(100_000).slice(0, -1) + "]";
  const before = liveHeap();
  for (let i = 0; i < 20; i++) c.publish(`/amp/${i}`, JSON.parse(text), true);
  const grown = liveHeap() - before;
  const counted = c.memoryBytes;
  assert.equal(c.retained.count, 20);
  assert.ok(
    grown <= 1.5 * counted,
    `the heap grew by ${(grown / MIB).toFixed(1)} MiB for ${
      (counted / MIB).toFixed(1)
    } MiB counted`,
  );
  const sink = new FakeSink();
  c.subscribe(sink, { topic: "/amp/3" }).sub.release();
  assert.equal((sink.values()[0] as unknown[]).length, 100_000);
});

Deno.test("BrokerCore keeps a decoded value as JSON text, or as MessagePack when it came so or holds binary", () => {
  const c = core();
  const plain = { a: [1, 2.5, "é", null, true], b: { "c d": "x\ny" } };
  const binary = { blob: new Uint8Array([1, 2, 3]), at: new Date(1_700_000_000_000) };
  c.publish("/json", plain, true);
  c.publish("/mp", plain, true, 2, origin("msgpack"));
  c.publish("/bin", binary, true);
  c.publish("/text", "plain text", true);
  c.publish("/n", 7, true);
  const kept = (name: string) => c.topics.get(name)!.retained;
  assert.ok(kept("/json") instanceof RawJson);
  assert.equal((kept("/json") as RawJson).text, JSON.stringify(plain));
  assert.ok(kept("/mp") instanceof RawMsgpack);
  assert.ok(kept("/bin") instanceof RawMsgpack);
  assert.ok(kept("/text") instanceof RawJson);
  assert.equal(kept("/n"), 7);
  const sink = new FakeSink();
  c.subscribe(sink, { topic: "/" }).sub.release();
  const got = new Map(sink.written.map((d) => [d.topic, d.value]));
  assert.deepEqual(got.get("/json"), plain);
  assert.deepEqual(got.get("/mp"), plain);
  assert.deepEqual(got.get("/bin"), binary);
  assert.equal(got.get("/text"), "plain text");
  assert.equal(got.get("/n"), 7);
});

Deno.test("BrokerCore counts kept text by what it takes: two bytes a character past ASCII", () => {
  const c = core();
  const ascii = "a".repeat(1000);
  const wide = "ж".repeat(1000);
  c.publish("/a", [ascii], true);
  c.publish("/w", [wide], true);
  const a = c.topics.get("/a")!.retainedBytes;
  const w = c.topics.get("/w")!.retainedBytes;
  // The text `["…"]` is 1,004 characters either way; V8 keeps the second at two bytes each.
  assert.equal(w - a, 1004);
});

Deno.test("BrokerCore keeps retained MQTT payloads as bytes: decoded for native subscribers, nothing kept", async () => {
  const c = core();
  const payload = new TextEncoder().encode("[" + "{},".repeat(100_000).slice(0, -1) + "]");
  for (let i = 0; i < 20; i++) {
    const value = MqttPayload.borrow(payload);
    c.publish(`/mq/${i}`, value, true);
    value.release();
  }
  const before = liveHeap();
  // A native subscriber takes them all (decoded for it, as the wire front end does).
  const sink = new FakeSink();
  c.subscribe(sink, { topic: "/mq" }).sub.release();
  // The snapshot converts a bounded amount a turn (conversion.ts).
  for (let t = 0; t < 500 && sink.written.length < 20; t++) {
    await new Promise((r) => setTimeout(r, 1));
  }
  assert.equal(sink.written.length, 20);
  sink.written.length = 0;
  const grown = liveHeap() - before;
  assert.ok(grown < 4 * MIB, `the heap kept ${(grown / MIB).toFixed(1)} MiB after the snapshot`);
});

Deno.test("jsonBytes() of an MQTT payload: its JSON text as it came, else the payload rule's value", () => {
  const enc = new TextEncoder();
  const text = (payload: string | Uint8Array) => {
    const value = MqttPayload.borrow(typeof payload === "string" ? enc.encode(payload) : payload);
    return new TextDecoder().decode(jsonBytes(value.detach()));
  };
  // JSON text goes as it came (spacing, digits), whitespace around it left out.
  assert.equal(
    text(' { "a" : 1.50, "b": [ true ,null ] }\n'),
    '{ "a" : 1.50, "b": [ true ,null ] }',
  );
  assert.equal(text('"quoted"'), '"quoted"');
  // Anything else as its value: text as a string, binary as base64, a lone surrogate as text.
  assert.equal(text("hello world"), '"hello world"');
  assert.equal(text("1e400"), '"1e400"');
  assert.equal(text('"\\ud800"'), JSON.stringify('"\\ud800"'));
  assert.equal(text(new Uint8Array([0xff, 0x00])), '"/wA="');
});

Deno.test("msgpackOf() an MQTT payload: JSON text converted as bytes gives the value the payload rule gives", () => {
  const enc = new TextEncoder();
  for (
    const payload of [
      ' { "a" : 1.50, "b": [ true ,null, 1e3, 12345678901234567 ] }',
      '"quoted \\u00e9 \\n"',
      '[{"é":"ж"},{},[],""]',
      "42",
      "hello world",
      "1e400",
      "",
      new Uint8Array([0xff, 0x00]),
    ]
  ) {
    const value = MqttPayload.borrow(typeof payload === "string" ? enc.encode(payload) : payload)
      .detach();
    assert.deepEqual(
      msgpackCodec.decode(msgpackOf(value).slice()),
      value.decode(),
      String(payload),
    );
  }
});

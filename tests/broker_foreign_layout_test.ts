/**
 * Publishes as other encoders write them (spaces, newlines, tabs, any member
 * order, `retain` present or not, escapes and non-ASCII text in the topic and
 * the value): a publisher's run of them is read through its kept layout
 * (LayoutMemo) and its kept frames (PublishMemo) as the member-by-member
 * reader reads each one alone, and as JSON.parse reads the frame; mutants
 * of them too. Their deliveries, written from the publish's frame (see
 * frames.ts), decode to the message sent; end to end, every shape in every
 * layout arrives as sent to JSON subscribers and equal in value to
 * MessagePack ones, and a bad value in a kept layout is still refused.
 */
import assert from "node:assert/strict";
import { type FramePublish, OutBuffer, readPublish, TopicCache } from "../wire/mod.ts";
import { deliverySize, forgetParts, sidTail, writeDelivery } from "../roles/broker/frames.ts";
import { RawJson, RawMsgpack } from "../roles/broker/raw_json.ts";
import { readMsgpackPublish } from "../roles/broker/msgpack_publish.ts";
import { encode as mpEncode } from "@msgpack/msgpack";
import { msgpackCodec } from "../wire/mod.ts";
import { Message } from "../roles/broker/mod.ts";
import { codecSubscribers, rawClient, withBroker } from "./helpers/broker.ts";
import { frame, prng, writeAll } from "./helpers/raw.ts";

const encoder = new TextEncoder();
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** A run of values a publisher sends on one topic: digits change, and now and then the layout. */
function values(shape: number, n: number): unknown[] {
  const out: unknown[] = [];
  for (let i = 0; i < n; i++) {
    const d = i % 10;
    out.push(
      [
        `reading ${1000 + i}`,
        { id: 18223 + i, name: "sensor-12", ok: i % 2 === 0, temp: 21.5 + d, tags: ["a", "b"] },
        { a: [d, [2, [3, { b: null, c: [[[]]] }]]], d: { e: { f: [true, false, -0.5 * d] } } },
        { text: `héllo ✓ 😀 日本語 ${d}`, "clé": 'line\u2028sep \\ " \n\t\u0001', n: -d },
        [0, -1, 1.5 + d, -2.25e-10, 9007199254740991, 1e300, null, "", [], {}],
        i,
        i % 3 === 0 ? null : i % 3 === 1,
        { "a b": { '"q"': [`${d}`, { "\\": d }] }, "\u00e9\u6771": "\ud83d\ude00" },
      ][shape],
    );
  }
  return out;
}
const SHAPE_COUNT = 8;

/** JSON text as Python's json.dumps writes it (`", "` and `": "`). */
function python(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(python).join(", ")}]`;
  if (typeof value === "object" && value !== null) {
    const members = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${python(v)}`);
    return `{${members.join(", ")}}`;
  }
  return JSON.stringify(value);
}

type Params = { topic: string; value: unknown; retain?: boolean };
/** Ways of writing a publish other than JSON.stringify's canonical one. */
const LAYOUTS: [string, (p: Params) => string][] = [
  ["python", (p) => python({ method: "broker.publish", params: p })],
  ["python value first", (p) => python({ method: "broker.publish", params: swap(p) })],
  ["params first", (p) => JSON.stringify({ params: p, method: "broker.publish" })],
  ["retain first", (p) => JSON.stringify({ method: "broker.publish", params: retainFirst(p) })],
  ["indent 2", (p) => JSON.stringify({ method: "broker.publish", params: p }, null, 2)],
  ["tabs", (p) => JSON.stringify({ method: "broker.publish", params: swap(p) }, null, "\t")],
  ["CRLF", (p) =>
    JSON.stringify({ params: p, method: "broker.publish" }, null, 1)
      .replaceAll("\n", "\r\n")],
  ["spaced ends", (p) => ` \n{ "method" : "broker.publish" , "params" : ${python(p)} }\t\n`],
  [
    "positional",
    (p) =>
      `{"method": "broker.publish", "params": [${JSON.stringify(p.topic)}, ${python(p.value)}${
        p.retain === undefined ? "" : `, ${p.retain}`
      }]}`,
  ],
];

function swap(p: Params): Params {
  const { value, topic, retain } = p;
  return (retain === undefined ? { value, topic } : { value, topic, retain }) as Params;
}

function retainFirst(p: Params): Params {
  const { value, topic, retain } = p;
  return (retain === undefined ? { topic, value } : { retain, topic, value }) as Params;
}

const TOPICS = ["/run/a", "/run/é ✓", '/run/"q"\\'];

/** What a reader read, comparable. */
const seen = (p: FramePublish | undefined) =>
  p && { topic: p.topic, value: hex(p.value), retain: p.retain, id: p.id, canonical: p.canonical };

/** Asserts `p` is what JSON.parse reads in `frame` (or that it refuses the frame, when undefined). */
function asParsed(p: FramePublish | undefined, frame: Uint8Array, shown: string): void {
  let parsed: { method?: unknown; params?: unknown; id?: unknown };
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(frame));
  } catch {
    assert.equal(p, undefined, `taken, but JSON.parse refuses it: ${shown}`);
    return;
  }
  if (p === undefined) return; // the decoder's to take or refuse (another member, a lone surrogate…)
  assert.equal(parsed.method, "broker.publish", shown);
  const params = parsed.params as unknown[] | Params;
  const [topic, value, retain] = Array.isArray(params)
    ? params
    : [params.topic, params.value, params.retain];
  assert.equal(p.topic, topic, shown);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(p.value)), value, shown);
  assert.equal(p.retain, retain ?? true, shown);
  assert.equal(p.id, parsed.id, shown);
}

Deno.test("a run of publishes in another layout reads as each one alone and as JSON.parse reads it, for every shape, layout, topic and retain", () => {
  let byLayout = 0;
  let byMemo = 0;
  for (const [name, layout] of LAYOUTS) {
    for (const topic of TOPICS) {
      for (const retain of [undefined, false, true]) {
        for (let shape = 0; shape < SHAPE_COUNT; shape++) {
          const topics = new TopicCache();
          const stored = topics.memo.stored;
          for (const value of values(shape, 12)) {
            const text = layout(retain === undefined ? { topic, value } : { topic, value, retain });
            const frame = encoder.encode(text);
            const shown = `${name}: ${text}`;
            if (topics.layout.head(frame) > 0) byLayout++;
            const p = readPublish(frame, topics);
            assert.ok(p !== undefined, `taken: ${shown}`);
            asParsed(p, frame, shown);
            const got = seen(p);
            assert.deepEqual(got, seen(readPublish(frame, new TopicCache())), shown);
          }
          byMemo += 12 - (topics.memo.stored - stored);
        }
      }
    }
  }
  assert.ok(byLayout > 1000, `runs are read through their kept layout (${byLayout})`);
  assert.ok(byMemo > 1000, `and their kept frames (${byMemo})`);
});

Deno.test("mutants of publishes in another layout, read with a publisher's kept layout and frames, read as without them and as JSON.parse reads them (fuzz)", () => {
  const random = prng(36);
  const seeds: Uint8Array[][] = [];
  for (const [, layout] of LAYOUTS) {
    for (let shape = 0; shape < SHAPE_COUNT; shape++) {
      const retain = shape % 3 === 0 ? undefined : shape % 3 === 1;
      seeds.push(
        values(shape, 4).map((value) =>
          encoder.encode(layout({ topic: TOPICS[shape % 3], value, retain }))
        ),
      );
    }
  }
  let taken = 0;
  let byLayout = 0;
  for (const run of seeds) {
    const topics = new TopicCache();
    for (const seed of run) readPublish(seed, topics);
    for (let round = 0; round < 400; round++) {
      const bytes = run[round % run.length].slice();
      for (let k = Math.floor(random() * 3); k > 0; k--) {
        const at = Math.floor(random() * bytes.length);
        const r = random();
        bytes[at] = r < 0.3
          ? Math.floor(random() * 256)
          : r < 0.6
          ? 0x30 + Math.floor(random() * 10)
          : r < 0.8
          ? [0x20, 0x0a, 0x09, 0x0d, 0x2c, 0x3a, 0x22, 0x5c, 0x7d, 0x5d][Math.floor(random() * 10)]
          : bytes[at] ^ 1;
      }
      const r = random();
      // Cut short, or longer (what follows a frame read in full is no part of it).
      const cut = r < 0.1
        ? bytes.subarray(0, Math.floor(random() * bytes.length))
        : r < 0.2
        ? Uint8Array.of(...bytes, ...encoder.encode([" ", "}", ",", "x", "1", " }"][round % 6]))
        : bytes;
      const shown = new TextDecoder().decode(cut);
      if (topics.layout.head(cut) > 0) byLayout++;
      const p = readPublish(cut, topics);
      asParsed(p, cut, shown);
      if (p !== undefined) taken++;
      const got = seen(p);
      assert.deepEqual(got, seen(readPublish(cut, new TopicCache())), shown);
      // The unchanged frames again, so the publisher's kept frames go on matching some.
      readPublish(run[round % run.length], topics);
    }
  }
  assert.ok(taken > 5000, `the unchanged seeds and many mutants are taken (${taken})`);
  assert.ok(byLayout > 10_000, `most through the kept layout (${byLayout})`);
});

Deno.test("a publish in another layout is delivered from its frame as the message sent, retained or not, whatever its value's place in the frame", () => {
  const tail = sidTail(12345, "json");
  // Before the value: nothing, a long topic, many spaces (the value then lies past the
  // delivery's prefix, and is copied on its own).
  const frames = [
    (value: unknown) => python({ method: "broker.publish", params: { value, topic: "/t/é" } }),
    (value: unknown) => python({ method: "broker.publish", params: { topic: "/t/é", value } }),
    (value: unknown) =>
      `{"method":"broker.publish","params":{"topic":"/t/é",${" ".repeat(300)}"value":${
        JSON.stringify(value)
      }}}`,
  ];
  for (const make of frames) {
    for (let shape = 0; shape < SHAPE_COUNT; shape++) {
      for (const value of values(shape, 3)) {
        for (const retained of [false, true]) {
          const text = make(value);
          const p = readPublish(encoder.encode(text), new TopicCache())!;
          assert.equal(p.canonical, false);
          const raw = RawJson.borrowFrame(p.frame, p.valueStart, p.valueEnd, undefined);
          const msg = new Message(p.topic, raw, retained);
          const out = new OutBuffer(0);
          out.reserve(3);
          out.length = 3; // not at the buffer's start: what comes before stays
          out.bytes.fill(0x41, 0, 3);
          try {
            writeDelivery(out, msg, "json", tail);
            assert.equal(out.length - 3, deliverySize(msg, "json", tail), text);
          } finally {
            raw.release();
            forgetParts();
          }
          assert.deepEqual([...out.bytes.subarray(0, 3)], [0x41, 0x41, 0x41], text);
          assert.equal(new DataView(out.bytes.buffer).getUint32(3), out.length - 7, text);
          const delivery = new TextDecoder().decode(out.bytes.subarray(7, out.length));
          const params = { topic: "/t/é", value: JSON.parse(JSON.stringify(value)), sid: 12345 };
          assert.deepEqual(JSON.parse(delivery), {
            method: "broker.message",
            params: retained ? { ...params, retained: true } : params,
          }, text);
          // The value's text as it came.
          assert.ok(delivery.includes(new TextDecoder().decode(p.value)), text);
        }
      }
    }
  }
});

Deno.test("a MessagePack publish in another member order is delivered from its frame as the message sent", () => {
  const tail = sidTail(77, "msgpack");
  for (let shape = 0; shape < SHAPE_COUNT; shape++) {
    for (const value of values(shape, 3)) {
      for (const retained of [false, true]) {
        const params = shape % 2
          ? { value, topic: "/t/x" }
          : { retain: false, value, topic: "/t/x" };
        const bytes = mpEncode({ params, method: "broker.publish" });
        const p = readMsgpackPublish(bytes, new TopicCache())!;
        assert.ok(p !== undefined && !p.canonical, `read, not canonical: shape ${shape}`);
        const raw = RawMsgpack.borrowFrame(p.frame, p.valueStart, p.valueEnd, undefined);
        const msg = new Message(p.topic, raw, retained);
        const out = new OutBuffer(0);
        try {
          writeDelivery(out, msg, "msgpack", tail);
          assert.equal(out.length, deliverySize(msg, "msgpack", tail));
        } finally {
          raw.release();
          forgetParts();
        }
        const sent = {
          topic: "/t/x",
          value: msgpackCodec.decode(mpEncode(value)),
          sid: 77,
        };
        assert.deepEqual(msgpackCodec.decode(out.bytes.subarray(4, out.length)), {
          method: "broker.message",
          params: retained ? { ...sent, retained: true } : sent,
        });
      }
    }
  }
});

Deno.test("publishes in other layouts arrive as sent in both codecs, retained too; a bad value in a kept layout is refused", async () => {
  await withBroker(async (b) => {
    const { sj, sm, next } = await codecSubscribers(b.port, "/f");
    const pub = await rawClient(b.port, "json");
    try {
      for (const [name, layout] of LAYOUTS) {
        for (let shape = 0; shape < SHAPE_COUNT; shape++) {
          for (const [i, value] of values(shape, 6).entries()) {
            const retain = i === 5 ? true : i % 2 === 0 ? undefined : false;
            const topic = "/f/a";
            const text = layout(retain === undefined ? { topic, value } : { topic, value, retain });
            await writeAll(pub.conn, frame(text));
            const got = await next();
            const expected = JSON.parse(JSON.stringify(value));
            assert.deepEqual(JSON.parse(got.text), expected, `${name}: ${text}`);
            assert.ok(text.includes(got.text), `the value's text as sent: ${name}: ${text}`);
            assert.deepEqual(got.value, expected, `to MessagePack: ${name}: ${text}`);
          }
        }
      }
      // The last one was retained: a new subscriber gets it.
      const late = await codecSubscribers(b.port, "/f");
      try {
        assert.deepEqual((await late.next()).value, JSON.parse(JSON.stringify(values(7, 6)[5])));
      } finally {
        late.sj.conn.close();
        late.sm.conn.close();
      }
      // A layout kept, then values that break in it: refused, and the next good one goes on.
      const kept = (v: string) =>
        `{"method": "broker.publish", "params": {"value": ${v}, "topic": "/f/x"}}`;
      for (const v of ["[1, 2]", "[3, 4]"]) {
        await writeAll(pub.conn, frame(kept(v)));
        assert.equal((await next()).text, v);
      }
      for (const bad of ["[1, 2", "[01, 2]", '"\\ud800"', "[1,, 2]", "[1, 2]]"]) {
        await writeAll(pub.conn, frame(kept(bad)));
        const answer = await pub.reader.json();
        assert.equal((answer?.error as { code: string }).code, "BAD_REQUEST", bad);
      }
      await writeAll(pub.conn, frame(kept("[5, 6]")));
      assert.equal((await next()).text, "[5, 6]");
    } finally {
      for (const c of [sj, sm, pub]) c.conn.close();
    }
  });
});

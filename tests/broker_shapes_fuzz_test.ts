/**
 * The publish readers of both codecs against their decoders, on the values
 * applications publish (the bench's shapes: objects, nested containers,
 * non-ASCII text with escapes) and mutants of them: whatever a reader
 * takes, the decoder reads as the same publish; the unchanged frames are
 * taken.
 */
import assert from "node:assert/strict";
import {
  jsonCodec,
  msgpackCodec,
  OutBuffer,
  parseRawValue,
  readPublish,
  TopicCache,
} from "../wire/mod.ts";
import { readMsgpackPublish } from "../roles/broker/msgpack_publish.ts";
import { deliverySize, forgetParts, sidTail, writeDelivery } from "../roles/broker/frames.ts";
import { RawJson, RawMsgpack } from "../roles/broker/raw_json.ts";
import { Message } from "../roles/broker/mod.ts";
import { prng } from "./helpers/raw.ts";

const SHAPES: unknown[] = [
  "x".repeat(40),
  { id: 18223, name: "sensor-12", ok: true, temp: 21.5, unit: "C", tags: ["a", "b"] },
  { a: { b: [1, 2, { c: [true, null, 3.25] }] }, d: [[1, 2], [3, [4, [5]]]], e: { f: {} } },
  { text: "héllo ✓ 日本語 😀", "clé": 'naïve "q" \\ \n', n: -7, big: 1.5e300, small: -2e-7 },
  [0, -0.5, 12345678901234, 2 ** 40, -(2 ** 40), false, null, "", [], {}],
];

type Publish = { method: string; params: { topic: unknown; value: unknown; retain?: unknown } };

function frames(codec: typeof jsonCodec): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const value of SHAPES) {
    for (
      const msg of [
        { method: "broker.publish", params: { topic: "/s/a", value, retain: false } },
        { method: "broker.publish", params: { topic: "/s/é", value } },
        { params: { value, retain: true, topic: "/s" }, method: "broker.publish" },
        { id: 7, method: "broker.publish", params: { topic: "/s", value } },
      ]
    ) {
      const buf = new OutBuffer(256);
      codec.writeFrame(buf, msg, 1 << 20);
      out.push(buf.bytes.slice(4, buf.length));
    }
  }
  return out;
}

for (const codec of [jsonCodec, msgpackCodec]) {
  Deno.test(`${codec.name}: the publish reader takes only what the decoder reads as the same publish, on every value shape (fuzz)`, () => {
    const json = codec === jsonCodec;
    const read = json ? readPublish : readMsgpackPublish;
    const valueOf = (b: Uint8Array) => json ? parseRawValue(b) : msgpackCodec.decode(b);
    const topics = new TopicCache();
    const random = prng(json ? 31 : 32);
    const seeds = frames(codec);
    // Per shape: retain false, a non-ASCII topic (plain ASCII only in JSON), other member
    // orders, a request: which of them are delivered from their frame.
    const canonicalSeeds = json ? [true, false, false, false] : [true, true, false, false];
    seeds.forEach((seed, i) => {
      const p = read(seed, topics);
      assert.ok(p !== undefined, "a seed is taken");
      assert.equal(p.canonical, canonicalSeeds[i % 4], `seed ${i}: canonical`);
    });
    /** The delivery of a publish read canonical, written from its frame, decoded. */
    const delivered = (
      p: NonNullable<ReturnType<typeof read>>,
      retained: boolean,
      shown: string,
    ): unknown => {
      const borrow = json ? RawJson.borrowFrame : RawMsgpack.borrowFrame;
      const value = borrow(p.frame, p.valueStart, p.valueEnd, p.topic);
      const msg = new Message(p.topic, value, retained);
      const tail = sidTail(9, codec.name);
      const out = new OutBuffer(0);
      try {
        writeDelivery(out, msg, codec.name, tail);
        assert.equal(out.length, deliverySize(msg, codec.name, tail), shown);
      } finally {
        value.release();
        forgetParts();
      }
      assert.equal(new DataView(out.bytes.buffer).getUint32(0), out.length - 4, shown);
      return codec.decode(out.bytes.subarray(4, out.length));
    };
    let taken = 0;
    let fromFrame = 0;
    for (let round = 0; round < 20_000; round++) {
      const bytes = seeds[round % seeds.length].slice();
      for (let k = Math.floor(random() * 3); k > 0; k--) {
        bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      }
      const cut = random() < 0.1 ? bytes.subarray(0, Math.floor(random() * bytes.length)) : bytes;
      const p = read(cut, topics);
      if (p === undefined) continue;
      const shown = Array.from(cut, (b) => b.toString(16).padStart(2, "0")).join("");
      let decoded: Publish & { id?: unknown };
      try {
        decoded = codec.decode(cut) as typeof decoded;
      } catch (err) {
        throw new Error(`The reader took what the decoder refuses: ${shown}: ${err}`);
      }
      taken++;
      assert.equal(decoded.method, "broker.publish", shown);
      assert.equal(p.topic, decoded.params.topic, shown);
      assert.deepEqual(valueOf(p.value), decoded.params.value, shown);
      assert.equal(p.retain, decoded.params.retain ?? true, shown);
      assert.equal(p.id, decoded.id, shown);
      if (p.canonical) {
        fromFrame++;
        const retained = (round & 1) === 1;
        const params = { topic: p.topic, value: decoded.params.value, sid: 9 };
        assert.deepEqual(
          delivered(p, retained, shown),
          {
            method: "broker.message",
            params: retained ? { ...params, retained: true } : params,
          },
          shown,
        );
      }
    }
    assert.ok(taken > 1000, `the unchanged seeds and some mutants are taken (${taken})`);
    assert.ok(fromFrame > 500, `canonical ones are delivered from their frames (${fromFrame})`);
  });
}

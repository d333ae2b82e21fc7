/**
 * A publisher's run of publishes on one topic, in the layout its encoder
 * writes, is read by the head the reader keeps for it (its bytes up to the
 * value: see TopicCache): each frame after the first two is checked as one
 * run of bytes, then its value. Read that way, every frame (mutants too)
 * gives what a reader without the head gives; end to end, every shape
 * arrives as sent in either codec, and malformed values on the topic are
 * still refused with BAD_REQUEST.
 */
import assert from "node:assert/strict";
import { decode as mpDecode } from "@msgpack/msgpack";
import {
  type FramePublish,
  jsonCodec,
  msgpackCodec,
  OutBuffer,
  readPublish,
  TopicCache,
} from "../wire/mod.ts";
import { MP_PARAMS_AT, readMsgpackPublish } from "../roles/broker/msgpack_publish.ts";
import { codecSubscribers, rawClient, withBroker } from "./helpers/broker.ts";
import { concat, frame, prng, writeAll } from "./helpers/raw.ts";
import { SHAPES } from "./helpers/shapes.ts";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** A publish as its codec's encoder writes it (the layout read by the head). */
function encoded(codec: typeof jsonCodec, topic: string, value: unknown, retain?: boolean) {
  const params = retain === undefined ? { topic, value } : { topic, value, retain };
  const out = new OutBuffer(256);
  codec.writeFrame(out, { method: "broker.publish", params }, 1 << 20);
  return out.bytes.slice(4, out.length);
}

/** What a reader read, comparable. */
const seen = (p: FramePublish | undefined) =>
  p && {
    topic: p.topic,
    value: hex(p.value),
    retain: p.retain,
    id: p.id,
    canonical: p.canonical,
  };

for (const codec of [jsonCodec, msgpackCodec]) {
  Deno.test(`${codec.name}: a run of publishes read by its kept head reads as without it (fuzz)`, () => {
    const read = codec === jsonCodec ? readPublish : readMsgpackPublish;
    const seeds: Uint8Array[] = [];
    for (const value of Object.values(SHAPES)) {
      for (const retain of [false, true, undefined]) {
        seeds.push(encoded(codec, "/run/a", value, retain));
      }
    }
    const warm = new TopicCache();
    // The first publish makes the topic's string, the second keeps the head (another
    // frame: the same one again is the publisher's memo's, see PublishMemo, and read by it).
    assert.equal(warm.head(seeds[0]), 0);
    read(seeds[0], warm);
    read(seeds[1], warm);
    const head = warm.head(seeds[0]);
    assert.ok(head > 0, "a run of publishes on one topic keeps its head");
    for (const seed of seeds) {
      // (In MessagePack the params map's size is in the head: 2 members without retain, 3 with.)
      const same = codec === jsonCodec || (seed[MP_PARAMS_AT] === seeds[0][MP_PARAMS_AT]);
      assert.equal(warm.head(seed), same ? head : 0, "every shape and retain starts with it");
      assert.deepEqual(seen(read(seed, warm)), seen(read(seed, new TopicCache())));
    }
    const random = prng(codec === jsonCodec ? 41 : 42);
    let byHead = 0;
    for (let round = 0; round < 30_000; round++) {
      const bytes = seeds[round % seeds.length].slice();
      for (let k = Math.floor(random() * 4); k > 0; k--) {
        // Most changes past the head, where a frame read by it can still differ.
        const at = random() < 0.8
          ? head + Math.floor(random() * (bytes.length - head))
          : Math.floor(random() * bytes.length);
        bytes[at] = random() < 0.5 ? Math.floor(random() * 256) : bytes[at] ^ 1;
      }
      const cut = random() < 0.1 ? bytes.subarray(0, Math.floor(random() * bytes.length)) : bytes;
      const usesHead = warm.head(cut) > 0;
      const p = read(cut, warm);
      const valueBytes = p?.value.slice();
      const got = seen(p);
      assert.deepEqual(got, seen(read(cut, new TopicCache())), hex(cut));
      if (got === undefined) continue;
      if (usesHead) byHead++;
      // Whatever is taken, the decoder reads as the same publish.
      const decoded = codec.decode(cut) as {
        method: string;
        params: { topic: string; value: unknown; retain?: boolean };
      };
      assert.equal(decoded.method, "broker.publish", hex(cut));
      assert.equal(decoded.params.topic, got.topic, hex(cut));
      assert.deepEqual(codec.decode(valueBytes!), decoded.params.value, hex(cut));
      assert.equal(decoded.params.retain ?? true, got.retain, hex(cut));
    }
    assert.ok(byHead > 5000, `many mutants are read by the head (${byHead})`);
  });
}

Deno.test("a publisher's runs on one topic arrive as sent, and bad values on it are still refused", async () => {
  await withBroker(async (b) => {
    const { sj, sm, next } = await codecSubscribers(b.port, "/r");
    const pj = await rawClient(b.port, "json");
    const pm = await rawClient(b.port, "msgpack");
    try {
      for (const [name, value] of Object.entries(SHAPES)) {
        for (const [p, codec] of [[pj, jsonCodec], [pm, msgpackCodec]] as const) {
          // Three in a row on the topic: the last two are read by the head kept.
          for (let i = 0; i < 3; i++) {
            await writeAll(p.conn, frame(encoded(codec, "/r/run", value, i === 1 ? true : false)));
            const got = await next();
            assert.deepEqual(JSON.parse(got.text), value, `${name} from ${codec.name}`);
            if (codec === jsonCodec) {
              assert.equal(got.text, JSON.stringify(value), `${name}: exact`);
            }
            assert.deepEqual(got.value, value, `${name} from ${codec.name} to MessagePack`);
          }
        }
      }
      // Malformed values on the same topic, after the head is kept: refused as before.
      const jsonHead = '{"method":"broker.publish","params":{"topic":"/r/run","value":';
      const badJson = [
        "[1,[2,{}]",
        '{"a":[1,2,]}',
        '{"a":{"b":[true,nul]}}',
        "[".repeat(70) + "]".repeat(70),
        '[1,"\\ud800"]',
        "[1e400]",
        '{"a" 1}',
        "[01]",
      ];
      for (const v of badJson) {
        await writeAll(pj.conn, frame(`${jsonHead}${v},"retain":false}}`));
        const answer = await pj.reader.json();
        assert.equal(answer?.id, null, v);
        assert.equal((answer?.error as { code: string }).code, "BAD_REQUEST", v);
      }
      const mpHead = encoded(msgpackCodec, "/r/run", 0, false);
      // The frame up to the value (a fixint 0 here), then each bad value and retain: false.
      const cutAt = mpHead.length - 1 - 8;
      const badMsgpack = [
        concat([Uint8Array.of(0x92, 0x01, 0x91), Uint8Array.of(0xa2, 0xc0, 0xaf)]), // invalid UTF-8 inside
        Uint8Array.of(0x91, 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0), // NaN inside
        concat([new Uint8Array(70).fill(0x91), Uint8Array.of(0xc0)]), // nesting past the limit
        Uint8Array.of(0x81, 0xa1, 0x61, 0xd4, 0x05, 0x01), // an extension inside a map
        Uint8Array.of(0x93, 0x01, 0x02), // cut short
      ];
      for (const v of badMsgpack) {
        await writeAll(
          pm.conn,
          frame(concat([mpHead.subarray(0, cutAt), v, mpHead.subarray(cutAt + 1)])),
        );
        const answer = mpDecode((await pm.reader.frame())!) as { error?: { code: string } };
        assert.equal(answer.error?.code, "BAD_REQUEST", hex(v));
      }
      // Both publish on, and nothing malformed was delivered.
      await writeAll(pj.conn, frame(encoded(jsonCodec, "/r/run", { after: "json" }, false)));
      assert.deepEqual((await next()).value, { after: "json" });
      await writeAll(pm.conn, frame(encoded(msgpackCodec, "/r/run", { after: "msgpack" }, false)));
      assert.deepEqual((await next()).value, { after: "msgpack" });
    } finally {
      for (const c of [sj, sm, pj, pm]) c.conn.close();
    }
  });
});

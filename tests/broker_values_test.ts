/**
 * Every shape of value through the broker's byte fast path, from JSON and
 * MessagePack publishers written by hand (any member order, whitespace,
 * `retain` or not, non-minimal encodings): the subscribers of the
 * publisher's codec get the value's bytes exactly as sent (which only the
 * fast path can do: a decoded value is encoded anew), the others get it
 * equal in value, and a late subscriber gets it retained. Hostile bytes
 * are refused with a DistError and the connection goes on.
 */
import assert from "node:assert/strict";
import { decode as mpDecode, encode as mpEncode } from "@msgpack/msgpack";
import { readDelivery, TopicCache } from "../wire/mod.ts";
import { BrokerClient, withBroker } from "./helpers/broker.ts";
import { concat, frame, jsonFrame, RawReader, writeAll } from "./helpers/raw.ts";
import { SHAPES } from "./helpers/shapes.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A raw connection in `codec` (the hello is JSON; then frames in the codec). */
async function raw(port: number, codec: "json" | "msgpack") {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reader = new RawReader(conn);
  await writeAll(conn, jsonFrame({ op: "hello", v: 1, codec, role: "raw", name: "raw" }));
  assert.equal((await reader.json())?.op, "welcome");
  return { conn, reader };
}

/** A publish notification's JSON text: members reversed and spaced, the value as given. */
function jsonPublish(topic: string, valueText: string, retain?: boolean): Uint8Array {
  const r = retain === undefined ? "" : ` ,\n "retain" :${retain}`;
  return frame(
    `{ "params" : {"value":  ${valueText}${r}, "topic" : ${JSON.stringify(topic)} },` +
      `\t"method": "broker.publish" }`,
  );
}

/** A MessagePack publish: params in another order, the value's bytes as given. */
function msgpackPublish(topic: string, value: Uint8Array, retain?: boolean): Uint8Array {
  const pairs = [mpEncode("value"), value, mpEncode("topic"), mpEncode(topic)];
  if (retain !== undefined) pairs.push(mpEncode("retain"), mpEncode(retain));
  return frame(concat([
    Uint8Array.of(0x82),
    mpEncode("params"),
    Uint8Array.of(0x80 | pairs.length / 2),
    ...pairs,
    mpEncode("method"),
    mpEncode("broker.publish"),
  ]));
}

/**
 * MessagePack a decoder reads as `value` but that the broker's encoder would
 * not write: a string as str 8, an integer as int 32 (the fast path must
 * forward exactly these bytes).
 */
function oddMsgpack(value: unknown): Uint8Array {
  if (typeof value === "string") {
    const b = encoder.encode(value);
    return concat([Uint8Array.of(0xd9, b.length), b]);
  }
  if (typeof value === "number" && Number.isInteger(value) && Math.abs(value) < 2 ** 31) {
    const out = new Uint8Array(5);
    out[0] = 0xd2;
    new DataView(out.buffer).setInt32(1, value);
    return out;
  }
  return mpEncode(value);
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let k = 0; k < needle.length; k++) if (haystack[i + k] !== needle[k]) continue outer;
    return i;
  }
  return -1;
}

Deno.test("every value shape round-trips through the fast path, JSON and MessagePack", async () => {
  await withBroker(async (b) => {
    const sj = await raw(b.port, "json");
    const sm = await raw(b.port, "msgpack");
    const pj = await raw(b.port, "json");
    const pm = await raw(b.port, "msgpack");
    const topics = new TopicCache();
    try {
      await writeAll(
        sj.conn,
        jsonFrame({ id: 1, method: "broker.subscribe", params: { topic: "/v" } }),
      );
      await writeAll(
        sm.conn,
        frame(mpEncode({ id: 1, method: "broker.subscribe", params: { topic: "/v" } })),
      );
      assert.ok((await sj.reader.json())?.result);
      assert.ok((mpDecode((await sm.reader.frame())!) as { result?: unknown }).result);
      let n = 0;
      for (const [shape, value] of Object.entries(SHAPES)) {
        // JSON, spaced out, with a retain flag on every other one; then MessagePack, oddly encoded.
        const jsonText = JSON.stringify(value, null, 1);
        const mpBytes = oddMsgpack(value);
        const retain = n % 2 === 0 ? undefined : n % 4 === 1;
        n++;
        for (const from of ["j", "m"]) {
          const topic = `/v/${shape}/${from}`;
          // One at a time: two connections' publishes have no order between them.
          if (from === "j") await writeAll(pj.conn, jsonPublish(topic, jsonText, retain));
          else await writeAll(pm.conn, msgpackPublish(topic, mpBytes, retain));
          // The JSON subscriber (topic_created notices come first).
          let f: Uint8Array;
          do f = (await sj.reader.frame())!; while (
            JSON.parse(decoder.decode(f)).method !== "broker.message"
          );
          const d = readDelivery(f, topics);
          assert.ok(d !== undefined, `${shape} from ${from}: a delivery`);
          assert.equal(d.topic, topic);
          if (from === "j") assert.equal(decoder.decode(d.value), jsonText, `${shape}: exact JSON`);
          else {assert.deepEqual(
              JSON.parse(decoder.decode(d.value)),
              value,
              `${shape} from MessagePack`,
            );}
          // The MessagePack subscriber.
          let m: { method: string; params: { topic: string; value: unknown } };
          do {
            f = (await sm.reader.frame())!;
            m = mpDecode(f) as typeof m;
          } while (m.method !== "broker.message");
          assert.equal(m.params.topic, topic);
          assert.deepEqual(m.params.value, value, `${shape} from ${from} to MessagePack`);
          if (from === "m") assert.ok(indexOf(f, mpBytes) > 0, `${shape}: exact MessagePack bytes`);
        }
      }
      // Retained (a publish without retain: true by default), for a late subscriber of each codec.
      for (const codec of ["json", "msgpack"]) {
        const late = await BrokerClient.connect(b.port, codec);
        try {
          await late.subscribe("/v/object");
          const got = await late.received(2);
          for (const d of got) assert.deepEqual(d.value, SHAPES.object, `${codec}: ${d.topic}`);
          assert.ok(got.every((d) => d.retained));
        } finally {
          late.close();
        }
      }
    } finally {
      for (const c of [sj, sm, pj, pm]) c.conn.close();
    }
  });
});

Deno.test("hostile publish bytes are refused with a DistError and the connection goes on", async () => {
  await withBroker(async (b) => {
    const sub = await BrokerClient.connect(b.port, "json");
    const pj = await raw(b.port, "json");
    const pm = await raw(b.port, "msgpack");
    try {
      await sub.subscribe("/h");
      const deep = (n: number) => "[".repeat(n) + "]".repeat(n);
      const badJson = [
        "[1,}", // not JSON
        '"a\\ud800b"', // a lone surrogate escape
        '{"k\\udc00":1}', // in a key
        deep(100), // nesting past the limit
        "1e400", // past a double
        '"\\x"', // not an escape
      ];
      for (const v of badJson) {
        await writeAll(
          pj.conn,
          frame(`{"method":"broker.publish","params":{"topic":"/h","value":${v}}}`),
        );
        const answer = await pj.reader.json();
        assert.equal(answer?.id, null, v);
        assert.equal((answer?.error as { code: string }).code, "BAD_REQUEST", v);
      }
      // Invalid UTF-8 in a JSON string.
      await writeAll(
        pj.conn,
        frame(concat([
          encoder.encode('{"method":"broker.publish","params":{"topic":"/h","value":"a'),
          Uint8Array.of(0xc0, 0xaf),
          encoder.encode('"}}'),
        ])),
      );
      assert.equal(((await pj.reader.json())?.error as { code: string }).code, "BAD_REQUEST");
      const badMsgpack = [
        Uint8Array.of(0xa2, 0xc0, 0xaf), // invalid UTF-8
        Uint8Array.of(0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0), // NaN
        concat([new Uint8Array(100).fill(0x91), Uint8Array.of(0xc0)]), // nesting past the limit
        Uint8Array.of(0xd4, 0x05, 0x01), // an extension the broker has no value for
      ];
      for (const v of badMsgpack) {
        await writeAll(pm.conn, msgpackPublish("/h", v));
        const answer = mpDecode((await pm.reader.frame())!) as { error?: { code: string } };
        assert.equal(answer.error?.code, "BAD_REQUEST", String(v.subarray(0, 3)));
      }
      // Both still publish, and only the good values were delivered.
      await writeAll(pj.conn, jsonPublish("/h", '{"good": "json"}'));
      await writeAll(pm.conn, msgpackPublish("/h", mpEncode({ good: "msgpack" })));
      const got = await sub.received(2);
      assert.deepEqual(got.map((d) => d.value), [{ good: "json" }, { good: "msgpack" }]);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(sub.deliveries.length, 2, "nothing hostile was delivered");
    } finally {
      sub.close();
      pj.conn.close();
      pm.conn.close();
    }
  });
});

Deno.test("MessagePack values queued for a slow MessagePack subscriber arrive as sent, in order", async () => {
  await withBroker(async (b) => {
    const sm = await raw(b.port, "msgpack");
    const pm = await raw(b.port, "msgpack");
    try {
      const params = { topic: "/s", policy: "drop-oldest" };
      await writeAll(sm.conn, frame(mpEncode({ id: 1, method: "broker.subscribe", params })));
      assert.ok((mpDecode((await sm.reader.frame())!) as { result?: unknown }).result);
      // Not reading for now: about 3 MB, past the kernel's buffers and max-pending.
      const value = (i: number) =>
        oddMsgpack({ seq: i, "ü": [i, true, null, 1.5], pad: "v".repeat(1000) });
      const n = 3000;
      for (let i = 0; i < n; i++) {
        await writeAll(pm.conn, msgpackPublish(`/s/${i % 3}`, value(i), false));
      }
      await writeAll(pm.conn, msgpackPublish("/s/end", value(-1), false));
      // Whatever survived is its publisher's bytes exactly, in order per topic.
      const last = [-1, -1, -1];
      for (;;) {
        const f = (await sm.reader.frame(5000))!;
        assert.ok(f !== null, "connection still open");
        const m = mpDecode(f) as {
          method: string;
          params: { topic: string; value: { seq: number } };
        };
        if (m.method !== "broker.message") continue;
        if (m.params.topic === "/s/end") break;
        const t = Number(m.params.topic.slice(3)), seq = m.params.value.seq;
        assert.ok(indexOf(f, value(seq)) > 0, `${seq}: exact MessagePack bytes`);
        assert.equal(seq % 3, t);
        assert.ok(seq > last[t], `in order on ${m.params.topic}`);
        last[t] = seq;
      }
      assert.deepEqual(last, [n - 3, n - 2, n - 1], "the newest of each topic arrived");
    } finally {
      for (const c of [sm, pm]) c.conn.close();
    }
  }, { maxPending: 256 * 1024 });
});

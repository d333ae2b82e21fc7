/**
 * Binary values (a MessagePack `bin`, decoded as a Uint8Array) are sized by
 * their bytes and written to JSON peers as base64, never through
 * JSON.stringify's `{"0":…,"1":…}` (hostile33 Y10: 11 times the bytes and
 * ~500 ms per MiB in the broker, the binder and the balancer).
 */
import assert from "node:assert/strict";
import { decode as mpDecode, encode as mpEncode } from "@msgpack/msgpack";
import {
  codecByName,
  dial,
  jsonCodec,
  jsonReplacer,
  jsonSize,
  jsonStringBytes,
  msgpackCodec,
  OutBuffer,
  toJsonText,
} from "../wire/mod.ts";
import { metaSize } from "../clients/contracts/binder.ts";
import { valueBytes } from "../roles/broker/values.ts";
import { jsonBytes } from "../roles/broker/frames.ts";
import { withBroker } from "./helpers/broker.ts";
import { frame, HELLO, prng, RawReader, writeAll } from "./helpers/raw.ts";

const decoder = new TextDecoder();

function bytes(n: number, seed = 1): Uint8Array {
  const r = prng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(r() * 256);
  return out;
}

/** What a JSON peer reads of a message decoded from MessagePack and written again as JSON. */
function reencoded(msg: unknown): Record<string, unknown> {
  const decoded = msgpackCodec.decode(mpEncode(msg));
  const out = new OutBuffer();
  jsonCodec.writeFrame(out, decoded, 1 << 24);
  return JSON.parse(decoder.decode(out.bytes.subarray(4, out.length)));
}

Deno.test("jsonCodec writes a binary decoded from MessagePack as base64, as the broker does", () => {
  const blob = bytes(1000);
  const got = reencoded({ id: 1, method: "echo", params: { key: "k", data: blob } });
  const params = got.params as Record<string, unknown>;
  assert.equal(params.data, btoa(String.fromCharCode(...blob)));
  // The broker's deliveries to JSON subscribers say the same.
  assert.equal(
    decoder.decode(jsonBytes(msgpackCodec.decode(mpEncode(blob)))),
    JSON.stringify(params.data),
  );
  // A typed array that did not come from the decoder is base64 too.
  assert.equal(toJsonText({ b: new Uint8Array([1, 2, 3]) }), '{"b":"AQID"}');
});

Deno.test("jsonSize() exact equals the length of the JSON text written", () => {
  const r = prng(7);
  const strings = [
    "",
    "a",
    'q"\\',
    "\u0001\n\t",
    "€uro",
    "😀",
    "\ud800x",
    "\udc00",
    "x".repeat(40),
  ];
  const gen = (depth: number): unknown => {
    const k = Math.floor(r() * (depth > 3 ? 6 : 9));
    switch (k) {
      case 0:
        return null;
      case 1:
        return r() < 0.5;
      case 2:
        return [0, -1, 1.5, 1e21, 123456789, -0.000001][Math.floor(r() * 6)];
      case 3:
      case 4:
        return strings[Math.floor(r() * strings.length)];
      case 5:
        return bytes(Math.floor(r() * 10), k);
      case 6:
        return Array.from({ length: Math.floor(r() * 4) }, () => gen(depth + 1));
      default: {
        const o: Record<string, unknown> = {};
        for (let i = Math.floor(r() * 4); i > 0; i--) {
          o[strings[Math.floor(r() * strings.length)]] = gen(depth + 1);
        }
        return o;
      }
    }
  };
  for (let i = 0; i < 3000; i++) {
    const v = gen(0);
    assert.equal(
      jsonSize(v, { exact: true }),
      JSON.stringify(v, jsonReplacer).length,
      JSON.stringify(v, jsonReplacer),
    );
  }
  assert.ok(jsonSize({ a: "x".repeat(100), b: "y".repeat(100) }, { limit: 50 }) > 50);
});

Deno.test("valueBytes() counts a binary by its bytes, alone or inside an object", () => {
  const blob = msgpackCodec.decode(mpEncode(new Uint8Array(1_000_000)));
  assert.equal(valueBytes(blob), 1_000_000);
  const inObject = valueBytes(
    msgpackCodec.decode(mpEncode({ name: "x", blob: new Uint8Array(1_000_000) })),
  );
  assert.ok(inObject >= 1_000_000 && inObject < 1_000_100, `${inObject}`);
});

Deno.test("metaSize() counts a binary member as its base64 text", () => {
  // 3,000 bytes are 4,000 characters of base64: within 4,096 (it was 11,000+ as {"0":…}).
  const meta = msgpackCodec.decode(mpEncode({ b: bytes(3000) }));
  assert.equal(metaSize(meta), JSON.stringify(meta, jsonReplacer).length);
  assert.throws(
    () => metaSize(msgpackCodec.decode(mpEncode({ b: new Uint8Array(1_000_000) }))),
    /"meta" is more than 4096 bytes of JSON/,
  );
  assert.throws(
    () => metaSize(msgpackCodec.decode(mpEncode(new Uint8Array(8)))),
    /must be an object/,
  );
});

Deno.test("broker: retained binaries published on the decoded path count their bytes and reach JSON subscribers as base64", async () => {
  await withBroker(async (b) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: b.port });
    const reader = new RawReader(conn);
    const json = await dial({ host: "127.0.0.1", port: b.port }, {
      role: "client",
      name: "json",
      codec: codecByName("json"),
    });
    try {
      await writeAll(conn, frame(JSON.stringify({ ...HELLO, codec: "msgpack" })));
      assert.equal((await reader.json())?.op, "welcome");
      const blob = bytes(300_000, 3);
      // An id past 32 bits: the broker's byte reader leaves the publish to the decoder.
      for (let i = 0; i < 3; i++) {
        const params = { topic: `/bin/${i}`, value: blob, retain: true };
        await writeAll(
          conn,
          frame(mpEncode({ id: 2 ** 40 + i, method: "broker.publish", params })),
        );
      }
      for (let i = 0; i < 3; i++) {
        const answer = mpDecode((await reader.frame(10_000))!) as Record<string, unknown>;
        assert.equal(answer.error, undefined, JSON.stringify(answer.error));
      }
      const stats = await json.call("sys.stats", {}) as {
        retained: { count: number; bytes: number };
      };
      assert.equal(stats.retained.count, 3);
      // About the values' bytes (each was counted ~3.3 MB as {"0":…}).
      assert.ok(
        stats.retained.bytes >= 900_000 && stats.retained.bytes < 1_000_000,
        `${stats.retained.bytes}`,
      );
      const got: unknown[] = [];
      const sub = await dial({ host: "127.0.0.1", port: b.port }, {
        role: "client",
        name: "sub",
        codec: codecByName("json"),
        onNotification: (method, params) => {
          if (method === "broker.message") got.push((params as { value: unknown }).value);
        },
      });
      try {
        await sub.call("broker.subscribe", { topic: "/bin/0" });
        const end = performance.now() + 5000;
        while (got.length === 0 && performance.now() < end) {
          await new Promise((r) => setTimeout(r, 10));
        }
        let text = "";
        for (let i = 0; i < blob.length; i += 0x8000) {
          text += String.fromCharCode(...blob.subarray(i, i + 0x8000));
        }
        assert.equal(got[0], btoa(text));
      } finally {
        sub.close();
      }
    } finally {
      conn.close();
      json.close();
    }
  });
});

Deno.test("jsonStringBytes() is the UTF-8 length of the JSON string JSON.stringify writes", () => {
  const r = prng(11);
  const parts = ["a", "€", "😀", '"', "\\", "\n", "\u0001", "\ud800", "\udc00", "é", "/x"];
  const utf8 = new TextEncoder();
  for (let i = 0; i < 2000; i++) {
    let s = "";
    for (let k = Math.floor(r() * 12); k > 0; k--) s += parts[Math.floor(r() * parts.length)];
    assert.equal(jsonStringBytes(s), utf8.encode(JSON.stringify(s)).length, JSON.stringify(s));
  }
});

/**
 * End to end through the broker: a publisher's values that differ from its
 * last one only in digits (read through its PublishMemo) arrive byte for byte
 * as sent to JSON subscribers and equal in value to MessagePack ones; digit
 * changes that make a value invalid are still refused with BAD_REQUEST.
 */
import assert from "node:assert/strict";
import { decode as mpDecode, encode as mpEncode } from "@msgpack/msgpack";
import { codecSubscribers, rawClient, withBroker } from "./helpers/broker.ts";
import { frame, prng, writeAll } from "./helpers/raw.ts";

Deno.test("a publisher's values with changed digits arrive as sent; invalid digit changes are refused", async () => {
  await withBroker(async (b) => {
    const { sj, sm, next } = await codecSubscribers(b.port, "/m");
    const pub = await rawClient(b.port, "json");
    const mpub = await rawClient(b.port, "msgpack");
    try {
      const publish = (value: string, retain = false) =>
        writeAll(
          pub.conn,
          frame(
            `{"method":"broker.publish","params":{"topic":"/m/r","value":${value},"retain":${retain}}}`,
          ),
        );
      // A reading whose digits change from one publish to the next, same length each time.
      const rand = prng(5);
      const d = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * 10)).join("");
      const nz = () => String(1 + Math.floor(rand() * 9));
      for (let i = 0; i < 60; i++) {
        const text =
          `{"id":${nz()}${d(4)},"t":${d(1)}.${d(2)},"at":"2026-12-06T0${d(1)}:${d(2)}:00Z",` +
          `"ok":${i % 2 === 0},"v":[${d(1)},-${nz()}${d(2)},"\\u00e9${d(3)}"],"n":null}`;
        await publish(text, i % 7 === 0);
        const got = await next();
        assert.equal(got.text, text, `delivery ${i} as sent`);
        assert.deepEqual(got.value, JSON.parse(text), `delivery ${i} to MessagePack`);
      }
      // Now kept: digit changes that break the value, at the kept value's length.
      const base = '{"a":12,"b":"\\ud83d\\ude00","c":[1e10]}';
      await publish(base);
      assert.equal((await next()).text, base);
      await publish(base);
      assert.equal((await next()).text, base);
      for (
        const bad of [
          '{"a":02,"b":"\\ud83d\\ude00","c":[1e10]}', // a leading zero
          '{"a":12,"b":"\\ud03d\\ude00","c":[1e10]}', // a lone low surrogate after
          '{"a":12,"b":"\\ud83d\\ude00","c":[1e99]}', // fine in JSON: taken by the full check
          '{"a":12,"b":"\\ud83d\\ude00","c":[1e400]}', // past a double (another length)
        ]
      ) {
        await publish(bad);
        if (bad.includes("1e99]")) {
          assert.equal((await next()).text, bad);
          continue;
        }
        const answer = await pub.reader.json();
        assert.equal(answer?.id, null, bad);
        assert.equal((answer?.error as { code: string }).code, "BAD_REQUEST", bad);
      }
      await publish(base.replace("12", "99"));
      assert.equal((await next()).text, base.replace("12", "99"));
      // MessagePack: a reading's float, integers, boolean and digits change; equal on both sides.
      const mpPublish = (value: unknown) =>
        writeAll(
          mpub.conn,
          frame(
            mpEncode({ method: "broker.publish", params: { topic: "/m/r", value, retain: false } }),
          ),
        );
      for (let i = 0; i < 40; i++) {
        const value = {
          id: 40_000 + i,
          t: 20 + rand(),
          ok: i % 3 === 0,
          n: -1 - (i % 20),
          at: `2026-12-06T01:0${i % 10}:00Z`,
          raw: Uint8Array.of(i, 255 - i),
        };
        await mpPublish(value);
        const got = await next();
        assert.deepEqual(got.value, value, `MessagePack delivery ${i}`);
      }
      // Then the same layout with a float made NaN (its exponent all ones): refused.
      const nan = mpEncode({
        method: "broker.publish",
        params: { topic: "/m/r", value: { t: 21.5 }, retain: false },
      });
      for (let i = 0; i < 3; i++) {
        await writeAll(mpub.conn, frame(nan));
        assert.deepEqual((await next()).value, { t: 21.5 });
      }
      const bad = nan.slice();
      const at = bad.indexOf(0xcb) + 1;
      bad[at] = 0x7f;
      bad[at + 1] = 0xf8;
      await writeAll(mpub.conn, frame(bad));
      const answer = mpDecode((await mpub.reader.frame())!) as { error?: { code: string } };
      assert.equal(answer.error?.code, "BAD_REQUEST");
    } finally {
      for (const c of [sj, sm, pub, mpub]) c.conn.close();
    }
  });
});

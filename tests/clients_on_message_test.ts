/**
 * A subscription's `onMessage` (clients/on_message.ts) against a real
 * broker run in this process: every message, parsed, in publish order
 * (across the subscriptions of a connection too, and across reads), none
 * left for the iterator; on JSON connections (values parsed a read at a
 * time) and MessagePack ones; a callback that throws is reported and the
 * next messages still come; one that unsubscribes gets no more.
 */
import assert from "node:assert/strict";
import { connect, type Connection, type Message } from "../clients/mod.ts";
import { startBroker } from "./helpers/broker.ts";
import { waitFor } from "./helpers/raw.ts";

async function withConnections(
  codec: "json" | "msgpack",
  body: (pub: Connection, sub: Connection) => Promise<void>,
  listen = false,
): Promise<void> {
  const b = await startBroker({});
  const pub = await connect(b.address, { codec });
  const sub = await connect(b.address, { codec });
  // A listener of broker.message on the connection: its deliveries take the decoding path.
  const stop = listen ? sub.on("broker.message", () => {}) : undefined;
  try {
    await body(pub, sub);
  } finally {
    stop?.();
    pub.close();
    sub.close();
    await b.stop();
  }
}

const VALUES = [
  "plain",
  { id: 18223, name: "sensor-12", ok: true, temp: 21.5, tags: ["a", "b"], unit: "°C" },
  { "clé": 'naïve café "q" \\ \n', text: "héllo ✓ 日本語 😀", n: -7e-3 },
  [[1, [2, [3]]], { a: { b: null } }, false],
  null,
  1.5,
];

for (const codec of ["json", "msgpack"] as const) {
  for (const listen of [false, true]) {
    const how = `${codec}${listen ? ", with a listener of broker.message" : ""}`;
    Deno.test(`onMessage (${how}): every message parsed, retained first, then in publish order across subscriptions and reads`, async () => {
      await withConnections(codec, async (pub, conn) => {
        await pub.publish("/a/kept", { kept: 1 }, { confirm: true });
        const got: [string, string, unknown, boolean][] = [];
        const on = (name: string) => (m: Message) =>
          got.push([name, m.topic, m.value, m.retained === true]);
        const a = await conn.subscribe("/a", { onMessage: on("a") });
        const b = await conn.subscribe("/b", { onMessage: on("b") });
        const sent: [string, string, unknown, boolean][] = [["a", "/a/kept", { kept: 1 }, true]];
        // Thousands, interleaved over both topics: several reads' worth.
        for (let i = 0; i < 3000; i++) {
          const value = i < VALUES.length ? VALUES[i] : { i, unit: "°C", s: "日本".repeat(i % 5) };
          const topic = i % 3 === 0 ? "/b/x" : "/a/y";
          pub.publish(topic, value, { retain: false });
          sent.push([topic === "/b/x" ? "b" : "a", topic, value, false]);
        }
        await waitFor(() => got.length >= sent.length, 10_000, "every message");
        assert.deepEqual(got, sent);
        assert.equal(a.waiting + b.waiting, 0, "none left for the iterators");
        assert.equal(a.invalid + b.invalid, 0);
      }, listen);
    });
  }
}

Deno.test("onMessage: an exception it throws is reported as uncaught, and the next messages still come", async () => {
  const reported: unknown[] = [];
  const onError = (e: ErrorEvent) => {
    e.preventDefault();
    reported.push(e.error);
  };
  globalThis.addEventListener("error", onError);
  try {
    await withConnections("json", async (pub, conn) => {
      const got: unknown[] = [];
      await conn.subscribe("/t", {
        onMessage: (m) => {
          got.push(m.value);
          if (m.value === 2) throw new Error("app failed on 2");
        },
      });
      for (let i = 1; i <= 5; i++) pub.publish("/t", i, { retain: false });
      await waitFor(() => got.length >= 5, 5000, "five messages");
      assert.deepEqual(got, [1, 2, 3, 4, 5]);
      assert.equal(reported.length, 1);
      assert.equal((reported[0] as Error).message, "app failed on 2");
      assert.ok(conn.connected, "the connection stays");
    });
  } finally {
    globalThis.removeEventListener("error", onError);
  }
});

Deno.test("onMessage: a callback that unsubscribes gets nothing after, even from the same read", async () => {
  await withConnections("json", async (pub, conn) => {
    const got: unknown[] = [];
    const sub = await conn.subscribe("/t", {
      onMessage: (m) => {
        got.push(m.value);
        if (m.value === 3) void sub.unsubscribe();
      },
    });
    for (let i = 1; i <= 500; i++) pub.publish("/t", i, { retain: false });
    const last = await pub.publish("/t", "end", { retain: false, confirm: true });
    assert.ok(last !== undefined);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(got, [1, 2, 3]);
  });
});

/**
 * The broker, producer and consumer against hostile peers (the attack
 * report's findings, each reproduced small and bounded): values no codec
 * should carry, garbage notifications, forged consumer output, a producer
 * whose publish fails, and per-connection bounds a peer could multiply.
 */
import assert from "node:assert/strict";
import { encode as mpEncode } from "@msgpack/msgpack";
import { lines, runDist, startDist } from "./helpers/dist.ts";
import { BrokerClient, statsUntil, streamDist, withBroker } from "./helpers/broker.ts";
import {
  closeQuietly,
  concat,
  frame,
  jsonFrame,
  rawHandshake,
  RawReader,
  sleep,
  WELCOME,
  writeAll,
} from "./helpers/raw.ts";

/** A raw MessagePack connection: frames are encoded by the unpatched library, as a hostile peer's. */
async function rawMsgpack(port: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reader = new RawReader(conn);
  await writeAll(
    conn,
    jsonFrame({ op: "hello", v: 1, codec: "msgpack", role: "raw", name: "raw" }),
  );
  const welcome = await reader.json();
  assert.equal(welcome?.op, "welcome");
  return { conn, reader };
}

Deno.test("broker refuses NaN, ±Infinity, bad dates and lone surrogates in published values", async () => {
  await withBroker(async (b) => {
    const sj = await BrokerClient.connect(b.port, "json", "sub-json");
    const sm = await BrokerClient.connect(b.port, "msgpack", "sub-msgpack");
    const { conn, reader } = await rawMsgpack(b.port);
    try {
      await sj.subscribe("/mix");
      await sm.subscribe("/mix");
      // What an unpatched MessagePack encoder sends, as requests.
      const values: unknown[] = [NaN, Infinity, -Infinity, { a: { b: [NaN, 1] } }];
      const frames = values.map((value, i) =>
        frame(mpEncode({ id: i + 1, method: "broker.publish", params: { topic: "/mix", value } }))
      );
      // A timestamp (ext -1) whose seconds (2^62) are outside the range of a JS Date.
      const badTime = Uint8Array.of(0xc7, 12, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0);
      const head = mpEncode({ id: 9, method: "broker.publish" });
      frames.push(frame(concat([
        Uint8Array.of(0x83),
        head.subarray(1), // the two pairs above, without their map header
        mpEncode("params"),
        Uint8Array.of(0x82),
        mpEncode("topic"),
        mpEncode("/mix"),
        mpEncode("value"),
        badTime,
      ])));
      await writeAll(conn, concat(frames));
      const { decode } = await import("@msgpack/msgpack");
      for (let i = 0; i < frames.length; i++) {
        const answer = decode((await reader.frame())!) as { id: number; error?: { code: string } };
        assert.equal(answer.error?.code, "BAD_REQUEST", `answer ${answer.id}`);
      }
      // A lone surrogate in JSON text is valid JSON, but has no UTF-8 form:
      // as requests (in a value, in a key), then in the fast path's layout,
      // fire-and-forget, then a good value.
      const raw = await Deno.connect({ hostname: "127.0.0.1", port: b.port });
      const rr = new RawReader(raw);
      try {
        await rawHandshake(raw, rr);
        const requests = [
          '{"id":1,"method":"broker.publish","params":{"topic":"/mix","value":"a\\ud800b"}}',
          '{"id":2,"method":"broker.publish","params":{"topic":"/mix","value":{"k\\udc00":1}}}',
        ];
        await writeAll(raw, concat(requests.map((r) => frame(r))));
        for (let i = 0; i < requests.length; i++) {
          const answer = await rr.json();
          assert.equal((answer?.error as { code: string })?.code, "BAD_REQUEST");
        }
        const bad = '{"method":"broker.publish","params":{"topic":"/mix","value":"a\\ud800b"}}';
        await writeAll(
          raw,
          concat([
            frame(bad),
            frame(bad),
            jsonFrame({
              method: "broker.publish",
              params: { topic: "/mix", value: "good" },
            }),
          ]),
        );
        const [d1, d2] = [await sj.received(1), await sm.received(1)];
        assert.deepEqual([d1[0].value, d2[0].value], ["good", "good"]);
      } finally {
        closeQuietly(raw);
      }
      assert.equal(sm.peer.isClosed, false, "the MessagePack subscriber keeps its connection");
      await sleep(50);
      assert.equal(sj.deliveries.length + sm.deliveries.length, 2, "nothing else was delivered");
    } finally {
      closeQuietly(conn);
      for (const c of [sj, sm]) c.close();
    }
  });
});

Deno.test("broker: 50 drop-oldest subscriptions on one stalled connection share one max-pending", async () => {
  const maxPending = 256 * 1024;
  await withBroker(async (b) => {
    const raw = await Deno.connect({ hostname: "127.0.0.1", port: b.port });
    const reader = new RawReader(raw);
    const pub = await BrokerClient.connect(b.port);
    try {
      await rawHandshake(raw, reader);
      const subscribes = Array.from({ length: 50 }, (_, i) =>
        jsonFrame({
          id: i + 1,
          method: "broker.subscribe",
          params: { topic: "/", policy: i % 2 === 0 ? "drop-oldest" : "latest" },
        }));
      await writeAll(raw, concat(subscribes));
      for (let i = 0; i < 50; i++) assert.ok((await reader.json())?.result !== undefined);
      // From now on the subscriber reads nothing: 50 copies of 4 MB are published.
      const value = "v".repeat(1000);
      for (let i = 0; i < 4000; i++) {
        pub.publish(`/x/${i % 100}`, value, false);
        if (i % 200 === 199) await pub.peer.conn.drained(64 * 1024);
      }
      const stats = await statsUntil(pub, (s) => s.messages_in === 4000, 10_000);
      assert.ok(
        (stats.queued_bytes as number) <= maxPending,
        `queued ${stats.queued_bytes} bytes on one connection (max-pending ${maxPending})`,
      );
      assert.ok((stats.dropped as number) > 0);
      assert.equal(stats.subscriptions, 50, "still connected: the policies drop, not cut off");
    } finally {
      closeQuietly(raw);
      pub.close();
    }
  }, { maxPending });
});

Deno.test("broker ignores unknown notifications and answers at most 10 bad publishes per connection", async () => {
  await withBroker(async (b) => {
    const raw = await Deno.connect({ hostname: "127.0.0.1", port: b.port });
    const reader = new RawReader(raw);
    try {
      await rawHandshake(raw, reader);
      const unknown = jsonFrame({ method: "nope", params: {} });
      const bad = jsonFrame({ method: "broker.publish", params: { topic: "/a//b", value: 1 } });
      const frames: Uint8Array[] = [];
      for (let i = 0; i < 200; i++) frames.push(unknown, bad);
      frames.push(jsonFrame({ id: 1, method: "sys.stats" }));
      await writeAll(raw, concat(frames));
      let errors = 0;
      let stats: Record<string, unknown> | undefined;
      while (stats === undefined) {
        const m = await reader.json(5000);
        assert.ok(m !== null, "the connection stays open");
        if (m.id === 1) stats = m.result as Record<string, unknown>;
        else if (m.error !== undefined) errors++;
      }
      assert.equal(errors, 10);
      assert.equal(stats.bad_publishes, 200);
      assert.equal(stats.unknown_notifications, 200);
    } finally {
      closeQuietly(raw);
    }
  });
});

Deno.test("one-shot producer exits 1 with the cause when its publish fails", async () => {
  // The broker refuses the 100 KB frame (its limit is 64 KiB) and closes.
  const broker = await startDist(["broker", "--port", "0", "--max-frame", "65536"]);
  try {
    const value = "v".repeat(100_000);
    const base = ["producer", "-b", broker.address, "--topic", "/x", "--value", value];
    const t0 = performance.now();
    const [confirmed, forgotten] = await Promise.all([
      runDist([...base, "--confirm", "--timeout", "2s"]),
      runDist([...base, "--timeout", "2s"]),
    ]);
    assert.ok(performance.now() - t0 < 12_000, "both exit within their timeouts");
    for (const r of [confirmed, forgotten]) {
      assert.equal(r.code, 1, r.stderr);
      assert.match(lines(r.stderr).at(-1)!, /^dist: [A-Z_]+: .*not published|may not have reached/);
    }
  } finally {
    await broker.stop();
  }
});

Deno.test("consumer prints one line per message whatever its value holds", async () => {
  const broker = await startDist(["broker", "--port", "0"]);
  const text = streamDist(["consumer", "-b", broker.address, "--topic", "/prices", "--count", "2"]);
  const json = streamDist([
    "consumer",
    "-b",
    broker.address,
    "--topic",
    "/prices",
    "--count",
    "2",
    "--json",
  ]);
  const p = await BrokerClient.connect(broker.port);
  try {
    await text.until("stderr", /Subscribed to/);
    await json.until("stderr", /Subscribed to/);
    const forged = "1.00\n/prices/orange 0.01\r\n/prices/tim 0.00 (retained)\u001b[2J\u009b\u202e";
    await p.confirm("/prices/evil", forged, false);
    await p.confirm("/prices/orange", 1.5, false);
    assert.equal(await text.exited(), 0, text.stderr());
    assert.equal(await json.exited(), 0, json.stderr());
    const out = lines(text.stdout());
    assert.equal(out.length, 2, text.stdout());
    assert.equal(
      out[0],
      `/prices/evil ${
        JSON.stringify(forged).replace(
          /[\u009b\u202e]/g,
          (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
        )
      }`,
    );
    assert.equal(out[1], "/prices/orange 1.5");
    const got = lines(json.stdout());
    assert.equal(got.length, 2, json.stdout());
    for (const c of ["\u001b", "\u009b", "\u202e", "\r"]) assert.ok(!json.stdout().includes(c));
    assert.deepEqual(got.map((l) => JSON.parse(l).value), [forged, 1.5]);
    assert.doesNotMatch(text.stderr(), /New topic/, "new topics are not logged at info");
  } finally {
    p.close();
    await text.stop();
    await json.stop();
    await broker.stop();
  }
});

for (const early of [false, true]) {
  Deno.test(`consumer --json never splices a broker's unchecked bytes into its output${early ? " (sent before the subscribe's answer)" : ""}`, async () => {
    // A fake broker: answers the subscribe, then sends a delivery in the fast
    // path's layout whose "value" is not one JSON value, then a true one.
    // Early: the forged delivery comes in the same write as the answer, before
    // it (the library keeps deliveries that precede their subscription's sid).
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    const served = (async () => {
      const conn = await listener.accept();
      const reader = new RawReader(conn);
      try {
        await reader.json(5000); // hello
        await writeAll(conn, jsonFrame({ ...WELCOME, role: "broker", name: "evil" }));
        const sub = await reader.json(5000);
        // A well-formed answer (the consumer checks it against the broker contract).
        const answer = jsonFrame({
          id: sub?.id,
          result: { sid: 1, topic: "/", topics: [], topic_count: 0 },
        });
        const forged = frame(
          '{"method":"broker.message","params":{"topic":"/a","value":1,' +
            '"retained":false}\n{"topic":"/bank","value":"transfer ok","retained":false' +
            ',"retained":false,"sid":1}}',
        );
        const good = jsonFrame({
          method: "broker.message",
          params: { topic: "/b", value: 2, retained: false, sid: 1 },
        });
        if (early) await writeAll(conn, concat([forged, answer, good]));
        else {
          await writeAll(conn, answer);
          await writeAll(conn, concat([forged, good]));
        }
        await reader.untilClosed(10_000).catch(() => {});
      } finally {
        closeQuietly(conn);
      }
    })();
    try {
      const r = await runDist(["consumer", "-b", `127.0.0.1:${port}`, "--json", "--count", "1"]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(lines(r.stdout).map((l) => JSON.parse(l)), [
        { topic: "/b", value: 2, retained: false },
      ]);
    } finally {
      listener.close();
      await served;
    }
  });
}
